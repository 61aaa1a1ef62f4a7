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

A full run holds a channel's whole catalogue at once (100,000 SKUs, say), so it reads the channel's state rows in
one query as plain ``StateRow`` values rather than model instances, and writes back only the rows that changed — on
PostgreSQL one ``UPDATE … FROM unnest(…)`` per 5,000 rows; rows whose figures a newer reading left as they were
only have their master version moved, in one guarded UPDATE. ``api_calls`` counts every HTTP request the run sent.
"""

import functools
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS
from django.db import connections as databases
from django.db.models import F, Q
from django.utils import timezone

from exceptions.models import ACTIVE, SyncException
from exceptions.registry import AlreadyRecorded, register_retry_handler
from exceptions.services import failure_record, objects_succeeded
from mappings.models import Bundle, Channel, System
from mappings.services import MissingMapping, skus_mapped, stock_statuses
from syncs import connections
from syncs.connectors import centra, virtualstock
from syncs.connectors.centra import SizeStock, StockLevel
from syncs.connectors.errors import ConnectorError, DataError
from syncs.connectors.http import calls_counted
from syncs.connectors.marketplace import MAX_OFFER_PAGE, StockUpdate
from syncs.links import advisory_lock
from syncs.models import StockState
from syncs.stock.ats import available_to_sell, bundle_available
from syncs.stock.in_flight import STATUS as IN_FLIGHT
from syncs.stock.in_flight import units_in_flight
from syncs.stock.rules import buffer_lookup, statuses_without_rule, subtracted_statuses

FLOW = "stock_push"
logger = logging.getLogger("switchyard.stock")
CENTRA_SIZES_PER_MUTATION = 200
ROWS_PER_STATEMENT = 5000  # state rows read or written per SQL statement
VERIFY_MOST_SKUS = 2000  # a verification of more SKUs reads the whole channel instead
COUNTS = ("changed", "pushed", "pending", "held", "drift", "failed", "api_calls", "exceptions")


@dataclass(frozen=True, slots=True)
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


@dataclass(slots=True)
class StateRow:
    """One SKU on one channel as a run works on it: the figures of its StockState row, without a model instance."""

    id: int
    sku: str
    product_number: str
    master_on_hand: int
    master_statuses: dict
    master_version: datetime | None
    ats: int
    pushed_value: int | None
    pushed_version: datetime | None
    acknowledged_at: datetime | None
    channel_value: int | None
    external_id: str
    velocity: Decimal

    @property
    def needs_push(self) -> bool:
        return self.pushed_value != self.ats


STATE_COLUMNS = tuple(StateRow.__dataclass_fields__)


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
    # Units sold and seen here but not yet recorded by the master count as sold (syncs.stock.in_flight).
    for sku, units in units_in_flight(skus).items():
        if sku in readings:
            readings[sku].statuses[IN_FLIGHT] = units
    return readings


def push_channels(channel_code: str | None = None) -> list[Channel]:
    """The channels stock is pushed to: every active one but the master itself."""
    channels = Channel.objects.filter(active=True).exclude(system=settings.STOCK_MASTER)
    if channel_code:
        channels = channels.filter(code=channel_code)
    return list(channels.order_by("code"))


def channel_lock(channel: Channel):
    """One stock push per channel at a time, across every worker on every machine: a run holding an older reading
    then finds the newer one already recorded, and leaves it alone."""
    return advisory_lock(0x53544F434B000000 + channel.pk)  # "STOCK" and the channel


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
    actual stock and repairs drift. Returns the counts — ``api_calls`` is every HTTP request the run sent, the
    stock master's included, and each channel's own are under ``channels``; failures are exceptions, never raised,
    except a stock master that cannot be read at all."""
    summary = PushSummary(full=full and skus is None)  # a check of some SKUs is no full reconcile
    deadline = time.monotonic() + settings.STOCK_PUSH_MAX_SECONDS
    with calls_counted() as calls:
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
            for name in COUNTS:
                if name != "api_calls":  # counted for the whole run below: the master's and failed channels' too
                    setattr(summary, name, getattr(summary, name) + outcome[name])
            summary.channels[channel.code] = outcome
    summary.api_calls = calls.calls
    if counter:
        counter.add(examined=summary.examined)
    return summary


def _subtracted(readings: dict[str, Reading]) -> set[str]:
    """The statuses taken off what can be sold. A status the master reports with no rule is never guessed at: it
    is one exception, and the SKUs holding stock in it are left alone until a rule exists."""
    master = settings.STOCK_MASTER
    rules = stock_statuses(system=master)
    unknown = {status for reading in readings.values() for status in statuses_without_rule(reading.statuses, rules)}
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
    return subtracted_statuses(rules) | {f"unknown:{status}" for status in unknown}


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
    outcome = dict.fromkeys(COUNTS, 0)
    with calls_counted() as calls:
        writer = WRITERS[channel.system](
            channel,
            deadline or time.monotonic() + settings.STOCK_PUSH_MAX_SECONDS,
            catalogue=0 if targeted else len(readings),
        )
        states = _states_for(channel, readings, whole_catalogue=not targeted)
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
        resent = writer.session.retried_after_reaching
        accepted, refused = writer.write(sendable, codes)
        resent = writer.session.retried_after_reaching > resent
    outcome["api_calls"] = calls.calls
    _acknowledge(accepted)
    if resent and sendable:
        # What was sent, taken or not: an attempt that timed out may land after whatever is sent next.
        stock_verify_later(channel, [state.sku for state in sendable])
    for state, error in refused:
        _fail(channel, state, error)
    outcome["pushed"], outcome["failed"] = len(accepted), len(refused)
    outcome["pending"] = len(sendable) - len(accepted) - len(refused)
    outcome["exceptions"] += len(refused)
    _heal(channel, [state.sku for state, _ in accepted])
    return outcome


def stock_verify_later(channel: Channel, skus: list[str]) -> None:
    """A write to the channel was sent again after an attempt that may have reached it: that attempt can still land
    after a newer figure and show an older one. Read these SKUs back from the channel STOCK_VERIFY_AFTER_SECONDS
    from now (past the hang) and push again any that drifted — the whole channel when they are many."""
    from django_q.models import Schedule

    skus = sorted(set(skus))
    arguments = (channel.code, skus if len(skus) <= VERIFY_MOST_SKUS else None)
    Schedule.objects.create(
        name=f"stock: verify {channel.code} after a resent write ({len(skus)} SKUs, {timezone.now():%H:%M:%S})",
        func="syncs.tasks.stock_verify",
        args=repr(arguments)[1:-1],
        schedule_type=Schedule.ONCE,
        repeats=-1,  # removed once it has fired
        next_run=timezone.now() + timedelta(seconds=settings.STOCK_VERIFY_AFTER_SECONDS),
    )


def _states_for(channel: Channel, readings: dict[str, Reading], *, whole_catalogue: bool) -> dict[str, StateRow]:
    """The channel's state rows for every SKU read (and every bundle), created where missing. For the whole
    catalogue, all the channel's rows in one query; for some SKUs, looked up 5,000 at a time, so any number stays
    inside every database's limit on query parameters."""
    skus = list(dict.fromkeys([*readings, *(bundle.bundle_sku for bundle in _bundles())]))
    if whole_catalogue:
        wanted = set(skus)
        every_row = _state_rows(StockState.objects.filter(channel=channel))
        existing = {row.sku: row for row in every_row if row.sku in wanted}
    else:
        existing = _states_by_sku(channel, skus)
    missing = [sku for sku in skus if sku not in existing]
    for start in range(0, len(missing), ROWS_PER_STATEMENT):
        chunk = missing[start : start + ROWS_PER_STATEMENT]
        StockState.objects.bulk_create(
            [StockState(channel=channel, sku=sku) for sku in chunk], batch_size=1000, ignore_conflicts=True
        )
        existing |= _states_by_sku(channel, chunk)
    return existing


def _states_by_sku(channel: Channel, skus: list[str]) -> dict[str, StateRow]:
    found = {}
    for start in range(0, len(skus), ROWS_PER_STATEMENT):
        rows = StockState.objects.filter(channel=channel, sku__in=skus[start : start + ROWS_PER_STATEMENT])
        found |= {row.sku: row for row in _state_rows(rows)}
    return found


def _state_rows(queryset) -> Iterator[StateRow]:
    """The rows of ``queryset`` as StateRow values, streamed from the database 5,000 at a time."""
    for values in queryset.values_list(*STATE_COLUMNS).iterator(chunk_size=ROWS_PER_STATEMENT):
        yield StateRow(*values)


def _bundles() -> list[Bundle]:
    return list(Bundle.objects.prefetch_related("components"))


def _apply_readings(
    channel: Channel, states: dict[str, StateRow], readings: dict[str, Reading], subtracted: set[str]
) -> None:
    """Record each reading (unless the state already holds a newer one) and compute ATS, bundles from components.
    Writes the rows whose figures changed; of the others, only the master version moves."""
    buffers = buffer_lookup(channel)
    changed, unchanged = [], []

    def record(state: StateRow, version: datetime | None, figures: tuple) -> None:
        """``figures`` are (on hand, statuses, product number, ATS) as read at ``version``."""
        if figures != (state.master_on_hand, state.master_statuses, state.product_number, state.ats):
            state.master_on_hand, state.master_statuses, state.product_number, state.ats = figures
            state.master_version = version
            changed.append(state)
        elif version != state.master_version:
            state.master_version = version
            unchanged.append(state)

    for sku, reading in readings.items():
        state = states[sku]
        if state.master_version and reading.version < state.master_version:
            continue  # an older reading arrived late: the newer one stands
        product_number = reading.product_number or state.product_number
        ats = available_to_sell(
            on_hand=reading.on_hand,
            statuses=reading.statuses,
            subtracted=subtracted,
            buffer=buffers(sku, product_number),
        )
        record(state, reading.version, (reading.on_hand, reading.statuses, product_number, ats))
    bundles = _bundles()
    if bundles:
        components = {c.component_sku for b in bundles for c in b.components.all()}
        raw = {
            sku: available_to_sell(on_hand=reading.on_hand, statuses=reading.statuses, subtracted=subtracted)
            for sku, reading in readings.items()
            if sku in components
        }
        # Components this run did not read (an event named only some SKUs) count with their last known figures.
        unread = StockState.objects.filter(channel=channel, sku__in=components - set(raw))
        for sku, on_hand, statuses in unread.values_list("sku", "master_on_hand", "master_statuses"):
            raw[sku] = available_to_sell(on_hand=on_hand, statuses=statuses, subtracted=subtracted)
        newest = max((reading.version for reading in readings.values()), default=None)
        for bundle in bundles:
            parts = [(raw.get(c.component_sku, 0), c.quantity) for c in bundle.components.all()]
            state = states[bundle.bundle_sku]
            rule = buffers(bundle.bundle_sku, "")
            ats = available_to_sell(on_hand=bundle_available(parts), statuses={}, subtracted=(), buffer=rule)
            version = max((v for v in (newest, state.master_version) if v), default=None)
            record(state, version, (state.master_on_hand, state.master_statuses, state.product_number, ats))
    _states_save(changed, ["master_on_hand", "master_statuses", "master_version", "product_number", "ats"])
    _versions_move(unchanged)


def _hold_zero_outs(
    channel: Channel,
    states: dict[str, StateRow],
    candidates: list[StateRow],
    *,
    approve: bool,
    targeted: bool = False,
) -> tuple[list[StateRow], list[StateRow]]:
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


def _risk(state: StateRow | StockState) -> tuple:
    """Oversell risk first: drops to zero, then other decreases, then increases; within each, the least cover
    (units per unit sold a day) first."""
    before = state.pushed_value or 0
    band = 0 if state.ats == 0 and before > 0 else 1 if state.ats < before else 2
    velocity = float(state.velocity) or 0.1
    return band, state.ats / velocity, state.sku


def _fail(channel: Channel, state: StateRow, error: BaseException) -> None:
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


def _raise_stale(channel: Channel, states: dict[str, StateRow]) -> None:
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


# --- writing state rows -------------------------------------------------------------------------------------------
# Only rows whose figures changed are written. PostgreSQL takes them as arrays, one column each, in one
# UPDATE … FROM unnest(…) per 5,000 rows; other databases (SQLite, the embedded default) through bulk_update.


def _states_save(rows: list[StateRow], fields: list[str], *, using: str = DEFAULT_DB_ALIAS) -> None:
    """Write ``fields`` of each row to its StockState row."""
    database = databases[using]
    if database.vendor != "postgresql":
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            chunk = rows[start : start + ROWS_PER_STATEMENT]
            instances = [StockState(id=row.id, **{name: getattr(row, name) for name in fields}) for row in chunk]
            StockState.objects.using(using).bulk_update(instances, fields, batch_size=500)
        return
    columns = [StockState._meta.get_field(name) for name in ["id", *fields]]
    assignments = ", ".join(f"{column.column} = v.{column.column}" for column in columns[1:])
    typed_arrays = ", ".join(f"%s::{column.cast_db_type(database)}[]" for column in columns)
    names = ", ".join(column.column for column in columns)
    sql = (
        f"UPDATE {StockState._meta.db_table} AS s SET {assignments} "
        f"FROM unnest({typed_arrays}) AS v({names}) WHERE s.id = v.id"
    )
    with database.cursor() as cursor:
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            chunk = rows[start : start + ROWS_PER_STATEMENT]
            values = [
                [column.get_db_prep_save(getattr(row, column.attname), database) for row in chunk] for column in columns
            ]
            cursor.execute(sql, values)


def _versions_move(rows: list[StateRow], *, using: str = DEFAULT_DB_ALIAS) -> None:
    """Record the master version of rows whose figures a newer reading left as they were (each row's
    ``master_version``): one UPDATE per version, guarded so that a row a yet newer reading reached meanwhile keeps
    its own."""
    by_version: dict[datetime, list[int]] = defaultdict(list)
    for row in rows:
        by_version[row.master_version].append(row.id)
    database = databases[using]
    for version, ids in by_version.items():
        if database.vendor == "postgresql":
            with database.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {StockState._meta.db_table} SET master_version = %s "
                    "WHERE id = ANY(%s) AND (master_version IS NULL OR master_version < %s)",
                    [version, ids, version],
                )
            continue
        older = Q(master_version__isnull=True) | Q(master_version__lt=version)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            StockState.objects.using(using).filter(older, pk__in=chunk).update(master_version=version)


def _acknowledge(accepted: list[tuple[StateRow, int]], *, using: str = DEFAULT_DB_ALIAS) -> None:
    """Record what each channel accepted, as pushed at the row's master version — only where no newer push was
    recorded meanwhile, so the late answer to an older push never marks a newer value as the channel's."""
    now = timezone.now()
    database = databases[using]
    if database.vendor == "postgresql":
        sql = (
            f"UPDATE {StockState._meta.db_table} AS s SET pushed_value = v.value, pushed_version = v.version, "
            "acknowledged_at = %s, channel_value = v.value, attempts = 0 "
            "FROM unnest(%s::bigint[], %s::integer[], %s::timestamp with time zone[]) AS v(id, value, version) "
            "WHERE s.id = v.id AND (s.pushed_version IS NULL OR s.pushed_version <= v.version)"
        )
        with database.cursor() as cursor:
            for start in range(0, len(accepted), ROWS_PER_STATEMENT):
                chunk = accepted[start : start + ROWS_PER_STATEMENT]
                ids, values, versions = zip(*((row.id, value, row.master_version) for row, value in chunk), strict=True)
                cursor.execute(sql, [now, list(ids), list(values), list(versions)])
        return
    by_value: dict[tuple, list[int]] = defaultdict(list)
    for row, value in accepted:
        by_value[(value, row.master_version)].append(row.id)
    for (value, version), all_ids in by_value.items():
        newer_not_there = Q(pushed_version__isnull=True) | Q(pushed_version__lte=version)
        for start in range(0, len(all_ids), 500):
            ids = all_ids[start : start + 500]
            StockState.objects.using(using).filter(newer_not_there, pk__in=ids).update(
                pushed_value=value, pushed_version=version, acknowledged_at=now, channel_value=value, attempts=0
            )


# --- writers: one per kind of channel ----------------------------------------------------------------------------


class Writer:
    """Speaks one channel's stock API through its connector. A run stops writing when its time budget is spent
    (the riskiest changes went first); what is left stays pending for the next run. ``catalogue`` is how many
    SKUs the run covers when it covers the whole catalogue (0 for a run about some SKUs)."""

    system = ""

    def __init__(self, channel: Channel, deadline: float, *, catalogue: int = 0) -> None:
        self.channel = channel
        self.deadline = deadline
        self.catalogue = catalogue

    @property
    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline

    @property
    def session(self):
        """The channel's connector session (it counts the calls sent again after a timeout)."""
        return connections.CLIENTS[self.system]().session

    def codes_for(self, skus: list[str]) -> dict[str, str]:
        """{centra sku: the channel's code} for the SKUs the channel knows; the rest are unmapped."""
        return skus_mapped(system=self.system, centra_skus=skus)

    def write(self, states: list[StateRow], codes: dict[str, str]):
        """Send each state's ATS; returns ([(state, value accepted)], [(state, error)])."""
        raise NotImplementedError

    def read_actual(self, states: dict[str, StateRow]) -> int:
        """Record what the channel shows now; mark drifted pairs for a push. Returns how many drifted."""
        raise NotImplementedError

    def _record_actual(self, states: dict[str, StateRow], shown: Iterable[tuple[str, int]]) -> int:
        """Record what the channel shows, (sku, quantity) by (sku, quantity); a pair that no longer shows what we
        pushed is pushed again. Writes the rows that changed; returns how many drifted."""
        changed, drifted = [], 0
        for sku, value in shown:
            state = states.get(sku)
            if state is None:
                continue
            drift = state.pushed_value is not None and value != state.pushed_value
            if value == state.channel_value and not drift:
                continue
            state.channel_value = value
            if drift:
                state.pushed_value = None  # push it again: the channel no longer shows what we sent
                drifted += 1
            changed.append(state)
        _states_save(changed, ["channel_value", "pushed_value"])
        return drifted


class CentraWriter(Writer):
    system = System.CENTRA

    def __init__(self, channel: Channel, deadline: float, *, catalogue: int = 0) -> None:
        super().__init__(channel, deadline, catalogue=catalogue)
        # Sizes a full run read with the channel's stock and will push: writing them asks Centra nothing more.
        self.sizes: dict[str, SizeStock] = {}

    def codes_for(self, skus: list[str]) -> dict[str, str]:
        return {sku: sku for sku in skus}  # Centra's SKUs are the keys

    def _listing(self) -> Iterable[SizeStock]:
        """Every size with its stock in the channel's warehouse: 200 products, each with all its sizes, a query."""
        return connections.centra().sizes(warehouse_id=settings.STOCK_CENTRA_WAREHOUSE_ID, page_size=centra.MAX_PAGE)

    def _sizes_for(self, skus: list[str]) -> dict[str, SizeStock]:
        """The sizes of ``skus`` (variant, name, what Centra has allocated), in the fewest queries: 200 SKUs a
        query or, asked about most of the catalogue, the listing of every product (a product has several sizes,
        so that takes fewer). SKUs Centra does not have are left out."""
        found = {sku: self.sizes[sku] for sku in skus if sku in self.sizes}
        wanted = [sku for sku in skus if sku not in found]
        if self.catalogue and len(wanted) * 2 > self.catalogue:
            asked = set(wanted)
            found |= {size.sku: size for size in self._listing() if size.sku in asked}
        elif wanted:
            found |= connections.centra().sizes_by_sku(wanted, warehouse_id=settings.STOCK_CENTRA_WAREHOUSE_ID)
        return found

    def write(self, states, codes):
        sizes = self._sizes_for([s.sku for s in states]) if states else {}
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
        def shown():
            for size in self._listing():
                state = states.get(size.sku)
                if state is None:
                    continue
                if state.needs_push or state.pushed_value != size.free_to_allocate:  # drifted: pushed again
                    self.sizes[size.sku] = size
                yield size.sku, size.free_to_allocate

        return self._record_actual(states, shown())


class VirtualstockWriter(Writer):
    system = System.VIRTUALSTOCK

    def _product_ids(self, states: list[StateRow], codes: dict[str, str]) -> dict[str, int]:
        """Virtualstock addresses stock by product id: learnt once per SKU and kept on the state."""
        client = connections.virtualstock()
        unknown = [s for s in states if not s.external_id]
        if len(unknown) > 50:  # cheaper to walk the catalogue (1,000 a call) than to ask one by one
            by_code = {codes[state.sku]: state for state in unknown}
            for product in client.products(page_size=virtualstock.MAX_PAGE):
                state = by_code.get(product.part_number)
                if state is not None and not state.external_id:
                    state.external_id = str(product.id)
        else:
            for state in unknown:
                found = next(iter(client.products(part_number=codes[state.sku])), None)
                state.external_id = str(found.id) if found else ""
        _states_save([s for s in unknown if s.external_id], ["external_id"])
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
            try:
                client.set_stock(ids[state.sku], state.ats)
            except DataError as error:
                refused.append((state, error))
            else:
                accepted.append((state, state.ats))
        return accepted, refused

    def read_actual(self, states):
        by_code = {code: sku for sku, code in self.codes_for(list(states)).items()}
        learnt = []

        def shown():
            for product in connections.virtualstock().products(page_size=virtualstock.MAX_PAGE):
                sku = by_code.get(product.part_number)
                if sku is None:
                    continue
                if not states[sku].external_id:
                    states[sku].external_id = str(product.id)
                    learnt.append(states[sku])
                if product.free_stock is not None:
                    yield sku, product.free_stock

        drifted = self._record_actual(states, shown())
        _states_save(learnt, ["external_id"])
        return drifted


class MarketplaceWriter(Writer):
    system = System.MARKETPLACE

    def write(self, states, codes):
        client = connections.marketplace()
        updates = [
            StockUpdate(sku=codes[s.sku], quantity=s.ats, updated_at=s.master_version or timezone.now()) for s in states
        ]
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
        by_code = {code: sku for sku, code in self.codes_for(list(states)).items()}
        offers = connections.marketplace().offers(page_size=MAX_OFFER_PAGE)
        return self._record_actual(states, ((by_code[o.sku], o.quantity) for o in offers if o.sku in by_code))


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
