"""Centra: the Integration API (GraphQL) for orders, stock, shipments, returns and events, and the REST Order
API for the two things GraphQL does not do — inserting orders settled elsewhere and refunding returns.

GraphQL answers 200 even when a mutation fails: the failure is in ``userErrors`` (nothing was changed) and
non-fatal notes are in ``userWarnings`` (e.g. a capture that did not go through while the shipment was still
created). Both are surfaced: errors as DataError, warnings on the result. A bad token is 403. Limits come in
buckets (requests and mutations, per 10 seconds and per hour); a 429 carries ``Retry-After`` as a timestamp.
Amounts are read from the JSON text as Decimal, never through binary floats.
"""

import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from urllib.parse import parse_qs

import requests

from syncs.connectors.errors import AuthError, ConnectorError, DataError, Exchange, TransientError, WebhookRejected
from syncs.connectors.http import ConnectorSession, RateLimiter, RetryPolicy, Timeouts

SYSTEM = "centra"
ORDER_NUMBER_TAKEN = -5  # the Order API's code for "order number already exists"
MAX_PAGE = 200  # the most records a paged query (products, productSizes, orders…) answers


# --- what Centra gives back ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderLine:
    id: int
    sku: str
    size_id: int | None
    product_number: str
    size: str
    name: str
    quantity: int  # current quantity, cancelled units excluded
    cancelled_quantity: int
    returned_quantity: int
    unit_original_price: Decimal  # including tax
    unit_price: Decimal  # including tax, after the line's discount
    line_value: Decimal  # including tax
    line_value_excluding_tax: Decimal
    tax_percent: Decimal


@dataclass(frozen=True)
class Payment:
    id: int
    entry_type: str  # AUTH, CAPTURE, CAPTURE_REQUEST, REFUND…
    status: str  # SUCCESS, FAILED, PENDING
    value: Decimal
    created_at: str


@dataclass(frozen=True)
class ShipmentLine:
    id: int
    order_line_id: int
    quantity: int


@dataclass(frozen=True)
class Shipment:
    id: int
    number: str
    is_shipped: bool
    is_captured: bool
    tracking_number: str | None
    carrier: str | None
    service: str | None
    lines: list[ShipmentLine]


@dataclass(frozen=True)
class Order:
    id: str
    number: int
    status: str
    is_on_hold: bool
    currency: str
    created_at: str
    updated_at: str
    store_id: int
    market_id: int
    grand_total: Decimal
    grand_total_excluding_tax: Decimal
    line_values: Decimal
    discounts: Decimal
    shipping: Decimal
    tax_included: Decimal
    shipping_option: str | None
    customer_email: str | None
    shipping_address: dict
    lines: list[OrderLine]
    payments: list[Payment]
    shipments: list[Shipment]
    billing_address: dict = field(default_factory=dict)
    handling: Decimal = Decimal(0)
    tax_added: Decimal = Decimal(0)  # tax added on top of prices that exclude it (markets priced without tax)

    @property
    def is_captured(self) -> bool:
        return any(p.entry_type == "CAPTURE" and p.status == "SUCCESS" for p in self.payments)


@dataclass(frozen=True)
class SizeStock:
    """One size as the stock sync sees it."""

    size_id: int
    sku: str
    ean: str | None
    size_name: str
    variant_id: int
    product_number: str
    free_to_allocate: int
    physical: int
    allocated: int


@dataclass(frozen=True)
class StockLevel:
    """An absolute physical quantity for one size of one variant in one warehouse."""

    variant_id: int
    size_name: str
    quantity: int


@dataclass(frozen=True)
class CatalogueSize:
    """One size of the catalogue as a planning tool sees it: its product and variant, the variant's price in one
    pricelist, and the size's stock."""

    product_id: int
    product_number: str
    product_name: str
    product_status: str  # ACTIVE, INACTIVE or CANCELLED
    is_bundle: bool
    created_at: str  # the product's
    updated_at: str
    variant_id: int
    variant_name: str
    size_id: int
    sku: str
    ean: str | None
    size_name: str
    price: Decimal | None  # the variant's, in the pricelist asked for, including tax; None when it has none there
    currency: str | None
    free_to_allocate: int
    physical: int


@dataclass(frozen=True)
class Event:
    id: int
    object_type: str
    change_type: str
    object_reference: int  # an order's number for orders, else the object's id
    created_at: str


@dataclass(frozen=True)
class RateLimitStatus:
    type: str
    interval: str
    quota: int
    used: int
    remaining: int


@dataclass(frozen=True)
class ReturnLine:
    id: int
    shipment_line_id: int
    order_line_id: int
    sku: str
    quantity: int
    line_value: Decimal  # including tax: what the customer gets back for the line, as Centra computed it


@dataclass(frozen=True)
class Return:
    """A return of (part of) a shipment and what it refunds: the lines, plus shipping and handling given back, less
    the return cost and any discount kept; ``grand_total`` is Centra's own sum of them, the amount refunded."""

    id: int
    status: str
    created_at: str
    returned_to_stock: bool
    order_number: int
    shipment_id: int
    currency: str
    line_values: Decimal
    shipping: Decimal
    handling: Decimal
    discounts: Decimal
    return_cost: Decimal
    grand_total: Decimal
    lines: list[ReturnLine]
    refunds: list[Decimal]  # the refund payments it triggered

    @property
    def is_cancelled(self) -> bool:
        """Cancelled in Centra's back office: nothing of it is to be refunded or taken back."""
        return self.status.upper() in ("CANCELLED", "CANCELED")


@dataclass(frozen=True)
class VariantPrice:
    """A variant's price in one pricelist, in that pricelist's currency, as Centra sells it."""

    pricelist_id: int
    price: Decimal
    currency: str


@dataclass(frozen=True)
class ContentSize:
    sku: str
    ean: str | None
    size_name: str


@dataclass(frozen=True)
class ContentVariant:
    id: int
    name: str
    variant_number: str
    prices: dict[int, VariantPrice]  # by pricelist id
    sizes: list[ContentSize]


@dataclass(frozen=True)
class ProductContent:
    """A product as it is presented for sale: its name, the copy of its (first) display, its images in order, its
    custom attributes (attribute name -> the values of its elements, joined) and its variants' prices and sizes."""

    id: int
    product_number: str
    name: str
    status: str
    updated_at: str
    description: str
    short_description: str
    meta_title: str
    meta_description: str
    images: list[str]
    attributes: dict[str, str]
    variants: list[ContentVariant]


@dataclass
class MutationResult:
    payload: dict
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ShipmentToCreate:
    """A shipment to create already sent: its order's lines [(order line id, quantity)] and the carrier, service
    and tracking number the customer will see."""

    order_number: int
    lines: list[tuple[int, int]]
    carrier: str
    service: str
    tracking_number: str


@dataclass(frozen=True)
class ExternalOrder:
    """An order settled outside Centra (a marketplace or a retailer), for the REST Order API.

    ``number`` is the Centra order number Switchyard reserved for it: Centra refuses a second order with the same
    number, which is what makes a retried import safe.
    """

    number: int
    email: str
    country: str
    market_id: int
    first_name: str
    last_name: str
    address: str
    city: str
    zipcode: str
    phone: str
    shipping_option: str
    shipping_value: Decimal
    lines: list[tuple[str, int, Decimal, Decimal]]  # (sku, quantity, unit price, original unit price)
    reference: str  # the source's own reference, kept on the order for people to find it
    pricelist_id: int | None = None


# --- GraphQL documents --------------------------------------------------------------------------------------------

MONEY = "value currency { code }"
ORDER_FIELDS = f"""
  id number status isOnHold createdAt updatedAt
  store {{ id }} market {{ id }}
  grandTotal {{ {MONEY} }} grandTotalExcludingTax: grandTotal(includingTax: false) {{ value }}
  totals {{
    lineValues {{ value }} discounts {{ value }} shipping {{ value }} handling {{ value }}
    taxIncluded {{ value }} taxAdded {{ value }}
  }}
  shippingPriceGroup {{ shippingOption {{ name }} }}
  customer {{ email }}
  shippingAddress {{ firstName lastName address1 address2 city zipCode country {{ code }} email phoneNumber }}
  billingAddress {{ firstName lastName address1 address2 city zipCode country {{ code }} email phoneNumber }}
  lines(includeFullyCancelled: true) {{
    id productNumber size productName quantity cancelledQuantity returnedQuantity taxPercent
    productSize {{ id SKU }}
    unitOriginalPrice {{ value }} unitPrice {{ value }} lineValue {{ value }}
    lineValueExcludingTax: lineValue(includingTax: false) {{ value }}
  }}
  paymentHistory {{ id entryType status createdAt value {{ value }} }}
  shipments {{
    id number isShipped isCaptured trackingNumber carrierInformation {{ carrierName serviceName }}
    lines {{ id quantity orderLine {{ id }} }}
  }}
"""
SHIPMENT_FIELDS = """
  id number isShipped isCaptured trackingNumber carrierInformation { carrierName serviceName }
  lines { id quantity orderLine { id } }
"""
USER_FEEDBACK = "userErrors { message path } userWarnings { message path }"
RETURN_FIELDS = """
  id status createdAt returnedToStock
  shipment { id order { number } }
  grandTotal { value currency { code } }
  totals { lineValues { value } shipping { value } handling { value } discounts { value } returnCost { value } }
  lines { id quantity lineValue { value } shipmentLine { id orderLine { id productSize { SKU } } } }
  refundPaymentHistory { id value { value } }
"""


# --- the client ---------------------------------------------------------------------------------------------------


class CentraClient:
    system = SYSTEM

    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        order_api_url: str = "",
        order_api_key: str = "",
        requests_per_10s: int = 60,
        mutations_per_10s: int = 100,
        mutations_per_hour: int = 1000,
        timeouts: Timeouts = Timeouts(),
        retry: RetryPolicy = RetryPolicy(),
        page_size: int = 100,
        sleep=time.sleep,
    ) -> None:
        self.page_size = page_size
        self.mutations_per_request = mutations_per_10s  # more in one request than the bucket holds is never let in
        self.session = ConnectorSession(
            system=SYSTEM,
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            secrets=[token],
            timeouts=timeouts,
            retry=retry,
            rate_limiter=RateLimiter([(requests_per_10s, 10)]),
            sleep=sleep,
        )
        # Mutations have buckets of their own, on top of the request bucket. The hourly budget is also spread over
        # the hour (at most a hundredth of it in any 36 s), so a rush cannot spend it in the first minutes and
        # leave the web store's stock frozen for the rest of the hour.
        self.mutation_limiter = RateLimiter(
            [(mutations_per_10s, 10), (max(1, mutations_per_hour // 100), 36), (mutations_per_hour, 3600)]
        )
        self.order_api = ConnectorSession(
            system=SYSTEM,
            base_url=order_api_url or base_url,
            headers={"API-Authorization": order_api_key},
            secrets=[order_api_key],
            timeouts=timeouts,
            retry=retry,
            sleep=sleep,
        )

    # --- transport ----------------------------------------------------------------------------------------------

    def execute(self, query: str, variables: dict | None = None, *, operation: str, idempotent: bool = True) -> dict:
        """Run a GraphQL document and return its ``data``. Raises AuthError (403, or a permission error),
        DataError (a document or variables Centra refuses), TransientError / RateLimited."""
        response = self.session.request(
            "POST",
            "/graphql",
            operation=operation,
            json_body={"query": query, "variables": variables or {}, "operationName": None},
            idempotent=idempotent,
            classify=lambda response, exchange: _classify_graphql(response, exchange, operation),
        )
        body = _decimal_json(self.session, response, operation)
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            raise TransientError(
                "an answer without data",
                system=SYSTEM,
                operation=operation,
                exchange=self.session.exchange_for(response),
            )
        return body["data"]

    def mutate(self, query: str, variables: dict, *, operation: str, idempotent: bool = False) -> MutationResult:
        """Run a mutation whose payload is the root field ``operation``. A non-empty ``userErrors`` (nothing was
        changed) is raised as DataError with every message; ``userWarnings`` come back on the result."""
        self.mutation_limiter.acquire()
        data = self.execute(query, variables, operation=operation, idempotent=idempotent)
        payload = data.get(operation) or {}
        errors = payload.get("userErrors") or []
        if errors:
            details = [_feedback(error) for error in errors]
            raise DataError(f"Centra refused it: {details[0]}", details=details, system=SYSTEM, operation=operation)
        return MutationResult(payload=payload, warnings=[_feedback(w) for w in payload.get("userWarnings") or []])

    # --- orders -------------------------------------------------------------------------------------------------

    def orders(self, *, where: dict | None = None, sort: str = "number_ASC") -> Iterator[Order]:
        """Every order matching ``where`` (Centra's OrderFilter), page by page to the end."""
        query = f"""query orders($where: OrderFilter, $limit: Int, $page: Int) {{
          orders(where: $where, sort: [{sort}], limit: $limit, page: $page) {{ {ORDER_FIELDS} }} }}"""
        page = 1
        while True:
            rows = self.execute(
                query, {"where": where or {}, "limit": self.page_size, "page": page}, operation="orders"
            )["orders"]
            yield from (_order(row) for row in rows)
            if len(rows) < self.page_size:
                return
            page += 1

    def order(self, number: int) -> Order | None:
        return next(self.orders(where={"number": [number]}), None)

    def confirm_order(self, number: int) -> MutationResult:
        return self.mutate(
            f"mutation confirmOrder($number: Int) {{ confirmOrder(input: {{order: {{number: $number}}}}) "
            f"{{ order {{ number status }} {USER_FEEDBACK} }} }}",
            {"number": number},
            operation="confirmOrder",
            idempotent=True,
        )

    def cancel_lines(self, number: int, lines: Iterable[tuple[int, int]]) -> MutationResult:
        """Cancel quantities of order lines: [(line id, quantity)]. Stock is released back to the warehouse."""
        return self.mutate(
            f"""mutation updateDirectToConsumerOrder($number: Int, $lines: [OrderLineCancelInput!]) {{
              updateDirectToConsumerOrder(order: {{number: $number}}, input: {{cancelLines: $lines}}) {{
                order {{ number status }} {USER_FEEDBACK} }} }}""",
            {"number": number, "lines": [{"line": {"id": line_id}, "quantity": q} for line_id, q in lines]},
            operation="updateDirectToConsumerOrder",
        )

    # --- stock --------------------------------------------------------------------------------------------------

    def sizes(
        self,
        *,
        product_numbers: list[str] | None = None,
        warehouse_id: int | None = None,
        page_size: int | None = None,
    ) -> Iterator[SizeStock]:
        """Every size of every product (or of ``product_numbers``) with its stock, page by page to the end. The
        stock is the total over every warehouse, or that of ``warehouse_id`` alone. A page holds ``page_size``
        products (the client's page size unless given; at most MAX_PAGE), each with all its sizes."""
        size_of_page = max(1, min(page_size or self.page_size, MAX_PAGE))
        query = f"""query sizes($where: ProductFilter, $limit: Int, $page: Int{_warehouse_variable(warehouse_id)}) {{
          products(where: $where, sort: [id_ASC], limit: $limit, page: $page) {{
            productNumber variants {{ id productSizes {{ id SKU EAN description {_stock_fields(warehouse_id)} }} }}
          }} }}"""
        variables = {"where": {"productNumber": product_numbers} if product_numbers else {}, "limit": size_of_page}
        if warehouse_id is not None:
            variables["warehouse"] = warehouse_id
        page = 1
        while True:
            products = self.execute(query, {**variables, "page": page}, operation="products")["products"]
            for product in products:
                for variant in product["variants"]:
                    for size in variant["productSizes"]:
                        yield _size_stock(size, variant["id"], product["productNumber"])
            if len(products) < size_of_page:
                return
            page += 1

    def sizes_by_sku(self, skus: Iterable[str], *, warehouse_id: int | None = None) -> dict[str, SizeStock]:
        """The sizes with these SKUs and their stock, by SKU (200 a query); unknown SKUs are left out. The stock is
        the total over every warehouse, or that of ``warehouse_id`` alone."""
        query = f"""query productSizes($where: ProductSizeFilter, $limit: Int{_warehouse_variable(warehouse_id)}) {{
          productSizes(where: $where, limit: $limit) {{
            id SKU EAN description productVariant {{ id product {{ productNumber }} }} {_stock_fields(warehouse_id)}
          }} }}"""
        wanted = sorted(set(skus))
        found: dict[str, SizeStock] = {}
        for start in range(0, len(wanted), 200):
            chunk = wanted[start : start + 200]
            variables = {"where": {"SKU": chunk}, "limit": 200}
            if warehouse_id is not None:
                variables["warehouse"] = warehouse_id
            rows = self.execute(query, variables, operation="productSizes")["productSizes"]
            for size in rows:
                variant = size["productVariant"]
                found[size["SKU"]] = _size_stock(size, variant["id"], variant["product"]["productNumber"])
        return found

    def set_stock(self, *, warehouse_id: int, levels: list[StockLevel], description: str) -> MutationResult:
        """Set absolute physical stock for many sizes of many variants in one mutation. Absolute values make a
        repeat harmless, so a call that may or may not have landed is simply sent again."""
        by_variant: dict[int, list[dict]] = {}
        for level in levels:
            if level.quantity < 0:
                raise ValueError("physical stock is never negative")
            by_variant.setdefault(level.variant_id, []).append(
                {"size": {"name": level.size_name}, "quantity": level.quantity}
            )
        return self.mutate(
            f"""mutation setStock($input: StockSetInput!) {{
              setStock(input: $input) {{ stockChanges {{ id }} {USER_FEEDBACK} }} }}""",
            {
                "input": {
                    "warehouse": {"id": warehouse_id},
                    "description": description,
                    "stockQuantityType": "PHYSICAL",
                    "productVariants": [
                        {"productVariant": {"id": variant_id}, "sizeStockLevels": sizes}
                        for variant_id, sizes in by_variant.items()
                    ],
                }
            },
            operation="setStock",
            idempotent=True,
        )

    def deliver_stock(self, *, warehouse_id: int, levels: list[StockLevel], description: str) -> MutationResult:
        """Add delivered units (``quantity`` of each size) to the physical stock of one warehouse, as a goods
        receipt does. It is a change, not a level: sending it twice adds twice, so it is never retried once it may
        have arrived, and callers record that they sent it."""
        by_variant: dict[int, list[dict]] = {}
        for level in levels:
            if level.quantity <= 0:
                raise ValueError("a delivery adds a positive quantity")
            by_variant.setdefault(level.variant_id, []).append(
                {"size": {"name": level.size_name}, "deliveredQuantity": level.quantity}
            )
        return self.mutate(
            f"""mutation changeStock($input: StockChangeInput!) {{
              changeStock(input: $input) {{ stockChange {{ id }} {USER_FEEDBACK} }} }}""",
            {
                "input": {
                    "intoWarehouse": {"id": warehouse_id},
                    "description": description,
                    "productVariants": [
                        {"productVariant": {"id": variant_id}, "sizeChanges": sizes}
                        for variant_id, sizes in by_variant.items()
                    ],
                }
            },
            operation="changeStock",
        )

    def warehouses(self) -> list[dict]:
        return self.execute("query warehouses { warehouses { id name status } }", operation="warehouses")["warehouses"]

    def markets(self) -> list[dict]:
        return self.execute("query markets { markets { id name } }", operation="markets")["markets"]

    def stores(self) -> list[dict]:
        return self.execute("query stores { stores { id name type } }", operation="stores")["stores"]

    def rate_limits(self) -> list[RateLimitStatus]:
        rows = self.execute(
            "query rateLimits { rateLimits { type intervalSeconds quota usedQuota remainingQuota } }",
            operation="rateLimits",
        )["rateLimits"]
        return [
            RateLimitStatus(r["type"], r["intervalSeconds"], r["quota"], r["usedQuota"], r["remainingQuota"])
            for r in rows
        ]

    # --- catalogue ----------------------------------------------------------------------------------------------

    def catalogue(
        self, *, pricelist_id: int, warehouse_id: int | None = None, page_size: int | None = None
    ) -> Iterator[CatalogueSize]:
        """Every size of every product, with its product's name and dates, its variant's price in ``pricelist_id``
        and its stock: the total over every warehouse, or that of ``warehouse_id`` alone. Read page by page to the
        end; a page of ``page_size`` products (the client's page size unless given; at most MAX_PAGE) is all that is
        held at a time."""
        size_of_page = max(1, min(page_size or self.page_size, MAX_PAGE))
        figures = "freeToAllocateQuantity physicalQuantity"
        if warehouse_id is None:
            variables, stock = "", f"stockTotals {{ {figures} }}"
        else:
            variables, stock = ", $warehouse: Int!", f"stock(where: {{warehouseId: [$warehouse]}}) {{ {figures} }}"
        query = f"""query catalogue($limit: Int, $page: Int{variables}) {{
          products(sort: [id_ASC], limit: $limit, page: $page) {{
            id name status productNumber isBundle createdAt updatedAt
            variants {{
              id name prices {{ pricelist {{ id }} price {{ {MONEY} }} }}
              productSizes {{ id SKU EAN description {stock} }}
            }}
          }} }}"""
        arguments = {"limit": size_of_page}
        if warehouse_id is not None:
            arguments["warehouse"] = warehouse_id
        page = 1
        while True:
            products = self.execute(query, {**arguments, "page": page}, operation="products")["products"]
            for product in products:
                yield from _catalogue_sizes(product, pricelist_id)
            if len(products) < size_of_page:
                return
            page += 1

    # --- shipments and returns ----------------------------------------------------------------------------------

    def create_shipment(
        self, *, order_number: int, lines: list[tuple[int, int]], capture: bool = True, good_to_go: bool = True
    ) -> tuple[Shipment, list[str]]:
        """Create a shipment of [(order line id, quantity)]; with ``capture`` Centra captures the payment. A
        failed capture does not fail the shipment: it comes back in the warnings and ``is_captured`` is False."""
        result = self.mutate(
            f"""mutation createShipment($input: ShipmentCreateInput!) {{
              createShipment(input: $input) {{ shipment {{ {SHIPMENT_FIELDS} }} {USER_FEEDBACK} }} }}""",
            {
                "input": {
                    "order": {"number": order_number},
                    "isGoodToGo": good_to_go,
                    "capture": capture,
                    "lines": [{"orderLine": {"id": line_id}, "quantity": q} for line_id, q in lines],
                }
            },
            operation="createShipment",
        )
        return _shipment(result.payload["shipment"]), result.warnings

    def complete_shipment(
        self, *, shipment_id: int, carrier: str, service: str, tracking_number: str, send_email: bool = True
    ) -> tuple[Shipment, list[str]]:
        """Mark a shipment sent, with the carrier, service and tracking number the customer will see."""
        result = self.mutate(
            f"""mutation completeShipment($id: Int!, $input: ShipmentCompleteInput) {{
              completeShipment(id: $id, input: $input) {{ shipment {{ {SHIPMENT_FIELDS} }} {USER_FEEDBACK} }} }}""",
            {
                "id": shipment_id,
                "input": {
                    "sendEmail": send_email,
                    "shipmentInfo": {
                        "carrier": carrier,
                        "service": service,
                        "trackingNumber": tracking_number,
                        "packagesNumber": 1,
                    },
                },
            },
            operation="completeShipment",
        )
        return _shipment(result.payload["shipment"]), result.warnings

    def create_sent_shipments(
        self, shipments: list[ShipmentToCreate], *, capture: bool = True, send_email: bool = True
    ) -> list[tuple[Shipment, list[str]] | DataError]:
        """Create shipments of several orders, each already sent (``shippedAt`` with its carrier, service and
        tracking number: one mutation a shipment, no ``completeShipment``), in one request of aliased
        ``createShipment`` mutations. Centra counts each as a mutation. Returns, in the order given, (shipment,
        warnings) for each one created, or the DataError of one Centra refused (its ``userErrors``; nothing was
        made for it). Raises DataError / TransientError when the request as a whole is refused or fails: then
        any of them may or may not have been made."""
        if len(shipments) > self.mutations_per_request:
            size = self.mutations_per_request
            parts = [shipments[start : start + size] for start in range(0, len(shipments), size)]
            return [
                result
                for part in parts
                for result in self.create_sent_shipments(part, capture=capture, send_email=send_email)
            ]
        if not shipments:
            return []
        for _ in shipments:
            self.mutation_limiter.acquire()
        shipped_at = datetime.now().astimezone().isoformat(timespec="seconds")
        variables = {
            f"s{index}": {
                "order": {"number": shipment.order_number},
                "isGoodToGo": True,
                "capture": capture,
                "sendEmail": send_email,
                "shippedAt": shipped_at,
                "shipmentInfo": {
                    "carrier": shipment.carrier,
                    "service": shipment.service,
                    "trackingNumber": shipment.tracking_number,
                    "packagesNumber": 1,
                },
                "lines": [{"orderLine": {"id": line_id}, "quantity": q} for line_id, q in shipment.lines],
            }
            for index, shipment in enumerate(shipments)
        }
        declared = ", ".join(f"${name}: ShipmentCreateInput!" for name in variables)
        fields = " ".join(
            f"{name}: createShipment(input: ${name}) {{ shipment {{ {SHIPMENT_FIELDS} }} {USER_FEEDBACK} }}"
            for name in variables
        )
        data = self.execute(
            f"mutation createShipment({declared}) {{ {fields} }}",
            variables,
            operation="createShipment",
            idempotent=False,
        )
        results: list[tuple[Shipment, list[str]] | DataError] = []
        for name in variables:
            payload = data.get(name) or {}
            errors = [_feedback(error) for error in payload.get("userErrors") or []]
            if errors or not payload.get("shipment"):
                details = errors or ["no shipment in the answer"]
                results.append(
                    DataError(
                        f"Centra refused it: {details[0]}", details=details, system=SYSTEM, operation="createShipment"
                    )
                )
            else:
                warnings = [_feedback(w) for w in payload.get("userWarnings") or []]
                results.append((_shipment(payload["shipment"]), warnings))
        return results

    def create_return(
        self,
        *,
        shipment_id: int,
        lines: list[tuple[int, int]],
        release_to_stock: bool,
        comment: str = "",
        refund_shipping: bool = False,
        return_cost: Decimal | None = None,
        currency: str = "",
    ) -> int:
        """Register a return of [(shipment line id, quantity)]; returns its id. ``refund_shipping`` gives the
        shipment's shipping back too; ``return_cost`` (in ``currency``) is kept from the refund."""
        values = {
            "shipment": {"id": shipment_id},
            "comment": comment,
            "returnStockActionPolicy": {"releaseItemsBackToWarehouse": release_to_stock}
            if release_to_stock
            else {"removeItemsFromStock": True},
            "lines": [{"shipmentLine": {"id": line_id}, "quantity": q} for line_id, q in lines],
        }
        if refund_shipping:
            values["shippingCost"] = {"fromShipment": True}
        if return_cost is not None:
            # Centra's MonetaryValueInput is a Float; a two-decimal amount prints back exactly as itself.
            values["returnCost"] = {"value": float(return_cost), "currencyIsoCode": currency}
        result = self.mutate(
            f"""mutation createReturn($input: ReturnCreateInput!) {{
              createReturn(input: $input) {{ return {{ id }} {USER_FEEDBACK} }} }}""",
            {"input": values},
            operation="createReturn",
        )
        return result.payload["return"]["id"]

    def return_records(self, *, created_from: datetime | None = None) -> Iterator[Return]:
        """Every return (created at or after ``created_from``, when given) with its lines and what it refunds, page
        by page to the end. Centra's ``ReturnFilter`` has ``createdAt`` but no time of change: a return changed
        since it was created is found by its id (``returns_by_id``)."""
        query = f"""query returns($where: ReturnFilter, $limit: Int, $page: Int) {{
          returns(where: $where, limit: $limit, page: $page) {{ {RETURN_FIELDS} }} }}"""
        where = {"createdAt": {"from": created_from.isoformat()}} if created_from else {}
        page = 1
        while True:
            variables = {"where": where, "limit": self.page_size, "page": page}
            rows = self.execute(query, variables, operation="returns")["returns"]
            yield from (_return(row) for row in rows)
            if len(rows) < self.page_size:
                return
            page += 1

    def returns_by_id(self, return_ids: Iterable[int]) -> dict[int, Return]:
        """The returns with these ids, by id, MAX_PAGE a query (``where: {id: [...]}``); ids Centra does not have
        are absent."""
        query = f"""query returnsById($where: ReturnFilter, $limit: Int) {{
          returns(where: $where, limit: $limit) {{ {RETURN_FIELDS} }} }}"""
        ids = sorted(set(return_ids))
        found: dict[int, Return] = {}
        for start in range(0, len(ids), MAX_PAGE):
            chunk = ids[start : start + MAX_PAGE]
            rows = self.execute(query, {"where": {"id": chunk}, "limit": len(chunk)}, operation="returns")["returns"]
            found.update((record.id, record) for record in map(_return, rows))
        return found

    def return_record(self, return_id: int) -> Return | None:
        """One return, or None, asked for by its id."""
        return self.returns_by_id([return_id]).get(return_id)

    def returns(self) -> Iterator[dict]:
        query = """query returns($limit: Int, $page: Int) { returns(limit: $limit, page: $page) {
            id status createdAt returnedToStock shipment { id number order { number } }
            totals { lineValues { value currency { code } } }
            lines { id quantity shipmentLine { id orderLine { id productSize { SKU } } } }
            refundPaymentHistory { id value { value } } } }"""
        page = 1
        while True:
            rows = self.execute(query, {"limit": self.page_size, "page": page}, operation="returns")["returns"]
            yield from rows
            if len(rows) < self.page_size:
                return
            page += 1

    def complete_return_with_refund(self, return_id: int) -> dict:
        """Complete a return and refund the payment (REST Order API ``PUT /returns/<id>``)."""
        response = self.order_api.request(
            "PUT",
            f"/returns/{return_id}",
            operation="completeReturn",
            json_body={"completed": True, "refundPayment": True},
            idempotent=True,
            classify=_classify_rest,
        )
        return _decimal_json(self.order_api, response, "completeReturn")

    # --- orders from other channels (REST Order API) ------------------------------------------------------------

    def create_external_order(self, order: ExternalOrder) -> int:
        """Insert an order settled elsewhere; returns its number. Raises OrderNumberTaken when Centra already has
        an order with that number (a retry whose first attempt landed), DataError when Centra refuses it."""
        body = {
            "orderNumber": order.number,
            "email": order.email,
            "country": order.country,
            "marketId": order.market_id,
            "firstName": order.first_name,
            "lastName": order.last_name,
            "tele": order.phone,
            "address": {
                "address": order.address,
                "city": order.city,
                "zipcode": order.zipcode,
                "country": order.country,
                "email": order.email,
            },
            "shippingList": order.shipping_option,
            "shippingValue": str(order.shipping_value),
            "internalComment": f"Imported by Switchyard: {order.reference}",
            "extraAttributes": {"switchyard_reference": order.reference},
            "sendEmail": False,
            "products": [
                {"sku": sku, "qty": quantity, "unitPrice": str(price), "originalPrice": str(original)}
                for sku, quantity, price, original in order.lines
            ],
        }
        if order.pricelist_id is not None:
            body["pricelistId"] = order.pricelist_id
        # Not idempotent in itself: a retry relies on the reserved number being refused the second time.
        response = self.order_api.request(
            "POST", "/order", operation="createOrder", json_body=body, idempotent=False, classify=_classify_rest
        )
        answer = _decimal_json(self.order_api, response, "createOrder")
        if answer.get("status") != "ok":
            message = answer.get("msg") or "the order was refused"
            error_class = OrderNumberTaken if answer.get("code") == ORDER_NUMBER_TAKEN else DataError
            raise error_class(
                message, system=SYSTEM, operation="createOrder", exchange=self.order_api.exchange_for(response)
            )
        numbers = answer.get("orders") or [answer.get("order")]
        return int(numbers[0])

    # --- product content (the product sync) ----------------------------------------------------------------------

    def product_content(
        self,
        *,
        updated_since: str | None = None,
        product_numbers: list[str] | None = None,
        page_size: int | None = None,
    ) -> Iterator[ProductContent]:
        """Every product (changed at or after ``updated_since``, an ISO 8601 moment, or those of
        ``product_numbers``) with its copy, images, attributes, and its variants' sizes and prices in every
        pricelist: page by page, ``page_size`` products a page (the client's page size unless given; at most
        MAX_PAGE)."""
        size_of_page = max(1, min(page_size or self.page_size, MAX_PAGE))
        query = f"""query productContent($where: ProductFilter, $limit: Int, $page: Int) {{
          products(where: $where, sort: [id_ASC], limit: $limit, page: $page) {{
            id name status productNumber updatedAt
            displays {{ description shortDescription metaTitle metaDescription }}
            media {{ source(sizeName: "standard") {{ url mimeType }} }}
            attributes {{
              type {{ name }}
              elements {{
                key kind
                ... on AttributeStringElement {{ value }}
                ... on AttributeChoiceElement {{ selectedValue selectedValueName }}
              }}
            }}
            variants {{
              id name variantNumber
              prices {{ pricelist {{ id }} price {{ {MONEY} }} }}
              productSizes {{ SKU EAN description }}
            }}
          }} }}"""
        where: dict = {}
        if updated_since:
            where["updatedAt"] = {"from": updated_since}
        if product_numbers:
            where["productNumber"] = product_numbers
        page = 1
        while True:
            products = self.execute(query, {"where": where, "limit": size_of_page, "page": page}, operation="products")[
                "products"
            ]
            yield from (_product_content(row) for row in products)
            if len(products) < size_of_page:
                return
            page += 1

    # --- events -------------------------------------------------------------------------------------------------

    def listen_for(self, object_types: list[str]) -> None:
        """Ask Centra to queue events for these object types (additive and idempotent)."""
        self.mutate(
            f"""mutation setEventListeners($input: [EventListenerInput!]!) {{
              setEventListeners(input: $input) {{ eventListeners {{ objectType }} {USER_FEEDBACK} }} }}""",
            {"input": [{"objectType": kind} for kind in object_types]},
            operation="setEventListeners",
            idempotent=True,
        )

    def events(self, *, object_types: list[str] | None = None, limit: int = 100) -> list[Event]:
        """The oldest unconfirmed events; they come back until confirmed."""
        rows = self.execute(
            """query events($where: EventFilter, $limit: Int) {
              events(where: $where, limit: $limit) { id objectType changeType objectReference createdAt } }""",
            {"where": {"objectType": object_types} if object_types else {}, "limit": limit},
            operation="events",
        )["events"]
        return [
            Event(r["id"], r["objectType"], r["changeType"], int(r["objectReference"]), r["createdAt"]) for r in rows
        ]

    def confirm_events(self, ids: list[int]) -> None:
        if ids:
            self.mutate(
                f"""mutation confirmEvents($ids: [Int!]!) {{
                  confirmEvents(input: {{eventsIds: $ids}}) {{ events {{ id }} {USER_FEEDBACK} }} }}""",
                {"ids": ids},
                operation="confirmEvents",
                idempotent=True,
            )


class OrderNumberTaken(DataError):
    """Centra already has an order with this number: the first attempt of a retried import landed."""


# --- webhooks -----------------------------------------------------------------------------------------------------


def verify_webhook(
    *, secret: str, body: bytes, headers: Mapping[str, str], tolerance: float = 300, now: float | None = None
) -> list[dict]:
    """Check ``X-Centra-Signature: t=<unix>,v1=<hex>`` — HMAC-SHA256 with the endpoint secret over
    ``"<t>.<raw body>"`` — and return the events of the form field ``payload``. A signature older or newer than
    ``tolerance`` seconds is refused, so a captured webhook cannot be replayed later. Raises WebhookRejected."""
    header = headers.get("X-Centra-Signature") or headers.get("x-centra-signature")
    if not header:
        raise WebhookRejected("no X-Centra-Signature header")
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        raise WebhookRejected("the signature has no timestamp") from None
    now = time.time() if now is None else now
    # Compared, not subtracted: a timestamp of hundreds of digits cannot be turned into a float.
    if not now - tolerance <= timestamp <= now + tolerance:
        raise WebhookRejected("the signature timestamp is outside the allowed window")
    expected = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, candidate) for candidate in parts.get("v1", [])):
        raise WebhookRejected("the signature does not match")
    fields = parse_qs(body.decode("utf-8", errors="replace"))
    try:
        payload = json.loads(fields["payload"][0])
    except (KeyError, IndexError, ValueError):
        raise WebhookRejected("the body has no JSON payload field") from None
    events = payload.get("events") if isinstance(payload, dict) else None
    if not isinstance(events, list) or not all(isinstance(event, dict) for event in events):
        raise WebhookRejected("the payload has no list of events")
    return events


# --- parsing ------------------------------------------------------------------------------------------------------


def _feedback(item: dict) -> str:
    path = ".".join(str(part) for part in item.get("path") or [])
    return f"{item.get('message', 'no message')}" + (f" (at {path})" if path else "")


def _decimal_json(session: ConnectorSession, response: requests.Response, operation: str):
    try:
        return json.loads(response.content, parse_float=Decimal)
    except ValueError:
        raise TransientError(
            f"the answer was not JSON ({response.headers.get('Content-Type', 'no content type')})",
            system=SYSTEM,
            operation=operation,
            exchange=session.exchange_for(response),
        ) from None


def _classify_graphql(response: requests.Response, exchange: Exchange | None, operation: str) -> ConnectorError | None:
    context = {"system": SYSTEM, "operation": operation, "exchange": exchange}
    if response.status_code == 403:
        return AuthError("the API token was refused (403): invalid or expired", **context)
    if response.status_code not in (200, 400):
        return None  # 429, 5xx and the rest: the generic rules
    try:
        body = response.json()
    except ValueError:
        return None if response.status_code == 200 else DataError("a 400 without a readable body", **context)
    errors = body.get("errors") if isinstance(body, dict) else None
    if not errors:
        return None
    messages = [error.get("message", "no message") for error in errors]
    if any((error.get("extensions") or {}).get("category") == "authorization" for error in errors):
        return AuthError(f"the token lacks a permission: {messages[0]}", **context)
    return DataError(f"Centra refused the request: {messages[0]}", details=messages, **context)


def _classify_rest(response: requests.Response, exchange: Exchange | None) -> ConnectorError | None:
    if response.status_code in (401, 403):
        return AuthError("the Order API key was refused", system=SYSTEM, operation="order api", exchange=exchange)
    return None


STOCK_FIGURES = "freeToAllocateQuantity physicalQuantity allocatedQuantity"


def _warehouse_variable(warehouse_id: int | None) -> str:
    return ", $warehouse: Int!" if warehouse_id is not None else ""


def _stock_fields(warehouse_id: int | None) -> str:
    """A size's stock: in one warehouse (the ``$warehouse`` variable), or its totals over every warehouse."""
    if warehouse_id is None:
        return f"stockTotals {{ {STOCK_FIGURES} }}"
    return f"stock(where: {{warehouseId: [$warehouse]}}) {{ {STOCK_FIGURES} }}"


def _size_stock(size: dict, variant_id: int, product_number: str) -> SizeStock:
    if "stock" in size:  # one warehouse: a size never stocked there has no entry, so nothing in it
        totals = size["stock"][0] if size["stock"] else dict.fromkeys(STOCK_FIGURES.split(), 0)
    else:
        totals = size["stockTotals"]
    return SizeStock(
        size_id=size["id"],
        sku=size["SKU"],
        ean=size.get("EAN"),
        size_name=size["description"],
        variant_id=variant_id,
        product_number=product_number,
        free_to_allocate=totals["freeToAllocateQuantity"],
        physical=totals["physicalQuantity"],
        allocated=totals["allocatedQuantity"],
    )


def _money(value) -> Decimal:
    return value["value"] if isinstance(value["value"], Decimal) else Decimal(str(value["value"]))


def _shipment(row: dict) -> Shipment:
    carrier = row.get("carrierInformation") or {}
    return Shipment(
        id=row["id"],
        number=row["number"],
        is_shipped=row["isShipped"],
        is_captured=row["isCaptured"],
        tracking_number=row.get("trackingNumber"),
        carrier=carrier.get("carrierName"),
        service=carrier.get("serviceName"),
        lines=[ShipmentLine(line["id"], line["orderLine"]["id"], line["quantity"]) for line in row["lines"]],
    )


def _return(row: dict) -> Return:
    try:
        totals = row["totals"]
        return Return(
            id=row["id"],
            status=row["status"],
            created_at=row["createdAt"],
            returned_to_stock=bool(row["returnedToStock"]),
            order_number=row["shipment"]["order"]["number"],
            shipment_id=row["shipment"]["id"],
            currency=row["grandTotal"]["currency"]["code"],
            line_values=_money(totals["lineValues"]),
            shipping=_money(totals["shipping"]),
            handling=_money(totals["handling"]),
            discounts=_money(totals["discounts"]),
            return_cost=_money(totals["returnCost"]),
            grand_total=_money(row["grandTotal"]),
            lines=[
                ReturnLine(
                    id=line["id"],
                    shipment_line_id=line["shipmentLine"]["id"],
                    order_line_id=line["shipmentLine"]["orderLine"]["id"],
                    sku=(line["shipmentLine"]["orderLine"].get("productSize") or {}).get("SKU", ""),
                    quantity=line["quantity"],
                    line_value=_money(line["lineValue"]),
                )
                for line in row["lines"]
            ],
            refunds=[_money(entry["value"]) for entry in row.get("refundPaymentHistory") or []],
        )
    except (KeyError, TypeError) as error:
        raise TransientError(
            f"a return in an unexpected shape ({error!r})", system=SYSTEM, operation="returns"
        ) from None


def _product_content(row: dict) -> ProductContent:
    try:
        display = (row.get("displays") or [{}])[0]
        attributes: dict[str, str] = {}
        for attribute in row.get("attributes") or []:
            values = [
                str(element.get("value") if "value" in element else element.get("selectedValueName") or "")
                for element in attribute["elements"]
            ]
            name = attribute["type"]["name"]
            joined = ", ".join(value for value in values if value)
            attributes[name] = f"{attributes[name]}, {joined}" if attributes.get(name) else joined
        return ProductContent(
            id=row["id"],
            product_number=row["productNumber"],
            name=row["name"],
            status=row["status"],
            updated_at=row["updatedAt"],
            description=display.get("description") or "",
            short_description=display.get("shortDescription") or "",
            meta_title=display.get("metaTitle") or "",
            meta_description=display.get("metaDescription") or "",
            images=[media["source"]["url"] for media in row.get("media") or [] if media.get("source")],
            attributes=attributes,
            variants=[
                ContentVariant(
                    id=variant["id"],
                    name=variant["name"],
                    variant_number=variant["variantNumber"],
                    prices={
                        entry["pricelist"]["id"]: VariantPrice(
                            entry["pricelist"]["id"], _money(entry["price"]), entry["price"]["currency"]["code"]
                        )
                        for entry in variant.get("prices") or []
                    },
                    sizes=[
                        ContentSize(size["SKU"], size.get("EAN"), size.get("description") or "")
                        for size in variant["productSizes"]
                    ],
                )
                for variant in row["variants"]
            ],
        )
    except (KeyError, TypeError, IndexError) as error:
        raise TransientError(
            f"a product in an unexpected shape ({error!r})", system=SYSTEM, operation="products"
        ) from None


def _order(row: dict) -> Order:
    try:
        totals = row["totals"]
        option = (row.get("shippingPriceGroup") or {}).get("shippingOption") or {}
        return Order(
            id=row["id"],
            number=row["number"],
            status=row["status"],
            is_on_hold=row["isOnHold"],
            currency=row["grandTotal"]["currency"]["code"],
            created_at=row["createdAt"],
            updated_at=row["updatedAt"],
            store_id=row["store"]["id"],
            market_id=row["market"]["id"],
            grand_total=_money(row["grandTotal"]),
            grand_total_excluding_tax=_money(row["grandTotalExcludingTax"]),
            line_values=_money(totals["lineValues"]),
            discounts=_money(totals["discounts"]),
            shipping=_money(totals["shipping"]),
            tax_included=_money(totals["taxIncluded"]),
            shipping_option=option.get("name"),
            customer_email=(row.get("customer") or {}).get("email"),
            shipping_address=row.get("shippingAddress") or {},
            lines=[
                OrderLine(
                    id=line["id"],
                    sku=(line.get("productSize") or {}).get("SKU", ""),
                    size_id=(line.get("productSize") or {}).get("id"),
                    product_number=line["productNumber"],
                    size=line["size"],
                    name=line.get("productName") or "",
                    quantity=line["quantity"],
                    cancelled_quantity=line["cancelledQuantity"],
                    returned_quantity=line["returnedQuantity"],
                    unit_original_price=_money(line["unitOriginalPrice"]),
                    unit_price=_money(line["unitPrice"]),
                    line_value=_money(line["lineValue"]),
                    line_value_excluding_tax=_money(line["lineValueExcludingTax"]),
                    tax_percent=Decimal(str(line["taxPercent"])),
                )
                for line in row["lines"]
            ],
            payments=[
                Payment(p["id"], p["entryType"], p["status"], _money(p["value"]), p["createdAt"])
                for p in row["paymentHistory"]
            ],
            shipments=[_shipment(s) for s in row["shipments"]],
            billing_address=row.get("billingAddress") or {},
            handling=_money(totals["handling"]) if totals.get("handling") else Decimal(0),
            tax_added=_money(totals["taxAdded"]) if totals.get("taxAdded") else Decimal(0),
        )
    except (KeyError, TypeError) as error:
        raise TransientError(
            f"an order in an unexpected shape ({error!r})", system=SYSTEM, operation="orders"
        ) from None


def _catalogue_sizes(product: dict, pricelist_id: int) -> Iterator[CatalogueSize]:
    """The sizes of one product of a ``catalogue`` page, each with its variant's price in ``pricelist_id``. A size
    never stocked in the warehouse asked for has no stock."""
    try:
        for variant in product["variants"]:
            prices = [entry["price"] for entry in variant["prices"] if entry["pricelist"]["id"] == pricelist_id]
            price = _money(prices[0]) if prices else None
            currency = prices[0]["currency"]["code"] if prices else None
            for size in variant["productSizes"]:
                if "stock" in size:
                    stock = size["stock"][0] if size["stock"] else {"freeToAllocateQuantity": 0, "physicalQuantity": 0}
                else:
                    stock = size["stockTotals"]
                yield CatalogueSize(
                    product_id=product["id"],
                    product_number=product["productNumber"],
                    product_name=product["name"],
                    product_status=product["status"],
                    is_bundle=bool(product["isBundle"]),
                    created_at=product["createdAt"],
                    updated_at=product["updatedAt"],
                    variant_id=variant["id"],
                    variant_name=variant["name"],
                    size_id=size["id"],
                    sku=size["SKU"],
                    ean=size.get("EAN"),
                    size_name=size["description"],
                    price=price,
                    currency=currency,
                    free_to_allocate=stock["freeToAllocateQuantity"],
                    physical=stock["physicalQuantity"],
                )
    except (KeyError, TypeError, IndexError) as error:
        raise TransientError(
            f"a product in an unexpected shape ({error!r})", system=SYSTEM, operation="products"
        ) from None
