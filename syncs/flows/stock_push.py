"""Stock push: the stock master's figures → what every channel may sell.

Read the master (every SKU, or the few an event named) → record each reading with its version, never letting an
older reading replace a newer one → compute available-to-sell per channel (status rules, buffers, bundles) →
compare with what the channel last accepted and keep only the changes → hold a push that would empty an unusual
share of a channel → order the rest by oversell risk (drops to zero first, then the SKUs with the least cover) →
write in the fewest calls each API allows (Centra: many sizes per setStock; Virtualstock: one product per call;
the marketplace: 500 per call), paced by the connectors inside each API's limits → settle SKU by SKU: what the
channel accepted is recorded (only if no newer value got there first), what it refused is an exception.

A full run also reads what each channel actually shows, reports drift (the channel differs from what we pushed)
and repairs it, and raises ``stock_stale`` for pairs the channel has not confirmed for too long.
"""

import contextlib
import functools
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import F, Q
from django.utils import timezone

from exceptions.models import ACTIVE, SyncException
from exceptions.registry import AlreadyRecorded, register_retry_handler
from exceptions.services import failure_record, objects_succeeded
from mappings.models import Bundle, Channel, StockBuffer, System
from mappings.services import MissingMapping, skus_mapped, stock_statuses
from syncs import connections
from syncs.connectors.centra import StockLevel
from syncs.connectors.errors import ConnectorError, DataError
from syncs.connectors.marketplace import StockUpdate
from syncs.models import StockState
from syncs.stock.ats import Buffer, available_to_sell, bundle_available

FLOW = "stock_push"
logger = logging.getLogger("switchyard.stock")
CENTRA_SIZES_PER_MUTATION = 200


@dataclass(frozen=True)
class Reading:
    sku: str
    on_hand: int
    statuses: dict[str, int]
    version: datetime
    product_number: str = ""


@dataclass
class PushSummary:
    examined: int = 0
    changed: int = 0
    pushed: int = 0
    pending: int = 0  # changes left for the next run when this one's time budget ran out
    held: int = 0
    drift: int = 0
    failed: int = 0
    api_calls: int = 0
    exceptions: int = 0
    full: bool = False
    channels: dict = field(default_factory=dict)


# --- reading the stock master -------------------------------------------------------------------------------------


def read_master(skus: list[str] | None = None) -> dict[str, Reading]:
    """The stock master's figures now, for ``skus`` or for every SKU it holds, each stamped with the moment read."""
    master = settings.STOCK_MASTER
    version = timezone.now()
    readings: dict[str, Reading] = {}
    if master == System.FULFIL:
        client = connections.fulfil()
        products = client.products_by_code(skus).values() if skus is not None else client.products()
        for product in products:
            on_hand = product.quantity_on_hand or 0
            reserved = max(0, on_hand - (product.quantity_available or 0))
            readings[product.code] = Reading(product.code, on_hand, {"reserved": reserved}, version)
    elif master == System.CENTRA:
        client = connections.centra()
        sizes = client.sizes_by_sku(skus).values() if skus is not None else client.sizes()
        for size in sizes:
            readings[size.sku] = Reading(
                size.sku, size.physical, {"allocated": size.allocated}, version, size.product_number
            )
    elif master == System.INVENTORY_PLANNER:
        client = connections.inventory_planner()
        variants = client.variants_by_sku(skus).values() if skus is not None else client.variants()
        for variant in variants:
            readings[variant.sku] = Reading(variant.sku, variant.in_stock, {}, version)
    else:
        raise ValueError(f"STOCK_MASTER is {master!r}: it must be centra, fulfil or inventory_planner")
    return readings


def push_channels(channel_code: str | None = None) -> list[Channel]:
    """The channels stock is pushed to: every active one but the master itself."""
    channels = Channel.objects.filter(active=True).exclude(system=settings.STOCK_MASTER)
    if channel_code:
        channels = channels.filter(code=channel_code)
    return list(channels.order_by("code"))


@contextlib.contextmanager
def channel_lock(channel: Channel):
    """One stock push per channel at a time, across every worker on every machine (a PostgreSQL advisory lock):
    a run holding an older reading then finds the newer one already recorded, and leaves it alone. SQLite, the
    embedded default with one machine, serialises writes itself."""
    if connection.vendor != "postgresql":
        yield
        return
    key = 0x53544F434B000000 + channel.pk  # "STOCK" and the channel
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [key])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


# --- the run ------------------------------------------------------------------------------------------------------


def stock_push_run(
    *,
    channel_code: str | None = None,
    skus: list[str] | None = None,
    full: bool = False,
    approve_zero_out: bool = False,
    counter=None,
) -> PushSummary:
    """Push what changed (for ``skus`` only when given) to every channel, or one. ``full`` also reads each channel's
    actual stock and repairs drift. Returns the counts; failures are exceptions, never raised, except a stock
    master that cannot be read at all."""
    summary = PushSummary(full=full)
    deadline = time.monotonic() + settings.STOCK_PUSH_MAX_SECONDS
    readings = read_master(skus)
    summary.examined = len(readings)
    subtracted = _subtracted(readings)
    channels = push_channels(channel_code)
    for position, channel in enumerate(channels):
        # Each channel gets an equal share of what is left of the budget, so one slow API cannot starve the rest.
        remaining = max(0.0, deadline - time.monotonic())
        channel_deadline = time.monotonic() + remaining / (len(channels) - position)
        try:
            with channel_lock(channel):
                outcome = _push_channel(
                    channel,
                    readings,
                    subtracted,
                    full=full,
                    approve_zero_out=approve_zero_out,
                    deadline=channel_deadline,
                    targeted=skus is not None,
                )
        except ConnectorError as error:  # the channel as a whole cannot be reached: one exception, retried
            failure_record(
                flow=FLOW,
                object_type="channel",
                object_ref=f"{channel.code}:push",
                error=error,
                title=f"Stock for {channel.name} could not be sent",
                system=channel.system,
                context={"channel": channel.code},
            )
            summary.exceptions += 1
            summary.channels[channel.code] = {"error": str(error)}
            continue
        objects_succeeded(flow=FLOW, object_refs=[f"{channel.code}:push"])
        for name in ("changed", "pushed", "pending", "held", "drift", "failed", "api_calls", "exceptions"):
            setattr(summary, name, getattr(summary, name) + outcome[name])
        summary.channels[channel.code] = outcome
    if counter:
        counter.add(examined=summary.examined)
    return summary


def _subtracted(readings: dict[str, Reading]) -> set[str]:
    """The statuses taken off what can be sold. A status the master reports with no rule is never guessed at: it
    is one exception, and the SKUs holding stock in it are left alone until a rule exists."""
    master = settings.STOCK_MASTER
    rules = stock_statuses(system=master)
    unknown = {
        status
        for reading in readings.values()
        for status, qty in reading.statuses.items()
        if qty and status.lower() not in rules
    }
    for status in sorted(unknown):
        failure_record(
            flow=FLOW,
            object_type="status",
            object_ref=f"{master}:{status}",
            error=MissingMapping(kind="stock_status", system=master, key={"status": status}),
            title=f"Stock in status {status!r} has no rule",
            system=master,
            context={"all": True},
        )
    known = {status.lower() for status, subtract in rules.items() if subtract}
    return known | {f"unknown:{status}" for status in unknown}


def _push_channel(
    channel: Channel,
    readings: dict[str, Reading],
    subtracted: set[str],
    *,
    full: bool,
    approve_zero_out: bool,
    deadline: float | None = None,
    targeted: bool = False,
) -> dict:
    outcome = dict.fromkeys(("changed", "pushed", "pending", "held", "drift", "failed", "api_calls", "exceptions"), 0)
    writer = WRITERS[channel.system](channel, deadline or time.monotonic() + settings.STOCK_PUSH_MAX_SECONDS)
    states = _states_for(channel, readings)
    blocked = {
        sku
        for sku, reading in readings.items()
        if any(f"unknown:{s}" in subtracted and q for s, q in reading.statuses.items())
    }
    _apply_readings(channel, states, readings, subtracted)
    if full:
        outcome["drift"] = writer.read_actual(states)
        _raise_stale(channel, states)
    candidates = [s for s in states.values() if s.sku not in blocked and s.needs_push]
    outcome["changed"] = len(candidates)
    candidates, held = _hold_zero_outs(channel, states, candidates, approve=approve_zero_out, targeted=targeted)
    outcome["held"] = len(held)
    candidates.sort(key=_risk)
    codes = writer.codes_for([s.sku for s in candidates])
    for state in candidates:
        if state.sku not in codes:
            _fail(channel, state, MissingMapping(kind="sku", system=channel.system, key={"centra_sku": state.sku}))
            outcome["exceptions"] += 1
    sendable = [s for s in candidates if s.sku in codes]
    accepted, refused = writer.write(sendable, codes)
    outcome["api_calls"] = writer.calls
    _acknowledge(accepted)
    for state, error in refused:
        _fail(channel, state, error)
    outcome["pushed"], outcome["failed"] = len(accepted), len(refused)
    outcome["pending"] = len(sendable) - len(accepted) - len(refused)
    outcome["exceptions"] += len(refused)
    _heal(channel, [state.sku for state, _ in accepted])
    return outcome


def _states_for(channel: Channel, readings: dict[str, Reading]) -> dict[str, StockState]:
    """The channel's state rows for every SKU read (and every bundle), created where missing. Looked up in chunks,
    so a catalogue of any size stays inside every database's limit on query parameters."""
    skus = list(dict.fromkeys([*readings, *(bundle.bundle_sku for bundle in _bundles())]))
    existing = _states_by_sku(channel, skus)
    missing = [StockState(channel=channel, sku=sku) for sku in skus if sku not in existing]
    if missing:
        StockState.objects.bulk_create(missing, batch_size=2000, ignore_conflicts=True)
        existing |= _states_by_sku(channel, [state.sku for state in missing])
    return existing


def _states_by_sku(channel: Channel, skus: list[str], chunk: int = 5000) -> dict[str, StockState]:
    found = {}
    for start in range(0, len(skus), chunk):
        found |= {s.sku: s for s in StockState.objects.filter(channel=channel, sku__in=skus[start : start + chunk])}
    return found


def _bundles() -> list[Bundle]:
    return list(Bundle.objects.prefetch_related("components"))


def _apply_readings(
    channel: Channel, states: dict[str, StockState], readings: dict[str, Reading], subtracted: set[str]
) -> None:
    """Record each reading (unless the state already holds a newer one) and compute ATS, bundles from components."""
    buffers = _buffers(channel)
    changed = []
    for sku, reading in readings.items():
        state = states[sku]
        if state.master_version and reading.version < state.master_version:
            continue  # an older reading arrived late: the newer one stands
        state.master_on_hand, state.master_statuses, state.master_version = (
            reading.on_hand,
            reading.statuses,
            reading.version,
        )
        state.product_number = reading.product_number or state.product_number
        state.ats = available_to_sell(
            on_hand=reading.on_hand,
            statuses=reading.statuses,
            subtracted=subtracted,
            buffer=buffers(sku, state.product_number),
        )
        changed.append(state)
    raw = {
        sku: available_to_sell(on_hand=r.on_hand, statuses=r.statuses, subtracted=subtracted)
        for sku, r in readings.items()
    }
    bundles = _bundles()
    # Components this run did not read (an event named only some SKUs) count with their last known figures.
    unread = {c.component_sku for b in bundles for c in b.components.all()} - set(raw)
    for known in StockState.objects.filter(channel=channel, sku__in=unread):
        raw[known.sku] = available_to_sell(
            on_hand=known.master_on_hand, statuses=known.master_statuses, subtracted=subtracted
        )
    for bundle in bundles:
        parts = [(raw.get(c.component_sku, 0), c.quantity) for c in bundle.components.all()]
        state = states[bundle.bundle_sku]
        rule = buffers(bundle.bundle_sku, "")
        state.ats = available_to_sell(on_hand=bundle_available(parts), statuses={}, subtracted=(), buffer=rule)
        state.master_version = max((r.version for r in readings.values()), default=state.master_version)
        changed.append(state)
    StockState.objects.bulk_update(
        changed, ["master_on_hand", "master_statuses", "master_version", "product_number", "ats"], batch_size=2000
    )


def _buffers(channel: Channel):
    """A look-up of the buffer rule for (sku, product number) on ``channel``: SKU, then product, then channel."""
    by_sku, by_product, default = {}, {}, Buffer()
    for rule in StockBuffer.objects.filter(channel=channel):
        buffer = Buffer(rule.buffer, rule.max_quantity, rule.zero_at_or_below)
        if rule.centra_sku:
            by_sku[rule.centra_sku.lower()] = buffer
        elif rule.product_number:
            by_product[rule.product_number.lower()] = buffer
        else:
            default = buffer

    def lookup(sku: str, product_number: str) -> Buffer:
        return by_sku.get(sku.lower()) or by_product.get((product_number or "").lower()) or default

    return lookup


def _hold_zero_outs(
    channel: Channel,
    states: dict[str, StockState],
    candidates: list[StockState],
    *,
    approve: bool,
    targeted: bool = False,
) -> tuple[list[StockState], list[StockState]]:
    zero_outs = [s for s in candidates if s.ats == 0 and (s.pushed_value or 0) > 0]
    selling = sum(1 for s in states.values() if (s.pushed_value or 0) > 0)
    ref = f"{channel.code}:zero-out"
    limit = max(settings.STOCK_ZERO_GUARD_MIN, settings.STOCK_ZERO_GUARD_SHARE * selling)
    if approve or len(zero_outs) <= limit:
        if not targeted:  # only a look at the whole catalogue can say a held zero-out is no longer pending
            objects_succeeded(flow=FLOW, object_refs=[ref], note="No unusual zero-out is pending.")
        return candidates, []
    failure_record(
        flow=FLOW,
        object_type="channel",
        object_ref=ref,
        kind_code="stock_push_held",
        error=DataError(
            f"{len(zero_outs)} of {selling} selling SKUs would go to zero at once",
            system=channel.system,
            operation="stock push",
        ),
        title=f"{len(zero_outs)} SKUs held at their stock on {channel.name}: approve to send zero",
        system=channel.system,
        context={"channel": channel.code, "skus": [s.sku for s in zero_outs], "approve_zero_out": True},
    )
    held = {s.sku for s in zero_outs}
    return [s for s in candidates if s.sku not in held], zero_outs


def _risk(state: StockState) -> tuple:
    """Oversell risk first: drops to zero, then other decreases, then increases; within each, the least cover
    (units per unit sold a day) first."""
    before = state.pushed_value or 0
    band = 0 if state.ats == 0 and before > 0 else 1 if state.ats < before else 2
    velocity = float(state.velocity) or 0.1
    return band, state.ats / velocity, state.sku


def _acknowledge(accepted: list[tuple[StockState, int]]) -> None:
    """Record what each channel accepted — only where no newer value was recorded meanwhile."""
    now = timezone.now()
    by_value: dict[tuple, list[int]] = defaultdict(list)
    for state, value in accepted:
        by_value[(value, state.master_version)].append(state.pk)
    for (value, version), all_ids in by_value.items():
        newer_not_there = Q(pushed_version__isnull=True) | Q(pushed_version__lte=version)
        for start in range(0, len(all_ids), 5000):
            ids = all_ids[start : start + 5000]
            StockState.objects.filter(pk__in=ids).filter(newer_not_there).update(
                pushed_value=value, pushed_version=version, acknowledged_at=now, channel_value=value, attempts=0
            )


def _fail(channel: Channel, state: StockState, error: BaseException) -> None:
    failure_record(
        flow=FLOW,
        object_type="sku",
        object_ref=f"{channel.code}:{state.sku}",
        error=error,
        title=f"{state.sku}: stock not updated on {channel.name}",
        system=channel.system,
        refs=[state.sku],
        context={"channel": channel.code, "skus": [state.sku]},
    )


def _heal(channel: Channel, skus: list[str]) -> None:
    """Resolve the exceptions of SKUs the channel has now accepted (asking only about those that have one)."""
    prefix = f"{channel.code}:"
    active = set(
        SyncException.objects.filter(flow=FLOW, object_ref__startswith=prefix, status__in=ACTIVE).values_list(
            "object_ref", flat=True
        )
    )
    healed = [ref for sku in skus for ref in (f"{prefix}{sku}", f"{prefix}{sku}:stale") if ref in active]
    if healed:
        objects_succeeded(flow=FLOW, object_refs=healed)


def _raise_stale(channel: Channel, states: dict[str, StockState]) -> None:
    cutoff = timezone.now() - timedelta(minutes=settings.STOCK_STALE_MINUTES)
    for state in states.values():
        if state.acknowledged_at and state.acknowledged_at < cutoff and state.needs_push:
            failure_record(
                flow=FLOW,
                object_type="sku",
                object_ref=f"{channel.code}:{state.sku}:stale",
                kind_code="stock_stale",
                error=DataError(
                    f"last confirmed {state.acknowledged_at:%Y-%m-%d %H:%M}",
                    system=channel.system,
                    operation="stock push",
                ),
                title=f"{state.sku} on {channel.name} not confirmed since {state.acknowledged_at:%d %b %H:%M}",
                system=channel.system,
                refs=[state.sku],
                context={"channel": channel.code, "skus": [state.sku]},
            )


# --- writers: one per kind of channel ----------------------------------------------------------------------------


class Writer:
    """Speaks one channel's stock API through its connector. A run stops writing when its time budget is spent
    (the riskiest changes went first); what is left stays pending for the next run."""

    system = ""

    def __init__(self, channel: Channel, deadline: float) -> None:
        self.channel = channel
        self.calls = 0
        self.deadline = deadline

    @property
    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline

    def codes_for(self, skus: list[str]) -> dict[str, str]:
        """{centra sku: the channel's code} for the SKUs the channel knows; the rest are unmapped."""
        return skus_mapped(system=self.system, centra_skus=skus)

    def write(self, states: list[StockState], codes: dict[str, str]):
        """Send each state's ATS; returns ([(state, value accepted)], [(state, error)])."""
        raise NotImplementedError

    def read_actual(self, states: dict[str, StockState]) -> int:
        """Record what the channel shows now; mark drifted pairs for a push. Returns how many drifted."""
        raise NotImplementedError

    def _drifted(self, states: dict[str, StockState], actual: dict[str, int]) -> int:
        drifted = []
        for sku, value in actual.items():
            state = states.get(sku)
            if state is None:
                continue
            state.channel_value = value
            if state.pushed_value is not None and value != state.pushed_value:
                state.pushed_value = None  # push it again: the channel no longer shows what we sent
                drifted.append(state)
        StockState.objects.bulk_update(list(states.values()), ["channel_value", "pushed_value"], batch_size=2000)
        return len(drifted)


class CentraWriter(Writer):
    system = System.CENTRA

    def codes_for(self, skus: list[str]) -> dict[str, str]:
        return {sku: sku for sku in skus}  # Centra's SKUs are the keys

    def _sizes(self, skus: list[str]):
        self.calls += (len(skus) + 199) // 200
        return connections.centra().sizes_by_sku(skus, warehouse_id=settings.STOCK_CENTRA_WAREHOUSE_ID)

    def write(self, states, codes):
        sizes = self._sizes([s.sku for s in states]) if states else {}
        accepted, refused = [], []
        known = [s for s in states if s.sku in sizes]
        refused += [
            (s, MissingMapping(kind="sku", system="centra", key={"centra_sku": s.sku}))
            for s in states
            if s.sku not in sizes
        ]
        for start in range(0, len(known), CENTRA_SIZES_PER_MUTATION):
            if self.out_of_time:
                break
            batch = known[start : start + CENTRA_SIZES_PER_MUTATION]
            # Centra's own unshipped orders are allocated from the same stock: add them back, so what Centra
            # has free to allocate is exactly what the channel may sell.
            levels = [
                StockLevel(sizes[s.sku].variant_id, sizes[s.sku].size_name, s.ats + sizes[s.sku].allocated)
                for s in batch
            ]
            self.calls += 1
            try:
                connections.centra().set_stock(
                    warehouse_id=settings.STOCK_CENTRA_WAREHOUSE_ID, levels=levels, description="Switchyard stock sync"
                )
            except DataError as error:
                refused += [(s, error) for s in batch]
                continue
            accepted += [(s, s.ats) for s in batch]
        return accepted, refused

    def read_actual(self, states):
        sizes = self._sizes(list(states))
        return self._drifted(states, {sku: size.free_to_allocate for sku, size in sizes.items()})


class VirtualstockWriter(Writer):
    system = System.VIRTUALSTOCK

    def _product_ids(self, states: list[StockState], codes: dict[str, str]) -> dict[str, int]:
        """Virtualstock addresses stock by product id: learnt once per SKU and kept on the state."""
        client = connections.virtualstock()
        unknown = [s for s in states if not s.external_id]
        if len(unknown) > 50:  # cheaper to walk the catalogue (1,000 a call) than to ask one by one
            by_code = {}
            for product in client.products():
                by_code[product.part_number] = product.id
            self.calls += len(by_code) // 100 + 1
            for state in unknown:
                state.external_id = str(by_code.get(codes.get(state.sku, ""), "") or "")
        else:
            for state in unknown:
                self.calls += 1
                found = next(iter(client.products(part_number=codes[state.sku])), None)
                state.external_id = str(found.id) if found else ""
        if unknown:
            StockState.objects.bulk_update(unknown, ["external_id"], batch_size=2000)
        return {s.sku: int(s.external_id) for s in states if s.external_id}

    def write(self, states, codes):
        ids = self._product_ids(states, codes)
        client = connections.virtualstock()
        accepted, refused = [], []
        for state in states:
            if self.out_of_time:
                break  # one product a call at 250 a minute: the rest waits for the next run
            if state.sku not in ids:
                refused.append((state, MissingMapping(kind="sku", system=self.system, key={"code": codes[state.sku]})))
                continue
            self.calls += 1
            try:
                client.set_stock(ids[state.sku], state.ats)
            except DataError as error:
                refused.append((state, error))
            else:
                accepted.append((state, state.ats))
        return accepted, refused

    def read_actual(self, states):
        codes = self.codes_for(list(states))
        by_code = {code: sku for sku, code in codes.items()}
        actual = {}
        for product in connections.virtualstock().products():
            sku = by_code.get(product.part_number)
            if sku and product.free_stock is not None:
                actual[sku] = product.free_stock
                if not states[sku].external_id:
                    states[sku].external_id = str(product.id)
        self.calls += len(actual) // 100 + 1
        StockState.objects.bulk_update(list(states.values()), ["external_id"], batch_size=2000)
        return self._drifted(states, actual)


class MarketplaceWriter(Writer):
    system = System.MARKETPLACE

    def write(self, states, codes):
        client = connections.marketplace()
        updates = [
            StockUpdate(sku=codes[s.sku], quantity=s.ats, updated_at=s.master_version or timezone.now()) for s in states
        ]
        self.calls += (len(updates) + 499) // 500
        results = client.update_stock(updates) if updates else []
        accepted, refused = [], []
        for state, result in zip(states, results, strict=True):
            if result.status == "UPDATED":
                accepted.append((state, state.ats))
            elif result.status == "STALE":
                continue  # the marketplace holds a newer figure: ours is not sent over it
            else:
                error_class = MissingMapping if result.error_code == "UNKNOWN_SKU" else DataError
                if error_class is MissingMapping:
                    refused.append(
                        (state, MissingMapping(kind="sku", system=self.system, key={"code": codes[state.sku]}))
                    )
                else:
                    refused.append(
                        (
                            state,
                            DataError(
                                result.message or result.error_code or "refused",
                                system=self.system,
                                operation="stock_update",
                            ),
                        )
                    )
        return accepted, refused

    def read_actual(self, states):
        codes = self.codes_for(list(states))
        by_code = {code: sku for sku, code in codes.items()}
        actual = {
            by_code[offer.sku]: offer.quantity for offer in connections.marketplace().offers() if offer.sku in by_code
        }
        self.calls += len(actual) // 500 + 1
        return self._drifted(states, actual)


WRITERS = {System.CENTRA: CentraWriter, System.VIRTUALSTOCK: VirtualstockWriter, System.MARKETPLACE: MarketplaceWriter}


def retry(exception) -> None:
    """Re-push what the exception is about (the queue calls this); a held zero-out is sent as approved. Raises
    AlreadyRecorded when the item still does not go through (the run has recorded why)."""
    started = timezone.now()
    context = exception.context
    stock_push_run(
        channel_code=context.get("channel"),
        skus=context.get("skus"),
        approve_zero_out=bool(context.get("approve_zero_out")),
    )
    if SyncException.objects.filter(pk=exception.pk, last_seen__gte=started).exists():
        raise AlreadyRecorded  # the run met the same failure again
    if context.get("channel") and context.get("skus") and not context.get("approve_zero_out"):
        unconfirmed = StockState.objects.filter(channel__code=context["channel"], sku__in=context["skus"]).exclude(
            pushed_value=F("ats")
        )
        if unconfirmed.exists():
            raise AlreadyRecorded  # not confirmed by the channel yet (it may be down): try again later


register_retry_handler(FLOW, retry)


def velocity_refresh() -> int:
    """Take each SKU's sales velocity (units a day) from Inventory Planner's forecast, for the risk order.
    Returns how many SKU × channel states changed."""
    velocities = {
        variant.sku: variant.velocity_per_day
        for variant in connections.inventory_planner().variants()
        if variant.velocity_per_day is not None
    }
    changed = []
    for state in StockState.objects.only("id", "sku", "velocity").iterator(chunk_size=5000):
        if state.sku not in velocities:
            continue
        velocity = velocities[state.sku].quantize(Decimal("0.001"))
        if state.velocity != velocity:
            state.velocity = velocity
            changed.append(state)
    StockState.objects.bulk_update(changed, ["velocity"], batch_size=2000)
    return len(changed)


def stock_reconcile_if_due() -> bool:
    """Run the full reconcile when the last one is older than STOCK_FULL_RECONCILE_MINUTES. Returns whether it ran."""
    from syncs.models import SyncRun
    from syncs.runs import flow_running, run_flow

    last = (
        SyncRun.objects.filter(flow=FLOW, summary__full=True, status=SyncRun.Status.SUCCEEDED)
        .order_by("-started_at")
        .values_list("started_at", flat=True)
        .first()
    )
    if last and timezone.now() - last < timedelta(minutes=settings.STOCK_FULL_RECONCILE_MINUTES):
        return False
    if flow_running(FLOW):
        return False
    run_flow(flow=FLOW, action=functools.partial(stock_push_run, full=True), trigger="schedule")
    return True
