"""Order export: Centra orders → Fulfil sales.

Each run reads the Centra orders in an export status (``ORDER_EXPORT_STATUSES``) that changed since the last run,
plus the orders still waiting for their payment to be captured. For each: find its link (an imported order's, or
one made the first time a web order is seen) → wait while the payment is not captured, raising
``payment_capture_lag`` past ``PAYMENT_CAPTURE_LAG_MINUTES`` → translate the store and market, the SKUs and the
bundles through the mappings → check the money adds up to Centra's grand total to the minor unit → look for the sale
in Fulfil before creating it → check Fulfil's total equals Centra's → confirm → record. Every failure is one
exception per order; the queue's retry, and a new mapping, run the order through again.

Money is carried over exactly as Centra charged it, never recalculated. Centra's prices include tax, so each sale
line carries the line's price after its discount, tax included, and the shipping line the shipping; the sale gets
no Fulfil tax. A Fulfil tax would make Fulfil compute the tax again from the rate, line by line, and its rounding
of the net amount differs from Centra's on about one price in five at 25%, leaving the sale a cent away from what
the customer paid. The tax Centra included is written on the sale's comment.

An order is exported once: a per-order lock keeps two workers apart, the order is read again under it, and Fulfil
is asked for a sale with the order's number before one is created.

A run exports its orders a chunk at a time (``EXPORT_CHUNK``): the chunk's links and locks are taken together (an
order another worker holds is left to it), its orders read again in one call, its mappings and products read once,
and its new sales created, read back, quoted and confirmed in one call each — a dozen calls for a hundred orders
where one order alone takes ten. Orders an earlier attempt got into Fulfil, and every order of a chunk whose batched
call Fulfil refuses, go through the one-order path, which tells which order it was.
"""

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from itertools import islice

from django.conf import settings
from django.utils import timezone

from exceptions.registry import AlreadyRecorded, register_retry_handler
from exceptions.services import failure_record, object_succeeded, objects_succeeded
from mappings.models import MarketMapping, System
from mappings.money import is_exact, split_exactly
from mappings.services import MissingMapping, bundle_parts, bundles_for, market_for, markets_all, skus_mapped
from syncs import connections
from syncs.connectors.centra import CentraClient, Order, OrderLine
from syncs.connectors.errors import DataError, TransientError, may_have_landed
from syncs.connectors.fulfil import (
    WORKING_STATES,
    Address,
    Customer,
    DraftLine,
    FulfilClient,
    Product,
    Sale,
    SaleDraft,
)
from syncs.links import link_note, links_made, links_note, order_lock, order_locks_held
from syncs.models import Link
from syncs.runs import RunCounter, last_summary, latest, moment

FLOW = "order_export"
logger = logging.getLogger("switchyard.orders")
# Each run reads again the last few minutes before its cursor: an order written at the edge of the previous read
# (or by a Centra server whose clock is a little behind) is not missed. Reading an exported order costs nothing.
CURSOR_OVERLAP = timedelta(minutes=5)
EDITABLE_STATES = ("draft", "quotation", "confirmed")  # a sale's lines can still change: nothing is picked yet
# Orders exported together: their links, locks, mappings and Fulfil's products read once, their customers found and
# their sales created, quoted and confirmed in one call each (Fulfil answers up to 500 records a call).
EXPORT_CHUNK = 100
# A sale create is noted on the links before it is sent. If its worker dies or its answer is lost, the create may
# still land: until this long has passed, an attempt that finds no sale waits rather than creating a second one.
CREATE_SETTLE = timedelta(seconds=60)


class TotalsMismatch(DataError):
    """The order's amounts do not add up to its grand total to the minor unit, or Fulfil's total would differ."""

    exception_kind = "totals_mismatch"


class PaymentNotCaptured(DataError):
    """The order's payment has waited for capture longer than the agreed limit."""

    exception_kind = "payment_capture_lag"


class Outcome(StrEnum):
    EXPORTED = "exported"
    ALREADY_EXPORTED = "already exported"
    WAITING_CAPTURE = "waiting for capture"
    NOT_EXPORTABLE = "not exportable"  # no longer in an export status, or nothing left to sell


@dataclass
class ExportSummary:
    examined: int = 0
    exported: int = 0
    already_exported: int = 0
    waiting_capture: int = 0
    failed: int = 0
    busy: int = 0  # orders another worker was exporting at the same moment: left to it
    exception_ids: list[int] = field(default_factory=list)
    cursor: str | None = None  # the latest change read: where the next run starts


def object_ref(number: int) -> str:
    return f"centra:{number}"


# --- the run ------------------------------------------------------------------------------------------------------


def order_export_run(*, counter: RunCounter | None = None) -> ExportSummary:
    """Export every Centra order that reached an export status since the last run, and every order whose capture
    was awaited. Each order succeeds, waits or becomes an exception on its own; one bad order never stops the rest.
    Raises only when Centra cannot be read at all."""
    summary = ExportSummary()
    client = connections.centra()
    since = run_cursor(FLOW)
    summary.cursor = since.isoformat() if since else None
    seen: set[int] = set()
    for orders in chunked(orders_changed(client, since=since, statuses=export_statuses()), EXPORT_CHUNK):
        for order in orders:
            seen.add(order.number)
            summary.cursor = latest(summary.cursor, order.updated_at)
        export_chunk(orders, summary, counter)
    waiting = (
        Link.objects.filter(kind=Link.Kind.ORDER, exported_at__isnull=True, detail__waiting="capture")
        .exclude(centra_number__in=seen)
        .values_list("centra_number", flat=True)
    )
    for orders in chunked(orders_by_number(client, list(waiting)), EXPORT_CHUNK):
        export_chunk(orders, summary, counter)
    return summary


def chunked(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def export_statuses() -> list[str]:
    return [status.strip().upper() for status in settings.ORDER_EXPORT_STATUSES if status.strip()]


# --- reading Centra -----------------------------------------------------------------------------------------------


def run_cursor(flow: str) -> datetime | None:
    """Where ``flow``'s next run starts reading: the latest change its last successful run read; on the very first
    run ``ORDER_EXPORT_SINCE`` (None: from the beginning)."""
    value = last_summary(flow).get("cursor") or settings.ORDER_EXPORT_SINCE
    return moment(value) if value else None


def orders_changed(
    client: CentraClient, *, since: datetime | None, statuses: list[str] | None = None
) -> Iterator[Order]:
    """Every order (in ``statuses``, when given) changed at or after a little before ``since`` — every order when
    None — oldest change first, each once.

    Pages are read by change time, not by page number: an order that changes while the pages are read moves to the
    end of the list, and page numbers would then skip the order that slid into its place."""
    where: dict = {"status": statuses} if statuses else {}
    start = since - CURSOR_OVERLAP if since else None
    seen: set[tuple[int, str]] = set()
    while True:
        page_where = {**where, "updatedAt": {"from": start.isoformat()}} if start else where
        page = list(islice(client.orders(where=page_where, sort="updatedAt_ASC"), client.page_size))
        for order in page:
            if (order.number, order.updated_at) not in seen:
                seen.add((order.number, order.updated_at))
                yield order
        if len(page) < client.page_size:
            return
        last = moment(page[-1].updated_at)
        if start is not None and last <= start:
            # A whole page changed in the same second: page on by number from here, as Centra pages it.
            for order in client.orders(where=page_where, sort="updatedAt_ASC"):
                if (order.number, order.updated_at) not in seen:
                    seen.add((order.number, order.updated_at))
                    yield order
            return
        start = last


def orders_by_number(client: CentraClient, numbers: list[int], chunk: int = 100) -> Iterator[Order]:
    for begin in range(0, len(numbers), chunk):
        yield from client.orders(where={"number": numbers[begin : begin + chunk]})


# --- links and locks ----------------------------------------------------------------------------------------------


def order_link(number: int) -> Link:
    """The link of Centra order ``number``: the import's, for an order that came from a marketplace or a retailer;
    else the web order's own, made the first time the order is seen (so a stalled order's age can be measured)."""
    return order_links([number])[number]


# --- a chunk of orders -------------------------------------------------------------------------------------------


@dataclass
class _Tally:
    """What became of a chunk's orders, added to the run's summary as they settle and to its counter at the end."""

    summary: ExportSummary
    failed: int = 0

    def outcome(self, outcome: Outcome) -> None:
        self.summary.exported += outcome is Outcome.EXPORTED
        self.summary.already_exported += outcome is Outcome.ALREADY_EXPORTED
        self.summary.waiting_capture += outcome is Outcome.WAITING_CAPTURE

    def failure(self, order: Order, error: BaseException) -> None:
        self.failed += 1
        self.summary.failed += 1
        self.summary.exception_ids.append(_record(order, error).pk)


def export_chunk(orders: list[Order], summary: ExportSummary, counter: RunCounter | None = None) -> None:
    """Export ``orders`` (as just listed) together, each succeeding, waiting or failing on its own."""
    tally = _Tally(summary)
    summary.examined += len(orders)
    listed = {order.number: order for order in orders}
    links = order_links(list(listed))
    candidates, busy = [], 0
    for order in orders:
        link = links[order.number]
        try:
            outcome = Outcome.ALREADY_EXPORTED if link.exported_at else _not_yet(link, order)
        except Exception as error:  # every failure of one order lands in the queue, whatever it is
            tally.failure(order, error)
            continue
        if outcome:
            tally.outcome(outcome)
        else:
            candidates.append(link)
    if candidates:
        with order_locks_held(candidates) as held:
            busy = len(candidates) - len(held)
            summary.busy += busy
            _export_held(Link.objects.filter(pk__in=held), listed, tally)
    if counter:
        counter.add(examined=len(orders), succeeded=len(orders) - tally.failed - busy, failed=tally.failed)


def _export_held(links: Iterable[Link], listed: dict[int, Order], tally: _Tally) -> None:
    """Export the orders of ``links``, whose locks this worker holds: each read again (it may have changed since
    it was listed), translated, then the new sales posted together."""
    links = {link.centra_number: link for link in links if not link.exported_at}
    if not links:
        return
    fulfil = connections.fulfil()
    current = {order.number: order for order in orders_by_number(connections.centra(), list(links))}
    ready = []
    for number, link in links.items():
        order = current.get(number)
        try:
            if order is None:
                raise DataError(f"Centra has no order {number}", system=System.CENTRA, operation="orders")
            outcome = _not_yet(link, order)
        except Exception as error:
            tally.failure(order or listed[number], error)
            continue
        if outcome:
            tally.outcome(outcome)
        else:
            ready.append((link, order))
    if not ready:
        return
    try:
        translation = Translation([order for _, order in ready], fulfil)
    except Exception:
        translation = None  # each order reads its own and records what fails
    drafted = []
    for link, order in ready:
        try:
            drafted.append((link, order, sale_draft(order, fulfil=fulfil, link=link, translation=translation)))
        except Exception as error:
            tally.failure(order, error)
    _post(drafted, fulfil, tally)


def _post(drafted: list[tuple[Link, Order, SaleDraft]], fulfil: FulfilClient, tally: _Tally) -> None:
    """Create, check and confirm the chunk's new sales, one call each step for all of them. An order an earlier
    attempt got into Fulfil goes the one-order way (its sale is compared and mended); so does every order of a step
    Fulfil refuses or that fails, which tells which order it was and records it."""
    if not drafted:
        return
    try:
        found = fulfil.sales_matching([draft.reference for _, _, draft in drafted])
    except Exception as error:
        _export_each(drafted, tally, because=error)
        return
    fresh = []
    for item in drafted:
        link, _, draft = item
        theirs = [sale for sale in found.get(draft.reference, []) if draft.channel_id in (None, sale.channel_id)]
        if link.fulfil_id or theirs:
            _export_alone(*item, tally)
        elif not create_may_be_landing(link):  # else an earlier create may still land: a later run looks again
            fresh.append(item)
    if not fresh:
        return
    links_note([link for link, _, _ in fresh], sale_create_sent_at=timezone.now().isoformat())
    try:
        ids = fulfil.create_sales([draft for _, _, draft in fresh])
    except Exception as error:
        if may_have_landed(error):
            # A timeout or 5xx: Fulfil may still be making these sales. Asked again now, it could make them twice;
            # the queue retries each order later, and the retry finds its sale by reference if it landed.
            for _, order, _ in fresh:
                tally.failure(order, error)
        else:  # refused whole, nothing made: one by one tells which order it was
            links_note([link for link, _, _ in fresh], sale_create_sent_at=None)
            _export_each(fresh, tally, because=error)
        return
    for (link, _, _), sale_id in zip(fresh, ids, strict=True):
        link.fulfil_id = sale_id
    # Saved the moment Fulfil answers: a crash after this point resumes with these sales, never second ones.
    links_note([link for link, _, _ in fresh], fields=["fulfil_id"])
    try:
        sales = fulfil.sales(ids)
        right = [item for item in fresh if _total(sales.get(item[0].fulfil_id)) == item[1].grand_total]
        after = fulfil.confirm_sales([link.fulfil_id for link, _, _ in right]) if right else {}
        states = {sale_id: sale.state for sale_id, sale in after.items()}
    except Exception as error:
        _export_each(fresh, tally, because=error)
        return
    confirmed = [item for item in right if states.get(item[0].fulfil_id) in WORKING_STATES]
    # A wrong total or a sale left unconfirmed: the one-order way deletes the draft or names the refusal.
    settled = {id(item) for item in confirmed}
    _export_each([item for item in fresh if id(item) not in settled], tally)
    now = timezone.now()
    by_state: dict[str, list[Link]] = {}
    for link, _, _ in confirmed:
        link.exported_at = now
        by_state.setdefault(states[link.fulfil_id], []).append(link)
    for state, links in by_state.items():
        # Fulfil holds the stock once a sale is processing; until then its units still count as in flight.
        links_note(links, fields=["exported_at"], waiting=None, sale_state=state)
    objects_succeeded(flow=FLOW, object_refs=[object_ref(order.number) for _, order, _ in confirmed])
    for _ in confirmed:
        tally.outcome(Outcome.EXPORTED)


def create_may_be_landing(link: Link) -> bool:
    """Whether a sale create for the link was sent within CREATE_SETTLE and its answer never recorded."""
    sent = link.detail.get("sale_create_sent_at")
    return bool(sent) and link.fulfil_id is None and timezone.now() - moment(sent) < CREATE_SETTLE


def _total(sale: Sale | None) -> Decimal | None:
    return sale.total_amount if sale else None


def _export_each(
    items: list[tuple[Link, Order, SaleDraft]], tally: _Tally, because: BaseException | None = None
) -> None:
    if because is not None and items:
        logger.warning(
            "exporting %d orders one by one: the call for all of them failed: %s", len(items), because, exc_info=because
        )
    for item in items:
        _export_alone(*item, tally)


def _export_alone(link: Link, order: Order, draft: SaleDraft, tally: _Tally) -> None:
    try:
        _export(link, order, draft)
    except Exception as error:
        tally.failure(order, error)
        return
    object_succeeded(flow=FLOW, object_ref=object_ref(order.number))
    tally.outcome(Outcome.EXPORTED)


def order_links(numbers: list[int]) -> dict[int, Link]:
    """``order_link`` for many orders: {number: link}, in one query (four when some are new). An imported
    order's link carries its Centra number from the import."""
    links = {link.centra_number: link for link in Link.objects.filter(kind=Link.Kind.ORDER, centra_number__in=numbers)}
    wanted = {
        (System.CENTRA, str(number)): Link(
            kind=Link.Kind.ORDER, source_system=System.CENTRA, source_ref=str(number), centra_number=number
        )
        for number in dict.fromkeys(numbers)
        if number not in links
    }
    links.update((link.centra_number, link) for link in links_made(Link.Kind.ORDER, wanted).values())
    return links


# --- one order ----------------------------------------------------------------------------------------------------


def order_export_one(*, number: int, order: Order | None = None) -> Outcome:
    """Bring Centra order ``number`` into Fulfil as a confirmed sale, once. ``order`` is the order as just listed,
    if it was. Returns what happened. Raises MissingMapping, TotalsMismatch, DataError or the connectors' errors;
    records ``payment_capture_lag`` itself."""
    client = connections.centra()
    order = order or _read(client, number)
    link = order_link(number)
    if link.exported_at:
        return Outcome.ALREADY_EXPORTED
    waiting = _not_yet(link, order)
    if waiting:
        return waiting
    with order_lock(link):
        link.refresh_from_db()
        if link.exported_at:
            return Outcome.ALREADY_EXPORTED
        order = _read(client, number)  # it may have changed (a line cancelled) since it was listed
        waiting = _not_yet(link, order)
        if waiting:
            return waiting
        _export(link, order)
    object_succeeded(flow=FLOW, object_ref=object_ref(number))
    return Outcome.EXPORTED


def _read(client: CentraClient, number: int) -> Order:
    order = client.order(number)
    if order is None:
        raise DataError(f"Centra has no order {number}", system=System.CENTRA, operation="orders")
    return order


def _not_yet(link: Link, order: Order) -> Outcome | None:
    """Why the order cannot be exported now, or None when it can."""
    if order.status not in export_statuses() or not any(line.quantity > 0 for line in order.lines):
        if link.detail.get("waiting"):
            link_note(link, waiting=None)
        return Outcome.NOT_EXPORTABLE
    # An imported order was paid on its marketplace or by its retailer: Centra holds no capture for it.
    if settings.ORDER_EXPORT_REQUIRE_CAPTURE and link.source_system == System.CENTRA and not order.is_captured:
        _wait_for_capture(link, order)
        return Outcome.WAITING_CAPTURE
    return None


def _wait_for_capture(link: Link, order: Order) -> None:
    if link.detail.get("waiting") != "capture":
        link_note(link, waiting="capture")
    placed = moment(order.created_at)
    if timezone.now() - placed < timedelta(minutes=settings.PAYMENT_CAPTURE_LAG_MINUTES):
        return
    # Worded without the time waited, so the same wait met run after run is one exception with a count.
    failure_record(
        flow=FLOW,
        object_type="order",
        object_ref=object_ref(order.number),
        error=PaymentNotCaptured(
            f"The payment of Centra order {order.number} ({order.grand_total} {order.currency}) has not been "
            f"captured since the order was placed at {placed:%Y-%m-%d %H:%M} UTC; the order is held from Fulfil "
            "until it is.",
            system=System.CENTRA,
            operation="order export",
        ),
        title=f"Centra order {order.number}: payment not captured",
        system=System.CENTRA,
        value=order.grand_total,
        currency=order.currency,
        refs=[str(order.number)],
        context={"number": order.number},
    )


def _export(link: Link, order: Order, draft: SaleDraft | None = None) -> None:
    fulfil = connections.fulfil()
    draft = draft or sale_draft(order, fulfil=fulfil, link=link)
    if link.fulfil_id and fulfil.sale(link.fulfil_id) is None:
        link.fulfil_id = None  # deleted in Fulfil since: it is made again
    created = False
    if link.fulfil_id is None:
        existing = _existing_sale(fulfil, order, draft)
        if existing is None and create_may_be_landing(link):
            raise TransientError(
                f"an earlier create of the sale for Centra order {order.number} may still land in Fulfil: "
                "looked for again shortly",
                system=System.FULFIL,
                operation="sale.sale.create",
            )
        created = existing is None
        if created:
            link_note(link, sale_create_sent_at=timezone.now().isoformat())
        # Saved the moment Fulfil answers: a crash after this point resumes with this sale, never a second one.
        try:
            link.fulfil_id = existing.id if existing else fulfil.create_sale(draft)
        except Exception as error:
            if not may_have_landed(error):
                link_note(link, sale_create_sent_at=None)  # it never got there: the next attempt may create
            raise
        link.save(update_fields=["fulfil_id", "updated_at"])
    if created:
        # Made from the draft just now, so its lines are the draft's: only Fulfil's total is left to compare.
        sale = fulfil.sale(link.fulfil_id, with_lines=False)
    else:
        sale = fulfil.sale(link.fulfil_id)
        if not same_lines(sale, draft) and sale.state in EDITABLE_STATES:
            fulfil.replace_sale_lines(sale.id, draft)
            sale = fulfil.sale(sale.id)
    if sale.total_amount != order.grand_total:
        if sale.state == "draft":
            fulfil.delete_sale(sale.id)  # nothing is left posted with a wrong total
            link.fulfil_id = None
            link.save(update_fields=["fulfil_id", "updated_at"])
        raise TotalsMismatch(
            f"Fulfil's total for Centra order {order.number} is {sale.total_amount} {order.currency}, Centra's grand "
            f"total is {order.grand_total}: Fulfil added or changed an amount (a tax rule on its channel?)",
            details=_figures_text(order),
            system=System.FULFIL,
            operation="sale.sale.create",
        )
    state = fulfil.confirm_sale(sale.id)
    link.exported_at = timezone.now()
    link.save(update_fields=["exported_at", "updated_at"])
    # Fulfil holds the stock once the sale is processing; until then its units still count as in flight.
    link_note(link, waiting=None, sale_state=state)


def _existing_sale(fulfil: FulfilClient, order: Order, draft: SaleDraft) -> Sale | None:
    """The sale an earlier attempt made (its answer lost, or the link's record of it), if Fulfil has one."""
    sale = fulfil.sale_by_reference(draft.reference, channel_id=draft.channel_id)
    if sale is not None and sale.state == "cancelled":
        raise DataError(
            f"Fulfil has the sale for Centra order {order.number} ({sale.number or sale.id}) cancelled, while the "
            "order is live in Centra: cancel the order in Centra, or tell Switchyard about the sale by hand",
            system=System.FULFIL,
            operation="sale.sale.search_read",
        )
    return sale


def same_lines(sale: Sale, draft: SaleDraft) -> bool:
    """Whether the sale already has exactly the draft's goods and shipping lines (product, quantity, price)."""
    have = Counter((line.type, line.product_code, line.quantity, line.unit_price) for line in sale.lines)
    want = Counter(("line", line.product_code, line.quantity, line.unit_price) for line in draft.lines)
    if draft.shipping_amount is not None:
        want[("shipping", None, 1, draft.shipping_amount)] += 1
    return have == want


# --- translating --------------------------------------------------------------------------------------------------


class Translation:
    """What turning orders into sales needs, read once for all of them: the market mappings, the bundles among
    their SKUs, the SKUs' Fulfil codes and Fulfil's products for those codes (four queries and one call)."""

    def __init__(self, orders: list[Order], fulfil: FulfilClient) -> None:
        skus = {line.sku for order in orders for line in order.lines if line.quantity > 0}
        self.markets = markets_all()
        self.bundles = bundles_for(skus)
        singles = [sku for sku in skus if sku.lower() not in self.bundles]
        components = [part.component_sku for parts in self.bundles.values() for part in parts]
        self.codes = skus_mapped(system=System.FULFIL, centra_skus=singles + components)
        self.products: dict[str, Product] = (
            fulfil.products_by_code(set(self.codes.values()), with_stock=False) if self.codes else {}
        )


def sale_draft(
    order: Order, *, fulfil: FulfilClient, link: Link | None = None, translation: Translation | None = None
) -> SaleDraft:
    """The Fulfil sale for a Centra order as it is now (cancelled units left out, bundles exploded into their
    components), every amount as Centra charged it; the mappings and products from ``translation`` (read for this
    order alone when not given). Raises MissingMapping (market, SKU), TotalsMismatch when the amounts do not add up
    to Centra's grand total, DataError for an order that cannot be carried over."""
    translation = translation or Translation([order], fulfil)
    market = market_for(store_id=order.store_id, market_id=order.market_id, known=translation.markets)
    if market.currency.upper() != order.currency.upper():
        raise DataError(
            f"Centra order {order.number} is in {order.currency}, but the market mapping for store "
            f"{order.store_id} market {order.market_id} says {market.currency}: correct the mapping",
            system="switchyard",
            operation="order export",
        )
    if order.tax_added:
        raise DataError(
            f"Centra order {order.number} adds {order.tax_added} {order.currency} of tax on top of its prices: "
            "Switchyard carries orders whose prices include their tax; post this one by hand",
            system="switchyard",
            operation="order export",
        )
    lines = [
        draft_line for line in order.lines if line.quantity > 0 for draft_line in _lines_for(line, order, translation)
    ]
    shipping = order.shipping + order.handling
    _check_totals(order, lines, shipping)
    lines = _in_fulfil_codes(lines, translation)
    return SaleDraft(
        reference=str(order.number),
        customer=_customer(order),
        invoice_address=_address(order.billing_address or order.shipping_address),
        shipment_address=_address(order.shipping_address),
        currency_code=order.currency,
        lines=tuple(lines),
        channel_id=market.fulfil_channel_id,
        warehouse_id=market.fulfil_warehouse_id,
        shipping_amount=shipping if shipping else None,
        shipping_description=order.shipping_option or "Shipping",
        sale_date=moment(order.created_at).date(),
        comment=_comment(order, market, link),
    )


def _lines_for(line: OrderLine, order: Order, translation: Translation) -> list[DraftLine]:
    """A Centra line as sale lines (in Centra SKUs): a bundle becomes its components, sharing the line's value by
    their price shares so the parts add up to it exactly."""
    parts = bundle_parts(translation.bundles.get(line.sku.lower()), amount=line.line_value, currency=order.currency)
    description = f"{line.name} {line.size}".strip() or line.sku
    if line.unit_price != line.unit_original_price:
        description += f" (was {line.unit_original_price} each)"
    if parts is None:
        return _priced(line.sku, line.quantity, line.line_value, order, description, line.id)
    return [
        draft_line
        for part in parts
        for draft_line in _priced(
            part.component_sku,
            part.quantity * line.quantity,
            part.amount,
            order,
            f"{part.component_sku}, part of {description}",
            line.id,
        )
    ]


def _priced(sku: str, quantity: int, amount: Decimal, order: Order, description: str, line_id: int) -> list[DraftLine]:
    """``quantity`` units for exactly ``amount``: one line at a whole unit price, or — when the amount does not
    divide — two, whose unit prices are one minor unit apart (100.00 for 3 is 2 × 33.33 and 1 × 33.34)."""
    if not is_exact(amount, order.currency):
        raise TotalsMismatch(
            f"Centra order {order.number}: {amount} {order.currency} for {sku} is not a whole number of cents",
            details=_figures_text(order),
            system=System.CENTRA,
            operation="order export",
        )
    prices = Counter(split_exactly(amount, [Decimal(1)] * quantity, order.currency))
    # The Fulfil line says which Centra line it carries: shipments and returns map back through it.
    return [
        DraftLine(sku, count, price, description=description, channel_identifier=str(line_id))
        for price, count in sorted(prices.items(), reverse=True)
    ]


def _check_totals(order: Order, lines: list[DraftLine], shipping: Decimal) -> None:
    carried = sum((line.unit_price * line.quantity for line in lines), Decimal(0)) + shipping
    by_totals = order.line_values - order.discounts + order.shipping + order.handling + order.tax_added
    if carried == order.grand_total and by_totals == order.grand_total:
        return
    raise TotalsMismatch(
        f"Centra order {order.number}: the lines and shipping come to {carried} {order.currency}, but its grand "
        f"total is {order.grand_total}; nothing was posted",
        details=_figures_text(order) + [f"lines and shipping as they would be posted: {carried}"],
        system=System.CENTRA,
        operation="order export",
    )


def _figures(order: Order) -> dict[str, str]:
    return {
        "line values (before discounts)": str(order.line_values),
        "discounts": str(order.discounts),
        "shipping": str(order.shipping),
        "handling": str(order.handling),
        "tax added": str(order.tax_added),
        "tax included": str(order.tax_included),
        "grand total": str(order.grand_total),
        "lines": ", ".join(
            f"{line.sku} {line.quantity} × {line.unit_price} = {line.line_value}" for line in order.lines
        ),
    }


def _figures_text(order: Order) -> list[str]:
    return [f"{name}: {value}" for name, value in _figures(order).items()]


def _in_fulfil_codes(lines: list[DraftLine], translation: Translation) -> list[DraftLine]:
    """The lines with Fulfil's product codes and ids (so the sale's create need not look them up again). A SKU
    with no code, or whose code Fulfil does not know, is an unmapped SKU: a SKU mapping frees the order."""
    codes, known = translation.codes, translation.products
    for sku in dict.fromkeys(line.product_code for line in lines):
        if codes.get(sku) not in known:
            raise MissingMapping(kind="sku", system=System.FULFIL, key={"centra_sku": sku})
    return [
        replace(line, product_code=codes[line.product_code], product_id=known[codes[line.product_code]].id)
        for line in lines
    ]


def _customer(order: Order) -> Customer:
    address = order.shipping_address
    name = f"{address.get('firstName') or ''} {address.get('lastName') or ''}".strip()
    email = order.customer_email or address.get("email") or f"centra-{order.number}@orders.invalid"
    return Customer(name=name or email, email=email, phone=address.get("phoneNumber") or None)


def _address(raw: dict) -> Address:
    return Address(
        name=f"{raw.get('firstName') or ''} {raw.get('lastName') or ''}".strip(),
        street=raw.get("address1") or "",
        street_bis=raw.get("address2") or "",
        city=raw.get("city") or "",
        zip=raw.get("zipCode") or "",
        country_code=((raw.get("country") or {}).get("code") or "").upper(),
    )


def _comment(order: Order, market: MarketMapping, link: Link | None) -> str:
    source = ""
    if link is not None and link.source_system != System.CENTRA:
        source = f" ({link.channel.name if link.channel else link.source_system} {link.source_ref})"
    return (
        f"Centra order {order.number}{source}, {market.label or f'market {order.market_id}'}. Prices include tax as "
        f"Centra charged it: {order.tax_included} {order.currency} of tax in {order.grand_total}."
    )


# --- failures -----------------------------------------------------------------------------------------------------


def _record(order: Order, error: BaseException):
    return failure_record(
        flow=FLOW,
        object_type="order",
        object_ref=object_ref(order.number),
        error=error,
        title=_title(error, order.number),
        system=getattr(error, "system", "") or System.FULFIL,
        value=order.grand_total,
        currency=order.currency,
        refs=[str(order.number)],
        context={"number": order.number},
        payload={"totals": _figures(order)} if isinstance(error, TotalsMismatch) else None,
    )


def _title(error: BaseException, number: int) -> str:
    if isinstance(error, MissingMapping):
        return f"Centra order {number} waits for a mapping: {error.message}"
    if isinstance(error, TotalsMismatch):
        return f"Centra order {number}: totals do not add up"
    return f"Centra order {number} could not be exported to Fulfil"


def retry(exception) -> None:
    """Export the order again (the exception queue calls this). Raises AlreadyRecorded while its payment is still
    not captured."""
    if order_export_one(number=int(exception.context["number"])) is Outcome.WAITING_CAPTURE:
        raise AlreadyRecorded


register_retry_handler(FLOW, retry)
