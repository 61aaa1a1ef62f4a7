"""Alerts: told once while they hold, by e-mail and a Slack-compatible webhook, and once more when they clear."""

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail
from django.utils import timezone
from django_q.models import Schedule

from console.alerts import alerts_evaluate
from console.models import Alert, WorkerHeartbeat
from console.services import heartbeat_record
from console.tasks import SCHEDULER_HEARTBEAT, evaluate_alerts
from exceptions.models import SyncException
from exceptions.services import exception_resolve, failure_record
from mappings.models import Channel
from syncs.connectors.errors import AuthError, DataError
from syncs.models import StockState

pytestmark = pytest.mark.django_db

SITE = "https://switchyard.brand.example"
WEBHOOK_PATH = "/services/T0ALERT/B0OPS/alert-hook-secret"


class ChatReceiver:
    """A Slack-compatible incoming webhook on 127.0.0.1 that keeps what it is sent and answers with ``status``."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                answer = b"ok" if receiver.status == 200 else b"invalid_payload"
                if receiver.status == 200:
                    receiver.received.append(json.loads(body))
                self.send_response(receiver.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}{WEBHOOK_PATH}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def texts(self) -> list[str]:
        return [message["text"] for message in self.received]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def chat(settings):
    receiver = ChatReceiver()
    settings.ALERT_WEBHOOK_URL = receiver.url
    yield receiver
    receiver.stop()


@pytest.fixture
def alerting(settings, chat):
    """Alerts go to the operations lead's address and the chat webhook; the worker is alive."""
    settings.ALERT_EMAILS = ["ops-lead@brand.example"]
    settings.SITE_URL = SITE
    heartbeat_record(name=SCHEDULER_HEARTBEAT)
    return chat


def stalled(order: str) -> SyncException:
    return failure_record(
        flow="order_watch",
        object_type="order",
        object_ref=order,
        error=DataError("not in Fulfil 2 h after it was confirmed", system="fulfil", operation="watch"),
        kind_code="order_stalled",
        title=f"Order {order} stalled",
    )


def subjects() -> list[str]:
    return [message.subject for message in mail.outbox]


def test_an_alert_is_told_once_while_it_holds_and_once_when_it_clears(alerting, settings, cora):
    settings.ALERT_ORDERS_STALLED = 1
    first, second = stalled("1001"), stalled("1002")

    alerts_evaluate()

    assert subjects() == ["Switchyard alert: Orders stalled"]
    [message] = mail.outbox
    assert message.to == ["ops-lead@brand.example"]
    assert "Orders stalled: 2 open order_stalled exceptions (alert above 1)." in message.body
    assert f"{SITE}/exceptions/?kind=order_stalled&status=open" in message.body
    [posted] = alerting.texts()
    assert "*Orders stalled*: 2 open order_stalled exceptions (alert above 1)." in posted
    assert f"<{SITE}/exceptions/?kind=order_stalled&status=open|Open in Switchyard>" in posted

    # Still holding, and worse: nothing more is sent; the figure is kept.
    alerts_evaluate()
    stalled("1003")
    alerts_evaluate()
    assert len(mail.outbox) == 1 and len(alerting.received) == 1
    alert = Alert.objects.get(key="orders_stalled")
    assert alert.cleared_at is None and alert.last_value == 3

    for exception in (first, second):
        exception_resolve(exception=exception, actor=cora, note="exported by hand")
    alerts_evaluate()

    assert subjects() == ["Switchyard alert: Orders stalled", "Switchyard recovered: Orders stalled"]
    recovery = mail.outbox[1].body
    assert "Cleared: Orders stalled. Now 1 open order_stalled exception (alert above 1)." in recovery
    assert "It held for" in recovery
    assert "Cleared: Orders stalled" in alerting.texts()[1]

    alerts_evaluate()
    assert len(mail.outbox) == 2 and len(alerting.received) == 2
    alert.refresh_from_db()
    assert alert.cleared_at is not None and alert.raise_sent_at and alert.recovery_sent_at
    assert alert.last_value == 1
    assert "sent to 1 e-mail address, the webhook" in alert.delivery


def test_an_alert_that_holds_again_after_clearing_is_a_new_occurrence(alerting, settings, cora):
    settings.ALERT_ORDERS_STALLED = 0
    exception = stalled("1001")
    alerts_evaluate()
    exception_resolve(exception=exception, actor=cora, note="done")
    alerts_evaluate()
    stalled("1002")
    alerts_evaluate()

    assert subjects() == [
        "Switchyard alert: Orders stalled",
        "Switchyard recovered: Orders stalled",
        "Switchyard alert: Orders stalled",
    ]
    assert Alert.objects.filter(key="orders_stalled").count() == 2
    assert Alert.objects.filter(key="orders_stalled", cleared_at__isnull=True).count() == 1


def test_a_message_no_destination_took_is_tried_again_next_minute(settings, chat):
    settings.ALERT_EMAILS = []
    settings.ALERT_ORDERS_STALLED = 0
    heartbeat_record(name=SCHEDULER_HEARTBEAT)
    stalled("1001")
    chat.status = 500

    outcomes = alerts_evaluate()

    [outcome] = outcomes
    assert outcome.startswith("Switchyard alert: Orders stalled: not sent (webhook failed: ")
    assert outcome.endswith("tried again next time")
    assert Alert.objects.get(key="orders_stalled").raise_sent_at is None
    assert WEBHOOK_PATH not in outcome  # the webhook URL is the credential

    chat.status = 200
    alerts_evaluate()
    alerts_evaluate()
    assert len(chat.received) == 1
    assert Alert.objects.get(key="orders_stalled").raise_sent_at is not None


def test_stock_going_stale_on_a_channel_is_an_alert(alerting, settings):
    settings.ALERT_STOCK_STALE_SHARE = 0.2
    settings.ALERT_STOCK_STALE_MAX_MINUTES = 0
    channel = Channel.objects.create(code="john-lewis", name="John Lewis", system="virtualstock")
    long_ago = timezone.now() - timedelta(minutes=settings.STOCK_STALE_MINUTES + 30)
    StockState.objects.bulk_create(
        [
            StockState(channel=channel, sku="A", ats=4, pushed_value=7, acknowledged_at=long_ago),
            StockState(channel=channel, sku="B", ats=3, pushed_value=3, acknowledged_at=long_ago),
            StockState(channel=channel, sku="C", ats=3, pushed_value=3, acknowledged_at=timezone.now()),
            StockState(channel=channel, sku="D", ats=3, pushed_value=3, acknowledged_at=timezone.now()),
        ]
    )

    alerts_evaluate()

    assert subjects() == ["Switchyard alert: Stock stale on John Lewis"]
    body = mail.outbox[0].body
    assert "25% of its 4 SKUs (1) have a change the channel has not confirmed for over 2 h" in body
    assert "(alert above 20%)" in body
    assert f"{SITE}/exceptions/?kind=stock_stale" in body

    StockState.objects.filter(sku="A").update(pushed_value=4, acknowledged_at=timezone.now())
    alerts_evaluate()
    assert subjects()[-1] == "Switchyard recovered: Stock stale on John Lewis"
    assert "Now 0% of its 4 SKUs (0)" in mail.outbox[-1].body


def test_an_inactive_channel_is_not_judged(alerting, settings):
    channel = Channel.objects.create(code="old-shop", name="Old shop", system="marketplace", active=False)
    long_ago = timezone.now() - timedelta(days=30)
    StockState.objects.create(channel=channel, sku="A", ats=1, pushed_value=0, acknowledged_at=long_ago)
    assert alerts_evaluate() == []


def test_one_sku_waiting_too_long_is_enough(alerting, settings):
    settings.ALERT_STOCK_STALE_SHARE = 0.5
    settings.ALERT_STOCK_STALE_MAX_MINUTES = 360
    channel = Channel.objects.create(code="zalando", name="Zalando", system="marketplace")
    StockState.objects.create(
        channel=channel, sku="A", ats=1, pushed_value=0, acknowledged_at=timezone.now() - timedelta(hours=7)
    )
    StockState.objects.bulk_create(
        [
            StockState(channel=channel, sku=f"F{n}", ats=1, pushed_value=1, acknowledged_at=timezone.now())
            for n in range(9)
        ]
    )
    alerts_evaluate()
    assert subjects() == ["Switchyard alert: Stock stale on Zalando"]
    assert "the longest has waited 7 h" in mail.outbox[0].body


def test_a_connection_whose_calls_keep_failing_is_an_alert(alerting):
    failure_record(
        flow="order_export",
        object_type="order",
        object_ref="1001",
        error=AuthError("credentials refused (401)", system="fulfil", operation="create sale"),
        title="Order 1001 not exported",
    )
    alerts_evaluate()
    assert subjects() == ["Switchyard alert: Fulfil connection failing"]
    assert "1 open exception of calls that failed (1 × Credentials refused) (alert above 0)" in mail.outbox[0].body
    assert f"{SITE}/exceptions/?kind=auth_failed&status=open" in mail.outbox[0].body


def test_a_spike_of_new_exceptions_is_an_alert(alerting, settings):
    settings.ALERT_EXCEPTIONS_PER_HOUR = 1000
    settings.ALERT_EXCEPTIONS_SPIKE_MIN = 2
    settings.ALERT_EXCEPTIONS_SPIKE_FACTOR = 3
    # One a day before the last hour (a baseline of 1/24 an hour), then three in the last hour.
    old = stalled("1000")
    SyncException.objects.filter(pk=old.pk).update(first_seen=timezone.now() - timedelta(hours=5))
    settings.ALERT_ORDERS_STALLED = 100
    for order in ("1001", "1002", "1003"):
        stalled(order)
    alerts_evaluate()
    assert subjects() == ["Switchyard alert: Exceptions spiking"]
    assert "3 new exceptions in the last hour, against 0.0 an hour over the 24 hours before (alert above 2)" in (
        mail.outbox[0].body
    )


def test_a_silent_worker_is_an_alert(settings, chat):
    settings.ALERT_EMAILS = ["ops-lead@brand.example"]
    heartbeat_record(name=SCHEDULER_HEARTBEAT)
    WorkerHeartbeat.objects.update(beat_at=timezone.now() - timedelta(minutes=10))
    evaluate_alerts()  # the scheduled task itself
    assert subjects() == ["Switchyard alert: Worker heartbeat stale"]
    assert "no heartbeat for 10 min (alert after 3 min)" in mail.outbox[0].body
    assert "/exceptions/" not in mail.outbox[0].body and "\n/\n" in mail.outbox[0].body  # the dashboard, as a path
    assert "`/`" in chat.texts()[0]  # no SITE_URL: the path, shown as code


def test_nothing_is_raised_when_all_is_well(alerting):
    assert alerts_evaluate() == []
    assert mail.outbox == [] and alerting.received == []
    assert not Alert.objects.exists()


def test_the_alerts_are_judged_every_minute_by_a_migration():
    schedule = Schedule.objects.get(func="console.tasks.evaluate_alerts")
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == (Schedule.MINUTES, 1, -1)
