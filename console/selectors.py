"""Reads for the console pages."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Max
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


def connections() -> list[ConnectionSummary]:
    """Each external connection: where it points and whether it is configured. Never a credential."""
    return connection_summaries()


def open_exceptions_by_team() -> list[dict]:
    """Active exceptions per owning team, with the oldest, for the dashboard."""
    from django.db.models import Count, Min

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
