"""Virtualstock Supplier API v4: retailer orders relayed to the brand, dispatch back, stock per product.

Authentication is a JWT pair from ``POST /restapi/v4/token``: the access token lives 5 minutes and is refreshed
with the refresh token (4 hours) before it expires; when the refresh token has gone too, we sign in again.
Published limit: 250 requests a minute per account. Stock is one product per call.
"""

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

import requests

from syncs.connectors.errors import AuthError, ConnectorError, DataError, Exchange, RateLimited, TransientError
from syncs.connectors.http import ConnectorSession, RateLimiter, RetryPolicy, Timeouts, response_json

SYSTEM = "virtualstock"
ACCESS_LIFETIME = 300.0
REFRESH_LIFETIME = 4 * 3600.0
THROTTLED = re.compile(r"available in ([\d.]+) seconds", re.IGNORECASE)
MAX_PAGE = 1000  # the most results a listing page holds


@dataclass(frozen=True)
class OrderLine:
    line_ref: str
    part_number: str
    quantity: int
    status: str
    unit_cost_price: Decimal | None
    subtotal: Decimal | None
    tax: Decimal | None
    tax_rate: Decimal | None
    total: Decimal | None
    name: str = ""


@dataclass(frozen=True)
class Order:
    id: int  # the REST id every action on the order is addressed by
    reference: str  # the retailer's order reference, what people quote
    status: str
    retailer: str
    currency: str
    order_date: str
    lines: list[OrderLine]
    subtotal: Decimal | None
    tax: Decimal | None
    total: Decimal | None
    delivery_service_code: str | None
    shipping_address: dict
    raw: dict = field(repr=False, compare=False)


@dataclass(frozen=True)
class LineQuantity:
    """A line to acknowledge, back-order or cancel-acknowledge."""

    part_number: str
    line_ref: str
    quantity: int


@dataclass(frozen=True)
class DispatchLine:
    part_number: str
    line_ref: str
    quantity: int
    tracking_number: str
    carrier: str  # a Virtualstock carrier slug, e.g. "dpd"
    dispatch_date: date
    tracking_url: str = ""


@dataclass(frozen=True)
class Carrier:
    id: int
    slug: str
    name: str


@dataclass(frozen=True)
class Product:
    id: int
    part_number: str
    free_stock: int | None
    data: dict = field(repr=False, compare=False)


def _decimal(value) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not an amount") from None


def _id_from_url(url: str) -> int:
    match = re.search(r"/(\d+)/?(?:\?.*)?$", url or "")
    if not match:
        raise ValueError(f"no id in {url!r}")
    return int(match.group(1))


class VirtualstockClient:
    system = SYSTEM

    def __init__(
        self,
        *,
        base_url: str,
        username: str,
        password: str,
        rate_limit: tuple[int, float] = (250, 60.0),
        timeouts: Timeouts = Timeouts(),
        retry: RetryPolicy = RetryPolicy(),
        page_size: int = 100,
        access_lifetime: float = ACCESS_LIFETIME,
        refresh_lifetime: float = REFRESH_LIFETIME,
        sleep=time.sleep,
    ) -> None:
        self.username, self._password = username, password
        self.access_lifetime, self.refresh_lifetime = access_lifetime, refresh_lifetime
        self.page_size = page_size
        self.session = ConnectorSession(
            system=SYSTEM,
            base_url=base_url,
            secrets=[password],
            timeouts=timeouts,
            retry=retry,
            rate_limiter=RateLimiter([rate_limit]),
            sleep=sleep,
        )
        self._token_lock = threading.Lock()
        self._access: str | None = None
        self._access_expires = 0.0
        self._refresh: str | None = None
        self._refresh_expires = 0.0

    # --- authentication ---------------------------------------------------------------------------------------

    def _access_token(self) -> str:
        with self._token_lock:
            now = time.monotonic()
            # Renew a little before expiry, so no call carries a token that dies on the way.
            if self._access and now < self._access_expires - self._margin(self.access_lifetime):
                return self._access
            if self._refresh and now < self._refresh_expires - self._margin(self.refresh_lifetime):
                try:
                    self._renew_access()
                    return self._access
                except AuthError:
                    pass  # the refresh token was refused: sign in afresh
            self._sign_in()
            return self._access

    @staticmethod
    def _margin(lifetime: float) -> float:
        return min(30.0, lifetime / 10)

    def _sign_in(self) -> None:
        started = time.monotonic()
        response = self.session.request(
            "POST",
            "/restapi/v4/token",
            operation="token",
            json_body={"username": self.username, "password": self._password},
            idempotent=True,
            classify=self._classify,
        )
        body = response_json(self.session, response, "token")
        if not isinstance(body, dict) or not body.get("access") or not body.get("refresh"):
            raise AuthError(
                "the token answer had no access and refresh tokens",
                system=SYSTEM,
                operation="token",
                exchange=self.session.exchange_for(response),
            )
        self._set_access(body["access"], started)
        self._refresh, self._refresh_expires = body["refresh"], started + self.refresh_lifetime
        self.session.add_secret(body["refresh"])

    def _renew_access(self) -> None:
        started = time.monotonic()
        response = self.session.request(
            "POST",
            "/restapi/v4/token/refresh",
            operation="token_refresh",
            json_body={"refresh": self._refresh},
            idempotent=True,
            classify=self._classify,
        )
        body = response_json(self.session, response, "token_refresh")
        if not isinstance(body, dict) or not body.get("access"):
            raise AuthError("the refresh answer had no access token", system=SYSTEM, operation="token_refresh")
        self._set_access(body["access"], started)

    def _set_access(self, token: str, issued_at: float) -> None:
        self._access, self._access_expires = token, issued_at + self.access_lifetime
        self.session.add_secret(token)

    def _forget_access(self) -> None:
        with self._token_lock:
            self._access, self._access_expires = None, 0.0

    # --- requests ---------------------------------------------------------------------------------------------

    def _classify(self, response: requests.Response, exchange: Exchange | None) -> ConnectorError | None:
        context = {"system": SYSTEM, "operation": "", "exchange": exchange}
        if response.status_code == 429:
            # Virtualstock says when to come back in the message; Retry-After may or may not be there.
            match = THROTTLED.search(response.text)
            header = response.headers.get("Retry-After")
            retry_after = float(header) if header and header.isdigit() else float(match.group(1)) if match else None
            return RateLimited("throttled (429): " + response.text[:200], retry_after=retry_after, **context)
        if response.status_code == 409:
            return TransientError("the product is publishing; try again in a few minutes (409)", **context)
        if response.status_code == 400:
            return DataError(f"refused (400): {_problems(response)[0]}", details=_problems(response), **context)
        return None

    def _request(self, method: str, path: str, operation: str, **kwargs) -> requests.Response:
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self._access_token()}"}
            try:
                return self.session.request(
                    method, path, operation=operation, headers=headers, classify=self._operation(operation), **kwargs
                )
            except AuthError:
                if attempt == 2:
                    raise
                self._forget_access()  # revoked or expired early: one fresh token, then give up
        raise AssertionError("unreachable")

    def _operation(self, operation: str):
        def classify(response, exchange):
            error = self._classify(response, exchange)
            if error is not None:
                error.operation = operation
            return error

        return classify

    def _json(self, method: str, path: str, operation: str, **kwargs):
        return response_json(self.session, self._request(method, path, operation, **kwargs), operation)

    def _pages(self, path: str, operation: str, params: dict, page_size: int | None = None) -> Iterator[dict]:
        """Every result of a {count, next, previous, results} listing, following ``next`` to the end; pages of
        ``page_size`` (the client's page size unless given; at most MAX_PAGE)."""
        limit = max(1, min(page_size or self.page_size, MAX_PAGE))
        url, query = path, {**params, "limit": limit, "offset": 0}
        while url:
            page = self._json("GET", url, operation, params=query)
            if not isinstance(page, dict) or not isinstance(page.get("results"), list):
                raise TransientError("a listing without results", system=SYSTEM, operation=operation)
            yield from page["results"]
            url, query = page.get("next"), None

    # --- orders -----------------------------------------------------------------------------------------------

    def orders(self, *, status: str = "ORDER", reference: str | None = None) -> Iterator[Order]:
        """Orders in ``status`` (ORDER: new and not yet acknowledged), oldest first, every page. An order in a shape
        that cannot be read raises TransientError; ``raw_orders`` + ``parse_order`` let a caller skip just it."""
        for raw in self.raw_orders(status=status, reference=reference):
            yield self.parse_order(raw)

    def raw_orders(self, *, status: str = "ORDER", reference: str | None = None) -> Iterator[dict]:
        """The orders as Virtualstock sent them, every page."""
        params = {"status": status}
        if reference:
            params["order_reference"] = reference
        yield from self._pages("/restapi/v4/orders/", "orders_list", params)

    def parse_order(self, raw: dict) -> Order:
        """One order from its raw form. Raises TransientError naming what is wrong with its shape."""
        return self._order(raw, "orders_list")

    def order(self, order_id: int) -> Order:
        return self._order(self._json("GET", f"/restapi/v4/orders/{order_id}/", "order_get"), "order_get")

    def _order(self, raw: dict, operation: str) -> Order:
        try:
            lines = [
                OrderLine(
                    line_ref=str(item["line_reference"]),
                    part_number=item["part_number"],
                    quantity=int(item["quantity"]),
                    status=item.get("status", ""),
                    unit_cost_price=_decimal(item.get("unit_cost_price")),
                    subtotal=_decimal(item.get("subtotal")),
                    tax=_decimal(item.get("tax")),
                    tax_rate=_decimal(item.get("tax_rate")),
                    total=_decimal(item.get("total")),
                    name=item.get("name") or "",
                )
                for item in raw["items"]
            ]
            return Order(
                id=_id_from_url(raw["url"]),
                reference=raw["order_reference"],
                status=raw["status"],
                retailer=(raw.get("retailer_data") or {}).get("name") or raw.get("retailer", ""),
                currency=raw.get("currency_code") or "",
                order_date=raw.get("order_date") or "",
                lines=lines,
                subtotal=_decimal(raw.get("subtotal")),
                tax=_decimal(raw.get("tax")),
                total=_decimal(raw.get("total")),
                delivery_service_code=raw.get("delivery_service_code"),
                shipping_address=raw.get("shipping_address") or {},
                raw=raw,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise TransientError(
                f"an order in an unexpected shape ({type(error).__name__}: {error})", system=SYSTEM, operation=operation
            ) from None

    def _action(self, order_id: int, action: str, items: list[dict]) -> None:
        # Acting twice on the same lines is refused by Virtualstock rather than applied twice, so a retry after
        # an unanswered call is safe: the caller reads the order to see whether the first one landed.
        self._request(
            "POST", f"/restapi/v4/orders/{order_id}/{action}/", action, json_body={"items": items}, idempotent=False
        )

    def acknowledge(self, order_id: int, lines: list[LineQuantity]) -> None:
        """Accept the lines: the retailer sees the order as Processing."""
        self._action(order_id, "acknowledge", [vars(line) for line in lines])

    def backorder(self, order_id: int, lines: list[LineQuantity], *, dispatch_date: date) -> None:
        items = [
            {**vars(line), "sub_status": "Backorder", "supplier_dispatch_date": f"{dispatch_date}T12:00:00"}
            for line in lines
        ]
        self._action(order_id, "backorder", items)

    def cancel_acknowledge(self, order_id: int, lines: list[LineQuantity]) -> None:
        self._action(order_id, "cancel_acknowledge", [vars(line) for line in lines])

    def dispatch(self, order_id: int, lines: list[DispatchLine]) -> None:
        """Report lines shipped, with the carrier's Virtualstock slug and the tracking number."""
        items = []
        for line in lines:
            item = {
                "part_number": line.part_number,
                "line_ref": line.line_ref,
                "quantity": line.quantity,
                "tracking_number": line.tracking_number,
                "carrier": line.carrier,
                "supplier_dispatch_date": line.dispatch_date.isoformat(),
            }
            if line.tracking_url:
                item["tracking_url"] = line.tracking_url
            items.append(item)
        self._action(order_id, "dispatch", items)

    def carriers(self) -> list[Carrier]:
        """The carriers Virtualstock knows, by slug: the only values ``dispatch`` accepts."""
        body = self._json("GET", "/restapi/v4/order-tracking-carriers/", "carriers", params={"limit": 1000})
        rows = body["results"] if isinstance(body, dict) and "results" in body else body
        try:
            return [Carrier(int(row["id"]), row["slug"], row.get("name", row["slug"])) for row in rows]
        except (KeyError, TypeError, ValueError):
            raise TransientError("carriers in an unexpected shape", system=SYSTEM, operation="carriers") from None

    # --- products and stock -----------------------------------------------------------------------------------

    def products(self, *, part_number: str | None = None, page_size: int | None = None) -> Iterator[Product]:
        """Every product (or those with ``part_number``) with its free stock, ``page_size`` a page."""
        params = {"part_number": part_number} if part_number else {}
        for raw in self._pages("/api/v4/products/", "products_list", params, page_size):
            data = raw.get("data") or {}
            stock = data.get("supplier_free_stock", data.get("free_stock"))
            yield Product(
                id=_id_from_url(raw["url"]),
                part_number=raw["part_number"],
                free_stock=int(stock) if stock not in (None, "") else None,
                data=data,
            )

    def set_stock(self, product_id: int, quantity: int) -> None:
        """Set what the retailer may sell of one product. Absolute, so repeating it is harmless."""
        if quantity < 0:
            raise ValueError("stock sent to a channel is never negative")
        self._request(
            "PATCH",
            f"/api/v4/products/{product_id}/stock",
            "stock_update",
            json_body={"supplier_free_stock": int(quantity)},
            idempotent=True,
        )

    def update_product(self, product_id: int, data: dict) -> Product:
        """Change fields of one product's retailer data (``PATCH /api/v4/products/<id>/``): only those sent
        change. Absolute values, so repeating it is harmless. Returns the product as Virtualstock now holds it.
        Raises DataError with every field the retailer's data model refuses."""
        raw = self._json(
            "PATCH", f"/api/v4/products/{product_id}/", "product_update", json_body={"data": data}, idempotent=True
        )
        try:
            stored = raw.get("data") or {}
            stock = stored.get("supplier_free_stock", stored.get("free_stock"))
            return Product(
                id=_id_from_url(raw["url"]),
                part_number=raw["part_number"],
                free_stock=int(stock) if stock not in (None, "") else None,
                data=stored,
            )
        except (AttributeError, KeyError, TypeError, ValueError):
            raise TransientError(
                "a product in an unexpected shape", system=SYSTEM, operation="product_update"
            ) from None


def _problems(response: requests.Response) -> list[str]:
    """The messages of a 400: a DRF field map, ``{"detail": …}``, or Virtualstock's plain-text validation error."""
    try:
        body = response.json()
    except ValueError:
        return [response.text.strip().removeprefix("Validation error: ") or "no message"]
    if isinstance(body, dict) and "detail" in body:
        return [str(body["detail"])]
    if isinstance(body, dict):
        return [
            f"{name}: {message}"
            for name, messages in body.items()
            for message in (messages if isinstance(messages, list) else [messages])
        ] or ["no message"]
    return [str(body)]
