"""Marketplaces: one neutral interface, one module per concrete marketplace.

``MarketplaceAdapter`` is what flows use: orders in, acknowledgement, line cancellations, shipments, returns, stock
and prices out, offers and carriers read. It speaks in neutral types (the dataclasses below), so adding Zalando
or Amazon is one more module implementing the same protocol. ``GenericMarketplaceClient`` implements it against
the generic marketplace seller API v1 (modelled on Mirakl, with zDirect and SP-API where they agree):

- ``Authorization: Bearer <api key>``; the sandbox default limit is 20 requests a second.
- Orders polled by status with an opaque cursor (``{"orders": [...], "next_cursor": …}``), or by ``updated_since``.
- Acknowledging is idempotent; a shipment is identified by its tracking number within an order, so sending the
  same one again is harmless; a cancellation of the whole rest of a line is harmless to repeat; a return is not.
- Stock and prices in batches of at most 500 with a result per SKU; an older stock reading never overwrites a
  newer one (``STALE``).
- Errors ``{"errors": [{"code", "message", "field"}]}``; 429 with ``Retry-After`` in seconds.
- Webhooks signed ``X-Marketplace-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``.
"""

import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Protocol, runtime_checkable

import requests

from syncs.connectors.errors import ConnectorError, DataError, Exchange, TransientError, WebhookRejected
from syncs.connectors.http import ConnectorSession, RateLimiter, RetryPolicy, Timeouts, response_json

SYSTEM = "marketplace"
MAX_BATCH = 500  # items per stock or price call, the API's maximum
MAX_OFFER_PAGE = 500  # offers per listing page, the API's maximum
SIGNATURE_HEADER = "X-Marketplace-Signature"

# Neutral reason codes. The generic API uses these as they are; another marketplace's adapter translates them.
CANCEL_REASONS = ("OUT_OF_STOCK", "PRICE_ERROR", "UNDELIVERABLE_ADDRESS", "CUSTOMER_REQUEST", "OTHER")
RETURN_REASONS = (
    "UNKNOWN",
    "DISLIKED",
    "SIZE_TOO_BIG",
    "SIZE_TOO_SMALL",
    "NOT_AS_DESCRIBED",
    "ARRIVED_TOO_LATE",
    "DEFECTIVE",
    "WRONG_ITEM",
)


# --- Neutral types ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderLine:
    line_id: str
    sku: str  # the seller SKU the marketplace knows; may need a SkuMapping to become a Centra SKU
    quantity: int
    unit_price: Decimal
    tax_rate: Decimal
    status: str  # NEW, ACCEPTED, SHIPPED, CANCELLED, RETURNED
    shipped_quantity: int = 0
    cancelled_quantity: int = 0
    returned_quantity: int = 0

    @property
    def open_quantity(self) -> int:
        """Units neither shipped nor cancelled: what may still be shipped or cancelled."""
        return self.quantity - self.shipped_quantity - self.cancelled_quantity


@dataclass(frozen=True)
class MarketplaceOrder:
    order_id: str
    status: str  # NEW, ACCEPTED, PARTIALLY_SHIPPED, SHIPPED, CANCELLED
    created_at: datetime
    updated_at: datetime
    acknowledged: bool
    currency: str
    shipping_method: str  # the marketplace's code: needs a shipping-method mapping
    shipping_price: Decimal
    total_price: Decimal | None
    customer: dict
    lines: list[OrderLine]
    raw: dict = field(repr=False, compare=False)


@dataclass(frozen=True)
class ShipmentLine:
    line_id: str
    quantity: int


@dataclass(frozen=True)
class ReturnLine:
    line_id: str
    quantity: int


@dataclass(frozen=True)
class StockUpdate:
    sku: str
    quantity: int
    updated_at: datetime  # when the figure was read at the stock master: an older one never overwrites a newer


@dataclass(frozen=True)
class StockResult:
    """What the marketplace did with one SKU's figure: ``UPDATED``; ``STALE`` (a newer reading was already there,
    nothing to do); or ``REJECTED`` with the marketplace's ``error_code`` and ``message`` (e.g. ``UNKNOWN_SKU``)."""

    sku: str
    status: str
    quantity: int | None = None  # the quantity the marketplace now holds, when it said
    error_code: str | None = None
    message: str = ""

    @property
    def rejected(self) -> bool:
        return self.status == "REJECTED"


@dataclass(frozen=True)
class PriceUpdate:
    sku: str
    price: Decimal
    currency: str


@dataclass(frozen=True)
class PriceResult:
    """``UPDATED``, or ``REJECTED`` with the marketplace's ``error_code`` and ``message``."""

    sku: str
    status: str
    error_code: str | None = None
    message: str = ""

    @property
    def rejected(self) -> bool:
        return self.status == "REJECTED"


@dataclass(frozen=True)
class Offer:
    """A SKU as the marketplace shows it: its title, price and stock may have been edited on the marketplace."""

    sku: str
    ean: str | None
    title: str
    price: Decimal
    currency: str
    quantity: int
    active: bool
    updated_at: datetime | None
    stock_updated_at: datetime | None
    raw: dict = field(repr=False, compare=False)
    description: str = ""
    images: tuple[str, ...] = ()
    attributes: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ContentUpdate:
    """A SKU's product content: sent fields replace the marketplace's (``None`` leaves one as it is)."""

    sku: str
    title: str | None = None
    description: str | None = None
    images: tuple[str, ...] | None = None
    attributes: dict | None = None


@dataclass(frozen=True)
class ContentResult:
    """``UPDATED``, or ``REJECTED`` with the marketplace's codes and messages (one per problem)."""

    sku: str
    status: str
    error_codes: tuple[str, ...] = ()
    messages: tuple[str, ...] = ()

    @property
    def rejected(self) -> bool:
        return self.status == "REJECTED"


@dataclass(frozen=True)
class Carrier:
    code: str  # the marketplace's own code, the only value ``ship`` accepts
    name: str
    tracking_url: str = ""  # a template with {tracking_number}


@runtime_checkable
class MarketplaceAdapter(Protocol):
    """The operations every marketplace offers, in neutral types. Each method raises the connector errors
    (TransientError, RateLimited, DataError, AuthError)."""

    system: str
    max_batch: int

    def new_orders(self, cursor: str | None = None) -> tuple[list[MarketplaceOrder], str | None]:
        """One page of orders waiting for acknowledgement and the cursor of the next page (None at the end)."""
        ...

    def all_new_orders(self) -> Iterator[MarketplaceOrder]:
        """Every order waiting for acknowledgement, page after page."""
        ...

    def orders_updated_since(self, since: datetime) -> Iterator[MarketplaceOrder]:
        """Every order changed at or after ``since`` (cancellations by customers, shipments…)."""
        ...

    def order(self, order_id: str) -> MarketplaceOrder: ...

    def acknowledge(self, order_id: str) -> MarketplaceOrder:
        """Claim the order for fulfilment. Harmless to repeat."""
        ...

    def cancel_line(self, order_id: str, line_id: str, *, reason: str, quantity: int | None = None) -> None:
        """Cancel ``quantity`` units of a line (all still open when None) with a reason from CANCEL_REASONS."""
        ...

    def ship(
        self,
        order_id: str,
        lines: list[ShipmentLine],
        carrier_code: str,
        tracking_number: str,
        *,
        tracking_url: str = "",
    ) -> str:
        """Report lines shipped in one parcel; returns the marketplace's shipment id."""
        ...

    def report_return(self, order_id: str, lines: list[ReturnLine], *, reason: str, tracking_number: str = "") -> str:
        """Report returned units with a reason from RETURN_REASONS; returns the marketplace's return id."""
        ...

    def update_stock(self, updates: Iterable[StockUpdate]) -> list[StockResult]:
        """Send sellable quantities; one result per update, in order."""
        ...

    def update_prices(self, updates: Iterable[PriceUpdate]) -> list[PriceResult]:
        """Send prices; one result per update, in order."""
        ...

    def offers(self) -> Iterator[Offer]: ...

    def offers_updated_since(self, since: datetime) -> Iterator[Offer]:
        """Every offer changed at or after ``since``, by us or on the marketplace."""
        ...

    def update_content(self, updates: Iterable[ContentUpdate]) -> list[ContentResult]:
        """Send product content (title, description, images, attributes); one result per update, in order."""
        ...

    def carriers(self) -> list[Carrier]: ...


# --- Parsing ---------------------------------------------------------------------------------------------------


def _decimal(value) -> Decimal:
    if isinstance(value, float):
        raise ValueError(f"{value!r} is a float, not an exact amount")
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not an amount") from None


def _moment(value) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return moment


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("timestamps sent to a marketplace carry a time zone")
    return moment.isoformat()


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- The generic marketplace ----------------------------------------------------------------------------------


class GenericMarketplaceClient:
    """The generic marketplace seller API v1. ``base_url`` ends in ``/api/v1``."""

    system = SYSTEM
    max_batch = MAX_BATCH

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        rate_limit: tuple[int, float] = (20, 1.0),
        timeouts: Timeouts = Timeouts(),
        retry: RetryPolicy = RetryPolicy(),
        page_size: int = 50,
        batch_size: int = MAX_BATCH,
        sleep=time.sleep,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be from 1 to {MAX_BATCH}")
        self.page_size = page_size
        self.batch_size = batch_size
        self.session = ConnectorSession(
            system=SYSTEM,
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            secrets=[api_key],
            timeouts=timeouts,
            retry=retry,
            rate_limiter=RateLimiter([rate_limit]),
            sleep=sleep,
        )

    # --- requests ---------------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, operation: str, **kwargs) -> requests.Response:
        return self.session.request(method, path, operation=operation, classify=self._classify(operation), **kwargs)

    def _json(self, method: str, path: str, operation: str, **kwargs):
        return response_json(self.session, self._request(method, path, operation, **kwargs), operation)

    @staticmethod
    def _classify(operation: str):
        def classify(response: requests.Response, exchange: Exchange | None) -> ConnectorError | None:
            # 400 (validation), 404 and 409 (wrong state) carry the marketplace's own messages: keep each one.
            if response.status_code not in (400, 404, 409, 422):
                return None
            problems = _problems(response)
            error = DataError(
                f"refused ({response.status_code}): {problems[0][1]}",
                details=[detail for _, detail in problems],
                system=SYSTEM,
                operation=operation,
                exchange=exchange,
            )
            error.codes = [code for code, _ in problems]  # e.g. UNKNOWN_CARRIER: flows map codes to exception kinds
            return error

        return classify

    def _shape_error(self, operation: str, problem: Exception) -> TransientError:
        return TransientError(
            f"an answer in an unexpected shape ({type(problem).__name__}: {problem})",
            system=SYSTEM,
            operation=operation,
        )

    # --- orders -----------------------------------------------------------------------------------------------

    def _orders_page(self, params: dict, operation: str) -> tuple[list[MarketplaceOrder], str | None]:
        page = self._json("GET", "/orders", operation, params=params)
        if not isinstance(page, dict) or not isinstance(page.get("orders"), list):
            raise TransientError("an order listing without orders", system=SYSTEM, operation=operation)
        return [self._order(raw, operation) for raw in page["orders"]], page.get("next_cursor") or None

    def new_orders(self, cursor: str | None = None) -> tuple[list[MarketplaceOrder], str | None]:
        """One page of NEW (not yet acknowledged) orders, oldest change first, and the next page's cursor (None
        when this was the last). The cursor carries the filters, so it is sent alone."""
        params = {"cursor": cursor} if cursor else {"status": "NEW", "limit": self.page_size}
        return self._orders_page(params, "orders_list")

    def all_new_orders(self) -> Iterator[MarketplaceOrder]:
        """Every NEW order, every page. An order that changes while we page may come twice: callers dedupe."""
        orders, cursor = self.new_orders()
        yield from orders
        while cursor:
            orders, cursor = self.new_orders(cursor)
            yield from orders

    def orders_updated_since(self, since: datetime) -> Iterator[MarketplaceOrder]:
        """Every order changed at or after ``since``, whatever its status, every page."""
        params = {"updated_since": _iso(since), "limit": self.page_size}
        while True:
            orders, cursor = self._orders_page(params, "orders_list")
            yield from orders
            if not cursor:
                return
            params = {"cursor": cursor}

    def order(self, order_id: str) -> MarketplaceOrder:
        return self._order(self._json("GET", f"/orders/{order_id}", "order_get"), "order_get")

    def _order(self, raw: dict, operation: str) -> MarketplaceOrder:
        try:
            lines = [
                OrderLine(
                    line_id=str(line["id"]),
                    sku=line["seller_sku"],
                    quantity=int(line["quantity"]),
                    unit_price=_decimal(line["unit_price"]),
                    tax_rate=_decimal(line.get("tax_rate", "0")),
                    status=line.get("status", ""),
                    shipped_quantity=int(line.get("shipped_quantity", 0)),
                    cancelled_quantity=int(line.get("cancelled_quantity", 0)),
                    returned_quantity=int(line.get("returned_quantity", 0)),
                )
                for line in raw["lines"]
            ]
            return MarketplaceOrder(
                order_id=str(raw["id"]),
                status=raw["status"],
                created_at=_moment(raw["created_at"]),
                updated_at=_moment(raw.get("updated_at") or raw["created_at"]),
                acknowledged=bool(raw.get("acknowledged_at")),
                currency=raw["currency"],
                shipping_method=raw.get("shipping_method") or "",
                shipping_price=_decimal(raw.get("shipping_price", "0")),
                total_price=_decimal(raw["total_price"]) if raw.get("total_price") is not None else None,
                customer=raw.get("customer") or {},
                lines=lines,
                raw=raw,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise self._shape_error(operation, error) from None

    def acknowledge(self, order_id: str) -> MarketplaceOrder:
        """Claim the order: it leaves the NEW list. Acknowledging again is a no-op on the marketplace, so a retry
        after a lost answer is safe. Raises DataError (ORDER_CANCELLED) if the customer cancelled it first."""
        raw = self._json("POST", f"/orders/{order_id}/acknowledge", "order_acknowledge", idempotent=True)
        return self._order(raw, "order_acknowledge")

    def cancel_line(self, order_id: str, line_id: str, *, reason: str, quantity: int | None = None) -> None:
        """Cancel ``quantity`` units of a line, or all it has open when None. Cancelling the whole rest is safe to
        repeat (the marketplace answers a cancelled line with success); a partial quantity is not retried blindly."""
        if reason not in CANCEL_REASONS:
            raise ValueError(f"reason must be one of {CANCEL_REASONS}")
        body: dict = {"reason_code": reason}
        if quantity is not None:
            body["quantity"] = int(quantity)
        self._request(
            "POST",
            f"/orders/{order_id}/lines/{line_id}/cancel",
            "line_cancel",
            json_body=body,
            idempotent=quantity is None,
        )

    def ship(
        self,
        order_id: str,
        lines: list[ShipmentLine],
        carrier_code: str,
        tracking_number: str,
        *,
        tracking_url: str = "",
    ) -> str:
        """Report ``lines`` shipped in one parcel with the marketplace's ``carrier_code`` (see ``carriers``).
        Returns the shipment id. The marketplace identifies a shipment by its tracking number within the order, so
        a retry returns the first shipment rather than shipping twice. Raises DataError with code UNKNOWN_CARRIER
        for a code the marketplace does not know, ORDER_NOT_ACKNOWLEDGED before ``acknowledge``."""
        body = {
            "carrier_code": carrier_code,
            "tracking_number": tracking_number,
            "lines": [{"line_id": line.line_id, "quantity": int(line.quantity)} for line in lines],
        }
        if tracking_url:
            body["tracking_url"] = tracking_url
        answer = self._json("POST", f"/orders/{order_id}/shipments", "shipment_create", json_body=body, idempotent=True)
        try:
            return str(answer["id"])
        except (KeyError, TypeError) as error:
            raise self._shape_error("shipment_create", error) from None

    def report_return(self, order_id: str, lines: list[ReturnLine], *, reason: str, tracking_number: str = "") -> str:
        """Report units returned by the customer. Returns the return id. Not repeated after a call that may have
        arrived: the caller reads the order (``returned_quantity``) before trying again."""
        if reason not in RETURN_REASONS:
            raise ValueError(f"reason must be one of {RETURN_REASONS}")
        body = {
            "reason_code": reason,
            "lines": [{"line_id": line.line_id, "quantity": int(line.quantity)} for line in lines],
        }
        if tracking_number:
            body["tracking_number"] = tracking_number
        answer = self._json("POST", f"/orders/{order_id}/returns", "return_create", json_body=body, idempotent=False)
        try:
            return str(answer["id"])
        except (KeyError, TypeError) as error:
            raise self._shape_error("return_create", error) from None

    def carriers(self) -> list[Carrier]:
        """The carriers the marketplace knows, by its own code: the only values ``ship`` accepts."""
        body = self._json("GET", "/carriers", "carriers_list")
        try:
            return [
                Carrier(row["code"], row.get("name", row["code"]), row.get("tracking_url", ""))
                for row in body["carriers"]
            ]
        except (KeyError, TypeError) as error:
            raise self._shape_error("carriers_list", error) from None

    # --- stock, prices, offers --------------------------------------------------------------------------------

    def _batches(self, path: str, operation: str, items: list[dict]) -> Iterator[tuple[dict, dict]]:
        """Send ``items`` in calls of at most ``batch_size`` and yield (item, its result) pairs in order. A whole
        batch refused (400) raises DataError; single items refused come back as results."""
        for chunk in _chunks(items, self.batch_size):
            body = self._json("PUT", path, operation, json_body={"items": chunk}, idempotent=True)
            results = body.get("results") if isinstance(body, dict) else None
            if not isinstance(results, list) or len(results) != len(chunk):
                raise TransientError(
                    f"{len(chunk)} items sent but the results do not match", system=SYSTEM, operation=operation
                )
            yield from zip(chunk, results, strict=True)

    @staticmethod
    def _first_error(result: dict) -> tuple[str | None, str]:
        errors = result.get("errors") or []
        if not errors:
            return None, ""
        return errors[0].get("code"), errors[0].get("message", "")

    def update_stock(self, updates: Iterable[StockUpdate]) -> list[StockResult]:
        """Set each SKU's sellable quantity, in as many calls of at most 500 as needed. Absolute and versioned by
        ``updated_at``, so repeating is harmless. One result per update, in order: some may be REJECTED (an unknown
        SKU) while the rest apply, and STALE means a newer figure was already there."""
        items = []
        for update in updates:
            if isinstance(update.quantity, bool) or not isinstance(update.quantity, int) or update.quantity < 0:
                raise ValueError(f"{update.sku}: stock sent to a channel is a whole number of 0 or more")
            items.append({"sku": update.sku, "quantity": update.quantity, "updated_at": _iso(update.updated_at)})
        results = []
        for item, result in self._batches("/stock", "stock_update", items):
            code, message = self._first_error(result)
            quantity = result.get("quantity")
            results.append(
                StockResult(
                    sku=item["sku"],
                    status=result.get("status", "REJECTED"),
                    quantity=int(quantity) if quantity is not None else None,
                    error_code=code,
                    message=message,
                )
            )
        return results

    def update_prices(self, updates: Iterable[PriceUpdate]) -> list[PriceResult]:
        """Set prices, sent as decimal strings with their currency, in calls of at most 500. One result per update,
        in order; a price in the wrong currency or for an unknown SKU is REJECTED while the rest apply."""
        items = []
        for update in updates:
            if not isinstance(update.price, Decimal) or not update.price.is_finite():
                raise ValueError(f"{update.sku}: a price is a finite Decimal, never a float")
            items.append({"sku": update.sku, "price": f"{update.price:f}", "currency": update.currency})
        results = []
        for item, result in self._batches("/prices", "prices_update", items):
            code, message = self._first_error(result)
            results.append(PriceResult(item["sku"], result.get("status", "REJECTED"), code, message))
        return results

    def offers(self, *, sku: str | None = None, page_size: int | None = None) -> Iterator[Offer]:
        """Every offer as the marketplace shows it (title, price, stock), every page: ``page_size`` a page (twice
        the client's page size unless given; at most MAX_OFFER_PAGE)."""
        params: dict = {"limit": max(1, min(page_size or self.page_size * 2, MAX_OFFER_PAGE))}
        if sku:
            params["sku"] = sku
        yield from self._offer_pages(params)

    def _offer_pages(self, params: dict) -> Iterator[Offer]:
        """Every page of an offer listing; the cursor carries the filters, so it is sent alone."""
        while True:
            page = self._json("GET", "/offers", "offers_list", params=params)
            if not isinstance(page, dict) or not isinstance(page.get("offers"), list):
                raise TransientError("an offer listing without offers", system=SYSTEM, operation="offers_list")
            for raw in page["offers"]:
                yield self._offer(raw)
            if not page.get("next_cursor"):
                return
            params = {"cursor": page["next_cursor"]}

    def _offer(self, raw: dict) -> Offer:
        try:
            return Offer(
                sku=raw["sku"],
                ean=raw.get("ean"),
                title=raw.get("title") or "",
                price=_decimal(raw["price"]),
                currency=raw["currency"],
                quantity=int(raw.get("quantity") or 0),
                active=bool(raw.get("active", True)),
                updated_at=_moment(raw.get("updated_at")),
                stock_updated_at=_moment(raw.get("stock_updated_at")),
                raw=raw,
                description=raw.get("description") or "",
                images=tuple(raw.get("images") or ()),
                attributes=dict(raw.get("attributes") or {}),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise self._shape_error("offers_list", error) from None

    def offers_updated_since(self, since: datetime) -> Iterator[Offer]:
        """Every offer changed at or after ``since`` (a price or content we sent, or an edit made on the
        marketplace), every page; the cursor carries the filter."""
        params: dict = {"updated_since": _iso(since), "limit": MAX_OFFER_PAGE}
        yield from self._offer_pages(params)

    def update_content(self, updates: Iterable[ContentUpdate]) -> list[ContentResult]:
        """Set the product content of offers (``PUT /products``), in calls of at most 500. Absolute values, so
        repeating is harmless. One result per update, in order; an unknown SKU or a bad field is REJECTED with
        every problem while the rest apply."""
        items = []
        for update in updates:
            item: dict = {"sku": update.sku}
            if update.title is not None:
                item["title"] = update.title
            if update.description is not None:
                item["description"] = update.description
            if update.images is not None:
                item["images"] = list(update.images)
            if update.attributes is not None:
                item["attributes"] = dict(update.attributes)
            items.append(item)
        results = []
        for item, result in self._batches("/products", "products_update", items):
            errors = result.get("errors") or []
            results.append(
                ContentResult(
                    sku=item["sku"],
                    status=result.get("status", "REJECTED"),
                    error_codes=tuple(str(error.get("code") or "UNKNOWN") for error in errors),
                    messages=tuple(
                        f"{error.get('code', 'UNKNOWN')}: {error.get('message', '')}"
                        + (f" ({error['field']})" if error.get("field") else "")
                        for error in errors
                    ),
                )
            )
        return results


def _problems(response: requests.Response) -> list[tuple[str, str]]:
    """(code, "CODE: message (field)") for each entry of an ``{"errors": [...]}`` body; a body of another shape
    becomes one entry with its text."""
    try:
        body = response.json()
    except ValueError:
        return [("UNKNOWN", response.text.strip()[:300] or f"HTTP {response.status_code}")]
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list) or not errors:
        return [("UNKNOWN", json.dumps(body)[:300])]
    problems = []
    for entry in errors:
        if not isinstance(entry, dict):
            problems.append(("UNKNOWN", str(entry)))
            continue
        code = str(entry.get("code") or "UNKNOWN")
        text = f"{code}: {entry.get('message', '')}"
        if entry.get("field"):
            text += f" ({entry['field']})"
        problems.append((code, text))
    return problems


# --- Webhooks -----------------------------------------------------------------------------------------------------


def verify_webhook(
    *, secret: str, body: bytes, headers: Mapping[str, str], tolerance: float = 300, now: float | None = None
) -> dict:
    """The event of a marketplace webhook, after checking ``X-Marketplace-Signature: t=<unix>,v1=<hex>``: the hex
    must be HMAC-SHA256(secret, "<t>.<raw body>") and ``t`` within ``tolerance`` seconds of ``now``, so a captured
    request replayed later is refused. Several ``v1`` values (during a secret rotation) are allowed. Receivers
    still dedupe on the event ``id`` within the tolerance. Raises WebhookRejected with a reason safe to log."""
    header = next((value for name, value in headers.items() if name.lower() == SIGNATURE_HEADER.lower()), None)
    if not header:
        raise WebhookRejected(f"no {SIGNATURE_HEADER} header")
    timestamp, signatures = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            signatures.append(value)
    # ASCII digits only (str.isdigit() also passes "²", which int() refuses), and not thousands of them.
    if timestamp is None or not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 20 or not signatures:
        raise WebhookRejected(f"{SIGNATURE_HEADER} is not of the form t=<unix>,v1=<hex>")
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > tolerance:
        raise WebhookRejected(f"signature timestamp is more than {tolerance:g}s from now (expired or replayed)")
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, signature) for signature in signatures):
        raise WebhookRejected("signature does not match")
    try:
        event = json.loads(body)
    except ValueError:
        raise WebhookRejected("body is not JSON") from None
    if not isinstance(event, dict) or "type" not in event:
        raise WebhookRejected("body is not a marketplace event")
    return event
