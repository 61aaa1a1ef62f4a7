"""The dashboard: a card per flow, the exception queue by team and kind with its 14-day trend, stock freshness,
orders waiting on payment capture, and each connection's health — each card refreshing itself with htmx."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule

from exceptions.models import SyncException
from exceptions.services import failure_record
from mappings.models import Channel
from syncs import connection_health, connections
from syncs.connectors.errors import DataError
from syncs.flows import FLOWS
from syncs.models import ConnectionHealth, Link, RateBudget, StockState, SyncRun
from syncs.runs import run_flow

pytestmark = pytest.mark.django_db

CARD_IDS = (
    "dashboard-flows",
    "dashboard-exceptions",
    "dashboard-stock",
    "dashboard-capture",
    "dashboard-connections",
)


@pytest.fixture(autouse=True)
def nothing_noted_yet():
    connection_health.connection_health_forget()
    yield
    connection_health.connection_health_forget()


def dashboard(client, **headers):
    response = client.get(reverse("dashboard"), headers=headers)
    assert response.status_code == 200
    return response


def card(client, card_id: str) -> str:
    return dashboard(client, **{"HX-Request": "true", "HX-Target": card_id}).content.decode()


def unmapped_sku(ref: str, *, flow: str = "order_import") -> SyncException:
    return failure_record(
        flow=flow,
        object_type="order",
        object_ref=ref,
        error=DataError("no SKU mapping", system="virtualstock", operation="orders"),
        title=f"Order {ref} has a SKU nobody mapped",
        kind_code="unmapped_sku",
    )


# --- flows --------------------------------------------------------------------------------------------------------


def test_every_flow_has_a_card_even_before_it_ever_ran(ada, client_for):
    html = dashboard(client_for(ada)).content.decode()
    for flow in FLOWS:
        assert f'id="flow-{flow}"' in html
    assert "never run" in html


def test_a_flow_card_shows_its_last_run_its_items_and_its_lag_behind_the_source(ada, client_for):
    cursor = (timezone.now() - timedelta(minutes=42)).isoformat()
    run_flow(
        flow="shipment_sync", action=lambda counter: {"examined": 7, "failed": 2, "cursor": cursor}, trigger="manual"
    )
    unmapped_sku("SHP-1", flow="shipment_sync")

    response = dashboard(client_for(ada))
    [flow_card] = [c for c in response.context["flows"] if c.flow == "shipment_sync"]
    assert (flow_card.last_run.trigger, flow_card.last_run.examined, flow_card.last_run.failed) == ("manual", 7, 2)
    assert flow_card.open_exceptions == 1
    assert timedelta(minutes=41) < flow_card.lag < timedelta(minutes=43)
    html = response.content.decode()
    assert "7 examined" in html and "2 failed" in html and "manual" in html
    assert "newest source change read" in html


def test_a_failed_run_shows_its_error_and_the_last_success_before_it(ada, client_for):
    run_flow(flow="order_export", action=lambda counter: {"examined": 3}, trigger="schedule")

    def boom(counter):
        raise RuntimeError("Centra answered 503 for the whole run")

    with pytest.raises(RuntimeError):
        run_flow(flow="order_export", action=boom, trigger="schedule")
    response = dashboard(client_for(ada))
    [flow_card] = [c for c in response.context["flows"] if c.flow == "order_export"]
    assert flow_card.last_run.status == SyncRun.Status.FAILED
    assert flow_card.last_success_at is not None
    assert "Centra answered 503" in response.content.decode()


def test_the_next_run_comes_from_the_flows_django_q_schedule(ada, client_for):
    at = timezone.now() + timedelta(minutes=3)
    Schedule.objects.filter(func="syncs.tasks.run", args__in=["'shipment_sync'", "'return_sync'"]).update(next_run=at)
    # An event's follow-up runs the flow sooner: that is its next run.
    sooner = timezone.now() + timedelta(seconds=20)
    Schedule.objects.create(
        name="return_sync: follow-up after events",
        func="syncs.tasks.run",
        args="'return_sync', 'event'",
        schedule_type=Schedule.ONCE,
        next_run=sooner,
    )
    flows = {c.flow: c for c in dashboard(client_for(ada)).context["flows"]}
    assert flows["shipment_sync"].next_run == at
    assert flows["return_sync"].next_run == sooner
    assert all(flows[flow].next_run for flow in FLOWS)  # every flow is scheduled by a migration


# --- exceptions ---------------------------------------------------------------------------------------------------


def test_open_exceptions_are_counted_by_team_and_kind_with_the_oldest(ada, client_for):
    oldest = unmapped_sku("ORD-1")
    unmapped_sku("ORD-2")
    SyncException.objects.filter(pk=oldest.pk).update(first_seen=timezone.now() - timedelta(days=3))
    resolved = unmapped_sku("ORD-3")
    SyncException.objects.filter(pk=resolved.pk).update(status="resolved")

    response = dashboard(client_for(ada))
    [group] = response.context["exception_groups"]
    assert (group.team, group.kind, group.count) == ("ecommerce", "unmapped_sku", 2)
    assert group.oldest < timezone.now() - timedelta(days=2)
    html = response.content.decode()
    assert "?team=ecommerce&amp;kind=unmapped_sku" in html and "oldest 3" in html


def test_the_trend_counts_new_exceptions_per_day_for_fourteen_days_as_inline_svg(ada, client_for):
    for ref, days_ago in [("A", 0), ("B", 0), ("C", 2), ("D", 13), ("E", 20)]:
        exception = unmapped_sku(ref)
        SyncException.objects.filter(pk=exception.pk).update(first_seen=timezone.now() - timedelta(days=days_ago))

    response = dashboard(client_for(ada))
    trend = response.context["trend"]
    assert len(trend.days) == 14 and trend.days[-1].day == timezone.localdate()
    assert [day.count for day in trend.days] == [1] + [0] * 10 + [1, 0, 2]
    assert (trend.total, trend.peak) == (4, 2)
    assert trend.days[-1].height == trend.HEIGHT and trend.days[-3].height == trend.HEIGHT / 2
    html = response.content.decode()
    assert "<svg" in html and html.count('class="dash-bar"') == 14
    assert "<script" not in html.split("<main>")[1]  # drawn on the server, no chart library


# --- stock, capture -----------------------------------------------------------------------------------------------


def test_stock_freshness_is_the_share_of_pairs_each_channel_confirmed_within_the_stale_limit(ada, client_for, settings):
    settings.STOCK_STALE_MINUTES = 120
    now = timezone.now()
    channel = Channel.objects.create(code="john-lewis", name="John Lewis", system="virtualstock")
    states = [
        ("FRESH-1", now - timedelta(minutes=5), 3, 3),
        ("FRESH-2", now - timedelta(minutes=100), 4, 4),
        ("OLD-SAME", now - timedelta(hours=5), 2, 2),  # not confirmed lately, but nothing new to say
        ("OLD-WAITING", now - timedelta(hours=5), 1, 6),  # a new figure waiting for five hours: stale
    ]
    StockState.objects.bulk_create(
        StockState(channel=channel, sku=sku, acknowledged_at=at, pushed_value=pushed, ats=ats)
        for sku, at, pushed, ats in states
    )
    response = dashboard(client_for(ada))
    [freshness] = response.context["stock"]
    assert (freshness.pairs, freshness.confirmed, freshness.stale) == (4, 2, 1)
    assert freshness.confirmed_percent == 50.0
    assert "John Lewis" in response.content.decode()
    # The stock push's lag is the oldest change a channel has not confirmed.
    [push] = [c for c in response.context["flows"] if c.flow == "stock_push"]
    assert timedelta(hours=4, minutes=59) < push.lag < timedelta(hours=5, minutes=1)


def test_orders_waiting_on_payment_capture_are_counted_with_the_oldest(ada, client_for):
    def order(ref: str, **fields) -> Link:
        return Link.objects.create(kind=Link.Kind.ORDER, source_system="centra", source_ref=ref, **fields)

    oldest = order("1001", detail={"waiting": "capture"})
    order("1002", detail={"waiting": "capture"})
    order("1003", detail={"waiting": "capture"}, exported_at=timezone.now())  # exported since: not waiting
    order("1004")
    Link.objects.filter(pk=oldest.pk).update(created_at=timezone.now() - timedelta(hours=3))

    response = dashboard(client_for(ada))
    assert response.context["capture"].count == 2
    assert response.context["capture"].oldest < timezone.now() - timedelta(hours=2)
    assert "seen 3" in response.content.decode()


# --- connections --------------------------------------------------------------------------------------------------


# Outside the test's own transaction, as a worker makes its calls.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_connections_last_success_and_last_error_are_kept_and_never_a_credential(
    connected, control, ada, client_for, settings
):
    fulfil = connections.fulfil()
    fulfil.search_count("product.product", [])
    control("fulfil").faults(error_rate=1.0, error_status=401)
    with pytest.raises(Exception):  # noqa: B017 - whichever typed error: it is the note that matters
        fulfil.search_count("product.product", [])

    health = ConnectionHealth.objects.get(system="fulfil")
    assert health.last_success_at and health.last_error_at and health.last_error_at >= health.last_success_at
    assert "401" in health.last_error
    html = card(client_for(ada), "dashboard-connections")
    assert "failing" in html and "401" in html
    assert settings.CONNECTIONS["fulfil"]["api_key"] not in html


# Outside the test's own transaction, as a worker makes its calls.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_noting_outcomes_costs_no_query_per_call(connected, django_assert_max_num_queries):
    fulfil = connections.fulfil()
    fulfil.search_count("product.product", [])  # the first success is written at once
    with django_assert_max_num_queries(0):
        for _ in range(20):
            fulfil.search_count("product.product", [])


# Outside the test's own transaction, as a worker makes its calls.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_nothing_is_written_inside_a_transaction_and_it_is_written_after(connected, django_assert_num_queries):
    from django.db import transaction

    fulfil = connections.fulfil()
    with transaction.atomic(), django_assert_num_queries(0):
        fulfil.search_count("product.product", [])
    assert not ConnectionHealth.objects.exists()
    fulfil.search_count("product.product", [])
    assert ConnectionHealth.objects.get(system="fulfil").last_success_at


def test_rate_limit_headroom_counts_every_workers_calls_in_each_window(ada, client_for, settings):
    settings.RATE_LIMITS_SHARED = True
    settings.CONNECTIONS = {
        **settings.CONNECTIONS,
        "fulfil": {**settings.CONNECTIONS["fulfil"], "requests_per_second": 10},
    }
    connections.fulfil.cache_clear()
    try:
        now = timezone.now().timestamp()
        RateBudget.objects.create(key="fulfil:requests", calls=[now - 5, now - 0.5, now - 0.4, now - 0.1])
        response = dashboard(client_for(ada))
    finally:
        connections.fulfil.cache_clear()
    [fulfil] = [c for c in response.context["connections"] if c.summary.system == "fulfil"]
    [bucket] = fulfil.buckets
    [window] = bucket.windows
    assert (window.calls, window.limit, window.seconds) == (3, 10, 1.0)
    assert bucket.headroom_percent == 70.0
    assert "3 of 10 in 1 s" in response.content.decode()


# --- the page -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("card_id", CARD_IDS)
def test_each_card_refreshes_itself_every_30_seconds_as_a_partial(card_id, ada, client_for):
    client = client_for(ada)
    page = dashboard(client).content.decode()
    assert f'id="{card_id}"' in page
    partial = card(client, card_id)
    assert f'id="{card_id}"' in partial and 'hx-trigger="every 30s"' in partial
    assert "<html" not in partial


def test_the_dashboard_answers_in_a_fixed_number_of_queries(ada, client_for, django_assert_max_num_queries):
    client = client_for(ada)
    for ref in ("ORD-1", "ORD-2", "ORD-3"):
        unmapped_sku(ref)
    for flow in FLOWS:
        run_flow(flow=flow, action=lambda counter: {"examined": 1}, trigger="schedule")
    dashboard(client)
    # Two look-ups per flow at most, and a handful for the rest of the page, however many exceptions there are.
    with django_assert_max_num_queries(2 * len(FLOWS) + 30):
        dashboard(client)


def test_the_dashboard_needs_a_sign_in_and_only_answers_get(ada, client, client_for):
    assert client.get(reverse("dashboard")).status_code == 302
    assert client_for(ada).post(reverse("dashboard")).status_code == 405


def test_every_role_sees_every_card(erin, fred, cora, olga, client_for):
    for person in (erin, fred, cora, olga):
        html = dashboard(client_for(person)).content.decode()
        assert all(f'id="{card_id}"' in html for card_id in CARD_IDS)


def test_the_sandbox_counts_no_calls_for_showing_the_dashboard(connected, control, ada, client_for):
    dashboard(client_for(ada))
    assert all(control(system).calls() == [] for system in connections.LABELS if system != "inventory_planner")


def test_team_totals_add_up_the_groups_as_the_per_team_count_does(ada, client_for):
    from console import selectors

    for ref in ("ORD-1", "ORD-2"):
        unmapped_sku(ref)
    failure_record(
        flow="shipment_sync",
        object_type="shipment",
        object_ref="CS1",
        error=DataError("no carrier mapping", system="virtualstock", operation="dispatch"),
        title="Shipment CS1 has a carrier nobody mapped",
        kind_code="unmapped_carrier",
    )
    totals = selectors.exception_team_totals(selectors.open_exceptions_by_team_and_kind())
    assert totals == selectors.open_exceptions_by_team()
