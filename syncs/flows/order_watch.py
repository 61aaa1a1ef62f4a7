"""Order watch: orders that have not moved to their next step within the agreed time raise ``order_stalled``.

Every order has a link (syncs.models.Link) that records when each step happened. An order is stalled when:

- **import**: a marketplace or retailer order is not in Centra and acknowledged at its source
  ``ORDER_STALLED_IMPORT_MINUTES`` after Switchyard first saw it;
- **export**: an order is not in Fulfil ``ORDER_STALLED_EXPORT_MINUTES`` after it was imported or first seen in
  Centra (an order waiting for its payment to be captured is finance's ``payment_capture_lag``, not this);
- **ship**: an order in Fulfil is not fully shipped ``ORDER_STALLED_SHIP_HOURS`` after it got there.

Each stalled order is one exception per step, raised once; it resolves itself when the order moves on (or is
cancelled), so the queue only ever shows orders that are still stuck.
"""

from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.timesince import timesince

from exceptions.models import SyncException
from exceptions.registry import register_retry_handler
from exceptions.services import ACTIVE, failure_record, objects_succeeded
from syncs.connectors.errors import DataError
from syncs.links import link_not_cancelled
from syncs.models import Link
from syncs.runs import RunCounter

FLOW = "order_watch"
BATCH = 1000  # stalled orders raised per step per run, oldest first: a backlog is raised over a few runs


class OrderStalled(DataError):
    exception_kind = "order_stalled"


@dataclass
class WatchSummary:
    examined: int = 0
    stalled: int = 0
    raised: int = 0
    moved_on: int = 0
    failed: int = 0
    by_step: dict[str, int] = field(default_factory=dict)


def _orders() -> QuerySet[Link]:
    return Link.objects.filter(kind=Link.Kind.ORDER).filter(link_not_cancelled())


def _stalled(step: str, now) -> tuple[QuerySet[Link], str]:
    """The links stalled at ``step``, and what people are told they wait for."""
    if step == "import":
        cutoff = now - timedelta(minutes=settings.ORDER_STALLED_IMPORT_MINUTES)
        query = _orders().exclude(source_system="centra").filter(acknowledged_at__isnull=True, created_at__lt=cutoff)
        return query.order_by("created_at"), "in Centra and acknowledged at its source"
    if step == "export":
        cutoff = now - timedelta(minutes=settings.ORDER_STALLED_EXPORT_MINUTES)
        query = (
            _orders()
            .filter(exported_at__isnull=True)
            .filter(Q(source_system="centra", created_at__lt=cutoff) | Q(acknowledged_at__lt=cutoff))
            .filter(Q(detail__waiting__isnull=True) | ~Q(detail__waiting="capture"))
        )
        return query.order_by("created_at"), "in Fulfil"
    cutoff = now - timedelta(hours=settings.ORDER_STALLED_SHIP_HOURS)
    query = _orders().filter(exported_at__lt=cutoff, shipped_at__isnull=True)
    return query.order_by("exported_at"), "shipped"


STEPS = ("import", "export", "ship")


def object_ref(step: str, link: Link) -> str:
    return f"{step}:{link.source_system}:{link.source_ref}"


def order_watch_run(*, counter: RunCounter | None = None) -> WatchSummary:
    """Raise every newly stalled order, and resolve those that have moved on."""
    summary = WatchSummary()
    now = timezone.now()
    active = set(
        SyncException.objects.filter(flow=FLOW, status__in=ACTIVE).values_list("object_ref", flat=True).iterator()
    )
    still_stalled: set[str] = set()
    for step in STEPS:
        query, waiting_for = _stalled(step, now)
        count = 0
        for link in query.select_related("channel").iterator(chunk_size=2000):
            ref = object_ref(step, link)
            still_stalled.add(ref)
            count += 1
            if ref in active or summary.raised >= BATCH * (STEPS.index(step) + 1):
                continue
            _raise(step, link, waiting_for, now)
            summary.raised += 1
        summary.by_step[step] = count
        summary.stalled += count
    moved_on = active - still_stalled
    if moved_on:
        summary.moved_on = objects_succeeded(
            flow=FLOW, object_refs=sorted(moved_on), note="The order moved on to its next step."
        )
    summary.examined = summary.stalled + summary.moved_on
    if counter:
        counter.add(examined=summary.examined, succeeded=summary.examined)
    return summary


def _raise(step: str, link: Link, waiting_for: str, now) -> None:
    since = {"import": link.created_at, "export": link.acknowledged_at or link.created_at}.get(step, link.exported_at)
    name = _order_name(link)
    failure_record(
        flow=FLOW,
        object_type="order",
        object_ref=object_ref(step, link),
        error=OrderStalled(
            f"{name} has not been {waiting_for} for {timesince(since, now)}.",
            system="switchyard",
            operation=f"order {step}",
        ),
        title=f"{name} stalled: not {waiting_for} after {timesince(since, now)}",
        system="centra" if step != "import" else (link.channel.system if link.channel else ""),
        refs=[ref for ref in (link.source_ref, str(link.centra_number or ""), str(link.fulfil_id or "")) if ref],
        context={"link": link.pk, "step": step},
    )


def _order_name(link: Link) -> str:
    if link.source_system == "centra":
        return f"Centra order {link.source_ref}"
    channel = link.channel.name if link.channel else link.source_system
    number = f" (Centra {link.centra_number})" if link.centra_number and link.created_in_target_at else ""
    return f"{channel} order {link.source_ref}{number}"


def retry(exception) -> None:
    """Look again (the queue calls this): resolves when the order has moved on, else it stays open."""
    link = Link.objects.filter(pk=exception.context.get("link")).first()
    if link is None:
        return
    step = exception.context["step"]
    query, waiting_for = _stalled(step, timezone.now())
    if query.filter(pk=link.pk).exists():
        raise OrderStalled(
            f"{_order_name(link)} is still not {waiting_for}.", system="switchyard", operation=f"order {step}"
        )


register_retry_handler(FLOW, retry)
