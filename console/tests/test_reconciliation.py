"""The reconciliation pages: days by market and currency, a day's differences, finance's sign-off, the CSV."""

import csv
import io
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ

from syncs.models import OrderReconciliation

pytestmark = pytest.mark.django_db


def a_day(offset: int = 1, **values) -> OrderReconciliation:
    defaults = {
        "market_id": 2,
        "market_name": "Europe",
        "currency": "EUR",
        "centra_orders": 3,
        "centra_value": Decimal("120.50"),
        "fulfil_sales": 3,
        "fulfil_value": Decimal("120.50"),
        "checked_at": timezone.now(),
    }
    return OrderReconciliation.objects.create(day=timezone.localdate() - timedelta(days=offset), **(defaults | values))


DIFFERENCE = {
    "day": "2026-11-25",
    "kind": "sale_differs",
    "ref": "1000",
    "order": "1000",
    "centra": "69.88",
    "fulfil": "69.87",
    "currency": "EUR",
}


def test_the_overview_lists_days_with_their_state_and_offers_runs_by_role(fred, erin, cora, client_for):
    a_day(1)
    a_day(2, fulfil_sales=2, fulfil_value=Decimal("100.00"), differences=[DIFFERENCE])
    page = client_for(fred).get(reverse("reconciliation:overview")).content.decode()
    assert "1 difference" in page and "matches" in page and "Reconcile these days now" in page
    assert "Compare SKUs now" not in page
    page = client_for(erin).get(reverse("reconciliation:overview")).content.decode()
    assert "Reconcile these days now" not in page and "Compare SKUs now" in page
    only_differences = client_for(cora).get(reverse("reconciliation:overview"), {"status": "differences"})
    assert only_differences.content.decode().count("difference") >= 1
    assert len(only_differences.context["days"]) == 1


def test_finance_signs_a_day_off_with_a_note_when_it_has_differences(fred, client_for):
    day = a_day(differences=[DIFFERENCE])
    client = client_for(fred)
    url = reverse("reconciliation:sign_off", args=[day.pk])
    response = client.post(url, {"note": ""}, follow=True)
    assert "say in the note how they were dealt with" in response.content.decode()
    day.refresh_from_db()
    assert day.signed_off_at is None
    client.post(url, {"note": "1000 corrected in Fulfil by hand"})
    day.refresh_from_db()
    assert (day.signed_off_by.username, day.sign_off_note) == ("fred", "1000 corrected in Fulfil by hand")
    page = client.get(reverse("reconciliation:day", args=[day.pk])).content.decode()
    assert "Signed off by <strong>fred</strong>" in page and "Sale total differs" in page


def test_only_finance_and_admins_may_sign_off(erin, olga, ada, client_for):
    day = a_day()
    for person in (erin, olga):
        response = client_for(person).post(reverse("reconciliation:sign_off", args=[day.pk]), {"note": "ok"})
        assert response.status_code == 403
        assert (
            "Sign off this day"
            not in client_for(person).get(reverse("reconciliation:day", args=[day.pk])).content.decode()
        )
    client_for(ada).post(reverse("reconciliation:sign_off", args=[day.pk]), {"note": ""})
    day.refresh_from_db()
    assert day.signed_off_by == ada


def test_reopening_keeps_the_earlier_sign_off_in_the_history(fred, client_for):
    day = a_day()
    client = client_for(fred)
    client.post(reverse("reconciliation:sign_off", args=[day.pk]), {"note": "fine"})
    client.post(reverse("reconciliation:reopen", args=[day.pk]))
    day.refresh_from_db()
    assert day.signed_off_at is None
    assert day.sign_off_history[0]["by"] == "fred" and day.sign_off_history[0]["cleared"] == "reopened by fred"


def test_the_csv_has_a_row_per_day_and_per_difference_with_formulas_defused(fred, client_for):
    a_day(1, market_name="=HYPERLINK(1)")
    a_day(2, differences=[DIFFERENCE])
    since = (timezone.localdate() - timedelta(days=5)).isoformat()
    response = client_for(fred).get(reverse("reconciliation:orders_csv"), {"since": since})
    assert response.streaming and response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 3
    assert rows[0]["market"] == "'=HYPERLINK(1)"
    difference = next(row for row in rows if row["difference"])
    assert (difference["difference"], difference["centra"], difference["fulfil"]) == ("sale_differs", "69.88", "69.87")


def test_a_run_is_handed_to_a_worker_for_those_allowed(fred, cora, client_for):
    yesterday = (timezone.localdate() - timedelta(days=1)).isoformat()
    assert client_for(cora).post(reverse("reconciliation:run"), {"what": "orders"}).status_code == 403
    client_for(fred).post(reverse("reconciliation:run"), {"what": "orders", "since": yesterday, "until": yesterday})
    [task] = [task.task for task in OrmQ.objects.all()]
    assert (task["func"], task["args"]) == ("syncs.tasks.reconcile_order_days", (yesterday, yesterday))


def test_figures_that_change_after_the_sign_off_clear_it(fred, connected, control, settings):
    from syncs.flows.reconcile_orders import reconcile_orders_run

    settings.SKU_SAME_AS_CENTRA = ["fulfil", "inventory_planner"]
    today = timezone.localdate()
    day = a_day(0, market_id=3, currency="GBP", centra_orders=0, centra_value=0, fulfil_sales=0, fulfil_value=0)
    day.signed_off_by, day.signed_off_at, day.sign_off_note = fred, timezone.now(), "nothing that day"
    day.save()
    control("centra").seed(
        products=[
            {
                "name": "Tee",
                "productNumber": "T1",
                "variants": [{"name": "B", "variantNumber": "B", "sizes": [{"sizeNumber": "S", "name": "S"}]}],
            }
        ]
    )
    control("centra").seed(
        orders=[{"number": 7001, "marketId": 3, "status": "CONFIRMED", "lines": [{"sku": "T1BS", "quantity": 1}]}]
    )
    reconcile_orders_run(first=today, last=today)
    day.refresh_from_db()
    assert day.centra_orders == 1 and day.signed_off_at is None
    assert day.sign_off_history == [
        {
            "by": "fred",
            "at": day.sign_off_history[0]["at"],
            "note": "nothing that day",
            "cleared": "the figures changed after the sign-off",
        }
    ]
    assert isinstance(date.fromisoformat(day.sign_off_history[0]["at"][:10]), date)
