"""Reads for the console pages."""

import ast
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, F, Max, Min, Q
from django.db.models.functions import TruncDate
from django.urls import reverse
from django.utils import timezone
from django.utils.text import capfirst
from django_q.brokers import get_broker
from django_q.models import Failure, Schedule

from console.models import WorkerHeartbeat
from console.tasks import SCHEDULER_HEARTBEAT
from mappings.models import (
    Bundle,
    BundleComponent,
    CarrierMapping,
    Channel,
    MarketMapping,
    ShippingMethodMapping,
    SkuMapping,
    StockBuffer,
    StockStatusRule,
    TaxMapping,
)
from syncs.connections import ConnectionSummary, connection_summaries
from syncs.models import SyncRun

MAPPING_TABLES = [
    (SkuMapping, "Centra SKUs and the codes other systems know them by."),
    (CarrierMapping, "Carriers and services on shipments, as each target system enumerates them."),
    (ShippingMethodMapping, "Marketplace shipping methods and the Centra option an imported order gets."),
    (TaxMapping, "Centra tax classes per country and the Fulfil tax code."),
    (MarketMapping, "Centra store and market to Fulfil channel, warehouse and currency."),
    (Bundle, "Bundle SKUs, their components and each component's share of the price."),
    (StockBuffer, "Safety buffers, caps and send-0 thresholds per channel."),
    (StockStatusRule, "Which stock statuses are taken off what can be sold."),
    (Channel, "Where the brand sells: Centra, each Virtualstock account, each marketplace."),
]


@dataclass
class WorkerStatus:
    last_beat: datetime | None
    alive: bool
    queued: int | None  # None when the broker cannot be reached
    failures_today: int
    schedules: int
    broker: str


def worker_status() -> WorkerStatus:
    heartbeat = WorkerHeartbeat.objects.filter(name=SCHEDULER_HEARTBEAT).first()
    now = timezone.now()
    alive = heartbeat is not None and now - heartbeat.beat_at < timedelta(seconds=settings.WORKER_HEARTBEAT_STALE_AFTER)
    try:
        queued = get_broker().queue_size()
    except Exception:  # an unreachable broker is exactly what this card exists to show
        queued = None
    return WorkerStatus(
        last_beat=heartbeat.beat_at if heartbeat else None,
        alive=alive,
        queued=queued,
        failures_today=Failure.objects.filter(stopped__gte=now - timedelta(days=1)).count(),
        schedules=Schedule.objects.count(),
        broker="Redis" if "redis" in settings.Q_CLUSTER else "database",
    )


@dataclass
class MappingTable:
    name: str
    description: str
    rows: int
    last_changed: datetime | None
    changelist_url: str
    add_url: str | None
    import_url: str | None
    export_url: str | None


def mapping_tables(*, user) -> list[MappingTable]:
    """Each mapping table with its size, when it last changed, and the links this user may follow."""
    tables = []
    for model, description in MAPPING_TABLES:
        opts = model._meta
        prefix = f"admin:{opts.app_label}_{opts.model_name}"
        stats = model.objects.aggregate(last_changed=Max("updated_at"))
        can_change = user.has_perm(f"{opts.app_label}.change_{opts.model_name}")
        can_add = user.has_perm(f"{opts.app_label}.add_{opts.model_name}")
        # Bundles travel in CSV as their component rows, which name the bundle.
        csv_opts = BundleComponent._meta if model is Bundle else opts
        csv_prefix = f"admin:{csv_opts.app_label}_{csv_opts.model_name}"
        tables.append(
            MappingTable(
                name=capfirst(opts.verbose_name_plural),
                description=description,
                rows=model.objects.count(),
                last_changed=stats["last_changed"],
                changelist_url=reverse(f"{prefix}_changelist"),
                add_url=reverse(f"{prefix}_add") if can_add else None,
                import_url=reverse(f"{csv_prefix}_import") if can_change else None,
                export_url=reverse(f"{csv_prefix}_export"),
            )
        )
    return tables


@dataclass
class MappingChange:
    at: datetime
    table: str
    what: str
    action: str
    by: str


HISTORY_ACTIONS = {"+": "created", "~": "changed", "-": "deleted"}


def recent_mapping_changes(*, limit: int = 15) -> list[MappingChange]:
    """The latest edits across every mapping table, newest first, with who made them."""
    changes = []
    for model, _ in MAPPING_TABLES:
        for record in model.history.select_related("history_user").order_by("-history_date")[:limit]:
            changes.append(
                MappingChange(
                    at=record.history_date,
                    table=str(model._meta.verbose_name),
                    what=str(record.instance),
                    action=HISTORY_ACTIONS.get(record.history_type, record.history_type),
                    by=record.history_user.get_username() if record.history_user else "system",
                )
            )
    changes.sort(key=lambda change: change.at, reverse=True)
    return changes[:limit]


def open_exceptions_by_team() -> list[dict]:
    """Active exceptions per owning team, with the oldest, for the dashboard."""
    from exceptions.kinds import TEAMS
    from exceptions.models import ACTIVE, SyncException

    rows = {
        row["team"]: row
        for row in SyncException.objects.filter(status__in=ACTIVE)
        .values("team")
        .annotate(count=Count("id"), oldest=Min("first_seen"))
        .order_by()
    }
    return [
        {
            "team": team,
            "label": label,
            "count": rows.get(team, {}).get("count", 0),
            "oldest": rows.get(team, {}).get("oldest"),
        }
        for team, label in TEAMS.items()
    ]


# --- the dashboard's cards ----------------------------------------------------------------------------------------


@dataclass
class FlowCard:
    flow: str
    label: str
    last_run: SyncRun | None
    last_success_at: datetime | None
    lag: timedelta | None  # how far behind its source the flow is, where that is known
    lag_from: datetime | None  # the moment ``lag`` is measured from
    lag_basis: str  # what ``lag`` measures, in words
    next_run: datetime | None
    open_exceptions: int


def flow_cards(*, now: datetime, oldest_stock_waiting: datetime | None = None) -> list[FlowCard]:
    """One card per registered flow: its latest run, when it last succeeded, how far behind its source it is, when
    the scheduler runs it next, and its open exceptions.

    Lag: for a flow that reads its source incrementally, the age of the newest source change its last successful run
    read (its cursor); for the stock push, the age of the oldest change a channel has not confirmed
    (``oldest_stock_waiting``, from ``stock_freshness``); otherwise unknown. The next run is the earliest django-q
    schedule of ``syncs.tasks.run`` for the flow (its regular one, or an event's follow-up). Two index look-ups per
    flow over ``(flow, -started_at)``, one for the schedules and one GROUP BY over the active exceptions."""
    from exceptions.models import ACTIVE, SyncException
    from syncs.flows import FLOWS
    from syncs.flows.stock_push import FLOW as STOCK_PUSH
    from syncs.runs import moment

    next_runs = _next_flow_runs()
    open_counts = dict(
        SyncException.objects.filter(status__in=ACTIVE, flow__in=list(FLOWS))
        .values_list("flow")
        .annotate(count=Count("*"))
        .order_by()
    )
    cards = []
    for flow in FLOWS:
        runs = SyncRun.objects.filter(flow=flow).order_by("-started_at")
        last_run = runs.first()
        success = last_run
        if last_run is not None and last_run.status != SyncRun.Status.SUCCEEDED:
            success = runs.filter(status=SyncRun.Status.SUCCEEDED).first()
        cursor = next((success.summary.get(key) for key in CURSOR_KEYS if success and success.summary.get(key)), None)
        lag_from, basis = None, ""
        if cursor:
            lag_from, basis = moment(cursor), "newest source change read"
        elif flow == STOCK_PUSH and oldest_stock_waiting is not None:
            lag_from, basis = oldest_stock_waiting, "oldest change not yet confirmed"
        cards.append(
            FlowCard(
                flow=flow,
                label=flow.replace("_", " ").capitalize(),
                last_run=last_run,
                last_success_at=(success.finished_at or success.started_at) if success else None,
                lag=max(now - lag_from, timedelta(0)) if lag_from else None,
                lag_from=lag_from,
                lag_basis=basis,
                next_run=next_runs.get(flow),
                open_exceptions=open_counts.get(flow, 0),
            )
        )
    return cards


# The summary keys in which flows record the newest source change a run read (syncs.runs).
CURSOR_KEYS = ("cursor", "centra_cursor")


def _next_flow_runs() -> dict[str, datetime]:
    """Per flow, the earliest next run of any schedule of ``syncs.tasks.run`` for it."""
    earliest: dict[str, datetime] = {}
    for args, next_run in Schedule.objects.filter(func="syncs.tasks.run").values_list("args", "next_run"):
        try:
            flow = ast.literal_eval(f"({args},)")[0] if args else None
        except (ValueError, SyntaxError):
            continue
        if isinstance(flow, str) and next_run and (flow not in earliest or next_run < earliest[flow]):
            earliest[flow] = next_run
    return earliest


@dataclass
class ExceptionGroup:
    team: str
    team_label: str
    kind: str
    kind_label: str
    count: int
    oldest: datetime


def open_exceptions_by_team_and_kind() -> list[ExceptionGroup]:
    """The active exceptions (open or retrying) by team and kind, each with its oldest: one GROUP BY read from the
    ``exc_active_depth`` index alone (COUNT(*), not COUNT(id): the id is not in it) — about 50 ms at a million
    exceptions, 150,000 of them active. Largest groups first within each team."""
    from exceptions.kinds import KINDS, TEAMS
    from exceptions.models import ACTIVE, SyncException

    rows = (
        SyncException.objects.filter(status__in=ACTIVE)
        .values("team", "kind")
        .annotate(count=Count("*"), oldest=Min("first_seen"))
        .order_by()
    )
    team_order = list(TEAMS)
    groups = [
        ExceptionGroup(
            team=row["team"],
            team_label=TEAMS.get(row["team"], row["team"]),
            kind=row["kind"],
            kind_label=KINDS[row["kind"]].label if row["kind"] in KINDS else row["kind"],
            count=row["count"],
            oldest=row["oldest"],
        )
        for row in rows
    ]
    groups.sort(key=lambda g: (team_order.index(g.team) if g.team in team_order else len(team_order), -g.count))
    return groups


def exception_team_totals(groups: list[ExceptionGroup]) -> list[dict]:
    """Every team's active exceptions and the oldest, added up from ``open_exceptions_by_team_and_kind`` (no query):
    the rows ``open_exceptions_by_team`` gives."""
    from exceptions.kinds import TEAMS

    totals = {team: {"team": team, "label": label, "count": 0, "oldest": None} for team, label in TEAMS.items()}
    for group in groups:
        total = totals.setdefault(group.team, {"team": group.team, "label": group.team, "count": 0, "oldest": None})
        total["count"] += group.count
        if total["oldest"] is None or group.oldest < total["oldest"]:
            total["oldest"] = group.oldest
    return list(totals.values())


@dataclass
class TrendDay:
    day: date
    count: int
    x: float  # the bar's place and size in the chart's own units (``Trend.WIDTH`` × ``Trend.HEIGHT``)
    y: float
    height: float


@dataclass
class Trend:
    days: list[TrendDay]
    total: int
    peak: int
    bar_width: float

    WIDTH = 280
    HEIGHT = 60
    BAR_GAP = 2


def exception_trend(*, now: datetime, days: int = 14) -> Trend:
    """New exceptions per day (by when each was first seen, in the console's time zone) over the last ``days``
    days, today included, with each day's bar laid out for the dashboard's inline SVG chart. One COUNT grouped by
    day over the ``(status, first_seen)`` index (every status named, so its range scan applies)."""
    from exceptions.models import Status, SyncException

    today = timezone.localdate(now)
    first = today - timedelta(days=days - 1)
    start = timezone.make_aware(datetime.combine(first, time.min))

    def count_days() -> dict:
        return dict(
            SyncException.objects.filter(status__in=Status.values, first_seen__gte=start)
            .annotate(day=TruncDate("first_seen", tzinfo=timezone.get_current_timezone()))
            .values_list("day")
            .annotate(count=Count("id"))
            .order_by()
        )

    # Counting a fortnight of a busy queue is ~100 ms at a million exceptions: kept DASHBOARD_CACHE_SECONDS.
    counts = cache.get_or_set(f"dashboard:trend:{first}:{days}", count_days, settings.DASHBOARD_CACHE_SECONDS)
    peak = max(counts.values(), default=0)
    width = Trend.WIDTH / days
    trend_days = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        count = counts.get(day, 0)
        height = round(Trend.HEIGHT * count / peak, 1) if peak else 0.0
        if count and height < 1:
            height = 1.0  # a day with any exception stays visible beside a tall one
        trend_days.append(
            TrendDay(
                day=day,
                count=count,
                x=round(offset * width, 1),
                y=round(Trend.HEIGHT - height, 1),
                height=height,
            )
        )
    bar_width = round(width - Trend.BAR_GAP, 1)
    return Trend(days=trend_days, total=sum(counts.values()), peak=peak, bar_width=bar_width)


@dataclass
class ChannelFreshness:
    code: str
    name: str
    pairs: int
    confirmed: int  # acknowledged by the channel within STOCK_STALE_MINUTES
    stale: int  # a change waiting, last confirmed longer ago than STOCK_STALE_MINUTES (the stock_stale rule)
    oldest_waiting: datetime | None  # the oldest confirmation among the pairs with a change waiting

    @property
    def confirmed_percent(self) -> float:
        return 100.0 * self.confirmed / self.pairs if self.pairs else 100.0


def stock_freshness(*, now: datetime) -> list[ChannelFreshness]:
    """Per channel, its SKU × channel pairs, how many the channel acknowledged within STOCK_STALE_MINUTES, and how
    many are stale by the stock push's own rule (a new figure waiting, last confirmed longer ago than that). One
    GROUP BY over the stock states by channel id, then the few channels' names."""
    # One pass over every SKU × channel pair (~50 ms at 300,000): measured at most every DASHBOARD_CACHE_SECONDS.
    return cache.get_or_set(
        "dashboard:stock-freshness", lambda: _stock_freshness(now), settings.DASHBOARD_CACHE_SECONDS
    )


def _stock_freshness(now: datetime) -> list[ChannelFreshness]:
    from mappings.models import Channel
    from syncs.models import StockState

    cutoff = now - timedelta(minutes=settings.STOCK_STALE_MINUTES)
    waiting = Q(pushed_value__isnull=True) | ~Q(pushed_value=F("ats"))
    rows = {
        row["channel_id"]: row
        for row in StockState.objects.values("channel_id")
        .annotate(
            pairs=Count("id"),
            confirmed=Count("id", filter=Q(acknowledged_at__gte=cutoff)),
            stale=Count("id", filter=waiting & (Q(acknowledged_at__lt=cutoff) | Q(acknowledged_at__isnull=True))),
            oldest_waiting=Min("acknowledged_at", filter=waiting),
        )
        .order_by()
    }
    channels = Channel.objects.filter(pk__in=rows).order_by("code").values_list("pk", "code", "name")
    return [
        ChannelFreshness(
            code=code,
            name=name,
            pairs=rows[pk]["pairs"],
            confirmed=rows[pk]["confirmed"],
            stale=rows[pk]["stale"],
            oldest_waiting=rows[pk]["oldest_waiting"],
        )
        for pk, code, name in channels
    ]


@dataclass
class CaptureWait:
    count: int
    oldest: datetime | None  # when Switchyard first saw the longest-waiting order


def orders_waiting_capture() -> CaptureWait:
    """Orders held from Fulfil until their payment is captured (``detail.waiting = "capture"``, set by the order
    export), with the longest-waiting one."""
    from console.monitoring import links_waiting_capture

    figures = links_waiting_capture().aggregate(count=Count("id"), oldest=Min("created_at"))
    return CaptureWait(count=figures["count"], oldest=figures["oldest"])


@dataclass
class RateWindow:
    calls: int
    limit: int
    seconds: float

    @property
    def used_percent(self) -> float:
        return min(100.0, 100.0 * self.calls / self.limit) if self.limit else 0.0

    @property
    def label(self) -> str:
        seconds = self.seconds
        if seconds >= 3600:
            span = f"{seconds / 3600:g} h"
        elif seconds >= 60:
            span = f"{seconds / 60:g} min"
        else:
            span = f"{seconds:g} s"
        return f"{self.calls:,} of {self.limit:,} in {span}"


@dataclass
class RateBucket:
    key: str
    windows: list[RateWindow]
    shared: bool  # counted across every worker (a RateBudget row); else each process paces itself, unseen here

    @property
    def headroom_percent(self) -> float:
        """The smallest share of any window still free."""
        return 100.0 - max((window.used_percent for window in self.windows), default=0.0)


@dataclass
class ConnectionHealthCard:
    summary: ConnectionSummary
    last_success_at: datetime | None
    last_error_at: datetime | None
    last_error: str
    buckets: list[RateBucket]

    @property
    def failing(self) -> bool:
        """The latest outcome was an error."""
        return self.last_error_at is not None and (
            self.last_success_at is None or self.last_error_at > self.last_success_at
        )


def connection_health(*, now: datetime) -> list[ConnectionHealthCard]:
    """Each connection: where it points, when it last answered and last failed (``syncs.connection_health``, the
    error short and redacted), and its rate-limit headroom — the calls every worker made in each window of each
    bucket (the shared ``RateBudget`` rows) against the limits the configured clients pace to. Two queries."""
    from syncs.connections import rate_buckets
    from syncs.models import ConnectionHealth, RateBudget

    health = {row.system: row for row in ConnectionHealth.objects.all()}
    buckets = rate_buckets()
    shared = settings.RATE_LIMITS_SHARED
    keys = [key for system_buckets in buckets.values() for key, _ in system_buckets]
    calls = dict(RateBudget.objects.filter(key__in=keys).values_list("key", "calls")) if shared else {}
    at = now.timestamp()
    cards = []
    for summary in connection_summaries():
        row = health.get(summary.system)
        cards.append(
            ConnectionHealthCard(
                summary=summary,
                last_success_at=row.last_success_at if row else None,
                last_error_at=row.last_error_at if row else None,
                last_error=row.last_error if row else "",
                buckets=[
                    RateBucket(
                        key=key,
                        windows=[
                            RateWindow(
                                calls=sum(
                                    1 for call in calls.get(key, []) if at - call < seconds
                                ),  # leased places: up to 1 s ahead
                                limit=limit,
                                seconds=seconds,
                            )
                            for limit, seconds in windows
                        ],
                        shared=shared,
                    )
                    for key, windows in buckets.get(summary.system, [])
                ],
            )
        )
    return cards
