"""Returns and refunds: a return in Centra → a credit in Fulfil; the warehouse's inspection → stock back for sale.

Two steps, each recorded on the return's link as it is done, so a retry resumes where it stopped:

1. **Credit.** Every Centra return, partial ones included, becomes a credit in Fulfil against the order's sale,
   exact to the minor unit: each returned line at the value Centra refunds for it, shipping and handling given
   back, the return cost and any discount kept as charges. The parts are Centra's own figures, checked to add up to
   Centra's total and never recalculated; the credit's total in Fulfil is checked against it before it is
   confirmed. Confirming it makes the return shipment the warehouse receives against. A return of a marketplace
   order is reported to the marketplace, once. A failure here is finance's ``refund_not_posted``.
2. **Stock back.** Only once the warehouse has received and inspected the goods — Fulfil's return shipment is
   ``done`` — do the units it took back go in at the stock master, and a stock push for those SKUs follows. With
   Fulfil as the master the done return shipment is itself the stock-in; with Centra the units are delivered into
   Centra's warehouse (unless Centra put them back itself); Inventory Planner takes its stock from those systems.
   A failure here is operations' ``return_stock_in_failed``.

**Reading Centra.** Each run reads the returns created since the newest one the last successful run read (less
an overlap, so a return Centra wrote while that run read is not missed) — Centra's returns filter has ``createdAt``
and no time of change — and then, by id and never by paging through every return, the returns Switchyard has not
finished with (credited, the warehouse's inspection awaited). A retry from the queue asks Centra for its one return.

**In chunks.** A run takes the returns a hundred at a time: Fulfil is asked once per chunk for each thing it must
do — find the credits an earlier attempt made, create the missing ones (one create of many records), read their
totals, quote and confirm them (each button over every id), read the warehouse's work — and the links are noted in
one transaction per step. The one-return path (``return_sync_one``), which the exception queue's retry and the
webhooks use, stays as it is: a return the chunk cannot take with the others (cancelled, its order held by another
worker) goes that way, and when a batched call fails, the returns it was for go that way one by one, so a bad return
fails alone and the others go through.

**A return cancelled in Centra.** Nothing is posted for it, and nothing more is done with it. When its credit is
already in Fulfil, the credit is cancelled there while Fulfil still allows it (draft, quotation, confirmed: no
return shipment yet). Once the credit is processing — its return shipment made, perhaps received — only a person can
take it back, so finance gets one ``refund_not_posted`` exception naming the credit, its amount and what happened to
the goods; so they do when the marketplace was already told of the return. The money is never left silently wrong:
a return Centra no longer has at all is handled the same way. The exception's retry checks again, and goes through
once the credit is cancelled in Fulfil.
"""

import contextlib
from collections import Counter
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from django.conf import settings
from django.utils import timezone

from exceptions.registry import register_retry_handler
from exceptions.services import failure_record, object_succeeded, objects_succeeded
from mappings.models import System
from mappings.money import is_exact, minor_unit
from mappings.services import MissingMapping, centra_sku_for, centra_skus_mapped, skus_for, skus_mapped
from syncs import connections
from syncs.connectors import marketplace as mp
from syncs.connectors.centra import Return, StockLevel
from syncs.connectors.errors import DataError, RateLimited, may_have_landed
from syncs.connectors.fulfil import WORKING_STATES, CreditDraft, CreditLine, Shipment
from syncs.flows.stock_push import stock_push_run
from syncs.links import link_note, link_step_done, links_made, links_note_each, order_lock, order_locks_held
from syncs.models import Link
from syncs.runs import RunCounter, last_summary, latest, moment

FLOW = "return_sync"
MARKETPLACE_RETURN_REASON = "UNKNOWN"  # Centra's return carries no reason the marketplace's codes could name
# Each run reads again the returns created in the last half hour before its cursor: a return Centra was writing while
# the last run read is not missed. Reading a return already taken care of costs nothing.
CURSOR_OVERLAP = timedelta(minutes=30)
CREDIT_CANCELLABLE = ("draft", "quotation", "confirmed")  # no return shipment yet: Fulfil lets the credit go
# A run takes the returns in chunks: one call per system and a few queries serve a whole chunk.
CHUNK = 100

CREDITED, AWAITING_WAREHOUSE, STOCKED_IN, CANCELLED, ALREADY_SYNCED, NOT_OURS = (
    "credited",
    "awaiting the warehouse",
    "stocked in",
    "cancelled",
    "already synced",
    "not ours",
)


@dataclass
class ReturnSummary:
    examined: int = 0
    credited: int = 0
    awaiting_warehouse: int = 0  # credited; the warehouse has not finished inspecting the goods yet
    stocked_in: int = 0
    cancelled: int = 0  # cancelled in Centra; a credit already posted was cancelled in Fulfil too
    already_synced: int = 0
    skipped: int = 0  # returns of orders Switchyard did not handle
    failed: int = 0
    exception_ids: list[int] = field(default_factory=list)
    cursor: str | None = None  # the newest return's creation read: where the next run starts, less the overlap


class RefundNotPosted(DataError):
    """The credit for a Centra refund could not be posted in Fulfil exactly."""

    exception_kind = "refund_not_posted"


class CreditOfCancelledReturn(RefundNotPosted):
    """Centra cancelled a return whose credit Fulfil has already posted, and only a person can take it back."""


class StockInFailed(DataError):
    """Inspected returned units could not be put back at the stock master."""

    exception_kind = "return_stock_in_failed"


# While a run goes, returns put back in stock wait here for one stock push at its end.
_PUSH_BATCH: ContextVar[list | None] = ContextVar("return_sync_push_batch", default=None)


def object_ref(return_id: int) -> str:
    return f"centra:return:{return_id}"


# --- the run ------------------------------------------------------------------------------------------------------


def return_sync_run(*, counter: RunCounter | None = None) -> ReturnSummary:
    """Take every Centra return created since the last run, and every return Switchyard has not finished with, one
    step further: credit it, then, once the warehouse is done with it, put its stock back; a cancelled one has its
    credit taken back. Each return goes through or becomes an exception on its own. The cursor moves on only when a
    whole run succeeds (run_flow keeps the summary); the first run reads every return."""
    batch: list[tuple[Link, list[str]]] = []
    token = _PUSH_BATCH.set(batch)
    try:
        summary = _sync_returns(counter)
    finally:
        _PUSH_BATCH.reset(token)
    _push_batch(batch)
    return summary


def _sync_returns(counter: RunCounter | None) -> ReturnSummary:
    summary = ReturnSummary()
    client = connections.centra()
    cursor = _cursor()
    summary.cursor = cursor.isoformat() if cursor else None
    seen: set[int] = set()
    chunk: list[Return] = []
    for centra_return in client.return_records(created_from=cursor - CURSOR_OVERLAP if cursor else None):
        seen.add(centra_return.id)
        summary.cursor = latest(summary.cursor, centra_return.created_at)
        chunk.append(centra_return)
        if len(chunk) == CHUNK:
            _sync_chunk(summary, counter, chunk)
            chunk = []
    _sync_chunk(summary, counter, chunk)
    unfinished = sorted(_unfinished() - seen)
    found = client.returns_by_id(unfinished) if unfinished else {}
    for start in range(0, len(unfinished), CHUNK):
        _sync_chunk(summary, counter, [found[i] for i in unfinished[start : start + CHUNK] if i in found])
    for return_id in unfinished:
        if return_id not in found and (link := _return_link(return_id)):
            _sync_counted(summary, counter, gone=link)
    return summary


def _sync_counted(
    summary: ReturnSummary,
    counter: RunCounter | None,
    *,
    centra_return: Return | None = None,
    gone: Link | None = None,
) -> None:
    """Take one return (or the link of one Centra no longer has) as far as it goes; count what came of it."""
    summary.examined += 1
    try:
        outcome = return_sync_one(centra_return=centra_return) if centra_return else _return_gone(link=gone)
    except Exception as error:  # every failure of one return lands in the queue, whatever it is
        summary.failed += 1
        recorded = _record(centra_return, error) if centra_return else _record_gone(gone, error)
        summary.exception_ids.append(recorded.pk)
        if counter:
            counter.add(examined=1, failed=1)
        return
    _tally(summary, outcome)
    if counter:
        counter.add(examined=1, succeeded=1)


def _tally(summary: ReturnSummary, outcome: str) -> None:
    """Count what came of one return that went through."""
    summary.credited += int(outcome == CREDITED)
    summary.awaiting_warehouse += int(outcome in (CREDITED, AWAITING_WAREHOUSE))
    summary.stocked_in += int(outcome == STOCKED_IN)
    summary.cancelled += int(outcome == CANCELLED)
    summary.already_synced += int(outcome == ALREADY_SYNCED)
    summary.skipped += int(outcome == NOT_OURS)


def _cursor() -> datetime | None:
    """The newest return's creation the last successful run read; None before the first one."""
    cursor = last_summary(FLOW).get("cursor")
    return moment(cursor) if cursor else None


def _unfinished() -> set[int]:
    """The returns Switchyard has started and not finished: not stocked back, not cancelled."""
    refs = (
        Link.objects.filter(kind=Link.Kind.RETURN, source_system=System.CENTRA)
        .exclude(detail__has_key="stock_pushed_at")
        .exclude(detail__has_key="cancelled_at")
        .values_list("source_ref", flat=True)
    )
    return {int(ref) for ref in refs if ref.isdigit()}


def _return_link(return_id: int) -> Link | None:
    return (
        Link.objects.filter(kind=Link.Kind.RETURN, source_system=System.CENTRA, source_ref=str(return_id))
        .select_related("order")
        .first()
    )


# --- a chunk of returns -------------------------------------------------------------------------------------------


@dataclass
class _Taken:
    """One return of a chunk: its links, and what came of it so far."""

    centra_return: Return
    order_link: Link
    link: Link | None = None
    lines: list[CreditLine] = field(default_factory=list)
    refund: Decimal = Decimal(0)
    credited_now: bool = False
    stocked_now: bool = False
    return_shipment_ids: tuple[int, ...] | None = None  # read with the credit's confirmation, when it was
    error: Exception | None = None

    @property
    def going(self) -> bool:
        return self.error is None


def _sync_chunk(summary: ReturnSummary, counter: RunCounter | None, returns: list[Return]) -> None:
    """Take a chunk of returns as far as each goes now, as ``return_sync_one`` does for one, with one call per system
    and a few queries for the whole chunk. A return the chunk cannot take with the others — cancelled in Centra, its
    order held by another worker — goes the one-return way once the chunk's orders are let go; when a batched call
    fails, the returns it was for go the one-return way, so a bad one fails alone. Counted once the chunk is done."""
    returns = list({centra_return.id: centra_return for centra_return in returns}.values())
    if not returns:
        return
    try:
        results = _chunk_results(returns)
    except Exception:  # the chunk's own reads or records failed: each return the one-return way, failing alone
        results = {centra_return.id: _one_result(centra_return) for centra_return in returns}
    failed = 0
    for centra_return in returns:
        result = results[centra_return.id]
        summary.examined += 1
        if isinstance(result, Exception):
            failed += 1
            summary.failed += 1
            summary.exception_ids.append(_record(centra_return, result).pk)
        else:
            _tally(summary, result)
    if counter:
        counter.add(examined=len(returns), succeeded=len(returns) - failed, failed=failed)


def _chunk_results(returns: list[Return]) -> dict[int, str | Exception]:
    """Each return's outcome, or its failure, by return id."""
    results: dict[int, str | Exception] = {}
    taken, alone = _chunk_taken(returns, results)
    if taken:
        with order_locks_held(item.order_link for item in taken) as held:
            alone += [item.centra_return for item in taken if item.order_link.pk not in held]
            results.update(_chunk_steps([item for item in taken if item.order_link.pk in held]))
    for centra_return in alone:  # the one-return way waits for its order's lock: never while holding the chunk's
        results[centra_return.id] = _one_result(centra_return)
    return results


def _one_result(centra_return: Return) -> str | Exception:
    try:
        return return_sync_one(centra_return=centra_return)
    except Exception as error:  # every failure of one return lands in the queue, whatever it is
        return error


def _chunk_taken(returns: list[Return], results: dict[int, str | Exception]) -> tuple[list[_Taken], list[Return]]:
    """The chunk's returns with their order's link and their own (made when missing); the ones settled at once are
    put in ``results`` (NOT_OURS, ALREADY_SYNCED), the cancelled ones are left for the one-return way."""
    numbers = {centra_return.order_number for centra_return in returns}
    order_links = {
        link.centra_number: link
        for link in Link.objects.filter(kind=Link.Kind.ORDER, centra_number__in=numbers).select_related("channel")
    }
    taken: list[_Taken] = []
    alone: list[Return] = []
    for centra_return in returns:
        order_link = order_links.get(centra_return.order_number)
        if order_link is None:
            results[centra_return.id] = NOT_OURS
        elif centra_return.is_cancelled:
            alone.append(centra_return)
        else:
            taken.append(_Taken(centra_return, order_link))
    links = _return_links_made(taken)
    going = []
    for item in taken:
        item.link = links[str(item.centra_return.id)]
        if item.link.detail.get("stock_pushed_at"):
            results[item.centra_return.id] = ALREADY_SYNCED
        else:
            going.append(item)
    return going, alone


def _return_links_made(taken: list[_Taken]) -> dict[str, Link]:
    """The return links of the chunk by source ref, the missing ones made (a link another worker made meanwhile is
    kept, not doubled)."""
    wanted = {
        (System.CENTRA, str(item.centra_return.id)): Link(
            kind=Link.Kind.RETURN,
            source_system=System.CENTRA,
            source_ref=str(item.centra_return.id),
            order=item.order_link,
            channel=item.order_link.channel,
            centra_id=str(item.centra_return.id),
        )
        for item in taken
    }
    return {ref: link for (_, ref), link in links_made(Link.Kind.RETURN, wanted).items()}


def _chunk_steps(taken: list[_Taken]) -> dict[int, str | Exception]:
    """The credit, the marketplace's report and the stock back for returns whose orders this worker holds; each
    return's outcome or its failure, by return id."""
    if not taken:
        return {}
    _links_reread(taken)
    _credit_chunk(taken)
    for item in taken:
        if item.going:
            try:
                _report_to_marketplace(item.link, item.order_link, item.centra_return)
            except Exception as error:  # the marketplace refusing one return stops that return alone
                item.error = error
    _stock_back_chunk([item for item in taken if item.going])
    succeeded = [object_ref(item.centra_return.id) for item in taken if item.going]
    if succeeded:
        objects_succeeded(flow=FLOW, object_refs=succeeded)
    return {item.centra_return.id: item.error or _chunk_outcome(item) for item in taken}


def _chunk_outcome(item: _Taken) -> str:
    if item.stocked_now:
        return STOCKED_IN
    if item.link.detail.get("stock_pushed_at"):
        return ALREADY_SYNCED
    return CREDITED if item.credited_now else AWAITING_WAREHOUSE


def _links_reread(taken: list[_Taken]) -> None:
    """The return links as stored now: what another worker recorded before this one held the orders."""
    stored = Link.objects.in_bulk([item.link.pk for item in taken])
    for item in taken:
        item.link = stored[item.link.pk]


def _attempt(taken: list[_Taken], error_class: type[DataError], step) -> None:
    """``step(item)`` for each return still going; a failure is that return's own, a refusal as ``error_class``."""
    for item in taken:
        if item.going:
            try:
                with _failing_as(error_class):
                    step(item)
            except Exception as error:
                item.error = error


# --- a chunk's credits --------------------------------------------------------------------------------------------


def _credit_chunk(taken: list[_Taken]) -> None:
    """Step 1 for a chunk: post and confirm the credits not yet confirmed, together. When a batched call fails, each
    of those returns goes the one-return way (``_post_credit``), from what its link holds."""
    pending = [item for item in taken if not item.link.detail.get("credit_confirmed_at")]
    if not pending:
        return
    skus = {line.sku for item in pending for line in item.centra_return.lines}
    codes = skus_mapped(system=System.FULFIL, centra_skus=skus)
    _attempt(pending, RefundNotPosted, lambda item: _credit_prepared(item, codes))
    try:
        _credits_batched([item for item in pending if item.going])
    except Exception:  # one return spoiled a batched call, or the call failed: each return on its own then
        left = [item for item in pending if item.going and not item.credited_now]
        if left:
            _links_reread(left)
            _attempt(left, RefundNotPosted, _credit_alone)


def _credit_prepared(item: _Taken, codes: dict[str, str]) -> None:
    item.lines, item.refund = credit_lines(item.centra_return, codes=codes)
    if not item.link.fulfil_id and not item.order_link.fulfil_id:
        raise RefundNotPosted(
            f"Order {item.centra_return.order_number} is not in Fulfil yet: its credit needs the sale",
            system="switchyard",
            operation="return sync",
        )


def _credit_alone(item: _Taken) -> None:
    item.credited_now = _post_credit(item.link, item.order_link, item.centra_return)


def _credits_batched(taken: list[_Taken]) -> None:
    """Find or create the credits of returns that have none on their link (one search, one create), check every
    credit's total against Centra's refund (one read), and quote and confirm the right ones (a call for each
    button, one read). A credit whose total is wrong is left unconfirmed and fails alone."""
    if not taken:
        return
    fulfil = connections.fulfil()
    _credits_found_or_created([item for item in taken if not item.link.fulfil_id], fulfil)
    taken = [item for item in taken if item.going]  # a create that may yet land leaves its returns for later
    credits = fulfil.sales(item.link.fulfil_id for item in taken)
    for item in taken:
        credit = credits.get(item.link.fulfil_id)
        if credit is None or credit.total_amount != -item.refund:
            item.error = _credit_total_wrong(item.link, credit, item.refund, item.centra_return.currency)
    right = [item for item in taken if item.going]
    confirmed = fulfil.confirm_sales([item.link.fulfil_id for item in right])
    now = timezone.now().isoformat()
    posted = []
    for item in right:
        credit = confirmed.get(item.link.fulfil_id)
        if credit is None or credit.state not in WORKING_STATES:
            item.error = RefundNotPosted(
                f"sale {(credit.number if credit else None) or item.link.fulfil_id} is "
                f"{credit.state if credit else 'gone'} after confirm",
                system=System.FULFIL,
                operation="sale.sale.confirm",
            )
            continue
        item.return_shipment_ids = credit.return_shipment_ids
        posted.append((item, credit.number))
    links_note_each((item.link, {"credit_confirmed_at": now, "credit_number": number}) for item, number in posted)
    for item, _ in posted:
        item.credited_now = True  # only once recorded: else the one-return way confirms it again and records it


def _credits_found_or_created(taken: list[_Taken], fulfil) -> None:
    """Give each return its credit in Fulfil: one an earlier attempt made whose answer was lost (found by its
    reference, as Fulfil's create is not idempotent), else a new one, all made in one create. Each link records
    its credit, the refund and the currency."""
    if not taken:
        return
    found = fulfil.sales_by_reference(_credit_reference(item.centra_return) for item in taken)
    to_make = []
    for item in taken:
        existing = found.get(_credit_reference(item.centra_return))
        if existing is not None and existing.origin_sale_id == item.order_link.fulfil_id:
            item.link.fulfil_id = existing.id
        else:
            to_make.append(item)
    drafts = [
        CreditDraft(
            item.order_link.fulfil_id,
            tuple(item.lines),
            _credit_reference(item.centra_return),
            _credit_comment(item.centra_return),
        )
        for item in to_make
    ]
    try:
        made = fulfil.create_credits(drafts) if drafts else []
    except Exception as error:
        if not may_have_landed(error):
            raise  # refused whole, nothing made: each return goes the one-return way, which tells which it was
        # A timeout or 5xx: Fulfil may still be making these credits. Asked again now, it could make them twice;
        # the queue retries each return later, and the retry's search by reference finds a credit that landed.
        for item in to_make:
            item.error = error
        to_make, made = [], []
    for item, credit_id in zip(to_make, made, strict=True):
        item.link.fulfil_id = credit_id
    notes = [(item.link, {"refund": str(item.refund), "currency": item.centra_return.currency}) for item in taken]
    links_note_each(notes, fields=["fulfil_id"])


# --- a chunk's stock back -----------------------------------------------------------------------------------------


def _stock_back_chunk(taken: list[_Taken]) -> None:
    """Step 2 for a chunk: for each return the warehouse is done with, put what it took back in at the stock
    master, record it (one transaction for all) and have its SKUs pushed with the run's stock push. The warehouse's
    work is read for the whole chunk at once; if that read fails, each return reads its own."""
    waiting = [item for item in taken if not item.link.detail.get("stocked_in_at")]
    try:
        received = _received_chunk(waiting)
    except Exception:  # each return on its own, failing alone
        _attempt(taken, StockInFailed, _stock_back_alone)
        return
    ready = [item for item in waiting if received.get(item.link.pk) is not None]  # the warehouse is done with these
    _attempt(
        ready, StockInFailed, lambda item: _put_back_at_master(item.link, item.centra_return, received[item.link.pk])
    )
    now = timezone.now().isoformat()
    links_note_each(
        (item.link, {"stocked_in_at": now, "received": received[item.link.pk]}) for item in ready if item.going
    )
    batch = _PUSH_BATCH.get()
    for item in taken:
        if item.going and item.link.detail.get("stocked_in_at"):
            batch.append((item.link, sorted(item.link.detail.get("received") or {})))
            item.stocked_now = True


def _stock_back_alone(item: _Taken) -> None:
    item.stocked_now = _stock_back(item.link, item.centra_return)


def _received_chunk(taken: list[_Taken]) -> dict[int, dict[str, int] | None]:
    """``_received`` for many returns: return link id → Centra SKU → units the warehouse took back, or None while
    it is not done. The credits' return shipments are read in one call (none when the credit's confirmation just
    read them), the shipments with their moves in one or two, the SKUs in one query."""
    if not taken:
        return {}
    fulfil = connections.fulfil()
    unread = [item.link.fulfil_id for item in taken if item.return_shipment_ids is None]
    rows = fulfil.search_read("sale.sale", [["id", "in", unread]], ["shipment_returns"]) if unread else []
    shipment_ids = {row["id"]: tuple(row.get("shipment_returns") or ()) for row in rows}
    for item in taken:
        if item.return_shipment_ids is None:
            item.return_shipment_ids = shipment_ids.get(item.link.fulfil_id, ())
    wanted = sorted({shipment_id for item in taken for shipment_id in item.return_shipment_ids})
    shipments = {shipment.id: shipment for shipment in fulfil.return_shipments(wanted)}
    codes = {move.product_code for shipment in shipments.values() for move in shipment.moves if move.product_code}
    skus = centra_skus_mapped(system=System.FULFIL, codes=codes)
    received: dict[int, dict[str, int] | None] = {}
    for item in taken:
        try:
            own = [shipments[shipment_id] for shipment_id in item.return_shipment_ids if shipment_id in shipments]
            received[item.link.pk] = _received_in(own, skus)
        except Exception as error:  # a code without a Centra SKU stops that return alone
            item.error = error
    return received


# --- one return ---------------------------------------------------------------------------------------------------


def return_sync_one(*, centra_return: Return) -> str:
    """Take one Centra return as far as it can go now. Returns CREDITED (the credit was posted now and the goods
    are awaited), AWAITING_WAREHOUSE, STOCKED_IN, CANCELLED (cancelled in Centra, and so is any credit it had),
    ALREADY_SYNCED, or NOT_OURS for an order Switchyard does not know. Raises RefundNotPosted (CreditOfCancelledReturn
    among them), StockInFailed, MissingMapping, or the connectors' errors."""
    order_link = Link.objects.filter(kind=Link.Kind.ORDER, centra_number=centra_return.order_number).first()
    if order_link is None:
        return NOT_OURS
    if centra_return.is_cancelled:
        link = _return_link(centra_return.id)
        why = f"Centra return {centra_return.id} of order {centra_return.order_number} was cancelled in Centra"
        return _cancelled(link, why) if link else CANCELLED  # no link: nothing of it was ever posted
    link, _ = Link.objects.get_or_create(
        kind=Link.Kind.RETURN,
        source_system=System.CENTRA,
        source_ref=str(centra_return.id),
        defaults={"order": order_link, "channel": order_link.channel, "centra_id": str(centra_return.id)},
    )
    if link.detail.get("stock_pushed_at"):
        return ALREADY_SYNCED
    with order_lock(order_link):
        link.refresh_from_db()
        with _failing_as(RefundNotPosted):
            credited_now = _post_credit(link, order_link, centra_return)
        _report_to_marketplace(link, order_link, centra_return)
        with _failing_as(StockInFailed):
            stocked_now = _stock_back(link, centra_return)
    object_succeeded(flow=FLOW, object_ref=object_ref(centra_return.id))
    if stocked_now:
        return STOCKED_IN
    if link.detail.get("stock_pushed_at"):
        return ALREADY_SYNCED
    return CREDITED if credited_now else AWAITING_WAREHOUSE


@contextlib.contextmanager
def _failing_as(error_class: type[DataError]):
    """A refusal in this step is the step's own kind of exception, with the other system's messages kept. Missing
    mappings, outages and refused credentials keep their kinds: adding the mapping, or waiting, fixes those."""
    try:
        yield
    except DataError as error:
        if isinstance(error, error_class):
            raise
        raise _step_error(error, error_class) from error


def _step_error(error: DataError, error_class: type[DataError]) -> DataError:
    """The other system's refusal as the step's own kind of exception, its messages kept."""
    return error_class(
        error.message,
        details=error.details,
        system=error.system,
        operation=error.operation,
        exchange=error.exchange,
    )


# --- a cancelled return ------------------------------------------------------------------------------------------


def _cancelled(link: Link, why: str) -> str:
    """Stop a return Centra cancelled (``why`` says how) and take back its credit where Fulfil still allows it.
    Returns CANCELLED, or ALREADY_SYNCED when that was done before. Raises CreditOfCancelledReturn when the credit
    stands in Fulfil, or the marketplace was told of the return: a person must put it right."""
    if link.detail.get("cancel_settled_at"):
        return ALREADY_SYNCED
    order_link = link.order
    with order_lock(order_link):
        link.refresh_from_db()
        if not link.detail.get("cancelled_at"):
            link_step_done(link, "cancelled_at")  # no further step is taken for it, and no run reads it again
        fulfil = connections.fulfil()
        credit = _credit_of(link, fulfil)
        standing = credit is not None and credit.state != "cancelled"
        if standing and credit.state in CREDIT_CANCELLABLE:
            fulfil.cancel_sale(credit.id)
            link_step_done(link, "credit_cancelled_at")
            standing = False
        if standing or link.detail.get("marketplace_reported_at"):
            raise CreditOfCancelledReturn(
                _what_stands(link, credit if standing else None, why),
                system=System.FULFIL,
                operation="sale.sale.cancel",
            )
        link_step_done(link, "cancel_settled_at")
    object_succeeded(flow=FLOW, object_ref=object_ref(int(link.source_ref)))
    return CANCELLED


def _credit_of(link: Link, fulfil):
    """The credit Fulfil holds for the return: the link's, or one an earlier attempt made whose answer was lost."""
    if link.fulfil_id:
        return fulfil.sale(link.fulfil_id)
    existing = fulfil.sale_by_reference(f"centra-return-{link.source_ref}")
    order_sale = link.order.fulfil_id if link.order else None
    return existing if existing is not None and existing.origin_sale_id == order_sale else None


def _what_stands(link: Link, credit, why: str) -> str:
    """What finance must put right for a cancelled return, in plain words."""
    parts = [why + "."]
    if credit is not None:
        amount = f"{link.detail.get('refund', abs(credit.total_amount or 0))} {link.detail.get('currency', '')}"
        parts.append(
            f"Fulfil's credit {credit.number or credit.id} (sale id {credit.id}) for {amount.strip()} is already "
            f"{credit.state} and cannot be cancelled from here: cancel it in Fulfil with its return shipment, or post "
            "the charge that undoes it, then retry this."
        )
    if link.detail.get("stocked_in_at"):
        parts.append("The warehouse had already taken the returned units back into stock.")
    if link.detail.get("marketplace_reported_at"):
        parts.append(
            "The marketplace was told of the return"
            + (f" ({link.detail['marketplace_return_id']})" if link.detail.get("marketplace_return_id") else "")
            + ": tell it the return is cancelled, so it does not refund the customer."
        )
    return " ".join(parts)


def _return_gone(*, link: Link) -> str:
    """A return Switchyard started that Centra no longer has: handled as a cancelled one."""
    return _cancelled(link, f"Centra no longer has return {link.source_ref} of order {link.order.centra_number}")


# --- step 1: the credit -------------------------------------------------------------------------------------------


def _post_credit(link: Link, order_link: Link, centra_return: Return) -> bool:
    """Post and confirm the credit, once. Returns True when it was posted now."""
    if link.detail.get("credit_confirmed_at"):
        return False
    fulfil = connections.fulfil()
    lines, refund = credit_lines(centra_return)
    if not link.fulfil_id:
        if not order_link.fulfil_id:
            raise RefundNotPosted(
                f"Order {centra_return.order_number} is not in Fulfil yet: its credit needs the sale",
                system="switchyard",
                operation="return sync",
            )
        reference = _credit_reference(centra_return)
        # Fulfil's create is not idempotent: an earlier attempt whose answer was lost is found by its reference.
        existing = fulfil.sale_by_reference(reference)
        if existing is not None and existing.state != "cancelled" and existing.origin_sale_id == order_link.fulfil_id:
            credit_id = existing.id
        else:
            credit_id = fulfil.create_credit(
                order_link.fulfil_id,
                lines,
                reference=reference,
                comment=_credit_comment(centra_return),
            )
        link.fulfil_id = credit_id
        links_note_each([(link, {"refund": str(refund), "currency": centra_return.currency})], fields=["fulfil_id"])
    credit = fulfil.sale(link.fulfil_id)
    if credit is None or credit.total_amount != -refund:
        raise _credit_total_wrong(link, credit, refund, centra_return.currency)
    # Confirming makes the return shipment the warehouse receives the goods against; quoting gives the number.
    confirmed = fulfil.confirmed_sale(link.fulfil_id)
    link_step_done(link, "credit_confirmed_at", credit_number=confirmed.number)
    return True


def _credit_reference(centra_return: Return) -> str:
    """How Fulfil's credit for the return is found again."""
    return f"centra-return-{centra_return.id}"


def _credit_comment(centra_return: Return) -> str:
    return f"Centra return {centra_return.id} of order {centra_return.order_number}"


def _credit_total_wrong(link: Link, credit, refund: Decimal, currency: str) -> RefundNotPosted:
    return RefundNotPosted(
        f"Fulfil's credit {link.fulfil_id} totals {credit.total_amount if credit else 'nothing'}, "
        f"but Centra refunds {refund} {currency}: it was left unconfirmed",
        system=System.FULFIL,
        operation="sale.sale.read",
    )


def credit_lines(centra_return: Return, *, codes: dict[str, str] | None = None) -> tuple[list[CreditLine], Decimal]:
    """The credit's lines for a Centra return, and the refund they add up to. Every amount is Centra's own; the
    sum is checked against Centra's total and refused when it differs. ``codes`` (Centra SKU → Fulfil code) may
    hold the codes already looked up for many returns. Raises RefundNotPosted, MissingMapping."""
    currency = centra_return.currency
    skus = [line.sku for line in centra_return.lines]
    if codes is None or any(sku not in codes for sku in skus):
        codes = skus_for(system=System.FULFIL, centra_skus=skus)
    lines: list[CreditLine] = []
    for line in centra_return.lines:
        lines += _exact_lines(codes[line.sku], line.quantity, line.line_value, currency)
    line_values = sum((line.line_value for line in centra_return.lines), Decimal(0))
    given_back = [("Shipping refund", centra_return.shipping), ("Handling refund", centra_return.handling)]
    kept = [("Return cost kept", centra_return.return_cost), ("Discount kept", centra_return.discounts)]
    for description, amount in given_back:
        if amount:
            lines.append(CreditLine(quantity=1, unit_price=amount, description=description, shipping=True))
    for description, amount in kept:
        if amount:
            # A charge on a credit: one unit back at a negative price is a positive amount, which the refund lacks.
            lines.append(CreditLine(quantity=1, unit_price=-amount, description=description, shipping=True))
    refund = line_values + sum(amount for _, amount in given_back) - sum(amount for _, amount in kept)
    problems = []
    if line_values != centra_return.line_values:
        problems.append(f"its lines add up to {line_values}, its line total is {centra_return.line_values}")
    if refund != centra_return.grand_total:
        problems.append(
            f"lines {line_values} + shipping {centra_return.shipping} + handling {centra_return.handling} "
            f"- return cost {centra_return.return_cost} - discounts {centra_return.discounts} = {refund}, "
            f"but its total is {centra_return.grand_total}"
        )
    amounts = [line_values, centra_return.grand_total] + [amount for _, amount in given_back + kept]
    if not all(is_exact(amount, currency) for amount in amounts):
        problems.append(f"an amount is not a whole number of {currency} minor units")
    if problems:
        raise RefundNotPosted(
            f"Centra return {centra_return.id} does not add up: {problems[0]}",
            details=problems,
            system=System.CENTRA,
            operation="returns",
        )
    return lines, refund


def _exact_lines(code: str, quantity: int, value: Decimal, currency: str) -> list[CreditLine]:
    """Credit lines for ``quantity`` units worth ``value`` together, exactly: one line when the units share a
    whole unit price, else all but one at the price rounded down and the last at what remains."""
    description = f"Return of {code}"
    unit_price = (value / quantity).quantize(minor_unit(currency), rounding=ROUND_DOWN)
    if unit_price * quantity == value:
        return [CreditLine(quantity=quantity, unit_price=unit_price, product_code=code, description=description)]
    return [
        CreditLine(quantity=quantity - 1, unit_price=unit_price, product_code=code, description=description),
        CreditLine(
            quantity=1, unit_price=value - unit_price * (quantity - 1), product_code=code, description=description
        ),
    ]


def _report_to_marketplace(link: Link, order_link: Link, centra_return: Return) -> None:
    """Tell the marketplace an order came from about the returned units, once."""
    channel = order_link.channel
    if channel is None or channel.system != System.MARKETPLACE or link.detail.get("marketplace_reported_at"):
        return
    client = connections.marketplace()
    order_id = order_link.source_id or order_link.source_ref
    order = client.order(order_id)
    returned = {line.line_id: line.returned_quantity for line in order.lines}
    planned = link.detail.get("marketplace_lines")
    if planned:
        # Sent before and the answer lost? The marketplace counts the units returned on each line.
        before = link.detail.get("marketplace_returned_before") or {}
        if all(returned.get(line_id, 0) >= before.get(line_id, 0) + quantity for line_id, quantity in planned):
            link_step_done(link, "marketplace_reported_at")
            return
    else:
        wanted: Counter[str] = Counter()
        for line in centra_return.lines:
            wanted[line.sku] += line.quantity
        codes = skus_for(system=System.MARKETPLACE, centra_skus=list(wanted))
        planned = []
        for sku, quantity in wanted.items():
            left = quantity
            for line in order.lines:
                room = line.shipped_quantity - line.returned_quantity
                if line.sku.lower() == codes[sku].lower() and (take := min(left, room)) > 0:
                    planned.append([line.line_id, take])
                    left -= take
            if left:
                raise DataError(
                    f"Marketplace order {order_id} has {quantity - left} unit(s) of {codes[sku]} that can be "
                    f"returned, but Centra's return {centra_return.id} has {quantity}",
                    system=System.MARKETPLACE,
                    operation="return_create",
                )
        link_note(link, marketplace_lines=planned, marketplace_returned_before=returned)
    return_id = client.report_return(
        order_id, [mp.ReturnLine(line_id, quantity) for line_id, quantity in planned], reason=MARKETPLACE_RETURN_REASON
    )
    link_step_done(link, "marketplace_reported_at", marketplace_return_id=return_id)


# --- step 2: stock back -------------------------------------------------------------------------------------------


def _stock_back(link: Link, centra_return: Return) -> bool:
    """Once the warehouse is done with the return, put what it took back in at the stock master and push those
    SKUs. Returns True when that happened now, False while the warehouse is not done (or it was done before)."""
    if link.detail.get("stock_pushed_at"):
        return False
    if not link.detail.get("stocked_in_at"):
        received = _received(link)
        if received is None:
            return False
        _put_back_at_master(link, centra_return, received)
        link_step_done(link, "stocked_in_at", received=received)
    skus = sorted(link.detail.get("received") or {})
    batch = _PUSH_BATCH.get()
    if batch is not None:  # a run pushes every return's SKUs together, once, at its end
        batch.append((link, skus))
        return True
    if skus:
        stock_push_run(skus=skus)  # the same targeted push a stock webhook starts
    link_step_done(link, "stock_pushed_at")
    return True


def _push_batch(batch: list[tuple[Link, list[str]]]) -> None:
    """One stock push for the SKUs of every return a run took back in; each return is marked pushed only after."""
    skus = sorted({sku for _, link_skus in batch for sku in link_skus})
    if skus:
        stock_push_run(skus=skus)
    now = timezone.now().isoformat()
    links_note_each((link, {"stock_pushed_at": now}) for link, _ in batch)


def _received(link: Link) -> dict[str, int] | None:
    """Centra SKU → units the warehouse took back into stock, once every return shipment of the credit is done or
    cancelled; None until then."""
    fulfil = connections.fulfil()
    credit = fulfil.get("sale.sale", link.fulfil_id, ["shipment_returns"])
    return _received_in(fulfil.return_shipments((credit or {}).get("shipment_returns") or []))


def _received_in(shipments: list[Shipment], skus: dict[str, str] | None = None) -> dict[str, int] | None:
    """What ``_received`` answers for a credit's return shipments; ``skus`` (Fulfil code → Centra SKU) may hold the
    SKUs already looked up. Raises MissingMapping."""
    if not shipments or any(shipment.state not in ("done", "cancel", "cancelled") for shipment in shipments):
        return None
    received: Counter[str] = Counter()
    for shipment in shipments:
        if shipment.state != "done":
            continue
        for move in shipment.moves:
            if move.state == "done" and move.quantity > 0 and move.product_code:
                sku = (skus or {}).get(move.product_code) or centra_sku_for(
                    system=System.FULFIL, code=move.product_code
                )
                received[sku] += move.quantity
    return dict(received)


def _put_back_at_master(link: Link, centra_return: Return, received: dict[str, int]) -> None:
    """Book the received units in at the stock master. Only Centra needs a write of ours: Fulfil booked them when
    its return shipment went done, and Inventory Planner reads its stock from Fulfil or Centra."""
    if settings.STOCK_MASTER != System.CENTRA or not received:
        return
    if centra_return.returned_to_stock:
        return  # the Centra return released the units to its warehouse itself: adding them again would double them
    warehouse_id = settings.RETURNS_CENTRA_WAREHOUSE_ID
    if link.detail.get("centra_delivery_sent_at"):
        # A delivery adds to stock; one that may have landed is never sent again blindly.
        raise StockInFailed(
            f"Delivering {_units(received)} into Centra warehouse {warehouse_id} was sent but not confirmed. "
            "Check Centra's stock: if the units are there, resolve this; if not, book them in by hand and resolve.",
            system=System.CENTRA,
            operation="changeStock",
        )
    client = connections.centra()
    sizes = client.sizes_by_sku(received)
    missing = sorted(set(received) - set(sizes))
    if missing:
        raise StockInFailed(
            f"Centra has no size with SKU {', '.join(missing)}", system=System.CENTRA, operation="productSizes"
        )
    levels = [StockLevel(sizes[sku].variant_id, sizes[sku].size_name, quantity) for sku, quantity in received.items()]
    link_step_done(link, "centra_delivery_sent_at")
    try:
        client.deliver_stock(
            warehouse_id=warehouse_id,
            levels=levels,
            description=f"Return {centra_return.id} of order {centra_return.order_number}, inspected",
        )
    except (DataError, RateLimited):
        # Refused (Centra changed nothing) or turned away before it was read: safe to send again later.
        link_note(link, centra_delivery_sent_at=None)
        raise


def _units(quantities: dict[str, int]) -> str:
    return ", ".join(f"{quantity} × {sku}" for sku, quantity in sorted(quantities.items()))


# --- failures and retries -----------------------------------------------------------------------------------------


def _record(centra_return: Return, error: BaseException):
    return _failure(
        error,
        return_id=centra_return.id,
        order_number=centra_return.order_number,
        value=centra_return.grand_total,
        currency=centra_return.currency,
    )


def _record_gone(link: Link, error: BaseException):
    """A failure with a return Centra no longer has: what the link knows of it."""
    refund = link.detail.get("refund")
    return _failure(
        error,
        return_id=int(link.source_ref),
        order_number=link.order.centra_number,
        value=Decimal(refund) if refund else None,
        currency=link.detail.get("currency", ""),
    )


def _failure(error: BaseException, *, return_id: int, order_number: int, value: Decimal | None, currency: str):
    if isinstance(error, MissingMapping):
        title = f"Return {return_id} of order {order_number} waits for a mapping: {error.message}"
    elif isinstance(error, CreditOfCancelledReturn):
        title = f"Return {return_id} (order {order_number}) was cancelled in Centra, but its credit stands in Fulfil"
    elif isinstance(error, RefundNotPosted):
        title = f"Refund of return {return_id} (order {order_number}) not posted to Fulfil"
    elif isinstance(error, StockInFailed):
        title = f"Stock of return {return_id} (order {order_number}) not booked back in"
    else:
        title = f"Return {return_id} of order {order_number} could not be synced"
    order_link = Link.objects.filter(kind=Link.Kind.ORDER, centra_number=order_number).first()
    return failure_record(
        flow=FLOW,
        object_type="return",
        object_ref=object_ref(return_id),
        error=error,
        title=title,
        system=getattr(error, "system", "") or System.CENTRA,
        value=value,
        currency=currency,
        refs=[str(order_number), str(return_id), order_link.source_ref if order_link else ""],
        context={"return_id": return_id, "order_number": order_number},
    )


def retry(exception) -> None:
    """Re-run one return through the flow (the exception queue calls this), asking Centra for that return alone."""
    return_id = exception.context["return_id"]
    centra_return = connections.centra().return_record(return_id)
    if centra_return is not None:
        return_sync_one(centra_return=centra_return)
        return
    link = _return_link(return_id)
    if link is None:
        raise DataError(f"Centra has no return {return_id} any more", system=System.CENTRA, operation="returns")
    _return_gone(link=link)


register_retry_handler(FLOW, retry)
