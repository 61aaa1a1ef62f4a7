"""Events and webhooks start the order flows within seconds; schedules are the safety net."""

import time

import pytest
import requests
from django.db import connection
from django_q.models import OrmQ, Schedule

from syncs.flows.webhooks import flows_touched, webhook_process
from syncs.models import InboundWebhook, Link
from syncs.tests.test_order_export import shop  # noqa: F401 - a fixture
from syncs.tests.test_order_import import brand, marketplace_brand, marketplace_order  # noqa: F401 - fixtures


def test_each_system_s_events_name_the_flows_they_give_work_to():
    assert flows_touched("centra", [{"type": "order", "id": 5}]) == {"order_export", "order_cancel"}
    assert flows_touched("centra", [{"type": "return", "id": 7}, {"type": "shipment", "id": 8}]) == {"return_sync"}
    assert flows_touched("fulfil", {"event": "stock.shipment.out.done", "payload": {}}) == {"shipment_sync"}
    assert flows_touched("fulfil", {"event": "stock.shipment.in.return.done", "payload": {}}) == {"return_sync"}
    assert flows_touched("fulfil", {"event": "product.product.inventory_level_changed"}) == set()
    assert flows_touched("marketplace", {"type": "order.created", "data": {}}) == {"order_import"}
    assert flows_touched("marketplace", "garbage") == set()


@pytest.mark.django_db
def test_a_burst_of_events_asks_for_runs_that_stand_aside_and_leaves_one_follow_up_per_flow(settings):
    settings.STOCK_MASTER = "fulfil"
    for index in range(3):
        webhook = InboundWebhook.objects.create(
            system="centra", digest=f"d{index}", payload=[{"type": "order", "id": 100 + index}]
        )
        assert webhook_process(webhook_id=webhook.pk).startswith("started order_cancel, order_export")
    # Each event asks for a run; a run that finds another going stands aside (syncs.tasks.run), so the burst
    # costs one run of each flow and the one follow-up below.
    runs = sorted(task.task["args"] for task in OrmQ.objects.all() if task.task["func"] == "syncs.tasks.run")
    assert runs == [("order_cancel", "event")] * 3 + [("order_export", "event")] * 3
    follow_ups = Schedule.objects.filter(name__endswith="follow-up after events")
    assert sorted(follow_ups.values_list("name", flat=True)) == [
        "order_cancel: follow-up after events",
        "order_export: follow-up after events",
    ]
    assert set(follow_ups.values_list("schedule_type", "repeats")) == {(Schedule.ONCE, -1)}


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_marketplace_order_placed_reaches_centra_within_seconds_through_webhook_and_worker(
    marketplace_brand,  # noqa: F811
    connected,
    live_server,
    worker_cluster,
    settings,
):
    marketplace = connected.simulator("marketplace")
    marketplace.webhook_url = f"{live_server.url}/webhooks/marketplace/"
    marketplace.webhook_secret = settings.CONNECTIONS["marketplace"]["webhook_secret"]
    try:
        placed = requests.post(
            f"{connected.url}/marketplace/_sandbox/orders", json=marketplace_order("MP-77"), timeout=5
        )
        assert placed.status_code == 201
        deadline = time.monotonic() + 60  # a bound on the wait, not a speed test
        while time.monotonic() < deadline and not Link.objects.filter(
            source_ref="MP-77", acknowledged_at__isnull=False
        ):
            time.sleep(0.2)
    finally:
        marketplace.webhook_url = None
    link = Link.objects.get(source_ref="MP-77")
    assert link.acknowledged_at is not None
    assert any(
        order["number"] == link.centra_number for order in marketplace_brand("centra").state()["orders"].values()
    )
    assert InboundWebhook.objects.filter(system="marketplace", status=InboundWebhook.Status.PROCESSED).exists()
    connection.close()


@pytest.mark.django_db
def test_centra_s_events_queue_is_read_acted_on_and_confirmed_once(shop, control, settings):  # noqa: F811
    from syncs.flows.webhooks import centra_events_poll
    from syncs.tests.test_order_export import web_order

    settings.CENTRA_EVENTS_POLL = True
    assert centra_events_poll() == "no events"  # listening from now on
    control("centra").seed(orders=[web_order(4001)])
    assert centra_events_poll() == "1 event(s)"
    [webhook] = InboundWebhook.objects.filter(system="centra")
    assert webhook.payload == [{"type": "order", "id": 4001}]
    assert webhook.status == InboundWebhook.Status.PROCESSED
    started = {task.task["args"] for task in OrmQ.objects.all() if task.task["func"] == "syncs.tasks.run"}
    assert started == {("order_export", "event"), ("order_cancel", "event")}
    listened = [call for call in control("centra").operations() if call == "setEventListeners"]
    assert len(listened) == 1
    assert set(control("centra").state()["event_listeners"]) == {"Order", "Return", "Product"}
    assert centra_events_poll() == "no events"  # confirmed: not read again
    assert control("centra").operations().count("confirmEvents") == 1


@pytest.mark.django_db
def test_the_events_queue_is_left_alone_unless_asked_for(connected, control, settings):
    from syncs.flows.webhooks import centra_events_poll

    settings.CENTRA_EVENTS_POLL = False
    assert centra_events_poll() == "off"
    assert control("centra").operations() == []


@pytest.mark.django_db
def test_an_event_run_stands_aside_while_a_run_of_the_same_flow_is_going(run_going_elsewhere):
    from syncs.models import SyncRun
    from syncs.tasks import run

    SyncRun.objects.create(flow="order_export", trigger="schedule")  # running, started just now
    run_going_elsewhere("order_export")  # on a live worker
    assert run("order_export", "event") is None
    assert run("order_export", "schedule") is None
    assert SyncRun.objects.filter(flow="order_export").count() == 1
