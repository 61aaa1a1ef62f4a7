"""Order reconciliation against the sandbox: Centra's orders and refunds against Fulfil's sales and credits, per day,
market and currency, to the minor unit."""

from decimal import Decimal

import pytest
from django.utils import timezone

from exceptions.models import Status, SyncException
from syncs import connections
from syncs.flows.reconcile_orders import FLOW, reconcile_orders_run
from syncs.flows.return_sync import return_sync_run
from syncs.models import OrderReconciliation
from syncs.tests.test_return_sync import brand, shipped_and_one_small_returned  # noqa: F401 - a fixture


def today_reconciled():
    today = timezone.localdate()
    return reconcile_orders_run(first=today, last=today)


def the_day() -> OrderReconciliation:
    return OrderReconciliation.objects.get(day=timezone.localdate(), market_id=3, currency="GBP")


def nudge_fulfil_sale(connected, reference: str, amount: str) -> None:
    """Someone edits the sale in Fulfil: the unit price of its product line of one unit moves by ``amount``."""
    fulfil = connected.simulator("fulfil")
    sale_id = connections.fulfil().sale_by_reference(reference).id
    with fulfil.lock:
        lines = fulfil._rows("sale.line")
        line = next(row for row in lines if row["sale"] == sale_id and row.get("product") and row["quantity"] == 1)
        line["unit_price"] = Decimal(str(line["unit_price"])) + Decimal(amount)


@pytest.mark.django_db
def test_a_matching_day_is_balanced(brand):  # noqa: F811
    summary = today_reconciled()
    assert (summary.examined, summary.differences) == (1, 0)
    day = the_day()
    assert (day.centra_orders, day.fulfil_sales, day.centra_value, day.fulfil_value) == (
        1,
        1,
        Decimal("69.880"),
        Decimal("69.880"),
    )
    assert day.balanced and day.market_name
    assert not SyncException.objects.filter(flow=FLOW).exists()


@pytest.mark.django_db
def test_a_one_cent_difference_is_found_shown_and_raised_for_finance_then_resolves(brand, connected):  # noqa: F811
    nudge_fulfil_sale(connected, "1000", "-0.01")
    today_reconciled()
    day = the_day()
    assert not day.balanced
    assert day.differences == [
        {
            "day": timezone.localdate().isoformat(),
            "kind": "sale_differs",
            "ref": "1000",
            "order": "1000",
            "centra": "69.88",
            "fulfil": "69.87",
            "currency": "GBP",
        }
    ]
    exception = SyncException.objects.get(flow=FLOW)
    assert (exception.kind, exception.team, exception.object_ref) == ("totals_mismatch", "finance", "sale:1000")
    assert "Centra order 1000 is 69.88 GBP, its Fulfil sale 69.87" in exception.title
    assert today_reconciled().raised == 0  # the next night: still one exception, not another
    nudge_fulfil_sale(connected, "1000", "0.01")
    summary = today_reconciled()
    assert summary.resolved == 1 and the_day().balanced
    exception.refresh_from_db()
    assert exception.status == Status.RESOLVED


@pytest.mark.django_db
def test_a_refund_without_its_credit_is_raised_and_matches_once_the_credit_is_posted(brand):  # noqa: F811
    return_id = shipped_and_one_small_returned()
    connections.centra().complete_return_with_refund(return_id)
    today_reconciled()
    day = the_day()
    [difference] = day.differences
    assert (difference["kind"], difference["ref"], difference["fulfil"]) == ("missing_credit", str(return_id), None)
    assert day.centra_refunds == 1 and day.fulfil_credits == 0
    exception = SyncException.objects.get(flow=FLOW)
    assert (exception.kind, exception.team) == ("refund_not_posted", "finance")
    return_sync_run()
    today_reconciled()
    day = the_day()
    assert day.balanced and (day.centra_refunds, day.fulfil_credits) == (1, 1)
    assert day.refund_value == day.credit_value
    exception.refresh_from_db()
    assert exception.status == Status.RESOLVED


@pytest.mark.django_db
def test_an_order_missing_in_fulfil_is_listed(brand, control):  # noqa: F811
    control("centra").seed(
        orders=[{"number": 1001, "marketId": 3, "status": "CONFIRMED", "lines": [{"sku": "TEE100BLKS", "quantity": 1}]}]
    )
    today_reconciled()
    day = the_day()
    assert day.centra_orders == 2 and day.fulfil_sales == 1
    assert [(d["kind"], d["ref"]) for d in day.differences] == [("missing_sale", "1001")]
    assert SyncException.objects.get(flow=FLOW).kind == "missing_in_target"
