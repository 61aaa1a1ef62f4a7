"""A generic marketplace seller API (v1), as a seller sees it.

There is no single real API to copy, so this one is built from what Mirakl's seller API, Zalando zDirect and
Amazon SP-API share, leaning on Mirakl where they differ:

- ``Authorization: Bearer <api key>`` on every call (Mirakl Connect, zDirect and SP-API all send a bearer token).
- Orders are polled by status with an opaque cursor: ``GET /api/v1/orders?status=NEW&cursor=…`` answers
  ``{"orders": [...], "next_cursor": "…" | null}`` (Mirakl's ``next_page_token``, zDirect's cursor). The cursor
  carries the filters, so the follow-up call sends only ``cursor``. ``updated_since`` reads changes (Mirakl's
  ``start_update_date``, SP-API's ``LastUpdatedAfter``).
- New orders must be acknowledged (Mirakl accepts order lines, zDirect "exports" the order): acknowledging twice
  is a harmless no-op. Lines are cancelled one at a time with a reason code; shipments name lines, quantities, a
  tracking number and the marketplace's own carrier code from ``GET /api/v1/carriers`` (Mirakl's carrier list).
  A shipment is identified by its tracking number within an order, so sending the same one again returns the
  shipment already made instead of shipping twice.
- Stock and prices go in batches of at most 500 items with a result per item (zDirect's stock API answers per
  item; Mirakl reports rejected lines in an error report): one unknown SKU does not sink the batch. Each stock
  item carries the time of the reading, and an older reading never overwrites a newer one (reported ``STALE``).
- Errors are ``{"errors": [{"code", "message", "field"}]}`` with 400 (validation), 404, 409 (wrong state);
  401 for a missing or wrong key; 429 with ``Retry-After`` in seconds; 5xx with the same JSON shape.
- Webhooks are JSON events ``{"id", "type", "created_at", "data"}`` signed with
  ``X-Marketplace-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``, a timestamped scheme so
  the receiver can refuse replays.
"""

import base64
import copy
import hashlib
import hmac
import json
import random
import time
import uuid
from datetime import datetime
from decimal import Decimal, InvalidOperation

import requests
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from syncs.sandbox.core import ApiError, Simulator, json_response, utcnow_iso
from syncs.sandbox.world import generate

API = "/api/v1"
MAX_BATCH = 500
ORDER_PAGE = (50, 100)  # default and largest page of orders
OFFER_PAGE = (100, 500)
CURRENCY = "EUR"
ORDER_STATUSES = ("NEW", "ACCEPTED", "PARTIALLY_SHIPPED", "SHIPPED", "CANCELLED")
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
# The marketplace's own carrier codes: deliberately not Centra's or Fulfil's names, so a mapping is needed.
DEFAULT_CARRIERS = [
    {"code": "DHL_PAKET", "name": "DHL Paket", "tracking_url": "https://www.dhl.de/track?piececode={tracking_number}"},
    {"code": "DHL_EXPRESS", "name": "DHL Express", "tracking_url": "https://www.dhl.com/track?id={tracking_number}"},
    {"code": "UPS_STANDARD", "name": "UPS Standard", "tracking_url": "https://www.ups.com/track?tn={tracking_number}"},
    {"code": "DPD_CLASSIC", "name": "DPD Classic", "tracking_url": "https://tracking.dpd.de/{tracking_number}"},
    {"code": "GLS", "name": "GLS", "tracking_url": "https://gls-group.com/track/{tracking_number}"},
    {"code": "HERMES", "name": "Hermes", "tracking_url": "https://www.myhermes.de/track/{tracking_number}"},
    {"code": "POSTNORD_MYPACK", "name": "PostNord MyPack", "tracking_url": "https://postnord.se/t/{tracking_number}"},
]
USUAL_SHIPPING_METHODS = ["STANDARD", "EXPRESS", "NEXT_DAY", "PICKUP_POINT"]
ODD_SHIPPING_METHODS = ["SAME_DAY_BIKE", "NOMINATED_DAY", "PARCEL_LOCKER"]  # ones no mapping knows yet


def _problem(code: str, message: str, field: str | None = None) -> dict:
    return {"code": code, "message": message, "field": field}


def _errors(problems: list[dict], status: int = 400, headers: dict | None = None) -> Response:
    return json_response({"errors": problems}, status, headers)


def _refuse(code: str, message: str, field: str | None = None, status: int = 400) -> ApiError:
    return ApiError(_errors([_problem(code, message, field)], status))


def _parse_time(value) -> datetime | None:
    """An ISO 8601 timestamp with a time zone, or None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def _money(value) -> Decimal | None:
    """A positive amount sent as a string with at most two decimals ("29.00"); None when it is not one. Numbers
    are refused: a float cannot carry money exactly."""
    if not isinstance(value, str):
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount <= 0 or amount.as_tuple().exponent < -2:
        return None
    return amount


def _whole(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _encode_cursor(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, kind: str) -> dict:
    """The position and filters a cursor of this ``kind`` (orders, offers) carries; 400 for any other string."""
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict) or data.get("kind") != kind or "after" not in data:
        raise _refuse("INVALID_CURSOR", "The cursor is not one this API issued.", "cursor")
    return data


def _limit(request: Request, cursor: dict | None, bounds: tuple[int, int]) -> int:
    default, largest = bounds
    raw = request.args.get("limit", (cursor or {}).get("limit", default))
    try:
        limit = int(raw)
    except (TypeError, ValueError):
        limit = 0
    if not 1 <= limit <= largest:
        raise _refuse("INVALID_LIMIT", f"limit must be a whole number from 1 to {largest}.", "limit")
    return limit


class MarketplaceSimulator(Simulator):
    name = "marketplace"
    default_rate_limit = (20, 1.0)  # 20 requests a second per seller account

    def __init__(self, api_key: str = "sandbox-marketplace", webhook_secret: str = "sandbox-marketplace-webhooks"):
        self.api_key = api_key
        super().__init__()
        self.webhook_secret = webhook_secret

    def empty_state(self) -> dict:
        return {
            "orders": {},  # by order id
            "offers": {},  # by seller SKU
            "carriers": copy.deepcopy(DEFAULT_CARRIERS),
            "next_sequence": 1,  # every change to an order gives it the next number: the order of the feed
            "next_live_order": 1,
            "next_shipment": 1,
            "next_return": 1,
        }

    def api_rules(self) -> list[Rule]:
        return [
            Rule(f"{API}/orders", endpoint="orders_list", methods=["GET"]),
            Rule(f"{API}/orders/<order_id>", endpoint="order_get", methods=["GET"]),
            Rule(f"{API}/orders/<order_id>/acknowledge", endpoint="order_acknowledge", methods=["POST"]),
            Rule(f"{API}/orders/<order_id>/lines/<line_id>/cancel", endpoint="line_cancel", methods=["POST"]),
            Rule(f"{API}/orders/<order_id>/shipments", endpoint="shipment_create", methods=["POST"]),
            Rule(f"{API}/orders/<order_id>/returns", endpoint="return_create", methods=["POST"]),
            Rule(f"{API}/carriers", endpoint="carriers_list", methods=["GET"]),
            Rule(f"{API}/stock", endpoint="stock_update", methods=["PUT"]),
            Rule(f"{API}/prices", endpoint="prices_update", methods=["PUT"]),
            Rule(f"{API}/offers", endpoint="offers_list", methods=["GET"]),
            Rule(f"{API}/products", endpoint="products_update", methods=["PUT"]),
            # The marketplace's own side, played through the control API: an order placed, a customer cancelling,
            # a marketplace employee editing an offer. Each is announced by webhook as the real thing would be.
            # (The order and SKU go in the body: control routes are called without path arguments.)
            Rule("/_sandbox/orders", endpoint="control_place_order", methods=["POST"]),
            Rule("/_sandbox/customer-cancel", endpoint="control_customer_cancel", methods=["POST"]),
            Rule("/_sandbox/offer-edit", endpoint="control_offer_edit", methods=["POST"]),
        ]

    # --- auth, limits, faults ---------------------------------------------------------------------------------

    def authenticate(self, request: Request, operation: str) -> Response | None:
        header = request.headers.get("Authorization", "")
        challenge = {"WWW-Authenticate": 'Bearer realm="marketplace"'}
        if not header.startswith("Bearer ") or not header.removeprefix("Bearer ").strip():
            return _errors(
                [_problem("UNAUTHENTICATED", "Send your API key as 'Authorization: Bearer <key>'.")], 401, challenge
            )
        if not hmac.compare_digest(header.removeprefix("Bearer ").strip(), self.api_key):
            return _errors(
                [_problem("INVALID_API_KEY", "The API key is not valid or has been revoked.")], 401, challenge
            )
        return None

    def rate_limited_response(self, retry_after: float) -> Response:
        seconds = int(retry_after) + 1
        return _errors(
            [_problem("RATE_LIMITED", f"Too many requests. Retry after {seconds} seconds.")],
            429,
            {"Retry-After": str(seconds)},
        )

    def fault_response(self, status: int) -> Response:
        code = {502: "BAD_GATEWAY", 503: "SERVICE_UNAVAILABLE", 504: "GATEWAY_TIMEOUT"}.get(status, "INTERNAL_ERROR")
        return _errors([_problem(code, "An unexpected error occurred. Try again later.")], status)

    def operation_of(self, request: Request, endpoint: str, arguments: dict) -> str:
        return endpoint

    # --- seeding ----------------------------------------------------------------------------------------------

    def seed(self, body: dict) -> dict:
        if "generate" in body:
            world = generate(**dict(body["generate"]))
            for product, variant, size in world.sizes():
                stamp = product.created_at.isoformat()
                self._add_offer(
                    {
                        "sku": size.sku,
                        "ean": size.ean,
                        "title": f"{product.name} {variant.name} {size.size_number}",
                        "price": str(product.price_eur),
                        "quantity": 0,
                        "updated_at": stamp,
                    }
                )
            for order in world.marketplace_orders:
                self._add_order(order)
        for offer in body.get("offers", []):
            self._add_offer(offer)
        for order in body.get("orders", []):
            self._add_order(order)
        if "carriers" in body:
            self.state["carriers"] = [dict(carrier) for carrier in body["carriers"]]
        return {
            "offers": len(self.state["offers"]),
            "orders": len(self.state["orders"]),
            "carriers": len(self.state["carriers"]),
        }

    def _add_offer(self, offer: dict) -> dict:
        if not offer.get("sku"):
            raise ValueError("an offer needs a sku")
        if _money(str(offer.get("price", ""))) is None:
            raise ValueError(f"offer {offer['sku']}: price must be an amount such as '29.00'")
        record = {
            "sku": offer["sku"],
            "ean": offer.get("ean"),
            "title": offer.get("title", offer["sku"]),
            "price": str(offer["price"]),
            "currency": offer.get("currency", CURRENCY),
            "quantity": int(offer.get("quantity", 0)),
            "active": bool(offer.get("active", True)),
            "stock_updated_at": offer.get("stock_updated_at"),
            "updated_at": offer.get("updated_at") or utcnow_iso(),
            "description": offer.get("description", ""),
            "images": list(offer.get("images") or []),
            "attributes": dict(offer.get("attributes") or {}),
        }
        self.state["offers"][record["sku"]] = record
        return record

    def _add_order(self, order: dict) -> dict:
        for key in ("id", "lines"):
            if key not in order:
                raise ValueError(f"an order needs {key!r}")
        record = copy.deepcopy(order)
        record.setdefault("status", "NEW")
        record.setdefault("created_at", utcnow_iso())
        record.setdefault("updated_at", record["created_at"])
        record.setdefault("currency", CURRENCY)
        record.setdefault("shipping_price", "0.00")
        record.setdefault("acknowledged_at", None if record["status"] == "NEW" else record["created_at"])
        record.setdefault("shipments", [])
        record.setdefault("returns", [])
        for line in record["lines"]:
            for key in ("id", "seller_sku", "quantity", "unit_price"):
                if key not in line:
                    raise ValueError(f"order {record['id']}: a line needs {key!r}")
            line.setdefault("status", record["status"] if record["status"] in ("NEW", "ACCEPTED") else "ACCEPTED")
            line.setdefault("tax_rate", "0")
            for key in ("shipped_quantity", "cancelled_quantity", "returned_quantity"):
                line.setdefault(key, 0)
        existing = self.state["orders"].get(str(record["id"]))
        # Seeding the same order again keeps its place in the feed, so seeding twice gives the same state.
        record["sequence"] = existing["sequence"] if existing else self._next("next_sequence")
        self.state["orders"][str(record["id"])] = record
        return record

    def _next(self, counter: str) -> int:
        value = self.state[counter]
        self.state[counter] = value + 1
        return value

    # --- orders -----------------------------------------------------------------------------------------------

    def _order(self, order_id: str) -> dict:
        order = self.state["orders"].get(order_id)
        if order is None:
            raise _refuse("NOT_FOUND", f"Order {order_id} was not found.", status=404)
        return order

    def _line(self, order: dict, line_id: str) -> dict:
        for line in order["lines"]:
            if line["id"] == line_id:
                return line
        raise _refuse("NOT_FOUND", f"Order {order['id']} has no line {line_id}.", status=404)

    def _order_json(self, order: dict) -> dict:
        shaped = {key: copy.deepcopy(value) for key, value in order.items() if key != "sequence"}
        goods = sum(Decimal(line["unit_price"]) * line["quantity"] for line in order["lines"])
        shaped["total_price"] = str(goods + Decimal(order["shipping_price"]))
        return shaped

    def _touch(self, order: dict) -> None:
        """Record a change: the order moves to the end of the feed and its status follows its lines."""
        order["sequence"] = self._next("next_sequence")
        order["updated_at"] = utcnow_iso()
        lines = order["lines"]
        if all(line["cancelled_quantity"] >= line["quantity"] for line in lines):
            order["status"] = "CANCELLED"
        elif order["acknowledged_at"] is None:
            order["status"] = "NEW"
        else:
            shipped = sum(line["shipped_quantity"] for line in lines)
            still_open = sum(self._open(line) for line in lines)
            order["status"] = "ACCEPTED" if shipped == 0 else "PARTIALLY_SHIPPED" if still_open else "SHIPPED"

    @staticmethod
    def _open(line: dict) -> int:
        return line["quantity"] - line["shipped_quantity"] - line["cancelled_quantity"]

    def orders_list(self, request: Request) -> Response:
        with self.lock:
            cursor = _decode_cursor(request.args["cursor"], "orders") if request.args.get("cursor") else None
            if cursor is not None:
                statuses, since = cursor.get("status"), cursor.get("since")
            else:
                statuses = [s for s in request.args.get("status", "").split(",") if s] or None
                unknown = [s for s in statuses or [] if s not in ORDER_STATUSES]
                if unknown:
                    raise _refuse(
                        "INVALID_STATUS",
                        f"Unknown status {', '.join(unknown)}; use one of {', '.join(ORDER_STATUSES)}.",
                        "status",
                    )
                since = request.args.get("updated_since")
                if since is not None and _parse_time(since) is None:
                    raise _refuse(
                        "INVALID_TIMESTAMP", "updated_since must be ISO 8601 with a time zone.", "updated_since"
                    )
            limit = _limit(request, cursor, ORDER_PAGE)
            after = cursor["after"] if cursor else 0
            since_moment = _parse_time(since) if since else None
            rows = sorted(
                (
                    order
                    for order in self.state["orders"].values()
                    if order["sequence"] > after
                    and (statuses is None or order["status"] in statuses)
                    and (since_moment is None or _parse_time(order["updated_at"]) >= since_moment)
                ),
                key=lambda order: order["sequence"],
            )
            page, more = rows[:limit], len(rows) > limit
            next_cursor = (
                _encode_cursor(
                    {
                        "kind": "orders",
                        "after": page[-1]["sequence"],
                        "status": statuses,
                        "since": since,
                        "limit": limit,
                    }
                )
                if more
                else None
            )
            return json_response({"orders": [self._order_json(order) for order in page], "next_cursor": next_cursor})

    def order_get(self, request: Request, order_id: str) -> Response:
        with self.lock:
            return json_response(self._order_json(self._order(order_id)))

    def order_acknowledge(self, request: Request, order_id: str) -> Response:
        with self.lock:
            order = self._order(order_id)
            if order["acknowledged_at"] is None:
                if order["status"] == "CANCELLED":
                    raise _refuse(
                        "ORDER_CANCELLED", f"Order {order_id} was cancelled before it was acknowledged.", status=409
                    )
                order["acknowledged_at"] = utcnow_iso()
                for line in order["lines"]:
                    if line["status"] == "NEW":
                        line["status"] = "ACCEPTED"
                self._touch(order)
            return json_response(self._order_json(order))

    def _body(self, request: Request) -> dict:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise _refuse("INVALID_BODY", "Send a JSON object.")
        return body

    def line_cancel(self, request: Request, order_id: str, line_id: str) -> Response:
        body = self._body(request)
        with self.lock:
            order = self._order(order_id)
            line = self._line(order, line_id)
            problems = self._cancel_problems(body, line, CANCEL_REASONS)
            if problems:
                return _errors(problems)
            if self._open(line) == 0 and line["status"] == "CANCELLED" and "quantity" not in body:
                return json_response(self._order_json(order))  # already cancelled: saying so again changes nothing
            if order["status"] in ("SHIPPED", "CANCELLED") or self._open(line) == 0:
                raise _refuse("LINE_NOT_OPEN", f"Line {line_id} has nothing left to cancel.", "line_id", status=409)
            self._cancel(order, line, body.get("quantity"), body["reason_code"], "seller")
            return json_response(self._order_json(order))

    def _cancel_problems(self, body: dict, line: dict, reasons: tuple[str, ...]) -> list[dict]:
        problems = []
        if body.get("reason_code") not in reasons:
            problems.append(
                _problem(
                    "INVALID_REASON_CODE",
                    f"reason_code must be one of {', '.join(reasons)}; got {body.get('reason_code')!r}.",
                    "reason_code",
                )
            )
        if "quantity" in body:
            quantity = _whole(body["quantity"])
            if quantity is None or quantity <= 0:
                problems.append(_problem("INVALID_QUANTITY", "quantity must be a positive whole number.", "quantity"))
            elif quantity > self._open(line):
                problems.append(
                    _problem(
                        "QUANTITY_EXCEEDS_OPEN",
                        f"Only {self._open(line)} of line {line['id']} can still be cancelled.",
                        "quantity",
                    )
                )
        return problems

    def _cancel(self, order: dict, line: dict, quantity: int | None, reason: str, initiated_by: str) -> dict:
        quantity = quantity or self._open(line)
        line["cancelled_quantity"] += quantity
        line.setdefault("cancellations", []).append(
            {"quantity": quantity, "reason_code": reason, "initiated_by": initiated_by, "at": utcnow_iso()}
        )
        if line["cancelled_quantity"] >= line["quantity"]:
            line["status"] = "CANCELLED"
        elif self._open(line) == 0:
            line["status"] = "SHIPPED"
        self._touch(order)
        return {"line_id": line["id"], "quantity": quantity, "reason_code": reason}

    def shipment_create(self, request: Request, order_id: str) -> Response:
        body = self._body(request)
        with self.lock:
            order = self._order(order_id)
            problems = []
            carriers = {carrier["code"]: carrier for carrier in self.state["carriers"]}
            carrier = carriers.get(body.get("carrier_code"))
            if not body.get("carrier_code"):
                problems.append(_problem("REQUIRED", "carrier_code is required.", "carrier_code"))
            elif carrier is None:
                problems.append(
                    _problem(
                        "UNKNOWN_CARRIER",
                        f"Unknown carrier code {body['carrier_code']!r}: use a code from GET {API}/carriers.",
                        "carrier_code",
                    )
                )
            tracking = body.get("tracking_number")
            if not isinstance(tracking, str) or not tracking.strip():
                problems.append(_problem("REQUIRED", "tracking_number is required.", "tracking_number"))
            if not problems:
                earlier = next((s for s in order["shipments"] if s["tracking_number"] == tracking), None)
                if earlier is not None:
                    # The same parcel reported again (a retry after a lost answer): one shipment, not two.
                    if earlier["lines"] == body.get("lines") and earlier["carrier_code"] == carrier["code"]:
                        return json_response(earlier, 200)
                    raise _refuse(
                        "DUPLICATE_TRACKING_NUMBER",
                        f"Tracking number {tracking} is already used by shipment {earlier['id']} with other lines.",
                        "tracking_number",
                        status=409,
                    )
            requested = self._requested_lines(order, body, problems, self._open)
            if problems:
                return _errors(problems)
            if order["acknowledged_at"] is None:
                raise _refuse("ORDER_NOT_ACKNOWLEDGED", f"Acknowledge order {order_id} before shipping it.", status=409)
            shipment = {
                "id": f"SHP-{self._next('next_shipment'):06d}",
                "carrier_code": carrier["code"],
                "carrier_name": carrier["name"],
                "tracking_number": tracking,
                "tracking_url": body.get("tracking_url") or carrier["tracking_url"].format(tracking_number=tracking),
                "lines": requested,
                "shipped_at": body.get("shipped_at") or utcnow_iso(),
            }
            lines = {line["id"]: line for line in order["lines"]}
            for entry in requested:
                line = lines[entry["line_id"]]
                line["shipped_quantity"] += entry["quantity"]
                if self._open(line) == 0:
                    line["status"] = "SHIPPED"
            order["shipments"].append(shipment)
            self._touch(order)
            return json_response(shipment, 201)

    def _requested_lines(self, order: dict, body: dict, problems: list[dict], available) -> list[dict]:
        """The ``lines`` of a shipment or return, checked: each names a line of the order and a positive quantity
        no larger than ``available(line)``. Problems are added to ``problems``."""
        entries = body.get("lines")
        if not isinstance(entries, list) or not entries:
            problems.append(_problem("REQUIRED", "lines must list at least one {line_id, quantity}.", "lines"))
            return []
        lines = {line["id"]: line for line in order["lines"]}
        requested = []
        for index, entry in enumerate(entries):
            field = f"lines[{index}]"
            if not isinstance(entry, dict):
                problems.append(_problem("INVALID_LINE", "Each line is {line_id, quantity}.", field))
                continue
            line = lines.get(entry.get("line_id"))
            quantity = _whole(entry.get("quantity"))
            if line is None:
                problems.append(
                    _problem(
                        "UNKNOWN_LINE", f"Order {order['id']} has no line {entry.get('line_id')!r}.", f"{field}.line_id"
                    )
                )
            elif quantity is None or quantity <= 0:
                problems.append(
                    _problem("INVALID_QUANTITY", "quantity must be a positive whole number.", f"{field}.quantity")
                )
            elif quantity > available(line):
                problems.append(
                    _problem(
                        "QUANTITY_EXCEEDS_OPEN",
                        f"Line {line['id']}: {quantity} requested but only {available(line)} possible.",
                        f"{field}.quantity",
                    )
                )
            else:
                requested.append({"line_id": line["id"], "quantity": quantity})
        return requested

    def return_create(self, request: Request, order_id: str) -> Response:
        body = self._body(request)
        with self.lock:
            order = self._order(order_id)
            problems = []
            if body.get("reason_code") not in RETURN_REASONS:
                problems.append(
                    _problem(
                        "INVALID_REASON_CODE",
                        f"reason_code must be one of {', '.join(RETURN_REASONS)}; got {body.get('reason_code')!r}.",
                        "reason_code",
                    )
                )
            requested = self._requested_lines(
                order, body, problems, lambda line: line["shipped_quantity"] - line["returned_quantity"]
            )
            if problems:
                return _errors(problems)
            record = {
                "id": f"RET-{self._next('next_return'):06d}",
                "reason_code": body["reason_code"],
                "lines": requested,
                "tracking_number": body.get("tracking_number"),
                "received_at": body.get("received_at") or utcnow_iso(),
            }
            lines = {line["id"]: line for line in order["lines"]}
            for entry in requested:
                line = lines[entry["line_id"]]
                line["returned_quantity"] += entry["quantity"]
                if line["returned_quantity"] >= line["shipped_quantity"] and self._open(line) == 0:
                    line["status"] = "RETURNED"
            order["returns"].append(record)
            self._touch(order)
            return json_response(record, 201)

    def carriers_list(self, request: Request) -> Response:
        with self.lock:
            return json_response({"carriers": copy.deepcopy(self.state["carriers"])})

    # --- stock, prices, offers --------------------------------------------------------------------------------

    def _batch(self, request: Request) -> list:
        body = self._body(request)
        items = body.get("items")
        if not isinstance(items, list) or not items:
            raise _refuse("REQUIRED", "items must be a list of at least one item.", "items")
        if len(items) > MAX_BATCH:
            raise _refuse("BATCH_TOO_LARGE", f"At most {MAX_BATCH} items per call; this one had {len(items)}.", "items")
        return items

    def stock_update(self, request: Request) -> Response:
        items = self._batch(request)
        results = []
        with self.lock:
            for index, item in enumerate(items):
                results.append(self._stock_item(index, item))
        return json_response({"results": results})

    def _stock_item(self, index: int, item) -> dict:
        field = f"items[{index}]"
        sku = item.get("sku") if isinstance(item, dict) else None
        offer = self.state["offers"].get(sku) if isinstance(sku, str) else None
        quantity = _whole(item.get("quantity")) if isinstance(item, dict) else None
        reading = _parse_time(item.get("updated_at")) if isinstance(item, dict) else None
        problem = None
        if offer is None:
            problem = _problem("UNKNOWN_SKU", f"No offer with SKU {sku!r} on this account.", f"{field}.sku")
        elif quantity is None or quantity < 0:
            problem = _problem("INVALID_QUANTITY", "quantity must be a whole number of 0 or more.", f"{field}.quantity")
        elif reading is None:
            problem = _problem(
                "INVALID_TIMESTAMP", "updated_at must be ISO 8601 with a time zone.", f"{field}.updated_at"
            )
        if problem:
            return {"sku": sku, "status": "REJECTED", "quantity": None, "errors": [problem]}
        current = _parse_time(offer["stock_updated_at"])
        if current is not None and reading < current:
            # An older reading arriving late must not undo a newer one.
            return {"sku": sku, "status": "STALE", "quantity": offer["quantity"], "errors": []}
        offer["quantity"] = quantity
        offer["stock_updated_at"] = item["updated_at"]
        return {"sku": sku, "status": "UPDATED", "quantity": quantity, "errors": []}

    def prices_update(self, request: Request) -> Response:
        items = self._batch(request)
        results = []
        with self.lock:
            for index, item in enumerate(items):
                results.append(self._price_item(index, item))
        return json_response({"results": results})

    def _price_item(self, index: int, item) -> dict:
        field = f"items[{index}]"
        item = item if isinstance(item, dict) else {}
        sku = item.get("sku")
        offer = self.state["offers"].get(sku) if isinstance(sku, str) else None
        price = _money(item.get("price"))
        problem = None
        if offer is None:
            problem = _problem("UNKNOWN_SKU", f"No offer with SKU {sku!r} on this account.", f"{field}.sku")
        elif price is None:
            problem = _problem(
                "INVALID_PRICE", 'price must be a positive amount as a string, e.g. "29.95".', f"{field}.price"
            )
        elif item.get("currency") != offer["currency"]:
            problem = _problem(
                "CURRENCY_MISMATCH",
                f"Offer {sku} is sold in {offer['currency']}, not {item.get('currency')!r}.",
                f"{field}.currency",
            )
        if problem:
            return {"sku": sku, "status": "REJECTED", "errors": [problem]}
        offer["price"] = item["price"]
        offer["updated_at"] = utcnow_iso()
        return {"sku": sku, "status": "UPDATED", "errors": []}

    def offers_list(self, request: Request) -> Response:
        with self.lock:
            cursor = _decode_cursor(request.args["cursor"], "offers") if request.args.get("cursor") else None
            limit = _limit(request, cursor, OFFER_PAGE)
            sku = cursor.get("sku") if cursor else request.args.get("sku")
            after = cursor["after"] if cursor else ""
            since_text = cursor.get("updated_since") if cursor else request.args.get("updated_since")
            since = _parse_time(since_text) if since_text else None
            if since_text and since is None:
                raise _refuse("INVALID_TIMESTAMP", "updated_since must be ISO 8601 with a time zone.", "updated_since")
            rows = sorted(
                (
                    offer
                    for key, offer in self.state["offers"].items()
                    if key > after
                    and (sku is None or key == sku)
                    and (since is None or _parse_time(offer["updated_at"]) >= since)
                ),
                key=lambda offer: offer["sku"],
            )
            page, more = rows[:limit], len(rows) > limit
            position = {"kind": "offers", "after": page[-1]["sku"] if page else "", "sku": sku, "limit": limit}
            if since_text:
                position["updated_since"] = since_text
            next_cursor = _encode_cursor(position) if more else None
            return json_response({"offers": copy.deepcopy(page), "next_cursor": next_cursor})

    def products_update(self, request: Request) -> Response:
        """``PUT /api/v1/products {"items": [{"sku", "title"?, "description"?, "images"?, "attributes"?}]}``: the
        product content of offers (Mirakl's product import P41, answered per item like the stock and price calls).
        Only the fields sent change; ``attributes`` replaces the offer's attributes as a whole."""
        items = self._batch(request)
        results = []
        with self.lock:
            for index, item in enumerate(items):
                results.append(self._content_item(index, item))
        return json_response({"results": results})

    def _content_item(self, index: int, item) -> dict:
        field = f"items[{index}]"
        item = item if isinstance(item, dict) else {}
        sku = item.get("sku")
        offer = self.state["offers"].get(sku) if isinstance(sku, str) else None
        problems = []
        if offer is None:
            problems.append(_problem("UNKNOWN_SKU", f"No offer with SKU {sku!r} on this account.", f"{field}.sku"))
        if "title" in item and (not isinstance(item["title"], str) or not item["title"].strip()):
            problems.append(_problem("INVALID_TITLE", "title must be a non-empty string.", f"{field}.title"))
        elif isinstance(item.get("title"), str) and len(item["title"]) > 200:
            problems.append(_problem("TITLE_TOO_LONG", "title must be at most 200 characters.", f"{field}.title"))
        if "description" in item and not isinstance(item["description"], str):
            problems.append(_problem("INVALID_DESCRIPTION", "description must be a string.", f"{field}.description"))
        images = item.get("images", [])
        if not isinstance(images, list) or not all(
            isinstance(url, str) and url.startswith(("https://", "http://")) for url in images
        ):
            problems.append(_problem("INVALID_IMAGE", "images must be a list of http(s) URLs.", f"{field}.images"))
        attributes = item.get("attributes", {})
        if not isinstance(attributes, dict) or not all(isinstance(v, str) for v in attributes.values()):
            problems.append(
                _problem("INVALID_ATTRIBUTE", "attributes must map codes to string values.", f"{field}.attributes")
            )
        if problems:
            return {"sku": sku, "status": "REJECTED", "errors": problems}
        for name in ("title", "description", "images", "attributes"):
            if name in item:
                offer[name] = copy.deepcopy(item[name])
        offer["updated_at"] = utcnow_iso()
        return {"sku": sku, "status": "UPDATED", "errors": []}

    # --- the marketplace's own side (control API) -------------------------------------------------------------

    def control_place_order(self, request: Request) -> Response:
        """Place an order as a customer would: the given one (world shape), or a made-up one from the offers."""
        body = request.get_json(silent=True)
        with self.lock:
            try:
                order = self._place(body if isinstance(body, dict) and body else None, random.Random())
            except (KeyError, TypeError, ValueError) as error:
                return json_response({"error": f"Cannot place the order: {error}"}, 400)
            return json_response(self._order_json(order), 201)

    def control_customer_cancel(self, request: Request) -> Response:
        """A customer cancels a line (``{"order_id", "line_id", "quantity"?}``) before it ships; announced as
        ``order.cancelled``."""
        body = request.get_json(silent=True) or {}
        with self.lock:
            try:
                order = self._order(str(body.get("order_id")))
                line = self._line(order, str(body.get("line_id")))
            except ApiError as error:
                return error.response
            if self._open(line) == 0:
                return json_response({"error": f"Line {line['id']} has nothing left to cancel."}, 409)
            self._customer_cancel(order, line, body.get("quantity"))
            return json_response(self._order_json(order))

    def control_offer_edit(self, request: Request) -> Response:
        """A marketplace-side edit of an offer (``{"sku", and any of title, price, quantity, active, ean}``), as the
        marketplace's own content team might make; announced as ``offer.updated``."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not body.get("sku"):
            return json_response({"error": 'Send {"sku": ..., and the fields to change}.'}, 400)
        body = dict(body)
        sku = body.pop("sku")
        allowed = {"title", "price", "quantity", "active", "ean", "description", "images", "attributes"}
        if set(body) - allowed:
            return json_response({"error": f"Only {sorted(allowed)} can be edited."}, 400)
        with self.lock:
            offer = self.state["offers"].get(sku)
            if offer is None:
                return json_response({"error": f"No offer {sku}."}, 404)
            if "price" in body and _money(body["price"]) is None:
                return json_response({"error": "price must be an amount string such as '29.00'."}, 400)
            offer.update(body)
            offer["updated_at"] = utcnow_iso()
            self.emit_webhook(self._event("offer.updated", {"offer": dict(offer), "changed": sorted(body)}))
            return json_response(dict(offer))

    def _place(self, order: dict | None, rng: random.Random) -> dict:
        if order is None:
            order = self._made_up_order(rng)
        else:
            order = {**order, "status": "NEW"}
            order.setdefault("id", f"MP-LIVE-{self._next('next_live_order'):05d}")
            order.setdefault("created_at", utcnow_iso())
        record = self._add_order(order)
        # Selling takes the units off the marketplace's count at once, before the seller sends a new figure.
        for line in record["lines"]:
            offer = self.state["offers"].get(line["seller_sku"])
            if offer is not None:
                offer["quantity"] = max(0, offer["quantity"] - line["quantity"])
        self.emit_webhook(self._event("order.created", {"order": self._order_json(record)}))
        return record

    def _made_up_order(self, rng: random.Random) -> dict:
        offers = sorted(self.state["offers"])
        if not offers:
            raise ValueError("there are no offers to order: seed some first")
        number = self._next("next_live_order")
        lines = []
        for index, sku in enumerate(rng.sample(offers, k=min(len(offers), rng.randint(1, 2)))):
            if rng.random() < 0.15:  # as world.generate does: now and then a SKU nobody has mapped
                sku, price = f"UNKNOWN-{rng.randint(1000, 9999)}", "19.00"
            else:
                price = self.state["offers"][sku]["price"]
            lines.append(
                {
                    "id": f"LIVE{number}-{index + 1}",
                    "seller_sku": sku,
                    "quantity": rng.randint(1, 2),
                    "unit_price": price,
                    "tax_rate": "19",
                    "status": "NEW",
                }
            )
        odd = rng.random() < 0.1
        first, last = rng.choice(["Mia", "Paul", "Lena", "Jonas", "Emma"]), rng.choice(["Weber", "Klein", "Wolf"])
        return {
            "id": f"MP-LIVE-{number:05d}",
            "status": "NEW",
            "created_at": utcnow_iso(),
            "currency": CURRENCY,
            "shipping_method": rng.choice(ODD_SHIPPING_METHODS if odd else USUAL_SHIPPING_METHODS),
            "customer": {
                "first_name": first,
                "last_name": last,
                "email": f"{first.lower()}.{last.lower()}{rng.randint(1, 999)}@example.com",
                "address1": f"{rng.randint(1, 120)} Hauptstraße",
                "city": "Berlin",
                "zipcode": f"{rng.randint(10000, 99999)}",
                "country": "DE",
                "phone": f"+49 {rng.randint(100000000, 999999999)}",
            },
            "lines": lines,
            "shipping_price": "4.95",
        }

    def _customer_cancel(self, order: dict, line: dict, quantity: int | None) -> None:
        cancelled = self._cancel(order, line, quantity, "CUSTOMER_REQUEST", "customer")
        self.emit_webhook(
            self._event(
                "order.cancelled",
                {"order": self._order_json(order), "lines": [cancelled], "initiated_by": "customer"},
            )
        )

    def tick(self, rng: random.Random) -> None:
        """Demo mode: now and then an order arrives (some with unknown SKUs or odd shipping methods), and now and
        then a customer cancels a line that has not shipped."""
        with self.lock:
            if self.state["offers"] and rng.random() < 0.5:
                self._place(None, rng)
            if rng.random() < 0.2:
                cancellable = [
                    (order, line)
                    for order in sorted(self.state["orders"].values(), key=lambda o: o["sequence"])
                    if order["status"] in ("NEW", "ACCEPTED")
                    for line in order["lines"]
                    if self._open(line) > 0
                ]
                if cancellable:
                    order, line = rng.choice(cancellable)
                    self._customer_cancel(order, line, None)

    # --- webhooks ---------------------------------------------------------------------------------------------

    def _event(self, kind: str, data: dict) -> dict:
        return {"id": f"evt_{uuid.uuid4().hex}", "type": kind, "created_at": utcnow_iso(), "data": data}

    def sign_and_send(self, payload: dict) -> None:
        """POST the event as JSON, signed ``t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``. A non-2xx
        answer raises, so the sender tries again as the marketplace would."""
        body = json.dumps(payload).encode()
        timestamp = str(int(time.time()))
        digest = hmac.new(self.webhook_secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        response = requests.post(
            self.webhook_url,
            data=body,
            headers={"Content-Type": "application/json", "X-Marketplace-Signature": f"t={timestamp},v1={digest}"},
            timeout=10,
        )
        response.raise_for_status()
