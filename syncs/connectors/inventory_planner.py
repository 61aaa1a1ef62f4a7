"""Inventory Planner Public API v1: variants with their planning figures, planning settings, purchase orders.

Every call carries the raw API key in ``Authorization`` (no ``Bearer``) and the account id in ``Account``.
Collections are paged with a 0-based ``page`` and ``limit``; we stop when a page is empty, when we have read
``meta.total`` rows, or when a page is shorter than its limit, never on ``meta.end`` alone (its meaning is not
documented). Errors are ``{"result": {"status": "error", "message": …}}``. No rate limit is published; we pace at
120 calls a minute unless configured otherwise. Inventory Planner sends no webhooks, so there is nothing to verify.

Numbers come as JSON ints or floats (``4``, ``4.0``, ``11.02``): money is read as ``Decimal(str(x))``, which keeps
the digits written; quantities become ints by a stated rounding, never by ``int()`` truncating silently.
"""

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation

import requests

from syncs.connectors.errors import AuthError, ConnectorError, DataError, Exchange, RateLimited, TransientError
from syncs.connectors.http import (
    ConnectorSession,
    RateLimiter,
    RetryPolicy,
    Timeouts,
    parse_retry_after,
    response_json,
)

SYSTEM = "inventory_planner"
MAX_PAGE_SIZE = 1000  # the largest limit third-party clients report working; not documented
# The fields a Variant is built from: always requested, whatever else the caller asks for.
VARIANT_FIELDS = (
    "id",
    "sku",
    "title",
    "product_title",
    "barcode",
    "price",
    "cost_price",
    "in_stock",
    "purchase_orders_qty",
    "replenishment",
    "to_order",
    "oos",
    "lead_time",
    "review_period",
    "forecast_description",
    "warehouse",
    "connections",
    "updated_at",
)
# Looking SKUs up one call each is cheaper than walking the catalogue only for a handful of them.
SKU_LOOKUPS_PER_CALL_MAX = 10
PURCHASE_ORDER_STATUSES = ("OPEN", "DRAFT", "PARTIALLY RECEIVED", "CLOSED", "CANCELLED")


@dataclass(frozen=True)
class WarehouseFigures:
    """A variant's figures in one Inventory Planner warehouse (``variant.warehouse[]``)."""

    warehouse: str
    in_stock: int | None
    purchase_orders_qty: int | None
    replenishment: int | None
    to_order: int | None
    oos: int | None


@dataclass(frozen=True)
class Variant:
    id: str  # Inventory Planner's id, e.g. "c1000_6001": every call about the variant is addressed by it
    sku: str
    title: str
    barcode: str
    in_stock: int  # on hand, all warehouses
    purchase_orders_qty: int  # on order on open purchase orders
    replenishment: int  # what Inventory Planner suggests ordering
    to_order: int
    oos: int | None  # forecast days until it sells out; None when it is not forecast to sell
    lead_time: int | None  # days
    review_period: int | None  # days of stock to order for
    velocity_per_day: Decimal | None  # units sold a day, as forecast
    cost_price: Decimal | None
    price: Decimal | None
    vendor: str | None  # the vendor id: the vendor's name in lower case
    warehouses: list[WarehouseFigures]
    updated_at: str = ""
    raw: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class PurchaseOrderLine:
    variant_id: str
    sku: str
    ordered: int
    received: int
    remaining: int
    cost_price: Decimal | None


@dataclass(frozen=True)
class PurchaseOrder:
    id: str
    reference: str
    status: str  # upper case, one of PURCHASE_ORDER_STATUSES (the API reads them back in lower case)
    vendor: str
    warehouse: str
    currency: str
    created_date: date | None
    expected_date: date | None
    lines: list[PurchaseOrderLine]
    total: Decimal | None
    raw: dict = field(default_factory=dict, repr=False, compare=False)


# --- reading numbers ----------------------------------------------------------------------------------------------


def _decimal(value) -> Decimal | None:
    """Money or a rate from a JSON number or string, digit for digit (``11.02`` is ``Decimal("11.02")``)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None


def _whole(value, rounding: str = ROUND_HALF_UP) -> int | None:
    """A count from a JSON number that may carry decimals (``4.0``; fractions where units of measure apply).
    ``rounding`` is chosen per figure: stock rounds down (never count a part unit we cannot sell), quantities to
    order round up (order enough), settings round to the nearest."""
    amount = _decimal(value)
    return None if amount is None else int(amount.to_integral_value(rounding=rounding))


def _date(value) -> date | None:
    """A date read back as ``YYYY-MM-DD`` (or, on older orders, Unix seconds)."""
    if value in (None, "", 0):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).date()
    return date.fromisoformat(str(value)[:10])


def _json_number(value):
    """A value to send as a JSON number. Decimal goes as int when whole, else as the float Python prints with the
    same digits (``Decimal("11.02")`` → ``11.02``); the API takes numbers, not strings."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _result_message(response: requests.Response) -> str | None:
    """The message of an Inventory Planner ``{"result": {"status": "error", "message": …}}`` body, if it is one."""
    try:
        body = response.json()
    except ValueError:
        return None
    result = body.get("result") if isinstance(body, dict) else None
    if not isinstance(result, dict) or str(result.get("status", "")).lower() != "error":
        return None
    return str(result.get("message") or "no message")


class InventoryPlannerClient:
    system = SYSTEM

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        account: str,
        rate_limit: tuple[int, float] = (120, 60.0),
        timeouts: Timeouts = Timeouts(),
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.account = account
        self.session = ConnectorSession(
            system=SYSTEM,
            base_url=base_url,
            headers={"Authorization": api_key, "Account": account},
            secrets=[api_key],
            timeouts=timeouts,
            retry=retry,
            rate_limiter=RateLimiter([rate_limit]),
            sleep=sleep,
        )

    # --- requests ---------------------------------------------------------------------------------------------

    def _classifier(self, operation: str):
        def classify(response: requests.Response, exchange: Exchange | None) -> ConnectorError | None:
            status = response.status_code
            if status < 300:
                return None  # a 2xx carrying an error result is caught in _json, where the body is parsed once
            context = {"system": SYSTEM, "operation": operation, "exchange": exchange}
            message = _result_message(response)
            if status == 429:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                return RateLimited(
                    f"too many requests (429): {message or 'no message'}", retry_after=retry_after, **context
                )
            if status in (401, 403):
                # A 403 without Inventory Planner's body is Cloudflare refusing the client (no User-Agent, say).
                return AuthError(f"credentials refused ({status}): {message or 'refused before the API'}", **context)
            if message is None:
                return None
            if status >= 500:
                # Inventory Planner also answers some refusals with 500 and a message; we cannot tell those from a
                # failure, so they stay transient and the message goes with them.
                error = TransientError(f"the system failed ({status}): {message}", **context)
                error.may_have_reached = status not in (502, 503, 504)
                return error
            return DataError(f"refused ({status}): {message}", details=[message], **context)

        return classify

    def _json(self, method: str, path: str, operation: str, **kwargs) -> dict:
        response = self.session.request(
            method, path, operation=operation, classify=self._classifier(operation), **kwargs
        )
        body = response_json(self.session, response, operation)
        if not isinstance(body, dict):
            raise TransientError("the answer was not a JSON object", system=SYSTEM, operation=operation)
        result = body.get("result")
        if isinstance(result, dict) and str(result.get("status", "")).lower() == "error":
            # Older clients check the result document whatever the status: a 2xx may carry a refusal too.
            message = str(result.get("message") or "no message")
            raise DataError(
                f"refused ({response.status_code}): {message}",
                details=[message],
                system=SYSTEM,
                operation=operation,
                exchange=self.session.exchange_for(response),
            )
        return body

    def _pages(self, path: str, key: str, operation: str, params: dict, page_size: int) -> Iterator[dict]:
        """Every row of a paged collection, page 0 first, to the end.

        The end is the first of: an empty page, ``meta.total`` rows read, a page shorter than the limit the API
        says it applied. A page that repeats the previous one (a server ignoring ``page``) is an error rather
        than an endless loop.
        """
        limit = max(1, min(int(page_size), MAX_PAGE_SIZE))
        page, read, previous_first = 0, 0, None
        while True:
            body = self._json("GET", path, operation, params={**params, "page": page, "limit": limit})
            rows = body.get(key)
            if not isinstance(rows, list):
                raise TransientError(f"a listing without {key!r}", system=SYSTEM, operation=operation)
            if not rows:
                return
            first = rows[0].get("id") if isinstance(rows[0], dict) else None
            if page > 0 and first is not None and first == previous_first:
                raise TransientError(f"page {page} repeated page {page - 1}", system=SYSTEM, operation=operation)
            previous_first = first
            yield from rows
            read += len(rows)
            meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
            total = _whole(meta.get("total"))
            applied_limit = _whole(meta.get("limit")) or limit
            if (total is not None and read >= total) or len(rows) < applied_limit:
                return
            page += 1

    # --- variants ---------------------------------------------------------------------------------------------

    def variants(
        self,
        *,
        fields: Iterable[str] = (),
        filters: dict[str, str | int] | None = None,
        page_size: int = 100,
    ) -> Iterator[Variant]:
        """Every variant matching ``filters``, every page. ``filters`` go to the API as they are: exact
        ``{"sku": "TEE100BLKS"}``, ``{"replenishment_gt": 0}``, sorts ``{"oos_sort": "asc"}``. ``fields`` adds
        fields to ``Variant.raw`` beyond those a Variant needs (unknown names are ignored by the API)."""
        params = {**(filters or {}), "fields": ",".join(dict.fromkeys([*VARIANT_FIELDS, *fields]))}
        for raw in self._pages("variants", "variants", "variants_list", params, page_size):
            yield self._variant(raw, "variants_list")

    def variant(self, variant_id: str) -> Variant:
        """One variant by Inventory Planner id. Raises DataError when there is none."""
        body = self._json("GET", f"variants/{variant_id}", "variant_get")
        return self._variant(body.get("variant"), "variant_get")

    def variants_by_sku(self, skus: Iterable[str]) -> dict[str, Variant]:
        """The variants with these SKUs, by SKU; SKUs Inventory Planner does not know are left out. A few SKUs
        are looked up one call each (``sku=``); more are found in one walk of the catalogue, a page of 1,000 a
        call, which costs fewer calls than one per SKU."""
        wanted = list(dict.fromkeys(sku for sku in skus if sku))
        if not wanted:
            return {}
        found: dict[str, Variant] = {}
        if len(wanted) <= SKU_LOOKUPS_PER_CALL_MAX:
            for sku in wanted:
                for variant in self.variants(filters={"sku": sku}, page_size=10):
                    if variant.sku == sku:  # the filter is exact, but a SKU is only trusted when it says so
                        found[sku] = variant
            return found
        remaining = set(wanted)
        for variant in self.variants(page_size=MAX_PAGE_SIZE):
            if variant.sku in remaining:
                found[variant.sku] = variant
        return found

    def update_variant(self, variant_id: str, **planning_fields: int | Decimal) -> Variant:
        """Change planning settings (``lead_time``, ``review_period``, ``minimum_stock``, ``cost_price``…) and
        return the variant as Inventory Planner now plans it. Values are absolute, so repeating the call is
        harmless. Raises DataError naming a field Inventory Planner refuses (``id`` and ``sku`` are read-only)."""
        if not planning_fields:
            raise ValueError("name at least one planning field to change")
        body = {"variant": {name: _json_number(value) for name, value in planning_fields.items()}}
        answer = self._json("PATCH", f"variants/{variant_id}", "variant_update", json_body=body, idempotent=True)
        return self._variant(answer.get("variant"), "variant_update")

    def _variant(self, raw, operation: str) -> Variant:
        try:
            description = raw.get("forecast_description") or {}
            per_day = _decimal(description.get("sales_velocity1"))
            if per_day is None and description.get("sales_velocity30") is not None:
                per_day = _decimal(description["sales_velocity30"]) / 30  # units per 30 days
            return Variant(
                id=str(raw["id"]),
                sku=str(raw["sku"]),
                title=raw.get("title") or raw.get("product_title") or "",
                barcode=str(raw.get("barcode") or ""),
                in_stock=_whole(raw.get("in_stock"), ROUND_FLOOR) or 0,
                purchase_orders_qty=_whole(raw.get("purchase_orders_qty"), ROUND_FLOOR) or 0,
                replenishment=_whole(raw.get("replenishment"), ROUND_CEILING) or 0,
                to_order=_whole(raw.get("to_order"), ROUND_CEILING) or 0,
                oos=_whole(raw.get("oos"), ROUND_FLOOR),
                lead_time=_whole(raw.get("lead_time")),
                review_period=_whole(raw.get("review_period")),
                velocity_per_day=per_day,
                cost_price=_decimal(raw.get("cost_price")),
                price=_decimal(raw.get("price")),
                vendor=_vendor(raw.get("connections")),
                warehouses=[
                    WarehouseFigures(
                        warehouse=str(block.get("warehouse", "")),
                        in_stock=_whole(block.get("in_stock"), ROUND_FLOOR),
                        purchase_orders_qty=_whole(block.get("purchase_orders_qty"), ROUND_FLOOR),
                        replenishment=_whole(block.get("replenishment"), ROUND_CEILING),
                        to_order=_whole(block.get("to_order"), ROUND_CEILING),
                        oos=_whole(block.get("oos"), ROUND_FLOOR),
                    )
                    for block in raw.get("warehouse") or []
                    if isinstance(block, dict)
                ],
                updated_at=raw.get("updated_at") or "",
                raw=raw,
            )
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise TransientError(
                f"a variant in an unexpected shape ({type(error).__name__}: {error})",
                system=SYSTEM,
                operation=operation,
            ) from None

    # --- purchase orders --------------------------------------------------------------------------------------

    def purchase_orders(self, status: str | None = None, *, page_size: int = 100) -> Iterator[PurchaseOrder]:
        """Every purchase order, or those in ``status`` (any case: "OPEN", "partially received"), every page."""
        params = {"status": status.upper()} if status else {}
        for raw in self._pages("purchase-orders", "purchase-orders", "purchase_orders_list", params, page_size):
            yield self._purchase_order(raw, "purchase_orders_list")

    def purchase_order(self, po_id: str) -> PurchaseOrder:
        body = self._json("GET", f"purchase-orders/{po_id}", "purchase_order_get")
        return self._purchase_order(body.get("purchase-order"), "purchase_order_get")

    def _purchase_order(self, raw, operation: str) -> PurchaseOrder:
        try:
            lines = []
            for item in raw.get("items") or []:
                ordered = _whole(item.get("replenishment"), ROUND_CEILING) or 0
                received = _whole(item.get("received"), ROUND_FLOOR) or 0
                remaining = _whole(item.get("remaining"), ROUND_CEILING)
                lines.append(
                    PurchaseOrderLine(
                        variant_id=str(item["id"]),
                        sku=str(item.get("sku") or ""),
                        ordered=ordered,
                        received=received,
                        remaining=max(0, ordered - received) if remaining is None else remaining,
                        cost_price=_decimal(item.get("cost_price")),
                    )
                )
            return PurchaseOrder(
                id=str(raw["id"]),
                reference=str(raw.get("reference") or ""),
                # Written upper case, read back lower case (and, elsewhere, with underscores): one spelling here.
                status=str(raw.get("status") or "").replace("_", " ").upper(),
                vendor=str(raw.get("vendor") or ""),
                warehouse=str(raw.get("warehouse") or ""),
                currency=str(raw.get("currency") or ""),
                created_date=_date(raw.get("created_date")),
                expected_date=_date(raw.get("expected_date")),
                lines=lines,
                total=_decimal(raw.get("total")),
                raw=raw,
            )
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise TransientError(
                f"a purchase order in an unexpected shape ({type(error).__name__}: {error})",
                system=SYSTEM,
                operation=operation,
            ) from None


def _vendor(connections) -> str | None:
    """The vendor of the first connection still in use (``connections[].vendors[0].vendor``)."""
    for connection in connections or []:
        if isinstance(connection, dict) and not connection.get("removed"):
            vendors = connection.get("vendors") or []
            if vendors and isinstance(vendors[0], dict) and vendors[0].get("vendor"):
                return str(vendors[0]["vendor"])
    return None
