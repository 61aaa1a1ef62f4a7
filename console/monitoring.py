"""The figures /metrics exposes and the alert rules judge, read with a few aggregate queries each, so they answer in
milliseconds to a few hundred at a million exceptions and hundreds of thousands of stock states and links.

Every function here reads; none writes. Ages are in seconds, measured against ``now``.
"""

import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, F, Min, Q, Sum

from console.models import Alert, WorkerHeartbeat
from console.tasks import SCHEDULER_HEARTBEAT
from exceptions.models import ACTIVE, Status, SyncException
from mappings.models import Channel
from syncs.flows import FLOWS
from syncs.models import InboundWebhook, Link, StockState, SyncRun
from syncs.runs import moment

RECENT = timedelta(hours=24)  # the window run and item counts cover (named in the metric names: *_last_24h)
CONNECTION_KINDS = ("api_unavailable", "auth_failed")
NEVER = float("inf")  # the age of something that never happened: above every threshold


def _age(now: datetime, then: datetime | None) -> float:
    return NEVER if then is None else max(0.0, (now - then).total_seconds())


# --- flows --------------------------------------------------------------------------------------------------------


@dataclass
class FlowHealth:
    flow: str
    runs: dict[str, int] = field(default_factory=dict)  # status → runs started in the last RECENT
    examined: int = 0
    succeeded: int = 0
    failed: int = 0
    last_run_age: float = NEVER
    last_success_age: float = NEVER
    source_lag: float | None = None  # None: the flow records no cursor


def flow_health(*, now: datetime) -> list[FlowHealth]:
    """Each registered flow's runs and items in the last RECENT (one GROUP BY over the ``(flow, started_at)``
    index), and, per flow, its latest run and latest successful run (two index look-ups each): their ages, and how
    far behind its source the flow is — the age of the newest source change its last successful run had read (its
    ``cursor``), for the flows that read incrementally."""
    flows = {name: FlowHealth(flow=name) for name in sorted(FLOWS)}
    recent = (
        SyncRun.objects.filter(flow__in=list(flows), started_at__gte=now - RECENT)
        .values("flow", "status")
        .annotate(count=Count("id"), examined=Sum("examined"), succeeded=Sum("succeeded"), failed=Sum("failed"))
        .order_by()
    )
    for row in recent:
        health = flows[row["flow"]]
        health.runs[row["status"]] = row["count"]
        health.examined += row["examined"] or 0
        health.succeeded += row["succeeded"] or 0
        health.failed += row["failed"] or 0
    for name, health in flows.items():
        runs = SyncRun.objects.filter(flow=name).order_by("-started_at")
        health.last_run_age = _age(now, runs.values_list("started_at", flat=True).first())
        success = runs.filter(status=SyncRun.Status.SUCCEEDED).values("started_at", "finished_at", "summary").first()
        if success is None:
            continue
        health.last_success_age = _age(now, success["finished_at"] or success["started_at"])
        cursor = (success["summary"] or {}).get("cursor")
        if cursor:
            with contextlib.suppress(TypeError, ValueError):  # not a timestamp: no lag to tell, rather than no metrics
                health.source_lag = _age(now, moment(cursor))
    return list(flows.values())


# --- the exception queue ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueDepth:
    team: str
    kind: str
    status: str
    count: int
    oldest: datetime


def queue_depth() -> list[QueueDepth]:
    """The active exceptions (open or retrying) by team, kind and status, each group with its oldest: one
    GROUP BY over the active rows (the ``status`` partial indexes find them)."""
    rows = (
        SyncException.objects.filter(status__in=ACTIVE)
        .values("team", "kind", "status")
        .annotate(count=Count("id"), oldest=Min("first_seen"))
        .order_by("team", "kind", "status")
    )
    return [QueueDepth(**row) for row in rows]


def oldest_open_ages(depth: list[QueueDepth], *, now: datetime) -> dict[str, float]:
    """Per team, the age of its oldest exception waiting for a person (status open), from ``queue_depth``."""
    oldest: dict[str, datetime] = {}
    for group in depth:
        if group.status == Status.OPEN and (group.team not in oldest or group.oldest < oldest[group.team]):
            oldest[group.team] = group.oldest
    return {team: _age(now, at) for team, at in sorted(oldest.items())}


@dataclass(frozen=True)
class NewExceptions:
    last_hour: int
    hourly_average: float  # over the ``hours`` before the last one


def new_exceptions(*, now: datetime, hours: int) -> NewExceptions:
    """Exceptions first seen in the last hour, and the hourly average of the ``hours`` before it: one count over
    the ``(status, first_seen)`` index (every status named, so the index's range scan applies)."""
    hour_ago = now - timedelta(hours=1)
    counts = SyncException.objects.filter(
        status__in=Status.values, first_seen__gte=hour_ago - timedelta(hours=hours), first_seen__lt=now
    ).aggregate(
        last_hour=Count("id", filter=Q(first_seen__gte=hour_ago)), before=Count("id", filter=Q(first_seen__lt=hour_ago))
    )
    return NewExceptions(last_hour=counts["last_hour"], hourly_average=counts["before"] / hours if hours else 0.0)


def connection_failures() -> dict[tuple[str, str], int]:
    """Open ``api_unavailable`` and ``auth_failed`` exceptions by (system, kind): a connection whose calls keep
    failing after their automatic retries, or whose credentials are refused. Over the ``(kind, status)`` index."""
    rows = (
        SyncException.objects.filter(kind__in=CONNECTION_KINDS, status=Status.OPEN)
        .values("system", "kind")
        .annotate(count=Count("id"))
        .order_by("system", "kind")
    )
    return {(row["system"], row["kind"]): row["count"] for row in rows}


def open_count(*, kind: str) -> int:
    """How many exceptions of ``kind`` wait for a person (status open)."""
    return SyncException.objects.filter(kind=kind, status=Status.OPEN).count()


# --- stock --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StockFreshness:
    channel: str  # the channel's code
    name: str
    pairs: int
    stale: int
    oldest_waiting_age: float  # seconds since the oldest confirmation among the pairs with a change waiting; 0: none

    @property
    def fresh_share(self) -> float:
        return 1.0 if not self.pairs else (self.pairs - self.stale) / self.pairs

    @property
    def stale_share(self) -> float:
        return 1.0 - self.fresh_share


def stock_freshness(*, now: datetime) -> list[StockFreshness]:
    """Per active channel, its SKU × channel pairs and how many are stale: a change (a new available-to-sell) the
    channel has not confirmed, last confirmed longer than STOCK_STALE_MINUTES ago — the stock push's own
    ``stock_stale`` rule. A pair whose figure has not changed is fresh however long ago it was confirmed: the channel
    shows the right figure. One GROUP BY over the stock states."""
    cutoff = now - timedelta(minutes=settings.STOCK_STALE_MINUTES)
    waiting = Q(pushed_value__isnull=True) | ~Q(pushed_value=F("ats"))
    rows = (
        StockState.objects.values("channel_id")
        .annotate(
            pairs=Count("channel_id"),
            stale=Count("channel_id", filter=waiting & Q(acknowledged_at__lt=cutoff)),
            oldest_waiting=Min("acknowledged_at", filter=waiting),
        )
        .order_by()
    )
    # Grouped by the channel's id alone (no join over every row); the few channels' names are read after.
    by_channel = {row["channel_id"]: row for row in rows}
    # An inactive channel is sent nothing, so its pairs' age says nothing about the sync: left out.
    channels = Channel.objects.filter(pk__in=by_channel, active=True).order_by("code").values_list("pk", "code", "name")
    return [
        StockFreshness(
            channel=code,
            name=name,
            pairs=by_channel[pk]["pairs"],
            stale=by_channel[pk]["stale"],
            oldest_waiting_age=_age(now, by_channel[pk]["oldest_waiting"]) if by_channel[pk]["oldest_waiting"] else 0.0,
        )
        for pk, code, name in channels
    ]


# --- webhooks, orders, the worker, alerts -------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhooksWaiting:
    system: str
    status: str  # received (not yet taken) or processing
    count: int
    oldest_age: float


def webhooks_waiting(*, now: datetime) -> list[WebhooksWaiting]:
    """Webhooks kept but not yet processed, by system and status, over the ``(status, received_at)`` index."""
    waiting = (InboundWebhook.Status.RECEIVED, InboundWebhook.Status.PROCESSING)
    rows = (
        InboundWebhook.objects.filter(status__in=waiting)
        .values("system", "status")
        .annotate(count=Count("id"), oldest=Min("received_at"))
        .order_by("system", "status")
    )
    return [WebhooksWaiting(row["system"], row["status"], row["count"], _age(now, row["oldest"])) for row in rows]


def links_waiting_capture():
    """The order links not yet in Fulfil because their payment has not been captured (``detail.waiting =
    "capture"``, set by the order export): the one definition /metrics and the dashboard's card both count."""
    return Link.objects.filter(kind=Link.Kind.ORDER, exported_at__isnull=True, detail__waiting="capture")


def orders_waiting_capture() -> int:
    """Orders not yet in Fulfil because their payment has not been captured (``detail.waiting = "capture"``)."""
    return links_waiting_capture().count()


def heartbeat_age(*, now: datetime) -> float:
    """Seconds since the scheduler's heartbeat task last ran on a worker; infinite if it never has."""
    beat = WorkerHeartbeat.objects.filter(name=SCHEDULER_HEARTBEAT).values_list("beat_at", flat=True).first()
    return _age(now, beat)


def alerts_holding() -> list[Alert]:
    """The alerts raised and not cleared, by key."""
    return list(Alert.objects.filter(cleared_at__isnull=True).order_by("key"))
