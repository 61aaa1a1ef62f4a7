"""Order import: retailer orders relayed by Virtualstock → Centra.

For each new order: look up its link (make one, reserving the Centra order number, the first time) → translate
SKUs and the shipping method through the mappings → check the money carries over exactly → create the order in
Centra under the reserved number (a second attempt is refused by Centra, so nothing doubles) → acknowledge it at the
source only after Centra has it → record. Every failure is one exception per order, retried automatically when it
is transient and freed automatically when the missing mapping is added.
"""

from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from exceptions.registry import register_retry_handler
from exceptions.services import failure_record, object_succeeded
from mappings.models import Channel, System
from mappings.money import is_exact, minor_unit
from mappings.services import MissingMapping, centra_sku_for, shipping_method_for
from syncs import connections
from syncs.connectors.centra import ExternalOrder, OrderNumberTaken
from syncs.connectors.errors import DataError, TransientError
from syncs.connectors.virtualstock import LineQuantity, Order
from syncs.models import Link
from syncs.runs import RunCounter

FLOW = "order_import"


@dataclass
class ImportSummary:
    examined: int = 0
    imported: int = 0
    already_imported: int = 0
    failed: int = 0
    exception_ids: list[int] = field(default_factory=list)


def object_ref(source: str, reference: str) -> str:
    return f"{source}:{reference}"


def order_import_run(*, counter: RunCounter | None = None) -> ImportSummary:
    """Import every new order of every active Virtualstock channel. Each order succeeds or becomes an exception
    on its own; one bad order — even one that cannot be read — never stops the rest."""
    summary = ImportSummary()
    client = connections.virtualstock()
    channels = list(Channel.objects.filter(system=System.VIRTUALSTOCK, active=True))
    if not channels:
        return summary
    for raw in client.raw_orders(status="ORDER"):
        summary.examined += 1
        failed_before = summary.failed
        try:
            order = client.parse_order(raw)
        except TransientError as error:
            summary.failed += 1
            summary.exception_ids.append(_record_unreadable(raw, error).pk)
            continue
        channel = _channel_for(order, channels)
        try:
            if channel is None:
                raise DataError(
                    f"No Virtualstock channel is set up for the retailer {order.retailer!r}",
                    system="switchyard",
                    operation="order import",
                )
            fresh = order_import_one(channel=channel, order=order)
        except Exception as error:  # every failure of one order lands in the queue, whatever it is
            summary.failed += 1
            recorded = _record(channel=channel or channels[0], order=order, error=error, channel_known=bool(channel))
            summary.exception_ids.append(recorded.pk)
        else:
            summary.imported += fresh
            summary.already_imported += not fresh
        if counter:
            counter.add(
                examined=1, succeeded=int(summary.failed == failed_before), failed=summary.failed - failed_before
            )
    return summary


def _channel_for(order: Order, channels: list[Channel]) -> Channel | None:
    """The channel an order belongs to: the only one, or the one whose account names the order's retailer. None
    when several exist and none matches: an order is never placed under a guessed channel."""
    if len(channels) == 1:
        return channels[0]
    for channel in channels:
        if channel.external_account and channel.external_account.lower() in (order.retailer or "").lower():
            return channel
    return None


def _record_unreadable(raw: dict, error: TransientError):
    reference = str(raw.get("order_reference") or raw.get("url") or "unknown")
    return failure_record(
        flow=FLOW,
        object_type="order",
        object_ref=object_ref("virtualstock", reference),
        error=error,
        kind_code="validation_failed",
        title=f"Order {reference} from Virtualstock cannot be read",
        system="virtualstock",
        refs=[reference],
        payload={"order": raw},
        context={"unreadable": True},
    )


def _record(*, channel: Channel, order: Order, error: BaseException, channel_known: bool = True):
    title = _title(error, order)
    return failure_record(
        flow=FLOW,
        object_type="order",
        object_ref=object_ref(channel.code if channel_known else "virtualstock", order.reference),
        error=error,
        title=title,
        system=getattr(error, "system", "") or channel.system,
        value=order.total,
        currency=order.currency,
        refs=[order.reference, str(order.id)],
        context={"channel": channel.code, "order_id": order.id},
        payload={"order": order.raw} if isinstance(error, MissingMapping | AmountsDoNotCarry) else None,
    )


def _title(error: BaseException, order: Order) -> str:
    if isinstance(error, MissingMapping):
        return f"Order {order.reference} waits for a mapping: {error.message}"
    if isinstance(error, AmountsDoNotCarry):
        return f"Order {order.reference}: amounts do not carry over exactly"
    return f"Order {order.reference} could not be imported"


class AmountsDoNotCarry(DataError):
    """A line's total cannot be split into a unit price exact to the minor unit."""

    exception_kind = "totals_mismatch"


def order_import_one(*, channel: Channel, order: Order) -> bool:
    """Bring one order into Centra and acknowledge it at the source. Returns True if it was created now, False if
    it was already there. Raises MissingMapping, AmountsDoNotCarry, or the connectors' errors."""
    link = _link_for(channel, order)
    if link.acknowledged_at:
        return False
    created_now = False
    if not link.created_in_target_at:
        external = _translate(channel=channel, order=order, number=link.centra_number)
        try:
            connections.centra().create_external_order(external)
            created_now = True
        except OrderNumberTaken:
            pass  # an earlier attempt landed before its link was saved: Centra has it, under this very number
        link.created_in_target_at = timezone.now()
        link.save(update_fields=["created_in_target_at", "updated_at"])
    _acknowledge(order)
    link.acknowledged_at = timezone.now()
    link.save(update_fields=["acknowledged_at", "updated_at"])
    object_succeeded(flow=FLOW, object_ref=object_ref(channel.code, order.reference))
    return created_now


def _link_for(channel: Channel, order: Order) -> Link:
    with transaction.atomic():
        # Retailers may reuse each other's references: an order is known by its channel and its reference.
        link, created = Link.objects.select_for_update().get_or_create(
            kind=Link.Kind.ORDER,
            source_system=channel.code,
            source_ref=order.reference,
            defaults={"channel": channel, "source_id": str(order.id)},
        )
        if link.centra_number is None:
            link.centra_number = settings.CENTRA_IMPORT_ORDER_NUMBER_BASE + link.pk
            link.save(update_fields=["centra_number", "updated_at"])
    return link


def _translate(*, channel: Channel, order: Order, number: int) -> ExternalOrder:
    if channel.centra_market_id is None:
        raise DataError(
            f"The channel {channel.name} has no Centra market: set it on the channel.",
            system="switchyard",
            operation="order import",
        )
    unit = minor_unit(order.currency)
    lines = []
    for line in order.lines:
        sku = centra_sku_for(system=channel.system, code=line.part_number)
        total = line.total if line.total is not None else (line.subtotal or Decimal(0)) + (line.tax or Decimal(0))
        unit_price = (total / line.quantity).quantize(unit)
        if unit_price * line.quantity != total or not is_exact(total, order.currency):
            raise AmountsDoNotCarry(
                f"Line {line.line_ref}: {total} {order.currency} for {line.quantity} units is not a whole unit price",
                system=channel.system,
                operation="order import",
            )
        lines.append((sku, line.quantity, unit_price, unit_price))
    shipping = shipping_method_for(system=channel.system, method=order.delivery_service_code or "standard")
    address = order.shipping_address
    first, _, last = (address.get("full_name") or "").partition(" ")
    return ExternalOrder(
        number=number,
        email=address.get("email") or f"{order.reference.lower()}@orders.invalid",
        country=(address.get("country") or "GB")[:2].upper(),
        market_id=channel.centra_market_id,
        first_name=first,
        last_name=last,
        address=address.get("line_1") or "",
        city=address.get("city") or "",
        zipcode=address.get("postal_code") or "",
        phone=address.get("phone") or "",
        shipping_option=shipping.centra_shipping_option,
        shipping_value=Decimal(0),
        lines=lines,
        reference=f"{channel.name} {order.reference}",
    )


def _acknowledge(order: Order) -> None:
    client = connections.virtualstock()
    pending = [
        LineQuantity(line.part_number, line.line_ref, line.quantity) for line in order.lines if line.status == "ORDER"
    ]
    if not pending:
        return
    try:
        client.acknowledge(order.id, pending)
    except DataError:
        # Refused: maybe an earlier attempt's acknowledgement landed after all. Look before giving up.
        if client.order(order.id).status == "ORDER":
            raise


def retry(exception) -> None:
    """Re-run one order through the flow (the exception queue calls this)."""
    channel = Channel.objects.get(code=exception.context["channel"])
    order = connections.virtualstock().order(exception.context["order_id"])
    order_import_one(channel=channel, order=order)


register_retry_handler(FLOW, retry)
