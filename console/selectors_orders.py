"""Reads for the order trace: find an order by any identifier people quote, and tell its journey across every
system — each step with its time and system, the steps not taken yet, and every exception on the way.

Everything comes from the order's link (syncs.models.Link), the links of its shipments and returns (``parts``) and
the steps the flows noted on them (``detail``); nothing here calls another system. Every search is an index
look-up: Centra order numbers (unique), Fulfil ids and Centra ids (``kind`` + id indexes), references in any case
(an index on ``LOWER(source_ref)``), and the identifiers no column holds — tracking numbers, Fulfil shipment
numbers — in ``LinkRef``."""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db.models.functions import Lower
from django.utils.dateparse import parse_datetime

from exceptions.models import ACTIVE, ExceptionRef, SyncException
from mappings.models import System
from mappings.money import is_currency, minor_unit
from syncs.link_refs import SEARCHABLE
from syncs.models import Link, LinkRef

SEARCH_LIMIT = 50
EXCEPTION_LIMIT = 100

# What the order cancellation flow's ledger says it did at the source, in words.
CANCELLATION_DONE = {
    "cancel_line": "cancelled",
    "cancel_acknowledge": "acknowledged the retailer's cancellation of",
}

DONE, WAITING, PENDING, SKIPPED = "done", "waiting", "pending", "skipped"
STATE_LABELS = {DONE: "Done", WAITING: "Waiting", PENDING: "Not yet", SKIPPED: "Not needed"}


# --- search -------------------------------------------------------------------------------------------------------


@dataclass
class OrderMatch:
    order: Link
    matched: list[str]  # what the query matched, e.g. "tracking number of shipment CS5001"


def order_search(query: str, *, limit: int = SEARCH_LIMIT) -> list[OrderMatch]:
    """The orders ``query`` identifies, newest first: a Centra order number, a marketplace or retailer reference
    (any case), a Fulfil sale or credit id, a Fulfil shipment id or number, a tracking number, a Centra shipment or
    return id. An identifier of a shipment or a return finds its order."""
    text = query.strip()
    if not text:
        return []
    lowered = text.lower()
    found: dict[int, list[str]] = {}

    def note(link_id: int, label: str) -> None:
        labels = found.setdefault(link_id, [])
        if label not in labels:
            labels.append(label)

    for link_id, what in LinkRef.objects.filter(ref=lowered).values_list("link_id", "what")[:limit]:
        note(link_id, SEARCHABLE.get(what, what.replace("_", " ")))
    by_reference = Link.objects.alias(reference=Lower("source_ref")).filter(reference=lowered)
    for link_id, kind, system in by_reference.values_list("pk", "kind", "source_system")[:limit]:
        if kind == Link.Kind.ORDER:
            note(link_id, "Centra order number" if system == System.CENTRA else "order reference")
        else:
            note(link_id, "Fulfil shipment id" if kind == Link.Kind.SHIPMENT else "Centra return id")
    centra_ids = Link.objects.filter(kind__in=[Link.Kind.SHIPMENT, Link.Kind.RETURN], centra_id=text)
    for link_id, kind in centra_ids.values_list("pk", "kind")[:limit]:
        note(link_id, "Centra shipment id" if kind == Link.Kind.SHIPMENT else "Centra return id")
    if text.isdigit() and len(text) <= 18:
        number = int(text)
        for link_id in Link.objects.filter(centra_number=number).values_list("pk", flat=True):
            note(link_id, "Centra order number")
        fulfil_ids = Link.objects.filter(kind__in=[Link.Kind.ORDER, Link.Kind.RETURN], fulfil_id=number)
        for link_id, kind in fulfil_ids.values_list("pk", "kind")[:limit]:
            note(link_id, "Fulfil sale id" if kind == Link.Kind.ORDER else "Fulfil credit id")
    if not found:
        return []
    matched: dict[int, list[str]] = {}
    for link_id, kind, order_id, source_id, source_ref in Link.objects.filter(pk__in=found).values_list(
        "pk", "kind", "order_id", "source_id", "source_ref"
    ):
        if kind == Link.Kind.ORDER:
            matched.setdefault(link_id, []).extend(found[link_id])
        elif order_id:
            of = f"shipment {source_id or source_ref}" if kind == Link.Kind.SHIPMENT else f"return {source_ref}"
            matched.setdefault(order_id, []).extend(f"{label} of {of}" for label in found[link_id])
    orders = Link.objects.filter(pk__in=matched, kind=Link.Kind.ORDER).select_related("channel").order_by("-pk")
    return [OrderMatch(order=order, matched=matched[order.pk]) for order in orders[:limit]]


def recent_orders(*, limit: int = 20) -> list[Link]:
    """The orders Switchyard saw last, newest first."""
    return list(Link.objects.filter(kind=Link.Kind.ORDER).select_related("channel").order_by("-pk")[:limit])


def exceptions_mentioning(query: str) -> int:
    """How many exceptions carry ``query`` as an identifier (an order that never got as far as a link: unreadable,
    or from a channel nobody set up)."""
    text = query.strip().lower()
    return ExceptionRef.objects.filter(ref=text).count() if text else 0


# --- the trace ----------------------------------------------------------------------------------------------------


@dataclass
class Event:
    label: str
    at: datetime | None  # None: not happened yet
    system: str = ""


@dataclass
class Step:
    key: str
    label: str
    system: str
    state: str
    at: datetime | None = None
    facts: list[tuple[str, str]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    note: str = ""
    exceptions: list[SyncException] = field(default_factory=list)  # open ones met at this step

    @property
    def state_label(self) -> str:
        return STATE_LABELS[self.state]


@dataclass
class OrderTrace:
    order: Link
    title: str
    steps: list[Step]
    exceptions: list[SyncException]
    open_exceptions: int
    not_yet: list[str]  # the steps still to happen (waiting or not started), in order


def order_for(link: Link) -> Link:
    """The order a link belongs to: itself, or the order of a shipment or return."""
    return link.order if link.kind != Link.Kind.ORDER and link.order_id else link


def order_trace(order: Link) -> OrderTrace:
    """The journey of ``order`` (an order link) across every system, step by step, with its exceptions."""
    parts = list(order.parts.order_by("created_at", "pk"))
    source = _Source(order)
    steps = _arrival(order, source)
    steps.append(_payment(order, source))
    steps.append(_export(order))
    shipments = [part for part in parts if part.kind == Link.Kind.SHIPMENT]
    steps += [_shipment(part, source) for part in shipments]
    steps.append(_fully_shipped(order, shipments))
    for part in parts:
        if part.kind == Link.Kind.RETURN:
            steps += _return(part, source)
    cancelled = _cancellation(order, source)
    if cancelled:
        steps.append(cancelled)
    exceptions = list(
        SyncException.objects.filter(
            pk__in=ExceptionRef.objects.filter(ref__in=_exception_refs(order, parts)).values("exception_id")
        ).order_by("first_seen", "pk")[:EXCEPTION_LIMIT]
    )
    blocked = any(_step_of(e) == "cancelled" and e.status in ACTIVE for e in exceptions)
    if blocked and not cancelled:
        # Cancelled in Centra, and nothing of it taken anywhere yet: the exception says what stands in the way.
        steps.append(Step("cancelled", "Cancellation carried everywhere", "Centra → Fulfil", WAITING))
    by_key = {step.key: step for step in steps}
    for exception in exceptions:
        step = by_key.get(_step_of(exception))
        if step is not None and exception.status in ACTIVE:
            step.exceptions.append(exception)
    return OrderTrace(
        order=order,
        title=source.title,
        steps=steps,
        exceptions=exceptions,
        open_exceptions=sum(1 for exception in exceptions if exception.status in ACTIVE),
        not_yet=[step.label for step in steps if step.state in (WAITING, PENDING)],
    )


class _Source:
    """Where the order came from, in words."""

    def __init__(self, order: Link) -> None:
        self.imported = order.source_system != System.CENTRA
        channel = order.channel
        self.name = channel.name if channel else order.source_system
        self.system = channel.get_system_display() if channel else order.source_system
        self.channel_system = channel.system if channel else ""
        self.cancelled = bool(order.detail.get("cancelled"))
        if self.imported:
            number = f" · Centra {order.centra_number}" if order.centra_number and order.created_in_target_at else ""
            self.title = f"{self.name} order {order.source_ref}{number}"
        else:
            self.title = f"Centra order {order.centra_number or order.source_ref}"


def _when(value) -> datetime | None:
    """A step time the flows noted in a link's detail (ISO text)."""
    if isinstance(value, datetime):
        return value
    return parse_datetime(value) if isinstance(value, str) and value else None


def _money(amount: str, currency: str) -> str:
    """'30.00 GBP': an amount a flow noted, to its currency's minor unit."""
    try:
        value = Decimal(amount)
    except (InvalidOperation, TypeError):
        return f"{amount} {currency}".strip()
    if is_currency(currency):
        value = value.quantize(minor_unit(currency))
    return f"{value} {currency}".strip()


def _state(at: datetime | None, *, cancelled: bool = False) -> str:
    if at:
        return DONE
    return SKIPPED if cancelled else PENDING


def _arrival(order: Link, source: _Source) -> list[Step]:
    if not source.imported:
        return [
            Step(
                "received",
                "Placed in Centra",
                "Centra",
                DONE,
                order.created_at,
                facts=[("Centra order", order.source_ref)],
                note="The time Switchyard first saw it.",
            )
        ]
    facts = [("Reference", order.source_ref)]
    if order.source_id and order.source_id != order.source_ref:
        facts.append((f"{source.system} id", order.source_id))
    imported = Step(
        "imported",
        "Imported into Centra",
        "Centra",
        _state(order.created_in_target_at, cancelled=source.cancelled),
        order.created_in_target_at,
        facts=[("Centra order", str(order.centra_number))] if order.centra_number else [],
    )
    if not order.created_in_target_at and order.centra_number:
        imported.note = f"Centra order number {order.centra_number} is reserved for it."
    return [
        Step(
            "received",
            f"Received from {source.name}",
            source.system,
            DONE,
            order.created_at,
            facts=facts,
            note="The time Switchyard first read it.",
        ),
        imported,
        Step(
            "acknowledged",
            f"Acknowledged at {source.name}",
            source.system,
            _state(order.acknowledged_at, cancelled=source.cancelled),
            order.acknowledged_at,
            note="" if order.acknowledged_at else "Acknowledged only once Centra has the order.",
        ),
    ]


def _payment(order: Link, source: _Source) -> Step:
    step = Step("payment", "Payment captured", "Centra", PENDING)
    if source.imported:
        step.label, step.system, step.state = f"Paid at {source.name}", source.system, SKIPPED
        step.note = f"The customer paid {source.name}: Centra captures nothing for this order."
    elif order.detail.get("waiting") == "capture":
        step.state = WAITING
        step.note = "Centra has not captured the payment yet: the export to Fulfil waits for it."
    elif order.exported_at and settings.ORDER_EXPORT_REQUIRE_CAPTURE:
        step.state = DONE
        step.note = "Captured before the export to Fulfil, which waits for it (Centra's capture time is not kept)."
    elif order.exported_at or source.cancelled:
        step.state = SKIPPED
        step.note = "Not checked: exports do not wait for the capture." if order.exported_at else "Cancelled."
    return step


def _export(order: Link) -> Step:
    detail = order.detail
    step = Step("exported", "Exported to Fulfil", "Fulfil", PENDING, order.exported_at)
    if order.fulfil_id:
        step.facts.append(("Fulfil sale id", str(order.fulfil_id)))
    if detail.get("sale_state"):
        step.facts.append(("Sale state then", detail["sale_state"]))
    if order.exported_at:
        step.state = DONE
    elif order.fulfil_id:
        step.state = WAITING
        step.note = f"Sale {order.fulfil_id} is made in Fulfil but not confirmed yet."
    elif detail.get("cancelled"):
        step.state = SKIPPED
        step.note = "Cancelled before it reached Fulfil."
    return step


def _shipment(part: Link, source: _Source) -> Step:
    detail = part.detail
    name = detail.get("shipment_number") or part.source_id or part.source_ref
    facts = [("Fulfil shipment", f"{name} (id {part.source_ref})" if name != part.source_ref else name)]
    carrier = " ".join(value for value in (detail.get("carrier"), detail.get("carrier_service")) if value)
    if carrier:
        facts.append(("Carrier", carrier))
    if detail.get("tracking_number"):
        facts.append(("Tracking number", detail["tracking_number"]))
    if part.centra_id:
        facts.append(("Centra shipment id", part.centra_id))
    if detail.get("marketplace_shipment_id"):
        facts.append(("Marketplace shipment id", str(detail["marketplace_shipment_id"])))
    held = bool(detail.get("synced_at")) and not part.centra_id
    events = [Event("Seen done in Fulfil", part.created_at, "Fulfil")]
    if not held:
        events += [
            Event(
                f"Created in Centra{f' as shipment {part.centra_id}' if part.centra_id else ''}",
                part.created_in_target_at,
                "Centra",
            ),
            Event("Completed in Centra with carrier and tracking", _when(detail.get("centra_completed_at")), "Centra"),
        ]
        if source.channel_system in (System.VIRTUALSTOCK, System.MARKETPLACE):
            code = f" (carrier code {detail['source_carrier']})" if detail.get("source_carrier") else ""
            events.append(
                Event(f"Dispatched to {source.name}{code}", _when(detail.get("source_reported_at")), source.system)
            )
    step = Step(
        f"shipment:{part.source_ref}",
        f"Shipment {name}",
        "Fulfil → Centra" + (f" → {source.name}" if source.imported else ""),
        DONE if detail.get("synced_at") else WAITING,
        _when(detail.get("centra_completed_at")) or part.created_at,
        facts=facts,
        events=events,
    )
    if held:
        step.note = (
            "Held: it carries parts of a bundle whose other parts have not left the warehouse yet; Centra and the "
            "channel hear of the bundle when they do."
        )
    elif step.state == WAITING:
        step.note = "Not every step of this shipment is done yet."
    return step


def _fully_shipped(order: Link, shipments: list[Link]) -> Step:
    step = Step("shipped", "Fully shipped", "Centra", DONE if order.shipped_at else PENDING, order.shipped_at)
    if order.shipped_at:
        step.note = "Every unit is in a completed Centra shipment."
    elif order.detail.get("cancelled"):
        step.state, step.note = SKIPPED, "Cancelled."
    elif shipments:
        step.note = f"{len(shipments)} shipment{'s' if len(shipments) > 1 else ''} so far; not every unit has shipped."
    else:
        step.note = "Nothing has left the warehouse yet."
    return step


def _return(part: Link, source: _Source) -> list[Step]:
    detail = part.detail
    return_id = part.centra_id or part.source_ref
    cancelled_at = _when(detail.get("cancelled_at"))
    events = []
    if source.channel_system == System.MARKETPLACE:
        events.append(Event("Reported to the marketplace", _when(detail.get("marketplace_reported_at")), source.system))
    received = detail.get("received") or {}
    units = ", ".join(f"{quantity} × {sku}" for sku, quantity in sorted(received.items()))
    events += [
        Event(
            "Received and inspected by the warehouse; stock booked back" + (f" ({units})" if units else ""),
            _when(detail.get("stocked_in_at")),
            "Fulfil",
        ),
        Event("Stock pushed to the channels", _when(detail.get("stock_pushed_at")), "Switchyard"),
    ]
    returned = Step(
        f"return:{part.source_ref}",
        f"Returned (Centra return {return_id})",
        "Centra → Fulfil",
        DONE if detail.get("stock_pushed_at") else WAITING,
        part.created_at,
        facts=[("Centra return id", return_id)],
        events=events,
    )
    if cancelled_at:
        returned.label, returned.state = f"Return {return_id} cancelled in Centra", DONE
        returned.events = [Event("Cancelled in Centra", cancelled_at, "Centra")]
    elif returned.state == WAITING:
        returned.note = "Waiting for the warehouse to receive and inspect the goods."
    refund = Step(
        f"refund:{part.source_ref}",
        "Refund credited in Fulfil",
        "Fulfil",
        DONE if detail.get("credit_confirmed_at") else PENDING,
        _when(detail.get("credit_confirmed_at")),
    )
    if part.fulfil_id:
        refund.facts.append(("Fulfil credit id", str(part.fulfil_id)))
    if detail.get("credit_number"):
        refund.facts.append(("Credit number", detail["credit_number"]))
    if detail.get("refund"):
        refund.facts.append(("Amount", _money(detail["refund"], detail.get("currency", ""))))
    if detail.get("credit_cancelled_at"):
        refund.events.append(Event("Credit cancelled in Fulfil", _when(detail["credit_cancelled_at"]), "Fulfil"))
    if cancelled_at and refund.state == PENDING:
        refund.state, refund.note = SKIPPED, "The return was cancelled before its credit was posted."
    return [returned, refund]


def _cancellation(order: Link, source: _Source) -> Step | None:
    ledger = order.detail.get("cancellations") or {}
    entries = [
        (system, entry)
        for system, done in ledger.items()
        if system != "handled" and isinstance(done, list)
        for entry in done
        if isinstance(entry, dict)
    ]
    if not source.cancelled and not entries:
        return None
    events = []
    for system, entry in entries:
        what = entry.get("sale") or " × ".join(str(entry[key]) for key in ("quantity", "sku") if entry.get(key))
        did = CANCELLATION_DONE.get(entry.get("did", ""), entry.get("did") or "cancelled")
        label = f"{System(system).label if system in System.values else system}: {did}"
        events.append(Event(f"{label} {what}".strip(), _when(entry.get("at")), system))
    events.sort(key=lambda event: event.at or order.updated_at)
    targets = (["Fulfil"] if order.fulfil_id else []) + ([source.name] if source.imported else [])
    step = Step(
        "cancelled",
        "Cancelled" if source.cancelled else "Partly cancelled",
        f"Centra → {', '.join(targets)}" if targets else "Centra",
        DONE,
        events[-1].at if events else None,
        events=events,
    )
    if not events:
        step.note = "Cancelled in Centra before it reached any other system: nothing else to cancel."
    return step


# --- exceptions ---------------------------------------------------------------------------------------------------


def _exception_refs(order: Link, parts: list[Link]) -> set[str]:
    """Every identifier the flows record an exception of this order under: the order's number and object refs,
    each stall check's, each shipment's and return's, and its parcels' tracking numbers."""
    refs = {f"{order.source_system}:{order.source_ref}"}
    refs |= {f"{step}:{order.source_system}:{order.source_ref}" for step in ("import", "export", "ship")}
    if order.channel:
        refs.add(f"{order.channel.system}:{order.source_ref}")  # an import recorded before its channel was known
    if order.centra_number:
        number = order.centra_number
        refs |= {str(number), f"centra:{number}", f"centra:{number}:capture"}
    for part in parts:
        if part.kind == Link.Kind.SHIPMENT:
            refs |= {f"fulfil:{part.source_ref}", f"fulfil:{part.source_ref}:warning"}
            if part.detail.get("tracking_number"):
                refs.add(part.detail["tracking_number"])
        elif part.kind == Link.Kind.RETURN:
            refs.add(f"centra:return:{part.source_ref}")
    return {ref.strip().lower() for ref in refs if ref and ref.strip()}


def _step_of(exception: SyncException) -> str:
    """The key of the step an exception holds up."""
    ref = exception.object_ref
    if exception.flow == "order_import":
        return "imported"
    if exception.kind == "payment_capture_lag":
        return "payment"
    if exception.flow == "order_export":
        return "exported"
    if exception.flow == "order_watch":
        step = (exception.context or {}).get("step") or ref.split(":", 1)[0]
        return {"import": "imported", "export": "exported", "ship": "shipped"}.get(step, "")
    if exception.flow == "shipment_sync" and ref.startswith("fulfil:"):
        return f"shipment:{ref.split(':')[1]}"
    if exception.flow == "return_sync" and ref.startswith("centra:return:"):
        step = "refund" if exception.kind == "refund_not_posted" else "return"
        return f"{step}:{ref.split(':')[2]}"
    if exception.flow == "order_cancel":
        return "cancelled"
    return ""
