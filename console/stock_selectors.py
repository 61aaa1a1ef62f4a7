"""Reads for the stock pages: SKU × channel pairs found by SKU, product, channel and state, a page at a time; and
one SKU explained — its master reading, how each channel's available-to-sell was reached (the stock push's own
rules and arithmetic: ``syncs.stock.rules`` and ``syncs.stock.ats``), what each channel accepted and shows, its open
exceptions."""

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Field, Func, Q, QuerySet, Value
from django.db.models.lookups import GreaterThan
from django.utils import timezone

from exceptions.models import ACTIVE, SyncException
from mappings.models import Bundle, Channel, StockBuffer, StockStatusRule, System
from mappings.services import stock_statuses
from syncs.flows.stock_push import push_channels
from syncs.models import STOCK_DRIFT, STOCK_PENDING, STOCK_ZERO, StockState
from syncs.stock.ats import Breakdown, Buffer, ats_breakdown, available_to_sell, bundle_available
from syncs.stock.buffers import stock_buffer_for_sku
from syncs.stock.in_flight import STATUS as IN_FLIGHT
from syncs.stock.rules import buffer_lookup, statuses_without_rule, subtracted_statuses

PAGE_SIZE = 50
COUNT_CAP = 1000
STATES = {
    "stale": "Stale",
    "drift": "Drift",
    "pending": "Pending",
    "zero": "Zero",
}
STATE_HELP = {
    "stale": "a change the channel has not confirmed, and no confirmation for longer than the stale limit",
    "drift": "the channel shows something else than it last accepted",
    "pending": "what it may sell is not what the channel last accepted",
    "zero": "nothing to sell",
}
BUFFER_SOURCES = {
    "sku": "this SKU's own rule",
    "product": "the product's rule",
    "channel": "the channel's rule",
    "default": "no rule",
}


# --- the list of pairs --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairFilters:
    q: str = ""
    exact: bool = False
    channel: Channel | None = None
    state: str = ""


def stale_before() -> datetime:
    return timezone.now() - timedelta(minutes=settings.STOCK_STALE_MINUTES)


def state_condition(state: str) -> Q:
    """The pairs in ``state`` (stale, drift, pending, zero). Stale is pending with the channel's last confirmation
    older than STOCK_STALE_MINUTES — the test that raises ``stock_stale``: a pair whose figure has not needed to
    change is not stale however long ago it was confirmed."""
    if state == "stale":
        return STOCK_PENDING & Q(acknowledged_at__lt=stale_before())
    return {"drift": STOCK_DRIFT, "pending": STOCK_PENDING, "zero": STOCK_ZERO}[state]


def stock_pairs(filters: PairFilters) -> QuerySet[StockState]:
    """The pairs matching ``filters``, in SKU order. ``q`` is a SKU prefix (or, ``exact``, a whole SKU) or a
    product number, as typed or in capitals."""
    pairs = StockState.objects.all()
    if filters.q:
        typed = {filters.q, filters.q.upper()}
        by_sku = Q()
        for text in typed:
            by_sku |= Q(sku=text) if filters.exact else Q(sku__startswith=text)
        pairs = pairs.filter(by_sku | Q(product_number__in=typed))
    if filters.channel is not None:
        pairs = pairs.filter(channel=filters.channel)
    if filters.state:
        pairs = pairs.filter(state_condition(filters.state))
    return pairs


@dataclass
class PairPage:
    rows: list[StockState]
    next_cursor: str | None


def pairs_page(pairs: QuerySet[StockState], *, cursor: str | None = None, size: int | None = None) -> PairPage:
    """One page of ``pairs`` (PAGE_SIZE unless ``size``) in (SKU, channel) order after ``cursor``: keyset
    pagination, so a page deep in 300,000 pairs costs what the first costs. An unreadable cursor starts from the
    beginning."""
    size = size or PAGE_SIZE
    pairs = pairs.order_by("sku", "channel_id").select_related("channel")
    after = _decode(cursor)
    if after is not None:
        pairs = pairs.filter(
            GreaterThan(
                Func(F("sku"), F("channel_id"), template="(%(expressions)s)", output_field=Field()),
                Func(Value(after[0]), Value(after[1]), template="(%(expressions)s)", output_field=Field()),
            )
        )
    rows = list(pairs[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    for row in rows:
        _flag(row)
    return PairPage(rows=rows, next_cursor=_encode(rows[-1]) if more else None)


def state_counts(*, channel: Channel | None) -> dict[str, tuple[int, bool]]:
    """{state: (pairs in it, whether counting stopped at COUNT_CAP)}, on one channel or all."""
    counts = {}
    for state in STATES:
        pairs = StockState.objects.filter(state_condition(state))
        if channel is not None:
            pairs = pairs.filter(channel=channel)
        # Ordered as the state's partial index is: the planner then counts from that index alone (it cannot tell
        # from statistics how rare drifted or pending pairs are, and would otherwise read the whole table).
        found = pairs.order_by("sku", "channel_id")[: COUNT_CAP + 1].count()
        counts[state] = (min(found, COUNT_CAP), found > COUNT_CAP)
    return counts


def _flag(state: StockState, cutoff: datetime | None = None) -> None:
    """Mark the pair as the filters see it, for the page's highlights."""
    cutoff = cutoff or stale_before()
    state.pending = state.pushed_value != state.ats
    state.drift = state.channel_value is not None and state.channel_value != state.pushed_value
    state.stale = state.pending and state.acknowledged_at is not None and state.acknowledged_at < cutoff


def _encode(row: StockState) -> str:
    return base64.urlsafe_b64encode(json.dumps([row.sku, row.channel_id]).encode()).decode()


def _decode(cursor: str | None) -> tuple[str, int] | None:
    if not cursor:
        return None
    try:
        sku, channel_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError):
        return None
    if not isinstance(sku, str) or not isinstance(channel_id, int) or isinstance(channel_id, bool):
        return None
    return sku, channel_id


# --- one SKU ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One line of an available-to-sell breakdown, ``units`` signed as they count."""

    label: str
    units: int = 0
    note: str = ""
    # start (on hand), minus (taken off), info (held but not taken off), part (a bundle's component), total (a
    # running result), rule (a floor, cap or threshold that set the figure), result (what the channel may sell)
    kind: str = "minus"

    @property
    def figure(self) -> str:
        if self.kind == "minus":
            return f"−{-self.units}"
        return "" if self.kind == "info" else str(self.units)


@dataclass
class ChannelStock:
    """One SKU on one channel, explained."""

    channel: Channel
    state: StockState | None
    breakdown: Breakdown | None = None
    lines: list[Line] = field(default_factory=list)
    unruled: list[str] = field(default_factory=list)  # statuses holding stock that no rule covers: push held
    buffer: Buffer = Buffer()  # the buffer rule that applies (the SKU's, its product's, the channel's or none)
    rule: StockBuffer | None = None  # the SKU's own buffer rule on the channel, if it has one
    exceptions: list[SyncException] = field(default_factory=list)
    form: object = None  # the page's buffer form, for those who may edit

    @property
    def buffer_source(self) -> str:
        return BUFFER_SOURCES[self.buffer.source]

    @property
    def agrees(self) -> bool:
        """Whether today's rules give the figure the last push recorded."""
        return self.state is None or self.breakdown is None or self.breakdown.available == self.state.ats


@dataclass
class SkuStock:
    sku: str
    product_number: str
    reading: StockState | None  # the pair with the newest master reading
    bundle: Bundle | None
    channels: list[ChannelStock]
    exceptions: list[SyncException]  # open exceptions about the SKU tied to no channel shown

    @property
    def master(self) -> str:
        return System(settings.STOCK_MASTER).label if settings.STOCK_MASTER in System.values else settings.STOCK_MASTER

    @property
    def reading_statuses(self) -> list[tuple[str, int]]:
        """The quantities the master reading holds in each status, as the breakdown names them."""
        statuses = self.reading.master_statuses if self.reading else {}
        return [(_status_label(status), units) for status, units in sorted(statuses.items(), key=_status_order)]


def sku_stock(*, sku: str) -> SkuStock | None:
    """Everything the stock page shows of ``sku`` (exactly as the pairs hold it), or None when no channel has a
    pair for it and it is no bundle."""
    states = {state.channel_id: state for state in StockState.objects.filter(sku=sku).select_related("channel")}
    bundle = Bundle.objects.prefetch_related("components").filter(bundle_sku=sku).first()
    if not states and bundle is None:
        return None
    cutoff = stale_before()
    for state in states.values():
        _flag(state, cutoff)
    channels = {channel.pk: channel for channel in push_channels()}
    channels |= {state.channel_id: state.channel for state in states.values()}
    read = [state for state in states.values() if state.master_version]
    reading = max(read, key=lambda state: state.master_version) if read else None
    product_number = next((state.product_number for state in states.values() if state.product_number), "")
    rules = stock_statuses(system=settings.STOCK_MASTER)
    subtracted = subtracted_statuses(rules)
    descriptions = {
        status.lower(): description
        for status, description in StockStatusRule.objects.filter(system=settings.STOCK_MASTER).values_list(
            "status", "description"
        )
    }
    open_exceptions = list(
        SyncException.objects.filter(refs__ref=sku.lower(), status__in=ACTIVE).order_by("-last_seen").distinct()
    )
    shown = []
    for channel in sorted(channels.values(), key=lambda channel: channel.name.lower()):
        state = states.get(channel.pk)
        entry = ChannelStock(channel=channel, state=state, rule=stock_buffer_for_sku(channel=channel, centra_sku=sku))
        # The push looks a bundle's buffer up by its SKU alone (a bundle is no product of Centra's).
        entry.buffer = buffer_lookup(channel, centra_sku=sku, product_number=product_number)(
            sku, "" if bundle else product_number
        )
        if bundle is not None:
            entry.breakdown, entry.lines = _bundle_breakdown(bundle, channel, entry.buffer, subtracted)
        elif state is not None and state.master_version is not None:
            entry.breakdown = ats_breakdown(
                on_hand=state.master_on_hand,
                statuses=state.master_statuses,
                subtracted=subtracted,
                buffer=entry.buffer,
            )
            entry.lines = breakdown_lines(entry.breakdown, state.master_statuses, rules, descriptions, product_number)
            entry.unruled = sorted(statuses_without_rule(state.master_statuses, rules))
        entry.exceptions = [e for e in open_exceptions if _channel_of(e) == channel.code]
        shown.append(entry)
    codes = {channel.code for channel in channels.values()}
    return SkuStock(
        sku=sku,
        product_number=product_number,
        reading=reading,
        bundle=bundle,
        channels=shown,
        exceptions=[e for e in open_exceptions if _channel_of(e) not in codes],
    )


def sku_on_channel(*, sku: str, channel: Channel) -> bool:
    """Whether the SKU's page shows ``channel``: the channel has a pair for it, or stock goes to the channel and the
    page has the SKU (some channel has a pair for it, or it is a bundle)."""
    if StockState.objects.filter(sku=sku, channel=channel).exists():
        return True
    known = StockState.objects.filter(sku=sku).exists() or Bundle.objects.filter(bundle_sku=sku).exists()
    return known and channel in push_channels()


def channel_stock(*, sku: str, channel: Channel) -> ChannelStock | None:
    """One channel's part of ``sku_stock`` (what the page swaps in after a buffer is saved)."""
    found = sku_stock(sku=sku)
    return next((entry for entry in found.channels if entry.channel.pk == channel.pk), None) if found else None


def _channel_of(exception: SyncException) -> str:
    channel = (exception.context or {}).get("channel")
    if channel:
        return str(channel)
    prefix, _, rest = exception.object_ref.partition(":")
    return prefix if rest else ""


STATUS_LABELS = {
    "reserved": "Reserved for open orders",
    IN_FLIGHT: "In flight: sold, not yet at the stock master",
    "allocated": "Allocated to orders",
}


def _status_order(status_or_item: str | tuple) -> tuple:
    """Reserved first, then units in flight, then the rest by name."""
    status = status_or_item[0] if isinstance(status_or_item, tuple) else status_or_item
    first = ["reserved", IN_FLIGHT]
    return (first.index(status) if status in first else len(first), status)


def _status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status.replace("_", " ").capitalize())


def breakdown_lines(
    breakdown: Breakdown, statuses: dict, rules: dict[str, bool], descriptions: dict[str, str], product_number: str
) -> list[Line]:
    """The breakdown as a person reads it: on hand, each subtraction named, the buffer and which rule gave it, then
    the floor, the cap and the send-0 threshold where they changed the figure. Statuses the master reports that are
    not taken off are listed too, with why."""
    lines = [Line("On hand at the stock master", breakdown.on_hand, kind="start")]
    for status in sorted(breakdown.subtracted, key=_status_order):
        note = "units of orders seen here" if status == IN_FLIGHT else descriptions.get(status, "")
        lines.append(Line(_status_label(status), -breakdown.subtracted[status], note=note))
    for status, units in sorted(statuses.items()):
        if status not in breakdown.subtracted and units:
            rule = "no rule yet: this SKU is not pushed until one exists" if status.lower() not in rules else "sellable"
            lines.append(Line(_status_label(status), 0, note=f"{units} held here, not taken off ({rule})", kind="info"))
    return lines + _limit_lines(breakdown, product_number)


def _limit_lines(breakdown: Breakdown, product_number: str) -> list[Line]:
    buffer = breakdown.buffer
    source = BUFFER_SOURCES[buffer.source] if buffer.source != "default" else "no rule: nothing held back"
    if buffer.source == "product":
        source = f"product {product_number}'s rule"
    lines = [Line("Safety buffer", -breakdown.buffer_units, note=source)]
    lines.append(Line("Left after the buffer", breakdown.after_buffer, kind="total"))
    if breakdown.after_buffer < 0:
        lines.append(Line("Floored at 0", breakdown.floored, note="never less than nothing", kind="rule"))
    if breakdown.was_capped:
        lines.append(Line(f"Capped at the maximum of {buffer.max_quantity}", breakdown.capped, kind="rule"))
    if breakdown.was_zeroed:
        note = f"{breakdown.capped} is at or below {buffer.zero_at_or_below}"
        lines.append(Line("Sent as 0", 0, note=note, kind="rule"))
    lines.append(Line("Available to sell", breakdown.available, kind="result"))
    return lines


def _bundle_breakdown(bundle: Bundle, channel: Channel, buffer, subtracted: set[str]) -> tuple[Breakdown, list[Line]]:
    """A bundle sells as often as its scarcest component allows (each component's available-to-sell before any
    buffer, from its last reading on the channel), then the bundle's own buffer applies."""
    components = list(bundle.components.all())
    readings = {
        state.sku: state
        for state in StockState.objects.filter(channel=channel, sku__in=[c.component_sku for c in components])
    }
    lines, parts = [], []
    for component in components:
        state = readings.get(component.component_sku)
        free = (
            available_to_sell(on_hand=state.master_on_hand, statuses=state.master_statuses, subtracted=subtracted)
            if state
            else 0
        )
        parts.append((free, component.quantity))
        note = f"{free} free ÷ {component.quantity} a bundle" + ("" if state else " (never read)")
        allows = free // component.quantity if component.quantity > 0 else 0
        lines.append(Line(f"Component {component.component_sku}", allows, note=note, kind="part"))
    bundles = bundle_available(parts)
    lines.append(Line("Bundles the scarcest component allows", bundles, kind="start"))
    breakdown = ats_breakdown(on_hand=bundles, statuses={}, subtracted=(), buffer=buffer)
    return breakdown, lines + _limit_lines(breakdown, "")
