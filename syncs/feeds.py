"""The Inventory Planner feeds: Centra's catalogue and sales as the CSV files Inventory Planner fetches.

Inventory Planner cannot receive sales by API. It downloads files a platform hosts at permanent URLs, daily, as
full snapshots: a product or an order missing from a file is deleted in Inventory Planner. So a feed is built from
Centra on every request, page by page, and written row by row as the pages come: a catalogue of any size is never
held in memory. docs/feeds.md lists the columns, Inventory Planner's documentation they follow, and where each
value comes from.
"""

import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from itertools import islice

from mappings.money import is_currency, minor_unit
from mappings.services import skus_mapped
from syncs.connectors.centra import CentraClient, Order, OrderLine
from syncs.csv_stream import text_cell
from syncs.runs import moment

logger = logging.getLogger(__name__)

SYSTEM = "inventory_planner"
# Inventory Planner's products file (CSV/Excel connector): the documented columns Centra can fill.
PRODUCT_COLUMNS = (
    "product_id",
    "title",
    "price",
    "SKU",
    "created_at",
    "stock_quantity",
    "cost_price",
    "barcode",
    "updated_at",
    "managing_stock",
    "vendor",
)
# Inventory Planner's sales order file: one row per order line; ID is the order, ORDER_ID the line.
SALES_ORDER_COLUMNS = (
    "ORDER_ID",
    "ID",
    "VARIANT_ID",
    "WAREHOUSE",
    "CURRENCY",
    "QUANTITY",
    "PRICE",
    "CREATED_AT",
    "REMOVED",
    "UPDATED_AT",
    "DISCOUNT",
    "TAX",
    "TAX_INCLUDED",
    "SHIPPING",
    "CANCELLED",
)
# SKUs are translated to Inventory Planner's codes this many rows at a time: one query per batch, a batch in memory.
BATCH = 500


# --- the products feed ------------------------------------------------------------------------------------------


def planner_product_rows(
    *, centra: CentraClient, pricelist_id: int, warehouse_id: int | None, vendor: str
) -> Iterator[tuple[str, ...]]:
    """One PRODUCT_COLUMNS row per Centra size, in Centra's product order: the product's price in ``pricelist_id``,
    the size's stock free to allocate (in ``warehouse_id``, or over every warehouse). A size whose SKU has no
    Inventory Planner code is left out (and counted in the log). Reads Centra as it is iterated."""
    left_out = 0
    for batch in _batches(centra.catalogue(pricelist_id=pricelist_id, warehouse_id=warehouse_id), BATCH):
        codes = skus_mapped(system=SYSTEM, centra_skus=[size.sku for size in batch])
        for size in batch:
            code = codes.get(size.sku)
            if code is None:
                left_out += 1
                continue
            yield (
                str(size.product_id),
                text_cell(size.product_name),
                money_cell(size.price, size.currency) if size.price is not None else "",
                text_cell(code),
                _date(size.created_at),
                str(size.free_to_allocate),
                "",  # cost_price: Centra does not hold it
                text_cell(size.ean or ""),
                _date(size.updated_at),
                "false" if size.is_bundle else "true",  # a bundle's stock is its components'
                text_cell(vendor),
            )
    if left_out:
        logger.warning("Inventory Planner products feed: %d sizes left out, no Inventory Planner SKU", left_out)


# --- the sales orders feed --------------------------------------------------------------------------------------


def planner_sales_order_rows(*, centra: CentraClient, since: datetime, warehouse: str) -> Iterator[tuple[str, ...]]:
    """SALES_ORDER_COLUMNS rows for every Centra order placed since ``since``, in order-number order: one row per
    order line for the units still ordered, and, on rows of their own, the units cancelled (CANCELLED true:
    Inventory Planner leaves them out) and the units returned (a negative quantity). Every row of a cancelled order
    is CANCELLED. The order's shipping is on its first row. A line whose SKU has no Inventory Planner code is left
    out (and counted in the log). Reads Centra as it is iterated."""
    left_out = 0
    orders = centra.orders(where={"createdAt": {"from": since.astimezone(UTC).isoformat()}})
    for batch in _batches(orders, BATCH // 5):
        codes = skus_mapped(system=SYSTEM, centra_skus={line.sku for order in batch for line in order.lines})
        for order in batch:
            shipping = order.shipping
            for line in order.lines:
                code = codes.get(line.sku)
                if code is None:
                    left_out += 1
                    continue
                for row_id, quantity, tax, cancelled in _line_parts(order, line):
                    yield _sales_row(
                        order,
                        line,
                        row_id=row_id,
                        code=code,
                        warehouse=warehouse,
                        quantity=quantity,
                        tax=tax,
                        shipping=shipping,
                        cancelled=cancelled,
                    )
                    shipping = Decimal(0)
    if left_out:
        logger.warning("Inventory Planner sales orders feed: %d lines left out, no Inventory Planner SKU", left_out)


def _line_parts(order: Order, line: OrderLine) -> Iterator[tuple[str, int, Decimal, bool]]:
    """(row id, quantity, tax, cancelled) for each row of an order line: the units still ordered, those cancelled,
    those returned (negative)."""
    order_cancelled = order.status == "CANCELLED"
    if line.quantity:
        # Centra's own figures for the line as it stands, to the cent.
        yield str(line.id), line.quantity, line.line_value - line.line_value_excluding_tax, order_cancelled
    if line.cancelled_quantity:
        tax = _tax_in(line.unit_price * line.cancelled_quantity, line.tax_percent, order.currency)
        yield f"{line.id}-cancelled", line.cancelled_quantity, tax, True
    if line.returned_quantity:
        tax = _tax_in(line.unit_price * line.returned_quantity, line.tax_percent, order.currency)
        yield f"{line.id}-returned", -line.returned_quantity, -tax, order_cancelled


def _sales_row(
    order: Order,
    line: OrderLine,
    *,
    row_id: str,
    code: str,
    warehouse: str,
    quantity: int,
    tax: Decimal,
    shipping: Decimal,
    cancelled: bool,
) -> tuple[str, ...]:
    """A SALES_ORDER_COLUMNS row. PRICE is the unit price before the line's discount; DISCOUNT and TAX are the
    row's totals, with the sign of its quantity."""
    currency = order.currency
    return (
        text_cell(row_id),
        text_cell(str(order.number)),
        text_cell(code),
        text_cell(warehouse),
        text_cell(currency),
        str(quantity),
        money_cell(line.unit_original_price, currency),
        _timestamp(order.created_at),
        "false",
        _timestamp(order.updated_at),
        money_cell((line.unit_original_price - line.unit_price) * quantity, currency),
        money_cell(tax, currency),
        "true",  # Centra's prices include tax
        money_cell(shipping, currency),
        "true" if cancelled else "false",
    )


def _tax_in(amount: Decimal, tax_percent: Decimal, currency: str) -> Decimal:
    """The tax inside an amount that includes it, as Centra computes a line's: the amount less its net, the net
    rounded to the currency's minor unit."""
    net = (amount / (1 + tax_percent / 100)).quantize(_minor_unit(currency), rounding=ROUND_HALF_UP)
    return amount - net


# --- cells and CSV ----------------------------------------------------------------------------------------------


def money_cell(amount: Decimal, currency: str | None) -> str:
    """An amount as an exact decimal string in the currency's minor unit (``29.00``, ``-2.90``, ``3490``)."""
    amount = amount.quantize(_minor_unit(currency or ""), rounding=ROUND_HALF_UP)
    return str(abs(amount) if amount == 0 else amount)  # never "-0.00"


def _minor_unit(currency: str) -> Decimal:
    return minor_unit(currency) if is_currency(currency) else Decimal("0.01")


def _moment(value: str) -> datetime:
    return moment(value).astimezone(UTC)


def _timestamp(value: str) -> str:
    """Centra's ISO 8601 moment as Inventory Planner's TIMESTAMP_NTZ, in UTC: ``2026-11-01 09:00:00``."""
    return _moment(value).strftime("%Y-%m-%d %H:%M:%S")


def _date(value: str) -> str:
    """Centra's ISO 8601 moment as the products file's date, in UTC: ``2026-11-01``."""
    return _moment(value).date().isoformat()


def _batches(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch
