"""Order cancellations: what is cancelled in Centra — a whole order, or some units of a line — is cancelled
everywhere else.

Each run reads the Centra orders changed since the last run and takes those with cancelled units it has not yet
handled. For each, under the order's lock and reading it again:

- **Fulfil**: a sale still in draft, quotation or confirmed is cancelled (the whole order) or given the order's
  remaining lines (some units), so its total stays Centra's to the cent; a sale the warehouse has started on cannot
  change and is an exception for a person.
- **the source**: an order imported from a marketplace has the units cancelled there (``cancel_line``); one relayed
  by Virtualstock has the retailer's cancellation acknowledged (``cancel_acknowledge``) — Virtualstock takes a
  supplier's cancellation only as the answer to a retailer's request.
- **stock**: an imported order not yet in the stock master holds only its remaining units in flight, and a push of
  the cancelled SKUs to every channel is started (``stock_push_soon``), once Fulfil no longer holds them.

Every step compares what the other system holds with what Centra now says before it sends anything, and the link's
``detail["cancellations"]`` records what was done where and which cancelled quantities are fully handled, so a re-run
(or a task delivered twice) sends nothing twice.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from django.utils import timezone

from exceptions.registry import register_retry_handler
from exceptions.services import failure_record, object_succeeded
from mappings.models import Bundle, System
from mappings.services import MissingMapping, centra_sku_for
from syncs import connections
from syncs.connectors.centra import Order
from syncs.connectors.errors import DataError
from syncs.connectors.virtualstock import LineQuantity
from syncs.flows.order_export import (
    EDITABLE_STATES,
    TotalsMismatch,
    object_ref,
    order_link,
    orders_changed,
    run_cursor,
    sale_draft,
    same_lines,
)
from syncs.links import link_note, order_lock
from syncs.models import Link, UnitsInFlight
from syncs.runs import RunCounter, latest
from syncs.stock.in_flight import stock_push_soon, units_in_flight_record

FLOW = "order_cancel"
MARKETPLACE_REASON = "OTHER"  # Centra does not say why; the marketplace's code for a seller's own reason
VIRTUALSTOCK_CANCELLED = ("CANCEL", "CANCEL_ACK")


@dataclass
class CancelSummary:
    examined: int = 0
    applied: int = 0
    already_handled: int = 0
    failed: int = 0
    skus_released: int = 0
    exception_ids: list[int] = field(default_factory=list)
    cursor: str | None = None


@dataclass
class CancelResult:
    released: set[str] = field(default_factory=set)  # SKUs whose cancelled units go back on sale
    applied: bool = False  # something was sent somewhere
    problems: list[Exception] = field(default_factory=list)


def order_cancel_run(*, counter: RunCounter | None = None) -> CancelSummary:
    """Carry every new cancellation in Centra since the last run to Fulfil, the order's source and the stock.
    Each order succeeds or becomes an exception on its own. Raises only when Centra cannot be read at all."""
    summary = CancelSummary()
    since = run_cursor(FLOW)
    summary.cursor = since.isoformat() if since else None
    released: set[str] = set()
    for order in orders_changed(connections.centra(), since=since):
        summary.cursor = latest(summary.cursor, order.updated_at)
        if not has_cancellations(order):
            continue
        summary.examined += 1
        try:
            result = order_cancel_one(number=order.number, order=order)
        except Exception as error:  # an order that cannot even be looked at is one exception, like any other
            result = CancelResult(problems=[error])
        released |= result.released
        summary.applied += result.applied
        summary.already_handled += not result.applied and not result.problems and not result.released
        if result.problems:
            summary.failed += 1
            summary.exception_ids.append(_record(order, result.problems[0]).pk)
        if counter:
            counter.add(examined=1, succeeded=int(not result.problems), failed=int(bool(result.problems)))
    summary.skus_released = len(released)
    stock_push_soon(released)
    return summary


def has_cancellations(order: Order) -> bool:
    return order.status == "CANCELLED" or any(line.cancelled_quantity for line in order.lines)


def _cancelled(order: Order) -> dict[str, int]:
    return {str(line.id): line.cancelled_quantity for line in order.lines if line.cancelled_quantity}


def _whole(order: Order) -> bool:
    return order.status == "CANCELLED" or not any(line.quantity for line in order.lines)


def _handled(link: Link, order: Order) -> bool:
    """Whether every cancelled unit of the order, as it is now, has already been taken everywhere it must go."""
    handled = (link.detail.get("cancellations") or {}).get("handled")
    return handled == _cancelled(order) and bool(link.detail.get("cancelled")) == _whole(order)


def order_cancel_one(*, number: int, order: Order | None = None) -> CancelResult:
    """Carry the cancellations of Centra order ``number`` everywhere they must go. ``order`` is the order as just
    listed, if it was. Returns the SKUs to push and the problems met: a step that fails never holds the others
    back (a sale Fulfil cannot change does not keep the marketplace waiting), and it is tried again next time."""
    link = order_link(number)
    if order is not None and _handled(link, order):
        return CancelResult()
    result = CancelResult()
    with order_lock(link):
        link.refresh_from_db()
        order = connections.centra().order(number)  # it may have changed since it was listed
        if order is None:
            raise DataError(f"Centra has no order {number}", system=System.CENTRA, operation="orders")
        if _handled(link, order):
            return result
        ledger = dict(link.detail.get("cancellations") or {})
        cancelled = _cancelled(order)
        whole = _whole(order)
        now = timezone.now().isoformat()
        in_fulfil = True
        if link.fulfil_id:
            try:
                done = _in_fulfil(link, order, whole)
            except Exception as error:
                result.problems.append(error)
                in_fulfil = False
            else:
                if done:
                    ledger.setdefault("fulfil", []).append({"at": now, **done})
                    result.applied = True
        if link.source_system != System.CENTRA and link.channel is not None and cancelled:
            sent: list[dict] = []
            try:
                _at_source(link, order, sent)
            except Exception as error:
                result.problems.append(error)
            if sent:
                ledger.setdefault(link.channel.system, []).extend({"at": now, **entry} for entry in sent)
                result.applied = True
        # Stock goes back on sale once Fulfil no longer holds it: pushed before, the old figure would be sent again.
        if in_fulfil:
            handled = ledger.get("handled", {})
            for line in order.lines:
                if line.cancelled_quantity > handled.get(str(line.id), 0):
                    result.released |= _skus_of(line.sku)
            if result.released and UnitsInFlight.objects.filter(link=link).exists():
                units_in_flight_record(link, _remaining(order))
        if not result.problems:
            ledger["handled"] = cancelled
        changes = {"cancellations": ledger}
        if whole:
            changes.update(cancelled=True, waiting=None)  # no longer stalled, nor waiting for a capture
        link_note(link, **changes)
    if not result.problems:
        object_succeeded(flow=FLOW, object_ref=object_ref(number))
    return result


def _remaining(order: Order) -> Counter:
    """Units of each SKU the order still holds (shipped ones included)."""
    remaining = Counter()
    for line in order.lines:
        remaining[line.sku] += line.quantity
    return remaining


def _skus_of(sku: str) -> set[str]:
    """A SKU and, for a bundle, its components: their stock is what goes back on sale."""
    components = Bundle.objects.filter(bundle_sku__iexact=sku).values_list("components__component_sku", flat=True)
    return {sku} | {component for component in components if component}


# --- Fulfil -------------------------------------------------------------------------------------------------------


def _in_fulfil(link: Link, order: Order, whole: bool) -> dict | None:
    """Make the order's sale in Fulfil what the order now is. Returns what was done, or None if nothing had to be.
    Raises DataError when the sale can no longer change."""
    fulfil = connections.fulfil()
    sale = fulfil.sale(link.fulfil_id)
    if sale is None:
        raise DataError(
            f"Fulfil has no sale {link.fulfil_id} for Centra order {order.number} any more",
            system=System.FULFIL,
            operation="sale.sale.read",
        )
    name = sale.number or str(sale.id)
    if whole:
        if sale.state == "cancelled":
            return None
        _changeable(sale.state, name, order)
        fulfil.cancel_sale(sale.id)
        return {"sale": name, "did": "cancelled the sale"}
    draft = sale_draft(order, fulfil=fulfil, link=link)
    if same_lines(sale, draft):
        return None
    _changeable(sale.state, name, order)
    fulfil.replace_sale_lines(sale.id, draft)
    sale = fulfil.sale(sale.id)
    if sale.total_amount != order.grand_total:
        raise TotalsMismatch(
            f"After the cancellation, Fulfil's total for Centra order {order.number} is {sale.total_amount} "
            f"{order.currency}, Centra's is {order.grand_total}",
            system=System.FULFIL,
            operation="sale.sale.write",
        )
    quantities = {str(line.id): line.quantity for line in order.lines}
    return {"sale": name, "did": "gave the sale the order's remaining lines", "quantities": quantities}


class CancellationBlocked(DataError):
    """The other system cannot take the cancellation as things stand: a person must act there first."""

    exception_kind = "cancellation_blocked"


def _changeable(state: str, name: str, order: Order) -> None:
    if state not in EDITABLE_STATES:
        raise CancellationBlocked(
            f"Centra order {order.number} was cancelled (in part or whole), but its sale {name} is already {state} "
            "in Fulfil and can no longer change: take the cancelled units off its shipment in Fulfil (or handle "
            "them as a return if they have left), then Retry or Resolve",
            system=System.FULFIL,
            operation="sale.sale.cancel",
        )


# --- the source ---------------------------------------------------------------------------------------------------


def _at_source(link: Link, order: Order, sent: list[dict]) -> None:
    """Cancel at the marketplace, or acknowledge at Virtualstock, the units Centra no longer holds. Appends what it
    sent to ``sent`` as it goes, so a failure halfway still records the part that went."""
    remaining = _remaining(order)
    skus = {line.sku for line in order.lines if line.cancelled_quantity}
    if link.channel.system == System.MARKETPLACE:
        _on_marketplace(link, remaining, skus, sent)
    elif link.channel.system == System.VIRTUALSTOCK:
        _on_virtualstock(link, remaining, skus, sent)


def _on_marketplace(link: Link, remaining: Counter, skus: set[str], sent: list[dict]) -> None:
    client = connections.marketplace()
    source = client.order(link.source_id or link.source_ref)
    lines_by_sku = defaultdict(list)
    for line in source.lines:
        lines_by_sku[_centra_sku(System.MARKETPLACE, line.sku)].append(line)
    for sku in sorted(skus):
        lines = sorted(lines_by_sku.get(sku, []), key=lambda line: -line.open_quantity)
        # Units the marketplace still counts as ordered beyond what Centra holds: a customer's own cancellation
        # there is already counted, so nothing is cancelled twice.
        excess = sum(line.quantity - line.cancelled_quantity for line in lines) - remaining[sku]
        for line in lines:
            quantity = min(excess, line.open_quantity)
            if quantity <= 0:
                continue
            whole_rest = quantity == line.open_quantity
            client.cancel_line(
                source.order_id, line.line_id, reason=MARKETPLACE_REASON, quantity=None if whole_rest else quantity
            )
            sent.append({"line": line.line_id, "sku": line.sku, "quantity": quantity, "did": "cancel_line"})
            excess -= quantity


def _on_virtualstock(link: Link, remaining: Counter, skus: set[str], sent: list[dict]) -> None:
    client = connections.virtualstock()
    source = client.order(int(link.source_id))
    lines_by_sku = defaultdict(list)
    for line in source.lines:
        lines_by_sku[_centra_sku(System.VIRTUALSTOCK, line.part_number)].append(line)
    for sku in sorted(skus):
        lines = lines_by_sku.get(sku, [])
        live = sum(line.quantity for line in lines if line.status not in VIRTUALSTOCK_CANCELLED)
        requested = [line for line in lines if line.status == "CANCEL"]
        if requested and remaining[sku] <= live:
            # The retailer asked; Centra has dropped the units: the cancellation is acknowledged.
            client.cancel_acknowledge(
                source.id, [LineQuantity(line.part_number, line.line_ref, line.quantity) for line in requested]
            )
            sent.extend(
                {"line": line.line_ref, "sku": line.part_number, "quantity": line.quantity, "did": "cancel_acknowledge"}
                for line in requested
            )
        if live > remaining[sku]:
            part_number = lines[0].part_number
            raise CancellationBlocked(
                f"{live - remaining[sku]} × {part_number} of {source.retailer} order {source.reference} were "
                f"cancelled in Centra, but Virtualstock takes a supplier's cancellation only as the answer to the "
                f"retailer's request: ask {source.retailer} to cancel them, then Retry",
                system=System.VIRTUALSTOCK,
                operation="cancel_acknowledge",
            )


def _centra_sku(system: str, code: str) -> str | None:
    try:
        return centra_sku_for(system=system, code=code)
    except MissingMapping:
        return None  # a source line no mapping knows was never imported into Centra: nothing of it to cancel


# --- failures -----------------------------------------------------------------------------------------------------


def _record(order: Order, error: BaseException):
    return failure_record(
        flow=FLOW,
        object_type="order",
        object_ref=object_ref(order.number),
        error=error,
        title=f"Centra order {order.number}: its cancellation could not be carried everywhere",
        system=getattr(error, "system", "") or System.CENTRA,
        value=order.grand_total,
        currency=order.currency,
        refs=[str(order.number)],
        context={"number": order.number},
    )


def retry(exception) -> None:
    """Carry the order's cancellations again (the exception queue calls this)."""
    result = order_cancel_one(number=int(exception.context["number"]))
    stock_push_soon(result.released)
    if result.problems:
        raise result.problems[0]


register_retry_handler(FLOW, retry)
