"""Virtualstock Supplier API v4, as a supplier sees it.

Shapes follow Virtualstock's published Postman collection: JWT from ``POST /restapi/v4/token`` (access 5 minutes,
refresh 4 hours, ``Authorization: Bearer``; Basic still accepted), orders paged as ``{count,next,previous,results}``
with ``limit``/``offset``, actions on ``/restapi/v4/orders/<id>/<action>/`` with ``items`` of ``part_number``,
``line_ref``, ``quantity``, carriers as a bare list of ``{id, slug, name}``, products under ``/api/v4/products/``
with retailer-specific ``data``, and stock by ``PATCH /api/v4/products/<id>/stock {"supplier_free_stock": N}``.
Errors are Django REST framework's: ``{"detail": …}``, field maps, and plain-text order validation errors.
"""

import base64
import copy
import secrets
import time
from decimal import Decimal
from urllib.parse import urlencode

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from syncs.sandbox.core import ApiError, Simulator, json_response
from syncs.sandbox.world import MARKETS, generate

GBP_MARKET = next(market for market in MARKETS if market["currency"] == "GBP")

DEFAULT_CARRIERS = [
    {"id": 12, "slug": "dhl", "name": "DHL"},
    {"id": 13, "slug": "dhl-express", "name": "DHL Express"},
    {"id": 30, "slug": "dpd", "name": "DPD"},
    {"id": 44, "slug": "royal-mail", "name": "Royal Mail"},
    {"id": 51, "slug": "ups", "name": "UPS"},
    {"id": 63, "slug": "evri", "name": "Evri"},
    {"id": 77, "slug": "postnord", "name": "PostNord"},
]
ACTION_STATUS = {
    "acknowledge": ("ORDER", "ORDER_ACK"),
    "backorder": ("ORDER", "BACKORDER"),
    "dispatch": (None, "DISPATCH"),
    "cancel_acknowledge": ("CANCEL", "CANCEL_ACK"),
}


class VirtualstockSimulator(Simulator):
    name = "virtualstock"
    default_rate_limit = (250, 60.0)

    def __init__(self, username: str = "supplier", password: str = "sandbox") -> None:
        self.username, self.password = username, password
        super().__init__()

    def empty_state(self) -> dict:
        return {
            "config": {"access_lifetime": 300, "refresh_lifetime": 4 * 3600, "page_size": 100},
            "tokens": {},
            "orders": {},
            "carriers": copy.deepcopy(DEFAULT_CARRIERS),
            "products": {},
            "next_product_id": 617000,
        }

    def api_rules(self) -> list[Rule]:
        return [
            Rule("/restapi/v4/token", endpoint="token", methods=["POST"]),
            Rule("/restapi/v4/token/refresh", endpoint="token_refresh", methods=["POST"]),
            Rule("/restapi/v4/orders/", endpoint="orders_list", methods=["GET"]),
            Rule("/restapi/v4/orders/<int:order_id>/", endpoint="order_get", methods=["GET"]),
            Rule(
                "/restapi/v4/orders/<int:order_id>/<any(" + ",".join(ACTION_STATUS) + "):action>/",
                endpoint="order_action",
                methods=["POST"],
            ),
            Rule("/restapi/v4/order-tracking-carriers/", endpoint="carriers", methods=["GET"]),
            Rule("/api/v4/products/", endpoint="products_list", methods=["GET"]),
            Rule("/api/v4/products/<int:product_id>", endpoint="product_get", methods=["GET"]),
            Rule("/api/v4/products/<int:product_id>/stock", endpoint="product_stock", methods=["PATCH"]),
            Rule("/api/v4/products/<int:product_id>", endpoint="product_update", methods=["PATCH"]),
        ]

    def operation_of(self, request: Request, endpoint: str, arguments: dict) -> str:
        return arguments.get("action", endpoint)

    # --- auth and limits --------------------------------------------------------------------------------------

    def authenticate(self, request: Request, operation: str) -> Response | None:
        if operation in ("token", "token_refresh"):
            return None
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            token = self.state["tokens"].get(header.removeprefix("Bearer ").strip())
            if token and token["type"] == "access" and token["expires"] > time.time():
                return None
            return json_response(
                {
                    "detail": "Given token not valid for any token type",
                    "code": "token_not_valid",
                    "messages": [
                        {"token_class": "AccessToken", "token_type": "access", "message": "Token is invalid or expired"}
                    ],
                },
                401,
                {"WWW-Authenticate": 'Bearer realm="api"'},
            )
        if header.startswith("Basic "):
            try:
                username, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                username = password = ""
            if (username, password) == (self.username, self.password):
                return None
            return json_response(
                {"detail": "Invalid username/password."}, 401, {"WWW-Authenticate": 'Basic realm="api"'}
            )
        return json_response(
            {"detail": "Authentication credentials were not provided."}, 401, {"WWW-Authenticate": 'Bearer realm="api"'}
        )

    def rate_limited_response(self, retry_after: float) -> Response:
        seconds = float(int(retry_after) + 1)
        return json_response(
            {"detail": f"Request was throttled. Expected available in {seconds} seconds."},
            429,
            {"Retry-After": str(int(seconds))},
        )

    def fault_response(self, status: int) -> Response:
        return Response("<h1>Server Error (500)</h1>", status=status, mimetype="text/html")

    # --- seeding ----------------------------------------------------------------------------------------------

    def seed(self, body: dict) -> dict:
        state = self.state
        state["config"].update(body.get("config", {}))
        if "generate" in body:
            options = dict(body["generate"])
            world = generate(**options)
            for index, (product, variant, size) in enumerate(world.sizes()):
                self._add_product(
                    {
                        "id": 617000 + index,
                        "part_number": size.sku,
                        "data": {
                            "supplier_free_stock": 0,
                            "barcode": size.ean,
                            "description": f"{product.name} {variant.name} {size.size_number}",
                            "rrp": str(product.price_in(GBP_MARKET)),
                        },
                    }
                )
            for order in world.virtualstock_orders:
                self._add_order(order)
        for product in body.get("products", []):
            self._add_product(product)
        for order in body.get("orders", []):
            self._add_order(order)
        if "carriers" in body:
            state["carriers"] = list(body["carriers"])
        return {"products": len(state["products"]), "orders": len(state["orders"]), "carriers": len(state["carriers"])}

    def _add_product(self, product: dict) -> dict:
        if "part_number" not in product:
            raise ValueError("a product needs a part_number")
        product_id = int(product.get("id") or self.state["next_product_id"])
        self.state["next_product_id"] = max(self.state["next_product_id"], product_id + 1)
        record = {"id": product_id, "part_number": product["part_number"], "data": dict(product.get("data", {}))}
        record["data"].setdefault("supplier_free_stock", 0)
        self.state["products"][str(product_id)] = record
        return record

    def _add_order(self, order: dict) -> dict:
        for key in ("id", "order_reference", "items"):
            if key not in order:
                raise ValueError(f"an order needs {key!r}")
        record = copy.deepcopy(order)
        record.setdefault("status", "ORDER")
        record.setdefault("test_flag", False)
        for item in record["items"]:
            item.setdefault("status", record["status"])
            item.setdefault("dispatched_quantity", 0)
        self.state["orders"][str(order["id"])] = record
        return record

    def tick(self, rng) -> None:
        """Demo mode: now and then a retailer sends an order for products the supplier lists."""
        with self.lock:
            products = list(self.state["products"].values())
            if not products or rng.random() > 0.3:
                return
            order_id = max((int(key) for key in self.state["orders"]), default=51900000) + 1
            items = []
            for n, product in enumerate(rng.sample(products, k=min(len(products), rng.randint(1, 2)))):
                price = Decimal(product["data"].get("rrp") or "20.00")
                tax = (price * Decimal("0.2")).quantize(Decimal("0.01"))
                items.append(
                    {
                        "part_number": product["part_number"],
                        "line_reference": f"{order_id}{n}",
                        "quantity": 1,
                        "name": product["data"].get("description", ""),
                        "unit_cost_price": str(price),
                        "subtotal": str(price),
                        "tax": str(tax),
                        "tax_rate": "20.00",
                        "total": str(price + tax),
                    }
                )
            self._add_order(
                {
                    "id": order_id,
                    "order_reference": f"JL{order_id}",
                    "status": "ORDER",
                    "order_date": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
                    "retailer": {"id": 245, "name": "John Lewis"},
                    "currency_code": "GBP",
                    "items": items,
                    "subtotal": str(sum(Decimal(i["subtotal"]) for i in items)),
                    "tax": str(sum(Decimal(i["tax"]) for i in items)),
                    "total": str(sum(Decimal(i["total"]) for i in items)),
                    "delivery_service_code": rng.choice(["standard", "express"]),
                    "shipping_address": {
                        "full_name": "Demo Customer",
                        "line_1": "1 Oxford Street",
                        "city": "London",
                        "postal_code": "W1D 1AN",
                        "country": "GB",
                    },
                }
            )

    # --- tokens -----------------------------------------------------------------------------------------------

    def _issue(self, kind: str) -> str:
        token = secrets.token_urlsafe(24)
        lifetime = self.state["config"]["access_lifetime" if kind == "access" else "refresh_lifetime"]
        self.state["tokens"][token] = {"type": kind, "expires": time.time() + lifetime}
        return token

    def token(self, request: Request) -> Response:
        body = request.get_json(silent=True) or {}
        missing = {name: ["This field is required."] for name in ("username", "password") if not body.get(name)}
        if missing:
            return json_response(missing, 400)
        if (body["username"], body["password"]) != (self.username, self.password):
            return json_response({"detail": "No active account found with the given credentials"}, 401)
        with self.lock:
            return json_response({"refresh": self._issue("refresh"), "access": self._issue("access")})

    def token_refresh(self, request: Request) -> Response:
        body = request.get_json(silent=True) or {}
        if not body.get("refresh"):
            return json_response({"refresh": ["This field is required."]}, 400)
        with self.lock:
            token = self.state["tokens"].get(body["refresh"])
            if not token or token["type"] != "refresh" or token["expires"] <= time.time():
                return json_response({"detail": "Token is invalid or expired", "code": "token_not_valid"}, 401)
            return json_response({"access": self._issue("access")})

    # --- orders -----------------------------------------------------------------------------------------------

    def _base(self, request: Request) -> str:
        return request.host_url.rstrip("/") + "/" + self.name

    def _order_json(self, request: Request, order: dict) -> dict:
        base = self._base(request)
        shaped = {key: value for key, value in order.items() if key not in ("id", "retailer")}
        retailer = order.get("retailer") or {}
        shaped["url"] = f"{base}/restapi/v4/orders/{order['id']}/"
        shaped["retailer"] = f"{base}/restapi/v4/customers/{retailer.get('id', 245)}/"
        shaped["retailer_data"] = {"name": retailer.get("name", "Retailer")}
        shaped["supplier"] = f"{base}/restapi/v4/suppliers/6537/"
        shaped["items"] = [
            {
                **{k: v for k, v in item.items() if k != "dispatched_quantity"},
                "url": f"{base}/restapi/v4/items/{item['line_reference']}/",
            }
            for item in order["items"]
        ]
        return shaped

    def _page(self, request: Request, path: str, rows: list, shape) -> Response:
        try:
            limit = max(1, min(int(request.args.get("limit", self.state["config"]["page_size"])), 1000))
            offset = max(0, int(request.args.get("offset", 0)))
        except ValueError:
            return json_response({"detail": "Invalid limit or offset."}, 400)
        page = rows[offset : offset + limit]

        def link(new_offset: int) -> str:
            params = {k: v for k, v in request.args.items() if k not in ("limit", "offset")}
            params.update({"limit": limit, "offset": new_offset})
            return f"{self._base(request)}{path}?{urlencode(params)}"

        return json_response(
            {
                "count": len(rows),
                "next": link(offset + limit) if offset + limit < len(rows) else None,
                "previous": link(max(0, offset - limit)) if offset > 0 else None,
                "results": [shape(row) for row in page],
            }
        )

    def orders_list(self, request: Request) -> Response:
        with self.lock:
            rows = sorted(self.state["orders"].values(), key=lambda order: order["id"])
            if status := request.args.get("status"):
                rows = [order for order in rows if order["status"] == status]
            if reference := request.args.get("order_reference"):
                rows = [order for order in rows if order["order_reference"] == reference]
            if part_number := request.args.get("part_number"):
                rows = [order for order in rows if any(i["part_number"] == part_number for i in order["items"])]
            return self._page(request, "/restapi/v4/orders/", rows, lambda order: self._order_json(request, order))

    def _order(self, order_id: int) -> dict:
        order = self.state["orders"].get(str(order_id))
        if order is None:
            raise ApiError(json_response({"detail": "Not found."}, 404))
        return order

    def order_get(self, request: Request, order_id: int) -> Response:
        with self.lock:
            return json_response(self._order_json(request, self._order(order_id)))

    def order_action(self, request: Request, order_id: int, action: str) -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("items"), list) or not body["items"]:
            return json_response({"items": ["This field is required."]}, 400)
        from_status, to_status = ACTION_STATUS[action]
        with self.lock:
            order = self._order(order_id)
            lines = {(item["line_reference"], item["part_number"]): item for item in order["items"]}
            changes = []
            for number, entry in enumerate(body["items"], 1):
                missing = [name for name in ("part_number", "line_ref", "quantity") if entry.get(name) in (None, "")]
                if missing:
                    return json_response({"items": [{name: ["This field is required."] for name in missing}]}, 400)
                line = lines.get((str(entry["line_ref"]), entry["part_number"]))
                if line is None:
                    return _validation(
                        f"Item {number}: no line {entry['line_ref']} with part number {entry['part_number']}"
                        " on this order"
                    )
                if not isinstance(entry["quantity"], int) or entry["quantity"] <= 0:
                    return _validation(f"Item {number}: quantity must be a positive whole number")
                if from_status and line["status"] != from_status:
                    return _validation(
                        f"Validation Not allowed to change state of item {number} from {line['status']} to {to_status}"
                    )
                if action == "dispatch":
                    problem = self._dispatch_problem(number, entry, line)
                    if problem:
                        return _validation(problem)
                changes.append((line, entry))
            for line, entry in changes:
                if action == "dispatch":
                    line["dispatched_quantity"] += entry["quantity"]
                    line.setdefault("dispatches", []).append(
                        {
                            key: entry.get(key)
                            for key in (
                                "quantity",
                                "tracking_number",
                                "carrier",
                                "tracking_url",
                                "supplier_dispatch_date",
                            )
                        }
                    )
                    line["status"] = "DISPATCH" if line["dispatched_quantity"] >= line["quantity"] else line["status"]
                else:
                    line["status"] = to_status
            statuses = {item["status"] for item in order["items"]}
            order["status"] = statuses.pop() if len(statuses) == 1 else order["status"]
            if action == "dispatch" and all(item["status"] == "DISPATCH" for item in order["items"]):
                order["status"] = "DISPATCH"
        return Response(status=200)

    def _dispatch_problem(self, number: int, entry: dict, line: dict) -> str | None:
        if line["status"] not in ("ORDER_ACK", "BACKORDER"):
            return f"Validation Not allowed to change state of item {number} from {line['status']} to DISPATCH"
        if not entry.get("tracking_number") or not entry.get("supplier_dispatch_date"):
            return f"Item {number}: tracking_number and supplier_dispatch_date are required"
        slugs = {carrier["slug"] for carrier in self.state["carriers"]}
        if entry.get("carrier") not in slugs:
            return f"Item {number}: carrier '{entry.get('carrier')}' is not a carrier slug on Virtualstock"
        if line["dispatched_quantity"] + entry["quantity"] > line["quantity"]:
            return f"Item {number}: dispatch quantity {entry['quantity']} is bigger than allowed for item"
        return None

    def carriers(self, request: Request) -> Response:
        with self.lock:
            return json_response(list(self.state["carriers"]))

    # --- products and stock -----------------------------------------------------------------------------------

    def _product_json(self, request: Request, product: dict) -> dict:
        base = self._base(request)
        return {
            "url": f"{base}/api/v4/products/{product['id']}/",
            "part_number": product["part_number"],
            "category": f"{base}/api/v4/categories/5544/",
            "client": f"{base}/api/v4/clients/637/",
            "supplier": f"{base}/api/v4/suppliers/3994/",
            "data": dict(product["data"]),
        }

    def products_list(self, request: Request) -> Response:
        with self.lock:
            rows = sorted(self.state["products"].values(), key=lambda product: product["id"])
            if part_number := request.args.get("part_number"):
                rows = [product for product in rows if product["part_number"] == part_number]
            return self._page(request, "/api/v4/products/", rows, lambda p: self._product_json(request, p))

    def product_get(self, request: Request, product_id: int) -> Response:
        with self.lock:
            product = self.state["products"].get(str(product_id))
            if product is None:
                return json_response({"detail": "Product not found.", "code": "PRODUCT_NOT_FOUND"}, 404)
            return json_response(self._product_json(request, product))

    def product_stock(self, request: Request, product_id: int) -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or "supplier_free_stock" not in body:
            return json_response({"supplier_free_stock": ["This field is required."]}, 400)
        value = body["supplier_free_stock"]
        if isinstance(value, bool) or not isinstance(value, int):
            return json_response({"supplier_free_stock": ["A valid integer is required."]}, 400)
        if value < 0:
            return json_response({"supplier_free_stock": ["Ensure this value is greater than or equal to 0."]}, 400)
        with self.lock:
            product = self.state["products"].get(str(product_id))
            if product is None:
                return json_response({"detail": "Product not found.", "code": "PRODUCT_NOT_FOUND"}, 404)
            if product["data"].get("publishing"):
                return json_response({"detail": "Can't update a product which is in a publishing status."}, 409)
            product["data"]["supplier_free_stock"] = value
            product["data"]["stock_updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        return Response(status=200)

    def product_update(self, request: Request, product_id: int) -> Response:
        """``PATCH /api/v4/products/<id>/ {"data": {...}}``: a partial update of the product's retailer data (only
        the fields sent change). The retailer's data model is checked first, field by field, as rich product
        induction does: ``rrp`` a positive amount, ``barcode`` digits, ``image``…``image_10`` URLs."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            return json_response({"data": ["This field is required and must be an object."]}, 400)
        data = body["data"]
        problems: dict[str, list[str]] = {}
        if "rrp" in data:
            try:
                amount = Decimal(str(data["rrp"]))
            except ArithmeticError:
                amount = None
            if isinstance(data["rrp"], float) or amount is None or not amount.is_finite() or amount <= 0:
                problems["data.rrp"] = ['A positive amount as a string is required, e.g. "24.95".']
        if "barcode" in data and not str(data["barcode"] or "").isdigit():
            problems["data.barcode"] = ["A barcode is digits only."]
        for name in IMAGE_FIELDS:
            if data.get(name) and not str(data[name]).startswith(("https://", "http://")):
                problems[f"data.{name}"] = ["Enter a valid URL."]
        if problems:
            return json_response(problems, 400)
        with self.lock:
            product = self.state["products"].get(str(product_id))
            if product is None:
                return json_response({"detail": "Product not found.", "code": "PRODUCT_NOT_FOUND"}, 404)
            if product["data"].get("publishing"):
                return json_response({"detail": "Can't update a product which is in a publishing status."}, 409)
            product["data"].update(copy.deepcopy(data))
            return json_response(self._product_json(request, product))


IMAGE_FIELDS = ("image", *(f"image_{n}" for n in range(2, 11)))


def _validation(message: str) -> Response:
    return Response(f"Validation error: {message}", status=400, mimetype="text/plain")
