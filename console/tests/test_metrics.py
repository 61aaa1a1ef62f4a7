"""/metrics for Prometheus and /healthz for load balancers: the figures, who may read them, and what they never say."""

import json
import socket
from datetime import timedelta

import django
import pytest
import redis
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from console.models import WorkerHeartbeat
from console.services import heartbeat_record
from console.tasks import SCHEDULER_HEARTBEAT, heartbeat
from exceptions.models import SyncException
from exceptions.services import failure_record
from mappings.models import Channel
from syncs.connectors.errors import AuthError, DataError, TransientError
from syncs.links import link_note
from syncs.models import InboundWebhook, Link, StockState
from syncs.runs import run_flow

pytestmark = pytest.mark.django_db

TOKEN = "prometheus-scrape-token-7f3a9c"
# A system name with every character the text format must escape in a label value: backslash, quote, newline.
ODD_SYSTEM = 'odd "sys"\\x\ny'


def scrape(client, **headers) -> dict[tuple[str, frozenset], float]:
    """GET /metrics and parse it as Prometheus does: {(sample name, its labels): value}."""
    response = client.get(reverse("metrics"), headers=headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        assert family.documentation, family.name  # every family has its HELP line
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def token(settings):
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


@pytest.fixture
def john_lewis(db):
    return Channel.objects.create(code="john-lewis", name="John Lewis", system="virtualstock")


def stock_states(channel: Channel, *, stale_after_minutes: int) -> None:
    """Four SKUs on the channel: one with a change unconfirmed past the limit (stale), one unchanged since long ago
    (fresh: the channel shows the right figure), one changed and confirmed a minute ago, one just pushed."""
    now = timezone.now()
    long_ago = now - timedelta(minutes=stale_after_minutes + 60)
    StockState.objects.bulk_create(
        [
            StockState(channel=channel, sku="STALE", ats=4, pushed_value=7, acknowledged_at=long_ago),
            StockState(channel=channel, sku="UNCHANGED", ats=3, pushed_value=3, acknowledged_at=long_ago),
            StockState(
                channel=channel, sku="WAITING", ats=2, pushed_value=1, acknowledged_at=now - timedelta(minutes=1)
            ),
            StockState(channel=channel, sku="FRESH", ats=5, pushed_value=5, acknowledged_at=now),
        ]
    )


def test_prometheus_reads_every_figure_with_the_token(client, token, john_lewis, settings):
    # Runs: order_import succeeded once (5 examined, 1 failed, its cursor an hour behind) and failed once.
    cursor = (timezone.now() - timedelta(hours=1)).isoformat()
    run_flow(
        flow="order_import", action=lambda counter: {"examined": 5, "failed": 1, "cursor": cursor}, trigger="schedule"
    )

    def unreachable(counter):
        raise TransientError("Virtualstock did not answer", system="virtualstock", operation="list orders")

    with pytest.raises(TransientError):
        run_flow(flow="order_import", action=unreachable, trigger="schedule")
    # Exceptions: an ecommerce refusal, two stalled orders, a refused login at Fulfil, a timeout still retrying.
    refused = DataError("request refused (400): bad postcode", system="centra", operation="create order")
    failure_record(flow="order_import", object_type="order", object_ref="VS-1", error=refused, title="VS-1 refused")
    for order in ("1001", "1002"):
        failure_record(
            flow="order_watch",
            object_type="order",
            object_ref=order,
            error=DataError("not in Fulfil after 2 h", system="fulfil", operation="watch"),
            kind_code="order_stalled",
            title=f"Order {order} stalled",
        )
    denied = AuthError("credentials refused (401)", system="fulfil", operation="create sale")
    failure_record(flow="order_export", object_type="order", object_ref="1003", error=denied, title="1003 not exported")
    odd = AuthError("credentials refused (401)", system=ODD_SYSTEM, operation="list")
    failure_record(flow="order_export", object_type="order", object_ref="1004", error=odd, title="1004 not exported")
    timeout = TransientError("timed out", system="marketplace", operation="list orders")
    failure_record(flow="order_import", object_type="order", object_ref="MP-1", error=timeout, title="MP-1 not read")
    SyncException.objects.filter(object_ref="1001").update(first_seen=timezone.now() - timedelta(hours=3))
    # Stock, webhooks, an order waiting for its capture, the heartbeat.
    stock_states(john_lewis, stale_after_minutes=settings.STOCK_STALE_MINUTES)
    for digest in ("a", "b"):
        InboundWebhook.objects.create(system="centra", digest=digest, payload={"event": "order"})
    InboundWebhook.objects.create(system="centra", digest="c", payload={}, status=InboundWebhook.Status.PROCESSED)
    order = Link.objects.create(kind=Link.Kind.ORDER, source_system="centra", source_ref="1005", centra_number=1005)
    link_note(order, waiting="capture")
    heartbeat()

    samples = scrape(client, authorization=f"Bearer {token}")

    assert value(samples, "switchyard_sync_runs_last_24h", flow="order_import", status="succeeded") == 1
    assert value(samples, "switchyard_sync_runs_last_24h", flow="order_import", status="failed") == 1
    assert value(samples, "switchyard_sync_runs_last_24h", flow="stock_push", status="succeeded") == 0
    assert value(samples, "switchyard_sync_items_examined_last_24h", flow="order_import") == 5
    assert value(samples, "switchyard_sync_items_succeeded_last_24h", flow="order_import") == 4
    assert value(samples, "switchyard_sync_items_failed_last_24h", flow="order_import") == 1
    assert value(samples, "switchyard_sync_last_run_age_seconds", flow="order_import") < 60
    assert value(samples, "switchyard_sync_last_success_age_seconds", flow="order_import") < 60
    assert value(samples, "switchyard_sync_last_success_age_seconds", flow="stock_push") == float("inf")
    assert 3590 < value(samples, "switchyard_sync_source_lag_seconds", flow="order_import") < 3660
    assert ("switchyard_sync_source_lag_seconds", frozenset({("flow", "stock_push")})) not in samples

    depth = "switchyard_exception_queue_depth"
    assert value(samples, depth, team="ecommerce", kind="validation_failed", status="open") == 1
    assert value(samples, depth, team="customer_service", kind="order_stalled", status="open") == 2
    assert value(samples, depth, team="operations", kind="auth_failed", status="open") == 2
    assert value(samples, depth, team="operations", kind="api_unavailable", status="retrying") == 1
    oldest = value(samples, "switchyard_exception_oldest_open_age_seconds", team="customer_service")
    assert 3 * 3600 - 60 < oldest < 3 * 3600 + 60
    assert value(samples, "switchyard_exceptions_new_last_hour") == 5  # the stalled order from 3 h ago is not new
    assert value(samples, "switchyard_connection_failures", system="fulfil", kind="auth_failed") == 1
    # Label values are escaped in the text and come back whole.
    assert value(samples, "switchyard_connection_failures", system=ODD_SYSTEM, kind="auth_failed") == 1
    assert (
        "switchyard_connection_failures",
        frozenset({("system", "marketplace"), ("kind", "api_unavailable")}),
    ) not in (samples)  # still retrying: not yet a connection failure

    assert value(samples, "switchyard_stock_pairs", channel="john-lewis") == 4
    assert value(samples, "switchyard_stock_pairs_stale", channel="john-lewis") == 1
    assert value(samples, "switchyard_stock_fresh_ratio", channel="john-lewis") == 0.75
    stale_age = value(samples, "switchyard_stock_oldest_unconfirmed_age_seconds", channel="john-lewis")
    assert (settings.STOCK_STALE_MINUTES + 59) * 60 < stale_age < (settings.STOCK_STALE_MINUTES + 61) * 60

    assert value(samples, "switchyard_webhooks_waiting", system="centra", status="received") == 2
    assert value(samples, "switchyard_webhooks_oldest_waiting_age_seconds", system="centra", status="received") < 60
    assert value(samples, "switchyard_orders_waiting_capture") == 1
    assert value(samples, "switchyard_worker_heartbeat_age_seconds") < 60


def test_the_metrics_cost_the_same_few_queries_however_much_there_is(client, token, john_lewis, settings):
    def more(start: int) -> None:
        for n in range(start, start + 10):
            failure_record(
                flow="order_import",
                object_type="order",
                object_ref=f"VS-{n}",
                error=DataError("refused", system="centra", operation="create order"),
                title=f"VS-{n} refused",
            )
            run_flow(flow="order_import", action=lambda counter: {"examined": 1}, trigger="schedule")
            StockState.objects.create(channel=john_lewis, sku=f"SKU-{n}", ats=1, pushed_value=0)
            InboundWebhook.objects.create(system="centra", digest=f"d{n}", payload={})

    def queries_per_scrape() -> int:
        with CaptureQueriesContext(connection) as queries:
            scrape(client, authorization=f"Bearer {token}")
        return len(queries)

    more(0)
    few = queries_per_scrape()
    more(10)
    Channel.objects.create(code="zalando", name="Zalando", system="marketplace")
    assert queries_per_scrape() == few <= 30


def test_a_never_seen_worker_is_an_infinite_heartbeat_age(client, token):
    samples = scrape(client, authorization=f"Bearer {token}")
    assert value(samples, "switchyard_worker_heartbeat_age_seconds") == float("inf")


def test_prometheus_may_ask_for_openmetrics(client, token):
    response = client.get(
        reverse("metrics"),
        headers={"authorization": f"Bearer {token}", "accept": "application/openmetrics-text; version=1.0.0"},
    )
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().endswith("# EOF\n")


# --- who may read /metrics ----------------------------------------------------------------------------------------


def test_a_wrong_token_is_refused_with_401(client, token):
    response = client.get(reverse("metrics"), headers={"authorization": "Bearer not-the-token"})
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"switchyard_" not in response.content


def test_no_token_at_all_is_refused_with_401_when_one_is_configured(client, token):
    response = client.get(reverse("metrics"))
    assert response.status_code == 401


def test_the_token_must_come_as_a_bearer_token(client, token):
    assert client.get(reverse("metrics"), headers={"authorization": f"Token {token}"}).status_code == 401
    assert client.get(reverse("metrics"), {"token": token}).status_code == 401


def test_with_no_token_configured_there_is_nothing_here_for_strangers(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get(reverse("metrics")).status_code == 404
    assert client.get(reverse("metrics"), headers={"authorization": "Bearer "}).status_code == 404


def test_signed_in_staff_read_the_metrics_without_a_token(ada, client_for, settings):
    settings.METRICS_TOKEN = ""
    samples = scrape(client_for(ada))
    assert ("switchyard_orders_waiting_capture", frozenset()) in samples


def test_a_signed_in_person_who_is_not_staff_is_refused(client_for, token):
    person = get_user_model().objects.create_user(username="visitor", password="a-long-test-password")
    assert client_for(person).get(reverse("metrics")).status_code == 403


def test_the_metrics_take_only_get(client, token):
    response = client.post(reverse("metrics"), headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 405


# --- /healthz -----------------------------------------------------------------------------------------------------


def test_healthz_is_200_when_the_database_the_broker_and_the_worker_answer(client):
    heartbeat_record(name=SCHEDULER_HEARTBEAT)
    response = client.get(reverse("healthz"))
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["failing"] == []
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["broker"] == {"ok": True, "kind": "database"}
    assert body["checks"]["worker"]["ok"] is True
    assert body["checks"]["worker"]["heartbeat_age_seconds"] < 60
    assert response["Cache-Control"].startswith("max-age=0")


def test_healthz_is_503_naming_the_worker_when_its_heartbeat_is_stale(client, settings):
    heartbeat_record(name=SCHEDULER_HEARTBEAT)
    WorkerHeartbeat.objects.update(
        beat_at=timezone.now() - timedelta(seconds=settings.WORKER_HEARTBEAT_STALE_AFTER + 5)
    )
    response = client.get(reverse("healthz"))
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failing" and body["failing"] == ["worker"]
    worker = body["checks"]["worker"]
    assert worker["ok"] is False
    assert worker["heartbeat_age_seconds"] >= settings.WORKER_HEARTBEAT_STALE_AFTER
    assert worker["stale_after_seconds"] == settings.WORKER_HEARTBEAT_STALE_AFTER


def test_healthz_is_503_when_no_worker_was_ever_seen(client):
    body = client.get(reverse("healthz")).json()
    assert body["failing"] == ["worker"]
    assert body["checks"]["worker"]["heartbeat_age_seconds"] is None


def test_healthz_is_503_naming_the_broker_when_redis_does_not_answer_and_never_says_where_it_is(client, settings):
    heartbeat_record(name=SCHEDULER_HEARTBEAT)
    closed_port = _closed_port()
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "redis": f"redis://:broker-password-42@127.0.0.1:{closed_port}/0"}
    response = client.get(reverse("healthz"))
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["broker"]
    assert body["checks"]["broker"] == {"ok": False, "kind": "redis"}
    text = response.content.decode()
    for secret in ("broker-password-42", "127.0.0.1", str(closed_port), "redis://"):
        assert secret not in text


def test_healthz_pings_redis_when_redis_is_the_broker(client, settings):
    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379 (docs: NOTES.md starts it)")
    heartbeat_record(name=SCHEDULER_HEARTBEAT)
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "redis": "redis://127.0.0.1:6379/0"}
    response = client.get(reverse("healthz"))
    assert response.status_code == 200
    assert response.json()["checks"]["broker"] == {"ok": True, "kind": "redis"}


def test_healthz_reveals_nothing_secret(client, settings):
    heartbeat()  # records the worker's host name and process
    response = client.get(reverse("healthz"))
    text = response.content.decode()
    body = json.loads(text)
    assert set(body) == {"status", "failing", "checks"}
    assert set(body["checks"]) == {"database", "broker", "worker"}
    database = connection.settings_dict
    secrets = [
        settings.SECRET_KEY,
        database["NAME"],
        database["HOST"] or "127.0.0.1",
        socket.gethostname(),
        django.get_version(),
        "postgres",
        "Django",
    ]
    for secret in secrets:
        assert secret not in text, secret
    assert "Server" not in response.headers or "Django" not in response["Server"]


def test_healthz_needs_no_sign_in_and_takes_get_and_head_only(client):
    heartbeat_record(name=SCHEDULER_HEARTBEAT)
    assert client.head(reverse("healthz")).status_code == 200
    assert client.post(reverse("healthz")).status_code == 405


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_scrapes_within_the_cache_time_share_one_measure(client, token, settings):
    from django.core.cache import cache

    settings.METRICS_CACHE_SECONDS = 60
    cache.clear()
    before = scrape(client, authorization=f"Bearer {token}")
    refused = DataError("refused", system="centra", operation="create order")
    failure_record(flow="order_import", object_type="order", object_ref="VS-9", error=refused, title="VS-9 refused")
    with CaptureQueriesContext(connection) as queries:
        again = scrape(client, authorization=f"Bearer {token}")
    assert again == before and len(queries) <= 2  # the session's user at most: nothing measured again
    cache.clear()
    assert scrape(client, authorization=f"Bearer {token}") != before
