"""Centra: the Integration API (GraphQL) and the REST Order API, as a brand's integration sees them.

GraphQL documents are executed for real (graphql-core) against a schema modelled on Centra's
(``centra_schema.graphql``), so a query with a field Centra lacks fails here as it would there. Behaviour follows
Centra's documentation: ``Authorization: Bearer`` (403 for a bad token), mutations answering 200 with
``userErrors``/``userWarnings``, request and mutation buckets per 10 seconds and per hour with 429 and a
``Retry-After`` timestamp, the ``rateLimits`` query, orders paged by ``limit``/``page``, absolute ``setStock`` for
many variants and sizes at once, shipments that move an order to PROCESSING and SHIPPED, the events queue
(``setEventListeners``, ``events``, ``confirmEvents``) and Integration API webhooks (form body ``payload=<json>``,
``X-Centra-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``). Orders from other channels come in
through the REST Order API (``API-Authorization``), which also completes returns with a refund.
"""

import hashlib
import hmac
import json
import secrets
import time
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urlencode

import requests
from graphql import GraphQLError, OperationType, graphql_sync, parse
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from syncs.sandbox.centra.resolvers import SCHEMA, resolve_field
from syncs.sandbox.centra.values import CLOCK, dec, now_iso
from syncs.sandbox.core import Simulator, Window, json_response
from syncs.sandbox.world import MARKETS, STORES, WAREHOUSES, generate

BUCKETS = {
    ("REQUEST_COUNT", "TEN_SECONDS"): (60, 10),
    ("REQUEST_COUNT", "ONE_HOUR"): (5000, 3600),
    ("MUTATION_COUNT", "TEN_SECONDS"): (100, 10),
    ("MUTATION_COUNT", "ONE_HOUR"): (1000, 3600),
}
WEBHOOK_TYPES = {"Order": "order", "Shipment": "shipment", "Return": "return", "Product": "product"}


class CentraSimulator(Simulator):
    name = "centra"

    def __init__(self, token: str = "sandbox-centra", order_api_key: str = "sandbox-centra-orders") -> None:
        self.token, self.order_api_key = token, order_api_key
        super().__init__()

    # --- state ------------------------------------------------------------------------------------------------

    def empty_state(self) -> dict:
        return {
            "stores": {str(s["id"]): dict(s) for s in STORES},
            "markets": {str(m["id"]): {"id": m["id"], "name": m["name"]} for m in MARKETS},
            "pricelists": {
                str(m["id"]): {
                    "id": m["id"],
                    "name": f"{m['name']} {m['currency']}",
                    "currency": m["currency"],
                    "marketId": m["id"],
                    "country": m["country"],
                    "tax": str(m["tax"]),
                    "prices": {},
                }
                for m in MARKETS
            },
            "warehouses": {str(w["id"]): {"id": w["id"], "name": w["name"], "status": "ACTIVE"} for w in WAREHOUSES},
            "products": {},
            "variants": {},
            "sizes": {},
            "stock": {},  # "<size id>:<warehouse id>" -> {"physical": n, "allocated": n}
            "orders": {},  # by number
            "shipments": {},
            "returns": {},
            "events": [],
            "event_listeners": {},
            "stock_changes": 0,
            "next": {
                "product": 1,
                "variant": 1,
                "size": 1,
                "order": 1000,
                "line": 1,
                "shipment": 1,
                "return": 1,
                "payment": 1,
                "event": 1,
            },
        }

    def _next(self, kind: str) -> int:
        value = self.state["next"][kind]
        self.state["next"][kind] = value + 1
        return value

    def reset(self) -> None:
        super().reset()
        self.buckets = {key: Window(*limits) for key, limits in BUCKETS.items()}
        CLOCK["offset_seconds"] = 0.0

    # --- routes, auth, limits -----------------------------------------------------------------------------------

    def api_rules(self) -> list[Rule]:
        return [
            Rule("/graphql", endpoint="graphql", methods=["POST"]),
            Rule("/api/order/order", endpoint="rest_create_order", methods=["POST"]),
            Rule("/api/order/orders", endpoint="rest_orders", methods=["GET"]),
            Rule("/api/order/return", endpoint="rest_create_return", methods=["POST"]),
            Rule("/api/order/returns/<int:return_id>", endpoint="rest_update_return", methods=["PUT"]),
            # Someone in Centra's back office cancels a return; Centra's clock is set back to make history.
            Rule("/_sandbox/cancel-return", endpoint="control_cancel_return", methods=["POST"]),
            Rule("/_sandbox/clock", endpoint="control_clock", methods=["POST"]),
            # The payment provider's side, played through the control API: a pending capture settles.
            Rule("/_sandbox/capture", endpoint="control_capture", methods=["POST"]),
            # A merchandiser changing a product in Centra's back office: its copy, prices, media or attributes.
            Rule("/_sandbox/product-edit", endpoint="control_product_edit", methods=["POST"]),
        ]

    def operation_of(self, request: Request, endpoint: str, arguments: dict) -> str:
        if endpoint != "graphql":
            return endpoint
        document = self._document(request)
        if document is None:
            return "graphql"
        operation_name, _, root_field = document
        return operation_name or root_field or "graphql"

    def _document(self, request: Request) -> tuple[str | None, bool, str | None] | None:
        """(operation name, is a mutation, first root field) of the request's GraphQL document."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return None
        try:
            document = parse(body["query"])
        except GraphQLError:
            return None
        for definition in document.definitions:
            if hasattr(definition, "operation"):
                name = definition.name.value if definition.name else None
                fields = definition.selection_set.selections
                root = fields[0].name.value if fields else None
                return name, definition.operation == OperationType.MUTATION, root
        return None

    def authenticate(self, request: Request, operation: str) -> Response | None:
        if operation.startswith("rest_"):
            if request.headers.get("API-Authorization") == self.order_api_key:
                return None
            return json_response({"status": "no", "msg": "Authorization failed"}, 403)
        header = request.headers.get("Authorization", "")
        if header == f"Bearer {self.token}":
            return None
        return json_response(
            {
                "errors": [
                    {
                        "message": "The provided token was invalid or expired",
                        "extensions": {"category": "authentication"},
                    }
                ]
            },
            403,
        )

    def _admit_buckets(self, request: Request, operation: str) -> float | None:
        """Centra's own buckets (when the sandbox enforces published limits): None or seconds to wait."""
        if not self.enforce_rate_limit or operation.startswith("rest_"):
            return None
        # A request is one place in the request buckets; each mutation in it (aliased ones too) one place in the
        # mutation buckets, as Centra counts "the number of mutations in a time period".
        places = {"REQUEST_COUNT": 1, "MUTATION_COUNT": self._mutations_in(request)}
        now = time.time()
        with self.lock:
            for kind, count in places.items():
                for interval in ("TEN_SECONDS", "ONE_HOUR"):
                    window = self.buckets[(kind, interval)]
                    while window.calls and now - window.calls[0] >= window.seconds:
                        window.calls.popleft()
                    if count and len(window.calls) + count > window.limit:
                        return window.calls[0] + window.seconds - now if window.calls else window.seconds
            for kind, count in places.items():
                for interval in ("TEN_SECONDS", "ONE_HOUR"):
                    self.buckets[(kind, interval)].calls.extend([now] * count)
        return None

    def _mutations_in(self, request: Request) -> int:
        """How many mutations the request's GraphQL document asks for: its mutation's root fields (0 for a query)."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return 0
        try:
            document = parse(body["query"])
        except GraphQLError:
            return 0
        return sum(
            len(definition.selection_set.selections)
            for definition in document.definitions
            if getattr(definition, "operation", None) == OperationType.MUTATION
        )

    def rate_limited_response(self, retry_after: float) -> Response:
        # Centra's Retry-After "points at a timestamp at which it is possible to try again".
        until = int(time.time() + retry_after) + 1
        return json_response({"errors": [{"message": "Too Many Requests"}]}, 429, {"Retry-After": str(until)})

    def fault_response(self, status: int) -> Response:
        return json_response({"errors": [{"message": "Internal server error"}]}, status)

    # --- seeding ----------------------------------------------------------------------------------------------

    def seed(self, body: dict) -> dict:
        if "generate" in body:
            world = generate(**body["generate"])
            self._seed_world(world)
        for product in body.get("products", []):
            self._add_product(product)
        for order in body.get("orders", []):
            self._create_order(order, status=order.get("status", "PENDING"))
        return {
            "products": len(self.state["products"]),
            "sizes": len(self.state["sizes"]),
            "orders": len(self.state["orders"]),
        }

    def _seed_world(self, world) -> None:
        if self.state["products"]:
            return  # the same seed gives the same world: seeding twice changes nothing
        for product in world.products:
            self._add_product(
                {
                    "name": product.name,
                    "productNumber": product.product_number,
                    "createdAt": product.created_at.isoformat(),
                    "prices": {str(m["id"]): str(product.price_in(m)) for m in MARKETS},
                    **_demo_content(product),
                    "variants": [
                        {
                            "name": variant.name,
                            "variantNumber": variant.variant_number,
                            "sizes": [
                                {
                                    "sizeNumber": size.size_number,
                                    "name": size.size_number,
                                    "EAN": size.ean,
                                    "stock": {
                                        str(w): q + sum(size.statuses.values()) if w == 1 else q
                                        for w, q in size.on_hand.items()
                                    },
                                }
                                for size in variant.sizes
                            ],
                        }
                        for variant in product.variants
                    ],
                }
            )
        for order in world.orders:
            self._create_order(
                {
                    "number": order.number,
                    "storeId": order.store_id,
                    "marketId": order.market["id"],
                    "createdAt": order.created_at.isoformat(),
                    "customer": order.customer,
                    "shipping": str(order.shipping),
                    "shippingOption": order.shipping_method,
                    "captured": order.captured,
                    "lines": [
                        {
                            "sku": line.sku,
                            "quantity": line.quantity,
                            "unitPrice": str(line.unit_price),
                            "discount": str(line.discount),
                            "taxPercent": str(line.tax_percent),
                        }
                        for line in order.lines
                    ],
                },
                status=order.status,
            )

    def _add_product(self, spec: dict) -> dict:
        product_id = self._next("product")
        product = {
            "id": product_id,
            "name": spec["name"],
            "status": spec.get("status", "ACTIVE"),
            "productNumber": spec["productNumber"],
            "isBundle": bool(spec.get("isBundle")),
            "createdAt": spec.get("createdAt") or now_iso(),
            "updatedAt": now_iso(),
            "variantIds": [],
        }
        self.state["products"][str(product_id)] = product
        _set_content(product, spec)
        for market_id, price in (spec.get("prices") or {}).items():
            self.state["pricelists"][str(market_id)]["prices"][str(product_id)] = str(price)
        for variant_spec in spec.get("variants", []):
            variant_id = self._next("variant")
            variant = {
                "id": variant_id,
                "productId": product_id,
                "name": variant_spec["name"],
                "status": "ACTIVE",
                "variantNumber": variant_spec["variantNumber"],
                "sizeIds": [],
            }
            self.state["variants"][str(variant_id)] = variant
            product["variantIds"].append(variant_id)
            for size_spec in variant_spec.get("sizes", []):
                size_id = self._next("size")
                sku = spec["productNumber"] + variant_spec["variantNumber"] + size_spec["sizeNumber"]
                self.state["sizes"][str(size_id)] = {
                    "id": size_id,
                    "variantId": variant_id,
                    "productId": product_id,
                    "SKU": sku,
                    "EAN": size_spec.get("EAN"),
                    "sizeNumber": size_spec["sizeNumber"],
                    "description": size_spec.get("name", size_spec["sizeNumber"]),
                }
                variant["sizeIds"].append(size_id)
                for warehouse_id, quantity in (size_spec.get("stock") or {}).items():
                    self.state["stock"][f"{size_id}:{warehouse_id}"] = {"physical": int(quantity), "allocated": 0}
        return product

    def _size_by_sku(self, sku: str) -> dict | None:
        for size in self.state["sizes"].values():
            if size["SKU"] == sku:
                return size
        return None

    def _create_order(self, spec: dict, *, status: str) -> dict:
        """Place an order; its lines allocate stock in the first warehouse. Raises ValueError naming the problem."""
        market = self.state["markets"].get(str(spec.get("marketId", 2)))
        if market is None:
            raise ValueError(f"no market {spec.get('marketId')}")
        pricelist = self.state["pricelists"][str(market["id"])]
        currency = spec.get("currency") or pricelist["currency"]
        number = int(spec.get("number") or self._next("order"))
        self.state["next"]["order"] = max(self.state["next"]["order"], number + 1)
        lines = []
        for line_spec in spec["lines"]:
            size = self._size_by_sku(line_spec["sku"])
            if size is None:
                raise ValueError(f"unknown SKU {line_spec['sku']}")
            variant = self.state["variants"][str(size["variantId"])]
            product = self.state["products"][str(size["productId"])]
            original = dec(line_spec.get("unitPrice") or pricelist["prices"].get(str(product["id"]), "0"))
            discount = dec(line_spec.get("discount", "0"))
            quantity = int(line_spec["quantity"])
            if quantity <= 0:
                raise ValueError(f"quantity of {line_spec['sku']} must be positive")
            lines.append(
                {
                    "id": self._next("line"),
                    "sizeId": size["id"],
                    "sku": size["SKU"],
                    "productNumber": product["productNumber"],
                    "size": size["description"],
                    "productName": product["name"],
                    "productVariantName": variant["name"],
                    "quantity": quantity,
                    "cancelledQuantity": 0,
                    "returnedQuantity": 0,
                    "shippedQuantity": 0,
                    "unitOriginalPrice": str(original),
                    "unitPrice": str(original - discount),
                    "taxPercent": str(dec(line_spec.get("taxPercent", pricelist["tax"]))),
                }
            )
        created = spec.get("createdAt") or now_iso()
        captured = spec.get("captured", True)
        order = {
            "id": hashlib.md5(f"{number}".encode(), usedforsecurity=False).hexdigest(),
            "number": number,
            "status": status,
            "isOnHold": False,
            "storeId": int(spec.get("storeId", 1)),
            "marketId": market["id"],
            "pricelistId": pricelist["id"],
            "currency": currency,
            "createdAt": created,
            "updatedAt": created,
            "customer": spec.get("customer") or {},
            "shipping": str(dec(spec.get("shipping", "0"))),
            "shippingTaxPercent": str(dec(spec.get("shippingTaxPercent", pricelist["tax"]))),
            "shippingOption": spec.get("shippingOption", "standard"),
            "lines": lines,
            "shipmentIds": [],
            "payments": [],
            "otherComment": spec.get("otherComment", ""),
            "internalComment": spec.get("internalComment"),
            "extraAttributes": spec.get("extraAttributes") or {},
        }
        total = self._grand_total(order)
        order["payments"].append(self._payment("AUTH", "SUCCESS", total, currency))
        if status in ("CONFIRMED", "PROCESSING", "SHIPPED", "ARCHIVED"):
            entry = ("CAPTURE", "SUCCESS") if captured else ("CAPTURE_REQUEST", "PENDING")
            order["payments"].append(self._payment(*entry, total, currency))
        if status != "CANCELLED":
            for line in lines:
                self._stock(line["sizeId"], 1)["allocated"] += line["quantity"]
        self.state["orders"][str(number)] = order
        self._event("Order", "CREATED", number, order)
        return order

    def _payment(self, entry_type: str, status: str, amount: Decimal, currency: str) -> dict:
        return {
            "id": self._next("payment"),
            "createdAt": now_iso(),
            "entryType": entry_type,
            "status": status,
            "externalReference": f"psp-{secrets.token_hex(4)}",
            "value": str(amount),
            "currency": currency,
        }

    def _stock(self, size_id: int, warehouse_id: int) -> dict:
        return self.state["stock"].setdefault(f"{size_id}:{warehouse_id}", {"physical": 0, "allocated": 0})

    # --- events and webhooks ------------------------------------------------------------------------------------

    def _event(self, object_type: str, change_type: str, reference: int, order: dict | None = None) -> None:
        listeners = self.state["event_listeners"]
        wanted = listeners.get(object_type)
        if object_type in listeners and (wanted is None or change_type in wanted):
            self.state["events"].append(
                {
                    "id": self._next("event"),
                    "objectType": object_type,
                    "changeType": change_type,
                    "objectReference": reference,
                    "createdAt": now_iso(),
                    "storeId": order["storeId"] if order else None,
                    "marketId": order["marketId"] if order else None,
                }
            )
        if object_type in WEBHOOK_TYPES:
            action = {"CREATED": "create", "COMPLETED": "update"}.get(change_type, "update")
            self.emit_webhook(
                {
                    "events": [
                        {
                            "type": WEBHOOK_TYPES[object_type],
                            "action": action,
                            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
                            "id": reference,
                        }
                    ]
                }
            )

    def sign_and_send(self, payload: dict) -> None:
        body = urlencode({"payload": json.dumps(payload)}).encode()
        timestamp = str(int(time.time()))
        signature = hmac.new(self.webhook_secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
        requests.post(
            self.webhook_url,
            data=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Centra-Signature": f"t={timestamp},v1={signature.hexdigest()}",
            },
            timeout=5,
        )

    # --- GraphQL ------------------------------------------------------------------------------------------------

    def graphql(self, request: Request) -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return json_response({"errors": [{"message": "Send a JSON body with a GraphQL query."}]}, 400)
        wait = self._admit_buckets(request, "graphql")
        if wait is not None:
            return self.rate_limited_response(wait)
        variables = body.get("variables") or {}
        try:
            document = parse(body["query"])
        except GraphQLError as error:
            return json_response({"errors": [error.formatted]}, 400)
        with self.lock:
            result = graphql_sync(
                SCHEMA,
                body["query"],
                root_value=self,
                context_value={"request": request},
                variable_values=variables,
                operation_name=body.get("operationName"),
                field_resolver=resolve_field,
            )
        del document
        payload = {"extensions": {"complexity": 1, "permissionsUsed": []}}
        if result.errors:
            payload["errors"] = [error.formatted for error in result.errors]
            if result.data is None:
                return json_response(payload, 400)
        payload["data"] = result.data
        return json_response(payload)

    # --- REST Order API -----------------------------------------------------------------------------------------

    def rest_create_order(self, request: Request) -> Response:
        """``POST <base>/order``: insert an order settled elsewhere. Answers 200 with ``status`` ok or no."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _rest_error(-7, "The body must be a JSON object.")
        address = body.get("deliveryAddress") or body.get("address") or {}
        email = body.get("email") or address.get("email")
        country = body.get("country") or address.get("country")
        missing = [
            name
            for name, value in (("email", email), ("country", country), ("products", body.get("products")))
            if not value
        ]
        if missing:
            return _rest_error(-4, f"Missing required fields: {', '.join(missing)}")
        with self.lock:
            number = body.get("orderNumber")
            if number is not None and str(number) in self.state["orders"]:
                return _rest_error(-5, f"Order number {number} already exists")
            lines = []
            for product in body["products"]:
                size = self._size_for(product)
                if size is None:
                    return _rest_error(-1, f"Product could not be added: {json.dumps(product)}")
                line = {"sku": size["SKU"], "quantity": product.get("qty", 0)}
                if product.get("originalPrice") is not None or product.get("unitPrice") is not None:
                    original = dec(product.get("originalPrice", product.get("unitPrice")))
                    line |= {
                        "unitPrice": str(original),
                        "discount": str(original - dec(product.get("unitPrice", original))),
                    }
                lines.append(line)
            try:
                order = self._create_order(
                    {
                        "number": number,
                        "marketId": body.get("marketId", 2),
                        "storeId": 1,
                        "customer": {
                            "email": email,
                            "first_name": body.get("firstName", ""),
                            "last_name": body.get("lastName", ""),
                            "address1": address.get("address", ""),
                            "city": address.get("city", ""),
                            "zipcode": address.get("zipcode", ""),
                            "country": country,
                            "phone": body.get("tele", ""),
                        },
                        "shipping": str(body.get("shippingValue", "0")),
                        "shippingOption": body.get("shippingList", ""),
                        "lines": lines,
                        "captured": True,
                        "internalComment": body.get("internalComment"),
                        "extraAttributes": body.get("extraAttributes") or {},
                    },
                    status="CONFIRMED",
                )
            except (KeyError, TypeError, ValueError) as error:
                return _rest_error(-7, f"Order could not be created: {error}")
        return json_response({"status": "ok", "orders": [order["number"]]})

    def _size_for(self, product: dict) -> dict | None:
        for size in self.state["sizes"].values():
            if (
                (product.get("sku") and size["SKU"] == product["sku"])
                or (product.get("ean") and size["EAN"] == product["ean"])
                or (product.get("id") is not None and size["id"] == product["id"])
            ):
                return size
        return None

    def rest_orders(self, request: Request) -> Response:
        """``GET <base>/orders``: ``order=<number>`` for one, else ``limit``/``offset``."""
        with self.lock:
            rows = sorted(self.state["orders"].values(), key=lambda order: order["number"])
            if request.args.get("order"):
                rows = [order for order in rows if str(order["number"]) == request.args["order"]]
            offset = int(request.args.get("offset", 0))
            rows = rows[offset : offset + int(request.args.get("limit", 20))]
            return json_response(
                {
                    "status": "ok",
                    "orders": [
                        {
                            "order": str(o["number"]),
                            "orderId": o["id"],
                            "orderStatus": o["status"],
                            "orderCurrency": o["currency"],
                            "grandTotalValue": str(self._grand_total(o)),
                            "internalComment": o.get("internalComment"),
                            "extraAttributes": o.get("extraAttributes", {}),
                            "products": [
                                {
                                    "lineId": line["id"],
                                    "sku": line["sku"],
                                    "qty": line["quantity"],
                                    "originalPrice": line["unitOriginalPrice"],
                                    "price": line["unitPrice"],
                                }
                                for line in o["lines"]
                            ],
                        }
                        for o in rows
                    ],
                }
            )

    def control_capture(self, request: Request) -> Response:
        """The payment provider settles an order's pending capture (``{"number": <order number>}``): the capture
        request becomes a successful capture and the order changes, as when an asynchronous provider calls back."""
        body = request.get_json(silent=True) or {}
        with self.lock:
            order = self.state["orders"].get(str(body.get("number")))
            if order is None:
                return json_response({"error": f"no order {body.get('number')}"}, 404)
            pending = [p for p in order["payments"] if p["entryType"] == "CAPTURE_REQUEST" and p["status"] == "PENDING"]
            if not pending:
                return json_response({"error": f"order {order['number']} has no capture waiting"}, 409)
            for payment in pending:
                payment["entryType"], payment["status"] = "CAPTURE", "SUCCESS"
            order["updatedAt"] = now_iso()
            self._event("Order", "UPDATED", order["number"], order)
            return json_response({"number": order["number"], "captured": True})

    def control_product_edit(self, request: Request) -> Response:
        """A merchandiser edits a product in Centra (``{"productNumber", and any of name, description,
        shortDescription, metaTitle, metaDescription, media, attributes, prices: {market id: price}, sizes: {SKU:
        {"EAN": …}}}``). Its ``updatedAt`` moves on and the change is announced as a Product event and webhook."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not body.get("productNumber"):
            return json_response({"error": 'Send {"productNumber": ..., and the fields to change}.'}, 400)
        with self.lock:
            product = next(
                (p for p in self.state["products"].values() if p["productNumber"] == body["productNumber"]), None
            )
            if product is None:
                return json_response({"error": f"No product {body['productNumber']}."}, 404)
            if "name" in body:
                product["name"] = str(body["name"])
            _set_content(product, body)
            for market_id, price in (body.get("prices") or {}).items():
                if str(market_id) not in self.state["pricelists"]:
                    return json_response({"error": f"No pricelist for market {market_id}."}, 400)
                self.state["pricelists"][str(market_id)]["prices"][str(product["id"])] = str(price)
            for sku, changes in (body.get("sizes") or {}).items():
                size = self._size_by_sku(sku)
                if size is None or size["productId"] != product["id"]:
                    return json_response({"error": f"{sku} is not a size of {product['productNumber']}."}, 400)
                if "EAN" in changes:
                    size["EAN"] = changes["EAN"]
            product["updatedAt"] = now_iso()
            self._event("Product", "UPDATED", product["id"])
            return json_response({"productNumber": product["productNumber"], "updatedAt": product["updatedAt"]})

    def control_cancel_return(self, request: Request) -> Response:
        """Someone in Centra's back office cancels a return not completed yet (``{"id": <return id>}``): its status
        becomes CANCELLED, its units can be returned again, and the change is announced (a Return UPDATED event and
        webhook). A completed return cannot be cancelled: 409."""
        body = request.get_json(silent=True) or {}
        with self.lock:
            record = self.state["returns"].get(str(body.get("id")))
            if record is None:
                return json_response({"error": f"no return {body.get('id')}"}, 404)
            if record["status"] == "COMPLETED":
                return json_response({"error": f"return {record['id']} is completed: it cannot be cancelled"}, 409)
            if record["status"] != "CANCELLED":
                record["status"] = "CANCELLED"
                shipment = self.state["shipments"][str(record["shipmentId"])]
                order = self.state["orders"][str(record["orderNumber"])]
                for line in record["lines"]:
                    shipment_line = next(s for s in shipment["lines"] if s["id"] == line["shipmentLineId"])
                    shipment_line["returned"] = shipment_line.get("returned", 0) - line["quantity"]
                    order_line = next(o for o in order["lines"] if o["id"] == shipment_line["orderLineId"])
                    order_line["returnedQuantity"] -= line["quantity"]
                self._event("Return", "UPDATED", record["id"], order)
            return json_response({"id": record["id"], "status": record["status"]})

    def control_clock(self, request: Request) -> Response:
        """Set how far Centra's clock is from the machine's (``{"offset_seconds": -7200}``: two hours behind); what
        it makes from then on (orders, shipments, returns) is stamped by it. ``0`` (or a reset) puts it right."""
        body = request.get_json(silent=True) or {}
        try:
            offset = float(body.get("offset_seconds", 0))
        except (TypeError, ValueError):
            return json_response({"error": 'Send {"offset_seconds": <number>}.'}, 400)
        CLOCK["offset_seconds"] = offset
        return json_response({"offset_seconds": offset, "now": now_iso()})

    def rest_create_return(self, request: Request) -> Response:
        return json_response({"status": "no", "msg": "Use createReturn in the Integration API."}, 400)

    def rest_update_return(self, request: Request, return_id: int) -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return json_response({"status": "no", "msg": "The body must be a JSON object."}, 400)
        with self.lock:
            record = self.state["returns"].get(str(return_id))
            if record is None:
                return json_response({"status": "no", "msg": f"Return with id={return_id} does not exist"}, 404)
            if body.get("completed"):
                self._complete_return(record, refund=bool(body.get("refundPayment")))
            return json_response(
                {
                    "status": "ok",
                    "return": {
                        "returnId": record["id"],
                        "completed": record["status"] == "COMPLETED",
                        "refunded": record["refunded"],
                    },
                }
            )

    # --- the world moving on (mutations and demo ticks use these) ------------------------------------------------

    def _grand_total(self, order: dict) -> Decimal:
        return sum((dec(line["unitPrice"]) * line["quantity"] for line in order["lines"]), Decimal(0)) + dec(
            order["shipping"]
        )

    def _return_total(self, record: dict) -> Decimal:
        """What a return refunds: its lines, plus shipping and handling given back, less the return cost."""
        given_back = dec(record["value"]) + dec(record.get("shipping", "0")) + dec(record.get("handling", "0"))
        return given_back - dec(record.get("returnCost", "0"))

    def _complete_return(self, record: dict, *, refund: bool) -> None:
        if record["status"] == "COMPLETED":
            return
        record["status"] = "COMPLETED"
        order = self.state["orders"][str(record["orderNumber"])]
        if record["releaseToStock"]:
            for line in record["lines"]:
                self._stock(line["sizeId"], 1)["physical"] += line["quantity"]
        if refund and not record["refunded"]:
            record["refunded"] = True
            order["payments"].append(self._payment("REFUND", "SUCCESS", self._return_total(record), order["currency"]))
        self._event("Return", "COMPLETED", record["id"], order)

    def tick(self, rng) -> None:
        with self.lock:
            sizes = list(self.state["sizes"].values())
            if not sizes:
                return
            roll = rng.random()
            if roll < 0.4:  # a web order
                picked = rng.sample(sizes, k=min(len(sizes), rng.randint(1, 2)))
                self._create_order(
                    {
                        "marketId": rng.choice(MARKETS)["id"],
                        "shipping": "4.95",
                        "customer": {"email": f"shopper{rng.randint(1, 9999)}@example.com"},
                        "captured": rng.random() > 0.1,
                        "lines": [{"sku": s["SKU"], "quantity": 1} for s in picked],
                    },
                    status="CONFIRMED",
                )
            elif roll < 0.6:  # payment captures that were pending land
                for order in self.state["orders"].values():
                    for payment in order["payments"]:
                        if payment["entryType"] == "CAPTURE_REQUEST" and payment["status"] == "PENDING":
                            payment["entryType"], payment["status"] = "CAPTURE", "SUCCESS"
                            order["updatedAt"] = now_iso()
                            self._event("Order", "UPDATED", order["number"], order)
                            return


def _set_content(product: dict, spec: dict) -> None:
    """Keep the parts of ``spec`` that describe the product for sale: the copy of its display, its media (image
    URLs, in order) and its custom attributes (name -> value)."""
    text = {key: spec[key] for key in DISPLAY_FIELDS if key in spec}
    if text or not product.get("displays"):
        display = (product.get("displays") or [{"id": product["id"], "name": product["name"]}])[0]
        product["displays"] = [{**display, **text}]
    if "media" in spec:
        product["media"] = [
            {"id": product["id"] * 100 + index, "url": url, "mimeType": "image/jpeg"}
            for index, url in enumerate(spec["media"] or [], start=1)
        ]
    product.setdefault("media", [])
    if "attributes" in spec:
        product["attributes"] = {str(name): str(value) for name, value in (spec["attributes"] or {}).items()}
    product.setdefault("attributes", {})


DISPLAY_FIELDS = ("description", "shortDescription", "metaTitle", "metaDescription", "metaKeywords", "uri")


def _demo_content(product) -> dict:
    """The demo brand's copy, image and attributes for one generated product."""
    material = {"Denim": "Cotton denim", "Knitwear": "Merino wool", "Outerwear": "Wool", "Shoes": "Leather"}
    return {
        "description": f"{product.name}: a {product.category.lower()} staple, made to last.",
        "shortDescription": product.name,
        "media": [product.image],
        "attributes": {"material": material.get(product.category, "Organic cotton"), "category": product.category},
    }


def _rest_error(code: int, message: str) -> Response:
    # The Order API answers failures with HTTP 200 too; the body says so.
    return json_response({"status": "no", "code": code, "msg": message})
