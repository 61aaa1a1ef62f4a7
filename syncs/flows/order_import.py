"""Order import: retailer orders relayed by Virtualstock, and marketplace orders → Centra.

For each new order: look up its link (make one, reserving the Centra order number, the first time) → translate
SKUs and the shipping method through the mappings → check the money carries over exactly → create the order in
Centra under the reserved number (a second attempt is refused by Centra, so nothing doubles) → acknowledge it at the
source only after Centra has it → record. Every failure is one exception per order, retried automatically when it
is transient and freed automatically when the missing mapping is added.

Each source speaks its own API; ``VirtualstockSource`` and ``MarketplaceSource`` turn its orders into one neutral
``IncomingOrder``, so translating, checking and recording are written once.

A run takes the new orders CHUNK at a time: the chunk's links are made, its mappings read, its units in flight and
its steps recorded and its exceptions healed in a few queries for all of them. Centra's Order API creates one order
a call and both sources acknowledge one order a call, so those stay one call per order, each failing on its own. A
chunk whose batched write is refused goes through order by order (``order_import_one``, which the exception queue's
retries use too), so the order at fault gets its own exception.
"""

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import islice

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from exceptions.registry import register_retry_handler
from exceptions.services import failure_record, object_succeeded, objects_succeeded
from mappings.models import Channel, ShippingMethodMapping, System
from mappings.money import is_exact, minor_unit
from mappings.services import (
    MissingMapping,
    centra_sku_for,
    centra_skus_mapped,
    shipping_method_for,
    shipping_methods_for,
)
from syncs import connections
from syncs.connectors import marketplace as mp
from syncs.connectors.centra import ExternalOrder, OrderNumberTaken
from syncs.connectors.errors import DataError, TransientError
from syncs.connectors.virtualstock import LineQuantity
from syncs.connectors.virtualstock import Order as VirtualstockOrder
from syncs.links import links_made, order_locks_held
from syncs.models import Link
from syncs.runs import RunCounter
from syncs.stock.in_flight import stock_push_soon, units_in_flight_record, units_in_flight_record_many

FLOW = "order_import"
logger = logging.getLogger("switchyard.orders")
PUSH_EVERY_SKUS = 50  # a long run starts a stock push for the SKUs its orders sold this often
CHUNK = 50  # orders read, translated and recorded together (Centra and the source still get a call per order)


@dataclass(frozen=True)
class IncomingLine:
    code: str  # the source's SKU: Virtualstock part number, marketplace seller SKU
    line_ref: str
    quantity: int
    total: Decimal  # what the customer pays for the line, tax included


@dataclass(frozen=True)
class IncomingOrder:
    """An order as any source gives it, in the terms Centra needs."""

    system: str
    id: str  # what the source's API addresses the order by
    reference: str  # what people quote
    account: str  # the retailer or marketplace account, to find the channel
    currency: str
    total: Decimal | None
    shipping_method: str
    shipping_value: Decimal
    address: dict  # first_name, last_name, line_1, city, postal_code, country, email, phone
    lines: list[IncomingLine]
    raw: dict = field(repr=False, compare=False)
    native: object = field(default=None, repr=False, compare=False)  # the connector's own order, to acknowledge


class VirtualstockSource:
    system = System.VIRTUALSTOCK
    account_label = "retailer"

    def __init__(self) -> None:
        self.client = connections.virtualstock()

    def pending(self) -> Iterator[dict]:
        # Read the whole listing first: acknowledging an order takes it out of the ORDER listing, so paging by offset
        # while acknowledging would skip a page's worth of orders each page.
        return iter(list(self.client.raw_orders(status="ORDER")))

    def parse(self, raw: dict) -> IncomingOrder:
        return self._incoming(self.client.parse_order(raw))

    def fetch(self, order_id: str) -> IncomingOrder:
        return self._incoming(self.client.order(int(order_id)))

    @staticmethod
    def reference_of(raw: dict) -> str:
        return str(raw.get("order_reference") or raw.get("url") or "unknown")

    def _incoming(self, order: VirtualstockOrder) -> IncomingOrder:
        address = order.shipping_address
        first, _, last = (address.get("full_name") or "").partition(" ")
        return IncomingOrder(
            system=self.system,
            id=str(order.id),
            reference=order.reference,
            account=order.retailer or "",
            currency=order.currency,
            total=order.total,
            shipping_method=order.delivery_service_code or "standard",
            shipping_value=Decimal(0),  # retailers settle delivery themselves: Centra gets the goods
            address={
                "first_name": first,
                "last_name": last,
                "line_1": address.get("line_1") or "",
                "city": address.get("city") or "",
                "postal_code": address.get("postal_code") or "",
                "country": address.get("country") or "",
                "email": address.get("email") or "",
                "phone": address.get("phone") or "",
            },
            lines=[
                IncomingLine(
                    code=line.part_number,
                    line_ref=line.line_ref,
                    quantity=line.quantity,
                    total=line.total
                    if line.total is not None
                    else (line.subtotal or Decimal(0)) + (line.tax or Decimal(0)),
                )
                for line in order.lines
            ],
            raw=order.raw,
            native=order,
        )

    def acknowledge(self, order: IncomingOrder) -> None:
        native: VirtualstockOrder = order.native
        pending = [
            LineQuantity(line.part_number, line.line_ref, line.quantity)
            for line in native.lines
            if line.status == "ORDER"
        ]
        if not pending:
            return
        try:
            self.client.acknowledge(native.id, pending)
        except DataError:
            # Refused: maybe an earlier attempt's acknowledgement landed after all. Look before giving up.
            if self.client.order(native.id).status == "ORDER":
                raise


class MarketplaceSource:
    system = System.MARKETPLACE
    account_label = "account"

    def __init__(self) -> None:
        self.client = connections.marketplace()

    def pending(self) -> Iterator[dict]:
        seen = set()
        for order in self.client.all_new_orders():  # an order changing while we page may come twice
            if order.order_id not in seen:
                seen.add(order.order_id)
                yield order

    def parse(self, raw) -> IncomingOrder:
        return self._incoming(raw)

    def fetch(self, order_id: str) -> IncomingOrder:
        return self._incoming(self.client.order(order_id))

    @staticmethod
    def reference_of(raw) -> str:
        return raw.order_id

    def _incoming(self, order: mp.MarketplaceOrder) -> IncomingOrder:
        customer = order.customer
        return IncomingOrder(
            system=self.system,
            id=order.order_id,
            reference=order.order_id,
            account=str(order.raw.get("account") or ""),
            currency=order.currency,
            # The order's total counts every unit ordered: it checks the lines only while none is cancelled.
            total=order.total_price if not any(line.cancelled_quantity for line in order.lines) else None,
            shipping_method=order.shipping_method or "standard",
            shipping_value=order.shipping_price,
            address={
                "first_name": customer.get("first_name") or "",
                "last_name": customer.get("last_name") or "",
                "line_1": customer.get("address1") or "",
                "city": customer.get("city") or "",
                "postal_code": customer.get("zipcode") or "",
                "country": customer.get("country") or "",
                "email": customer.get("email") or "",
                "phone": customer.get("phone") or "",
            },
            lines=[
                IncomingLine(
                    code=line.sku,
                    line_ref=line.line_id,
                    quantity=line.quantity - line.cancelled_quantity,
                    total=line.unit_price * (line.quantity - line.cancelled_quantity),  # prices include tax
                )
                for line in order.lines
                if line.quantity > line.cancelled_quantity
            ],
            raw=order.raw,
            native=order,
        )

    def acknowledge(self, order: IncomingOrder) -> None:
        try:
            self.client.acknowledge(order.id)  # idempotent at the marketplace
        except DataError as error:
            if self.client.order(order.id).status != "CANCELLED":
                raise
            raise DataError(
                f"The customer cancelled marketplace order {order.reference} after it reached Centra: "
                "cancel it in Centra too",
                system=self.system,
                operation="order_acknowledge",
                exchange=error.exchange,
            ) from error


SOURCES = {System.VIRTUALSTOCK: VirtualstockSource, System.MARKETPLACE: MarketplaceSource}


@dataclass
class ImportSummary:
    examined: int = 0
    imported: int = 0
    already_imported: int = 0
    failed: int = 0
    busy: int = 0  # orders another worker was importing at the same moment: left to it
    exception_ids: list[int] = field(default_factory=list)


def object_ref(source: str, reference: str) -> str:
    return f"{source}:{reference}"


def order_import_run(*, counter: RunCounter | None = None) -> ImportSummary:
    """Import every new order of every source with an active channel. Each order succeeds or becomes an exception
    on its own; one bad order — even one that cannot be read — never stops the rest."""
    summary = ImportSummary()
    for system, source_class in SOURCES.items():
        channels = list(Channel.objects.filter(system=system, active=True))
        if channels:
            _import_from(source_class(), channels, summary, counter)
    return summary


def _import_from(source, channels: list[Channel], summary: ImportSummary, counter: RunCounter | None) -> None:
    """The source's new orders, CHUNK at a time: each chunk's links, mappings and records are read and written
    together, while Centra and the source still get one call per order."""
    touched: set[str] = set()
    pending = source.pending()
    while chunk := list(islice(pending, CHUNK)):
        failed_before, busy_before = summary.failed, summary.busy
        _import_chunk(source, channels, chunk, summary, touched)
        if counter:
            failed, busy = summary.failed - failed_before, summary.busy - busy_before
            counter.add(examined=len(chunk), succeeded=len(chunk) - failed - busy, failed=failed)
        if len(touched) >= PUSH_EVERY_SKUS:
            stock_push_soon(touched)
            touched = set()
    stock_push_soon(touched)


@dataclass
class _Item:
    """One order of a chunk on its way through."""

    channel: Channel
    order: IncomingOrder
    link: Link | None = None
    external: ExternalOrder | None = None
    created_now: bool = False
    settled: bool = False  # its outcome is recorded: imported, or an exception

    @property
    def key(self) -> tuple[str, str]:
        return (self.channel.code, self.order.reference)


def _import_chunk(source, channels: list[Channel], raws: list, summary: ImportSummary, touched: set[str]) -> None:
    items: dict[tuple[str, str], _Item] = {}
    again: list[_Item] = []  # on their own: a reference seen twice in one chunk (after the first), and the
    # orders a batched write was refused for
    for raw in raws:
        summary.examined += 1
        try:
            order = source.parse(raw)
        except TransientError as error:
            summary.failed += 1
            summary.exception_ids.append(_record_unreadable(source, raw, error).pk)
            continue
        channel = _channel_for(order, channels)
        if channel is None:
            error = DataError(
                f"No {System(source.system).label} channel is set up for the {source.account_label} {order.account!r}",
                system="switchyard",
                operation="order import",
            )
            _fail(_Item(channels[0], order), error, summary, channel_known=False)
            continue
        item = _Item(channel, order)
        if item.key in items:
            again.append(item)
        else:
            items[item.key] = item
    try:
        _links_for_many(list(items.values()))
    except Exception as error:  # the batched write was refused: each order on its own, to say which one it was
        _say_one_by_one(len(items), error)
        again[:0] = items.values()
    else:
        linked = [item for item in items.values() if item.link is not None]
        again[:0] = [item for item in items.values() if item.link is None]
        with order_locks_held(item.link for item in linked) as held:
            summary.busy += sum(item.link.pk not in held for item in linked)
            mine = [item for item in linked if item.link.pk in held]
            try:
                _import_held(source, mine, summary, touched)
            except Exception as error:  # a batched write was refused: the orders not yet settled go on their own
                unsettled = [item for item in mine if not item.settled]
                _say_one_by_one(len(unsettled), error)
                for item in unsettled:
                    _import_alone(item, source, summary, touched)
    for item in again:
        _import_alone(item, source, summary, touched)


def _say_one_by_one(count: int, error: BaseException) -> None:
    logger.warning("importing %d orders one by one: a write for all of them failed: %s", count, error, exc_info=error)


def _import_held(source, items: list[_Item], summary: ImportSummary, touched: set[str]) -> None:
    """Bring the chunk's orders (their locks held) into Centra and acknowledge them, as ``order_import_one`` does
    for one: units in flight before Centra is asked, the acknowledgement only after Centra has the order."""
    waiting = []
    for item in items:
        if item.link.acknowledged_at:
            item.settled = True
            summary.already_imported += 1
        else:
            waiting.append(item)
    to_create = [item for item in waiting if not item.link.created_in_target_at]
    translations = Translations(source.system, [item.order for item in to_create])
    translated = []
    for item in to_create:
        try:
            item.external = _translate(
                channel=item.channel, order=item.order, number=item.link.centra_number, translations=translations
            )
        except Exception as error:  # every failure of one order lands in the queue, whatever it is
            _fail(item, error, summary)
        else:
            translated.append(item)
    held = [(item.link, _quantities(item.external)) for item in translated]
    units_in_flight_record_many(held)  # sold: every channel counts them before Centra or Fulfil does
    for _link, quantities in held:
        touched.update(quantities)
    created = []
    for item in translated:
        try:
            item.created_now = _create_in_centra(item.external)
        except Exception as error:
            _fail(item, error, summary)
        else:
            created.append(item)
    _links_stamp([item.link for item in created], "created_in_target_at")
    acknowledged = []
    for item in waiting:
        if item.settled:
            continue
        try:
            source.acknowledge(item.order)
        except Exception as error:
            _fail(item, error, summary)
        else:
            acknowledged.append(item)
    _links_stamp([item.link for item in acknowledged], "acknowledged_at")
    if acknowledged:
        refs = [object_ref(item.channel.code, item.order.reference) for item in acknowledged]
        objects_succeeded(flow=FLOW, object_refs=refs)
    for item in acknowledged:
        item.settled = True
        summary.imported += item.created_now
        summary.already_imported += not item.created_now


def _import_alone(item: _Item, source, summary: ImportSummary, touched: set[str]) -> None:
    try:
        fresh = order_import_one(channel=item.channel, order=item.order, source=source, touched=touched)
    except Exception as error:  # every failure of one order lands in the queue, whatever it is
        _fail(item, error, summary)
    else:
        summary.imported += fresh
        summary.already_imported += not fresh
    item.settled = True


def _fail(item: _Item, error: BaseException, summary: ImportSummary, *, channel_known: bool = True) -> None:
    summary.failed += 1
    recorded = _record(channel=item.channel, order=item.order, error=error, channel_known=channel_known)
    summary.exception_ids.append(recorded.pk)
    item.settled = True


def _links_for_many(items: list[_Item]) -> None:
    """Each item's link, made the first time with its Centra order number reserved: a few queries for them all.
    Two workers making the same link at once end up with the one row (the unique key decides)."""
    if not items:
        return
    # Retailers may reuse each other's references: an order is known by its channel and its reference.
    links = links_made(
        Link.Kind.ORDER,
        {
            item.key: Link(
                kind=Link.Kind.ORDER,
                source_system=item.channel.code,
                source_ref=item.order.reference,
                channel=item.channel,
                source_id=item.order.id,
            )
            for item in items
        },
    )
    unnumbered = [link for link in links.values() if link.centra_number is None]
    if unnumbered:
        # The number is the link's own id plus a base, whoever sets it: a second worker writes the same value.
        Link.objects.filter(pk__in=[link.pk for link in unnumbered], centra_number__isnull=True).update(
            centra_number=settings.CENTRA_IMPORT_ORDER_NUMBER_BASE + F("pk"), updated_at=timezone.now()
        )
        for link in unnumbered:
            link.centra_number = settings.CENTRA_IMPORT_ORDER_NUMBER_BASE + link.pk
    for item in items:
        item.link = links.get(item.key)


def _links_stamp(links: list[Link], step: str) -> None:
    """Record that ``step`` (created_in_target_at, acknowledged_at) happened now for these links: one UPDATE."""
    if links:
        now = timezone.now()
        Link.objects.filter(pk__in=[link.pk for link in links]).update(**{step: now}, updated_at=now)
        for link in links:
            setattr(link, step, now)


def _channel_for(order: IncomingOrder, channels: list[Channel]) -> Channel | None:
    """The channel an order belongs to: the only one, or the one whose account names the order's retailer or
    marketplace account. None when several exist and none matches: an order is never placed under a guess."""
    if len(channels) == 1:
        return channels[0]
    for channel in channels:
        if channel.external_account and channel.external_account.lower() in order.account.lower():
            return channel
    return None


def _record_unreadable(source, raw, error: TransientError):
    reference = source.reference_of(raw)
    return failure_record(
        flow=FLOW,
        object_type="order",
        object_ref=object_ref(source.system, reference),
        error=error,
        kind_code="validation_failed",
        title=f"Order {reference} from {System(source.system).label} cannot be read",
        system=source.system,
        refs=[reference],
        payload={"order": raw if isinstance(raw, dict) else raw.raw},
        context={"unreadable": True},
    )


def _record(*, channel: Channel, order: IncomingOrder, error: BaseException, channel_known: bool = True):
    title = _title(error, order)
    return failure_record(
        flow=FLOW,
        object_type="order",
        object_ref=object_ref(channel.code if channel_known else order.system, order.reference),
        error=error,
        title=title,
        system=getattr(error, "system", "") or channel.system,
        value=order.total,
        currency=order.currency,
        refs=sorted({order.reference, order.id}),
        context={"channel": channel.code, "order_id": order.id, "system": order.system},
        payload={"order": order.raw} if isinstance(error, MissingMapping | AmountsDoNotCarry) else None,
    )


def _title(error: BaseException, order: IncomingOrder) -> str:
    if isinstance(error, MissingMapping):
        return f"Order {order.reference} waits for a mapping: {error.message}"
    if isinstance(error, AmountsDoNotCarry):
        return f"Order {order.reference}: amounts do not carry over exactly"
    return f"Order {order.reference} could not be imported"


class AmountsDoNotCarry(DataError):
    """A line's total cannot be split into a unit price exact to the minor unit, or the lines and shipping do not
    add up to the order's total."""

    exception_kind = "totals_mismatch"


def order_import_one(*, channel: Channel, order: IncomingOrder, source=None, touched: set[str] | None = None) -> bool:
    """Bring one order into Centra and acknowledge it at the source. Returns True if it was created now, False if
    it was already there. Raises MissingMapping, AmountsDoNotCarry, or the connectors' errors.

    The order's units count as sold on every channel from here on; their SKUs are pushed at once, or added to
    ``touched`` for the caller to push together with other orders'."""
    source = source or SOURCES[channel.system]()
    link = _link_for(channel, order)
    if link.acknowledged_at:
        return False
    created_now = False
    if not link.created_in_target_at:
        translations = Translations(channel.system, [order])
        external = _translate(channel=channel, order=order, number=link.centra_number, translations=translations)
        quantities = _quantities(external)
        units_in_flight_record(link, quantities)  # sold: every channel counts it before Centra or Fulfil does
        if touched is None:
            stock_push_soon(quantities)
        else:
            touched.update(quantities)
        created_now = _create_in_centra(external)
        link.created_in_target_at = timezone.now()
        link.save(update_fields=["created_in_target_at", "updated_at"])
    source.acknowledge(order)
    link.acknowledged_at = timezone.now()
    link.save(update_fields=["acknowledged_at", "updated_at"])
    object_succeeded(flow=FLOW, object_ref=object_ref(channel.code, order.reference))
    return created_now


def _quantities(external: ExternalOrder) -> dict[str, int]:
    """Units of each Centra SKU the order holds."""
    quantities: dict[str, int] = {}
    for sku, quantity, _price, _original in external.lines:
        quantities[sku] = quantities.get(sku, 0) + quantity
    return quantities


def _create_in_centra(external: ExternalOrder) -> bool:
    """Create the order in Centra under its reserved number. True if created now, False if Centra had it already
    (an earlier attempt landed before its link was saved: Centra refuses the number a second time)."""
    try:
        connections.centra().create_external_order(external)
    except OrderNumberTaken:
        return False
    return True


def _link_for(channel: Channel, order: IncomingOrder) -> Link:
    with transaction.atomic():
        # Retailers may reuse each other's references: an order is known by its channel and its reference.
        link, created = Link.objects.select_for_update().get_or_create(
            kind=Link.Kind.ORDER,
            source_system=channel.code,
            source_ref=order.reference,
            defaults={"channel": channel, "source_id": order.id},
        )
        if link.centra_number is None:
            link.centra_number = settings.CENTRA_IMPORT_ORDER_NUMBER_BASE + link.pk
            link.save(update_fields=["centra_number", "updated_at"])
    return link


class Translations:
    """The SKU and shipping-method mappings some orders of one source system need, read in one query each. A code
    or method the first reading did not answer is asked about on its own, so every answer (and every
    MissingMapping) is the one ``centra_sku_for`` and ``shipping_method_for`` give."""

    def __init__(self, system: str, orders: list[IncomingOrder]) -> None:
        self.system = system
        self.skus = centra_skus_mapped(system=system, codes={line.code for order in orders for line in order.lines})
        self.methods = shipping_methods_for(system=system, methods={order.shipping_method for order in orders})

    def centra_sku(self, code: str) -> str:
        """The Centra SKU behind the source's code. Raises MissingMapping."""
        if code not in self.skus:
            self.skus[code] = centra_sku_for(system=self.system, code=code)
        return self.skus[code]

    def shipping_method(self, method: str) -> ShippingMethodMapping:
        """How an order with this shipping method is created in Centra. Raises MissingMapping."""
        if method not in self.methods:
            self.methods[method] = shipping_method_for(system=self.system, method=method)
        return self.methods[method]


def _translate(*, channel: Channel, order: IncomingOrder, number: int, translations: Translations) -> ExternalOrder:
    if channel.centra_market_id is None:
        raise DataError(
            f"The channel {channel.name} has no Centra market: set it on the channel.",
            system="switchyard",
            operation="order import",
        )
    unit = minor_unit(order.currency)
    lines = []
    for line in order.lines:
        sku = translations.centra_sku(line.code)
        unit_price = (line.total / line.quantity).quantize(unit)
        if unit_price * line.quantity != line.total or not is_exact(line.total, order.currency):
            raise AmountsDoNotCarry(
                f"Line {line.line_ref}: {line.total} {order.currency} for {line.quantity} units is not a whole "
                "unit price",
                system=channel.system,
                operation="order import",
            )
        lines.append((sku, line.quantity, unit_price, unit_price))
    if order.total is not None and order.system == System.MARKETPLACE:
        carried = sum((line.total for line in order.lines), Decimal(0)) + order.shipping_value
        if carried != order.total:
            raise AmountsDoNotCarry(
                f"The lines and shipping come to {carried} {order.currency}, the order's total is {order.total}",
                system=channel.system,
                operation="order import",
            )
    shipping = translations.shipping_method(order.shipping_method)
    address = order.address
    return ExternalOrder(
        number=number,
        email=address["email"] or f"{order.reference.lower()}@orders.invalid",
        country=(address["country"] or "GB")[:2].upper(),
        market_id=channel.centra_market_id,
        first_name=address["first_name"],
        last_name=address["last_name"],
        address=address["line_1"],
        city=address["city"],
        zipcode=address["postal_code"],
        phone=address["phone"],
        shipping_option=shipping.centra_shipping_option,
        shipping_value=order.shipping_value,
        lines=lines,
        reference=f"{channel.name} {order.reference}",
    )


def retry(exception) -> None:
    """Re-run one order through the flow (the exception queue calls this)."""
    channel = Channel.objects.get(code=exception.context["channel"])
    source = SOURCES[channel.system]()
    order_import_one(channel=channel, order=source.fetch(str(exception.context["order_id"])), source=source)


register_retry_handler(FLOW, retry)
