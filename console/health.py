"""/metrics for the brand's Prometheus and /healthz for load balancers.

/metrics answers in Prometheus' text format (OpenMetrics when the scraper asks for it) to a request bearing
METRICS_TOKEN or to signed-in staff; with no token configured, anyone else is told there is nothing here (404).
/healthz answers anyone, 200 or 503, and says only which checks pass: no host names, credentials, versions or error
messages (those go to the log).
"""

import hashlib
import hmac
import logging
from datetime import datetime

import redis
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connections
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_safe
from django_q.models import OrmQ
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from console import monitoring
from syncs.models import SyncRun

logger = logging.getLogger("switchyard.health")

BROKER_TIMEOUT_SECONDS = 2.0  # a load balancer's check must not hang on an unreachable Redis


# --- /metrics -----------------------------------------------------------------------------------------------------


@login_not_required  # Prometheus sends the bearer token, checked here; signed-in staff may look too
@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    refused = _metrics_refusal(request)
    if refused:
        return refused
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    # Measured at most every METRICS_CACHE_SECONDS (several scrapers, or a person refreshing, share one measure):
    # ~30 aggregate queries, a few hundred ms at a million exceptions.
    body = cache.get_or_set(
        f"metrics:{hashlib.sha256(content_type.encode()).hexdigest()[:16]}",
        lambda: encode(_Snapshot(metric_families(now=timezone.now()))),
        settings.METRICS_CACHE_SECONDS,
    )
    return HttpResponse(body, content_type=content_type)


class _Snapshot:
    """Metric families already measured, in the shape prometheus_client's encoders read (a ``collect()``)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def _metrics_refusal(request: HttpRequest) -> HttpResponse | None:
    """None when the request may read the metrics: it bears the configured token, or a member of staff is signed
    in. Otherwise 403 for anyone else signed in, 401 when a token is configured, 404 when none is."""
    token = settings.METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return None
    if request.user.is_authenticated:
        if request.user.is_staff:
            return None
        return HttpResponse("Only staff may read the metrics.", status=403, content_type="text/plain")
    if not token:
        raise Http404("No metrics here.")
    response = HttpResponse("Send the metrics token as a bearer token.", status=401, content_type="text/plain")
    response["WWW-Authenticate"] = 'Bearer realm="Switchyard metrics"'
    return response


def metric_families(*, now: datetime) -> list[Metric]:
    """Every Switchyard metric as measured now (see ``console.monitoring`` for what each figure means)."""
    families: list[Metric] = []
    families += _flow_families(monitoring.flow_health(now=now))
    families += _exception_families(now=now)
    families += _stock_families(monitoring.stock_freshness(now=now))
    families += _waiting_families(now=now)
    return families


def _flow_families(flows: list[monitoring.FlowHealth]) -> list[Metric]:
    # Counted over a window rather than all time: the window is a range of the (flow, started_at) index, where
    # totals would read every run ever recorded on each scrape.
    runs = GaugeMetricFamily(
        "switchyard_sync_runs_last_24h",
        "Runs of each flow started in the last 24 hours, by status.",
        labels=["flow", "status"],
    )
    items = {
        outcome: GaugeMetricFamily(
            f"switchyard_sync_items_{outcome}_last_24h",
            f"Items {outcome} by the flow's runs started in the last 24 hours.",
            labels=["flow"],
        )
        for outcome in ("examined", "succeeded", "failed")
    }
    last_run = GaugeMetricFamily(
        "switchyard_sync_last_run_age_seconds",
        "Seconds since the flow's latest run started (+Inf: never).",
        labels=["flow"],
    )
    last_success = GaugeMetricFamily(
        "switchyard_sync_last_success_age_seconds",
        "Seconds since the flow's latest successful run finished (+Inf: never).",
        labels=["flow"],
    )
    lag = GaugeMetricFamily(
        "switchyard_sync_source_lag_seconds",
        "Age of the newest source change the flow's last successful run had read (flows that read incrementally).",
        labels=["flow"],
    )
    for health in flows:
        for status in SyncRun.Status.values:
            runs.add_metric([health.flow, status], health.runs.get(status, 0))
        items["examined"].add_metric([health.flow], health.examined)
        items["succeeded"].add_metric([health.flow], health.succeeded)
        items["failed"].add_metric([health.flow], health.failed)
        last_run.add_metric([health.flow], health.last_run_age)
        last_success.add_metric([health.flow], health.last_success_age)
        if health.source_lag is not None:
            lag.add_metric([health.flow], health.source_lag)
    return [runs, *items.values(), last_run, last_success, lag]


def _exception_families(*, now: datetime) -> list[Metric]:
    depth = monitoring.queue_depth()
    queue = GaugeMetricFamily(
        "switchyard_exception_queue_depth",
        "Exceptions in the queue (open: waiting for a person; retrying: automatic retries left), by team and kind.",
        labels=["team", "kind", "status"],
    )
    for group in depth:
        queue.add_metric([group.team, group.kind, group.status], group.count)
    oldest = GaugeMetricFamily(
        "switchyard_exception_oldest_open_age_seconds",
        "Seconds since the team's oldest open exception was first seen.",
        labels=["team"],
    )
    for team, age in monitoring.oldest_open_ages(depth, now=now).items():
        oldest.add_metric([team], age)
    new = monitoring.new_exceptions(now=now, hours=settings.ALERT_EXCEPTIONS_BASELINE_HOURS)
    new_last_hour = GaugeMetricFamily(
        "switchyard_exceptions_new_last_hour", "Exceptions first seen in the last hour.", value=new.last_hour
    )
    connection = GaugeMetricFamily(
        "switchyard_connection_failures",
        "Open api_unavailable and auth_failed exceptions by the system the calls went to.",
        labels=["system", "kind"],
    )
    for (system, kind), count in monitoring.connection_failures().items():
        connection.add_metric([system, kind], count)
    return [queue, oldest, new_last_hour, connection]


def _stock_families(channels: list[monitoring.StockFreshness]) -> list[Metric]:
    stale_after = f"{settings.STOCK_STALE_MINUTES} minutes"
    pairs = GaugeMetricFamily(
        "switchyard_stock_pairs", "SKU × channel pairs Switchyard keeps stock for.", labels=["channel"]
    )
    stale = GaugeMetricFamily(
        "switchyard_stock_pairs_stale",
        f"Pairs with a change the channel has not confirmed, last confirmed over {stale_after} ago.",
        labels=["channel"],
    )
    fresh = GaugeMetricFamily(
        "switchyard_stock_fresh_ratio",
        f"Share of the channel's pairs that are not stale (confirmed within {stale_after}, or unchanged).",
        labels=["channel"],
    )
    oldest = GaugeMetricFamily(
        "switchyard_stock_oldest_unconfirmed_age_seconds",
        "Seconds since the oldest confirmation among the channel's pairs with a change waiting (0: none waiting).",
        labels=["channel"],
    )
    for channel in channels:
        pairs.add_metric([channel.channel], channel.pairs)
        stale.add_metric([channel.channel], channel.stale)
        fresh.add_metric([channel.channel], channel.fresh_share)
        oldest.add_metric([channel.channel], channel.oldest_waiting_age)
    return [pairs, stale, fresh, oldest]


def _waiting_families(*, now: datetime) -> list[Metric]:
    webhooks = GaugeMetricFamily(
        "switchyard_webhooks_waiting",
        "Webhooks kept and not yet processed, by system and status.",
        labels=["system", "status"],
    )
    webhooks_oldest = GaugeMetricFamily(
        "switchyard_webhooks_oldest_waiting_age_seconds",
        "Seconds since the oldest webhook still waiting was received.",
        labels=["system", "status"],
    )
    for row in monitoring.webhooks_waiting(now=now):
        webhooks.add_metric([row.system, row.status], row.count)
        webhooks_oldest.add_metric([row.system, row.status], row.oldest_age)
    capture = GaugeMetricFamily(
        "switchyard_orders_waiting_capture",
        "Orders held back from Fulfil until their payment is captured.",
        value=monitoring.orders_waiting_capture(),
    )
    heartbeat = GaugeMetricFamily(
        "switchyard_worker_heartbeat_age_seconds",
        "Seconds since a worker last ran the scheduler's heartbeat task (+Inf: never).",
        value=monitoring.heartbeat_age(now=now),
    )
    alerts = GaugeMetricFamily(
        "switchyard_alerts_firing", "Alerts raised and not yet cleared (1 each).", labels=["alert"]
    )
    for alert in monitoring.alerts_holding():
        alerts.add_metric([alert.key], 1)
    return [webhooks, webhooks_oldest, capture, heartbeat, alerts]


# --- /healthz -----------------------------------------------------------------------------------------------------


@login_not_required  # load balancers call it; it tells which checks pass and nothing else
@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    checks = health_checks(now=timezone.now())
    failing = [name for name, check in checks.items() if not check["ok"]]
    body = {"status": "failing" if failing else "ok", "failing": failing, "checks": checks}
    return JsonResponse(body, status=503 if failing else 200)


def health_checks(*, now: datetime) -> dict[str, dict]:
    """Whether the database and the task broker answer, and whether a worker ran the heartbeat within
    WORKER_HEARTBEAT_STALE_AFTER. Each check is ``{"ok": bool, …}`` with figures only; why one failed is logged."""
    return {"database": _database_check(), "broker": _broker_check(), "worker": _worker_check(now=now)}


def _database_check() -> dict:
    try:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as error:  # any failure is the answer; the message may name the host, so it is only logged
        logger.warning("health check: the database did not answer: %s: %s", type(error).__name__, error)
        return {"ok": False}
    return {"ok": True}


def _broker_check() -> dict:
    """The broker django-q2 uses: Redis (Q_BROKER_URL), pinged with a short timeout; or the database's task table."""
    redis_url = settings.Q_CLUSTER.get("redis")
    try:
        if redis_url:
            client = redis.Redis.from_url(
                redis_url, socket_connect_timeout=BROKER_TIMEOUT_SECONDS, socket_timeout=BROKER_TIMEOUT_SECONDS
            )
            try:
                client.ping()
            finally:
                client.close()
        else:
            OrmQ.objects.using(settings.Q_CLUSTER.get("orm", DEFAULT_DB_ALIAS)).exists()
    except Exception as error:  # as above: the message names hosts, so it goes to the log only
        logger.warning("health check: the task broker did not answer: %s: %s", type(error).__name__, error)
        return {"ok": False, "kind": "redis" if redis_url else "database"}
    return {"ok": True, "kind": "redis" if redis_url else "database"}


def _worker_check(*, now: datetime) -> dict:
    stale_after = settings.WORKER_HEARTBEAT_STALE_AFTER
    try:
        age = monitoring.heartbeat_age(now=now)
    except Exception as error:  # the database is down: the database check says so; the worker is unknown
        logger.warning("health check: the heartbeat could not be read: %s", type(error).__name__)
        return {"ok": False, "heartbeat_age_seconds": None, "stale_after_seconds": stale_after}
    seen = age != monitoring.NEVER
    return {
        "ok": age < stale_after,
        "heartbeat_age_seconds": round(age) if seen else None,
        "stale_after_seconds": stale_after,
    }
