"""Inventory Planner Public API v1, as an account with a full-access API key sees it.

Shapes follow what the help centre documents and what clients built against the live API show (research notes
in docs/sandbox.md): raw key in ``Authorization`` (no ``Bearer``) plus ``Account``; collections under the plural
name with a ``meta`` block ``{name, display_name, total, count, limit, page, start, end}`` and 0-based ``page``;
single entities under the singular name (``variant``, ``purchase-order``, ``item``); writes wrapped the same way;
``fields`` as a comma allowlist (unknown names ignored), ``<field>=value`` exact filters, ``<field>_gt`` and
``<field>_sort=asc|desc``; errors as ``{"result": {"status": "error", "message": …}}``. Purchase-order status is
written upper case and read back lower case, as the live API does. Inventory Planner sends no webhooks.

Guessed where no source was found: the HTTP status of each error (401 auth, 404 missing, 400 invalid), the
default and maximum ``limit`` (100 and 1000), ``meta.start`` as the offset and ``meta.end`` as a last-page flag,
the rate limit (120 a minute) and its 429, and the received quantity of a purchase-order line (``received``).
"""

import copy
import hashlib
import math
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from syncs.sandbox.core import ApiError, Simulator, json_response
from syncs.sandbox.world import BASE_TIME, WAREHOUSES, generate

CONNECTION = "c1000"  # the id of the account's one store connection; variant ids are "<connection>_<n>"
PO_STATUSES = ("OPEN", "DRAFT", "PARTIALLY RECEIVED", "CLOSED", "CANCELLED")
ON_ORDER_STATUSES = ("open", "partially received")  # purchase orders whose remaining lines count as on order
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
# Planning settings the API lets a user change on a variant; id and sku are documented read-only, and the figures
# Inventory Planner computes (stock, replenishment, forecasts) are read-only too.
WRITABLE_VARIANT_FIELDS = {"lead_time", "review_period", "minimum_stock", "cost_price", "landing_cost_price"}
VENDORS = {
    "Tops": "porto textile lda",
    "Shirts": "porto textile lda",
    "Knitwear": "nordic knitwear ab",
    "Denim": "denim mill co",
    "Dresses": "linen house srl",
    "Outerwear": "wool & co ltd",
    "Shoes": "calzature rossi spa",
    "Accessories": "canvas works",
}
LEAD_TIMES = {"Tops": 21, "Shirts": 28, "Knitwear": 45, "Denim": 35, "Dresses": 30, "Outerwear": 60, "Shoes": 42}
# Share of a variant's sales made from each warehouse: the web store ships from MAIN, the shop sells from STORE.
WAREHOUSE_SHARE = {"main": 0.8, "store": 0.2}


def _warehouse_id(code: str) -> str:
    return f"{CONNECTION}_{code.lower()}"


def _number(amount: Decimal) -> int | float:
    """An amount as Inventory Planner writes it in JSON: a plain number, whole amounts without decimals."""
    return int(amount) if amount == amount.to_integral_value() else float(amount)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _error(message: str, status: int = 400) -> ApiError:
    return ApiError(json_response({"result": {"status": "error", "message": message}}, status))


class InventoryPlannerSimulator(Simulator):
    name = "inventory-planner"
    # Not published; 120 a minute is our conservative assumption, the same as the connector's default.
    default_rate_limit = (120, 60.0)

    def __init__(self, api_key: str = "sandbox-inventory-planner", account: str = "a1000") -> None:
        self.api_key, self.account = api_key, account
        super().__init__()

    def empty_state(self) -> dict:
        return {
            "warehouses": {
                _warehouse_id(w["code"]): {"id": _warehouse_id(w["code"]), "name": w["name"]} for w in WAREHOUSES
            },
            "variants": {},
            "purchase_orders": {},
            "next_variant": 6000,
            "next_reference": 1001,
            "next_line": 1,
        }

    def api_rules(self) -> list[Rule]:
        return [
            Rule("/api/v1/variants", endpoint="variants_list", methods=["GET"]),
            Rule("/api/v1/variants/<variant_id>", endpoint="variant_get", methods=["GET"]),
            Rule("/api/v1/variants/<variant_id>", endpoint="variant_update", methods=["PATCH", "PUT"]),
            Rule("/api/v1/purchase-orders", endpoint="purchase_orders_list", methods=["GET"]),
            Rule("/api/v1/purchase-orders", endpoint="purchase_order_create", methods=["POST"]),
            Rule("/api/v1/purchase-orders/<po_id>", endpoint="purchase_order_get", methods=["GET"]),
            Rule("/api/v1/purchase-orders/<po_id>", endpoint="purchase_order_update", methods=["PUT", "PATCH"]),
            Rule("/api/v1/purchase-orders/<po_id>/items", endpoint="purchase_order_items", methods=["GET"]),
            Rule("/api/v1/purchase-orders/<po_id>/items/<item_id>", endpoint="purchase_order_item", methods=["GET"]),
        ]

    # --- auth and limits --------------------------------------------------------------------------------------

    def authenticate(self, request: Request, operation: str) -> Response | None:
        # The key is compared raw: "Bearer <key>" is a different, wrong key, as on the live API.
        if request.headers.get("Authorization", "") != self.api_key:
            return json_response({"result": {"status": "error", "message": "Invalid API key"}}, 401)
        if request.headers.get("Account", "") != self.account:
            return json_response({"result": {"status": "error", "message": "Invalid account"}}, 401)
        return None

    def rate_limited_response(self, retry_after: float) -> Response:
        return json_response(
            {"result": {"status": "error", "message": "Too many requests"}},
            429,
            {"Retry-After": str(int(retry_after) + 1)},
        )

    def fault_response(self, status: int) -> Response:
        if status in (502, 503, 504):
            # The API sits behind Cloudflare: a gateway failure is its HTML page, not Inventory Planner's JSON.
            page = f"<html><head><title>{status} | app.inventory-planner.com</title></head><body>cloudflare</body>"
            return Response(page + "</html>", status=status, mimetype="text/html")
        return json_response({"result": {"status": "error", "message": "Internal server error"}}, status)

    # --- seeding ----------------------------------------------------------------------------------------------

    def seed(self, body: dict) -> dict:
        try:
            if "generate" in body:
                self._seed_world(dict(body["generate"]))
            for variant in body.get("variants", []):
                self._add_variant(variant)
            for order in body.get("purchase_orders", body.get("purchase-orders", [])):
                self._add_purchase_order(order)
        except ApiError as error:  # an explicit object the API itself would refuse
            raise ValueError(error.response.get_data(as_text=True)) from None
        self._replan_all()
        return {"variants": len(self.state["variants"]), "purchase_orders": len(self.state["purchase_orders"])}

    def _seed_world(self, options: dict) -> None:
        world = generate(**options)
        # Planning figures are not in the world: derive them from the same seed so they repeat exactly.
        rng = random.Random(f"inventory-planner-{options.get('seed', 42)}")
        by_vendor: dict[str, list[str]] = {}
        for index, (product, colour, size) in enumerate(world.sizes()):
            vendor = VENDORS[product.category]
            velocity = rng.choice([0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.8, 1.2, 2.0])
            created = product.created_at
            variant_id = f"{CONNECTION}_{6000 + index}"
            self._add_variant(
                {
                    "id": variant_id,
                    "sku": size.sku,
                    "product_id": f"{CONNECTION}_{product.product_number}",
                    "title": f"{product.name} - {colour.name} / {size.size_number}",
                    "product_title": product.name,
                    "barcode": size.ean,
                    "brand": "Switchyard Demo",
                    "product_type": product.category,
                    "image": product.image,
                    "options": [colour.name, size.size_number],
                    "price": _number(product.price_eur),
                    "regular_price": _number(product.price_eur),
                    "cost_price": _number(size.cost_price),
                    "lead_time": LEAD_TIMES.get(product.category, 21),
                    "review_period": 30,
                    "minimum_stock": 0,
                    "vendor": vendor,
                    "velocity": velocity,
                    "stock": {_warehouse_id(w["code"]): size.on_hand.get(w["id"], 0) for w in WAREHOUSES},
                    "created_at": _iso(created),
                    "updated_at": _iso(created + timedelta(days=rng.randint(1, 25))),
                }
            )
            by_vendor.setdefault(vendor, []).append(variant_id)
        statuses = ["OPEN", "OPEN", "PARTIALLY RECEIVED", "DRAFT", "CLOSED", "CANCELLED"]
        vendors = sorted(by_vendor)
        for number, status in enumerate(statuses):
            vendor = vendors[number % len(vendors)]
            lines = rng.sample(by_vendor[vendor], k=min(len(by_vendor[vendor]), rng.randint(2, 4)))
            ordered = [rng.choice([6, 12, 18, 24]) for _ in lines]
            received = [
                q if status == "CLOSED" else q // 2 if status == "PARTIALLY RECEIVED" and n == 0 else 0
                for n, q in enumerate(ordered)
            ]
            created = BASE_TIME - timedelta(days=30 - number * 4)
            self._add_purchase_order(
                {
                    "id": hashlib.sha1(f"{options.get('seed', 42)}-po-{number}".encode()).hexdigest()[:24],
                    "reference": str(1001 + number),
                    "status": status,
                    "vendor": vendor,
                    "warehouse": _warehouse_id("MAIN"),
                    "created_date": created.date().isoformat(),
                    "expected_date": (created + timedelta(days=28)).date().isoformat(),
                    "created_at": _iso(created),
                    "items": [
                        {"id": variant_id, "line_id": f"{number + 1}{n:02d}", "replenishment": q, "received": r}
                        for n, (variant_id, q, r) in enumerate(zip(lines, ordered, received, strict=True))
                    ],
                }
            )

    def _add_variant(self, given: dict) -> dict:
        """Store a variant in the API's own shape, filling what was not given. Besides API fields it takes
        ``stock`` ({warehouse id: on hand}), ``vendor`` and ``velocity`` (units a day) as shortcuts."""
        if not given.get("sku"):
            raise ValueError("a variant needs a sku")
        state = self.state
        variant_id = str(given.get("id") or f"{CONNECTION}_{state['next_variant']}")
        if not given.get("id"):
            state["next_variant"] += 1
        stock = given.get("stock")
        if stock is None:
            stock = {_warehouse_id("MAIN"): given.get("in_stock", 0)}
        velocity = given.get("velocity")
        description = dict(given.get("forecast_description") or {})
        if velocity is None:
            velocity = description.get("sales_velocity1", 0)
        description.setdefault("method", "velocity")
        description["sales_velocity1"] = round(velocity, 4)
        description["sales_velocity30"] = round(velocity * 30, 4)
        description.setdefault("trend", 0)
        description.setdefault("total_days_oos", 0)
        description.setdefault("short_sales_history", False)
        now = _iso(BASE_TIME)
        vendor = given.get("vendor")
        record = {
            "id": variant_id,
            "sku": given["sku"],
            "product_id": given.get("product_id", variant_id),
            "title": given.get("title", given["sku"]),
            "product_title": given.get("product_title", given.get("title", given["sku"])),
            "barcode": given.get("barcode", ""),
            "brand": given.get("brand", ""),
            "product_type": given.get("product_type", ""),
            "tags": given.get("tags", []),
            "options": given.get("options", []),
            "image": given.get("image", ""),
            "price": given.get("price", 0),
            "regular_price": given.get("regular_price", given.get("price", 0)),
            "cost_price": given.get("cost_price", 0),
            "landing_cost_price": given.get("landing_cost_price", given.get("cost_price", 0)),
            "removed": False,
            "inventory_management": True,
            "connections": given.get("connections")
            or [
                {
                    "connection": CONNECTION,
                    "sku": given["sku"],
                    "removed": False,
                    "vendors": [
                        {"vendor": vendor, "cost_price": given.get("cost_price", 0), "cost_price_currency": "EUR"}
                    ]
                    if vendor
                    else [],
                }
            ],
            "lead_time": given.get("lead_time", 14),
            "review_period": given.get("review_period", 30),
            "minimum_stock": given.get("minimum_stock", 0),
            "forecast_description": description,
            "created_at": given.get("created_at", now),
            "updated_at": given.get("updated_at", now),
            "version": given.get("version", 1),
            # Where the stock is: kept apart from the per-warehouse figures, which are computed from it.
            "_stock": {str(warehouse): int(quantity) for warehouse, quantity in stock.items()},
        }
        # Figures given explicitly are kept as given until something replans the variant.
        record["_given"] = {
            key: given[key]
            for key in ("in_stock", "purchase_orders_qty", "replenishment", "to_order", "oos")
            if key in given
        }
        state["variants"][variant_id] = record
        return record

    def _add_purchase_order(self, given: dict) -> dict:
        state = self.state
        status = str(given.get("status", "DRAFT")).upper()
        if status not in PO_STATUSES:
            raise _error(f"Invalid status {given.get('status')}")
        reference = str(given.get("reference") or state["next_reference"])
        if reference.isdigit():
            state["next_reference"] = max(state["next_reference"], int(reference) + 1)
        po_id = str(given.get("id") or hashlib.sha1(f"po-{reference}".encode()).hexdigest()[:24])
        warehouse = given.get("warehouse") or _warehouse_id("MAIN")
        if warehouse not in state["warehouses"]:
            raise _error(f"Failed to find warehouse {warehouse}")
        created_at = given.get("created_at") or _iso(datetime.now(UTC))
        order = {
            "id": po_id,
            "reference": reference,
            "extra_reference": given.get("extra_reference", ""),
            "status": status.lower(),
            "type": given.get("type", "po"),
            "source_type": "vendor",
            "vendor": given.get("vendor", ""),
            "vendor_display_name": str(given.get("vendor", "")).title(),
            "warehouse": warehouse,
            "warehouse_display_name": state["warehouses"][warehouse]["name"],
            "currency": given.get("currency", "EUR"),
            "created_date": given.get("created_date") or created_at[:10],
            "expected_date": _date(given.get("expected_date")),
            "received_date": given.get("received_date"),
            "notes": given.get("notes", ""),
            "items": [],
            "history": [],
            "created_at": created_at,
            "updated_at": created_at,
            "last_modified": created_at,
            "version": 0,
        }
        for number, item in enumerate(given.get("items", []), 1):
            order["items"].append(self._purchase_order_line(number, item))
        self._total_purchase_order(order)
        state["purchase_orders"][po_id] = order
        return order

    def _purchase_order_line(self, number: int, item: dict) -> dict:
        variant = self.state["variants"].get(str(item.get("id", "")))
        if variant is None and item.get("sku"):
            variant = next((v for v in self.state["variants"].values() if v["sku"] == item["sku"]), None)
        if variant is None:
            raise _error(f"Failed to find variant {item.get('id') or item.get('sku')}")
        ordered = item.get("replenishment")
        if isinstance(ordered, bool) or not isinstance(ordered, int | float) or ordered <= 0:
            raise _error(f"Invalid replenishment for item {number}")
        received = item.get("received", 0)
        line = str(item.get("line_id") or self.state["next_line"])
        if line.isdigit():
            self.state["next_line"] = max(self.state["next_line"], int(line) + 1)
        return {
            "id": variant["id"],
            "line_id": line,
            "sku": variant["sku"],
            "title": variant["title"],
            "barcode": variant["barcode"],
            "vendor_reference": item.get("vendor_reference", ""),
            "replenishment": int(ordered),
            "received": int(received),
            "remaining": int(ordered) - int(received),
            "cost_price": item.get("cost_price", variant["cost_price"]),
            "in_stock": sum(variant["_stock"].values()),
        }

    @staticmethod
    def _total_purchase_order(order: dict) -> None:
        total = Decimal(0)
        for item in order["items"]:
            item["remaining"] = item["replenishment"] - item["received"]
            line_total = Decimal(str(item["cost_price"])) * item["replenishment"]
            item["total"] = _number(line_total)
            total += line_total
        order["total"] = _number(total)
        order["total_ordered"] = sum(item["replenishment"] for item in order["items"])
        order["total_received"] = sum(item["received"] for item in order["items"])
        order["readonly"] = order["status"] in ("closed", "cancelled")

    # --- planning ---------------------------------------------------------------------------------------------

    def _replan_all(self) -> None:
        for variant in self.state["variants"].values():
            self._replan(variant)

    def _replan(self, variant: dict, *, keep_given: bool = True) -> None:
        """Recompute the figures Inventory Planner derives: on order from open purchase orders, then per warehouse
        replenishment = velocity x (lead time + review period) + minimum stock - on hand - on order."""
        on_order: dict[str, int] = {}
        for order in self.state["purchase_orders"].values():
            if order["status"] in ON_ORDER_STATUSES:
                for item in order["items"]:
                    if item["id"] == variant["id"]:
                        on_order[order["warehouse"]] = on_order.get(order["warehouse"], 0) + item["remaining"]
        velocity = variant["forecast_description"]["sales_velocity1"]
        horizon = variant["lead_time"] + variant["review_period"]
        rows = []
        for warehouse in self.state["warehouses"]:
            code = warehouse.removeprefix(f"{CONNECTION}_")
            share = velocity * WAREHOUSE_SHARE.get(code, 0.0)
            in_stock = variant["_stock"].get(warehouse, 0)
            ordered = on_order.get(warehouse, 0)
            need = math.ceil(share * horizon) + variant["minimum_stock"] - in_stock - ordered
            replenishment = max(0, need) if share else 0
            rows.append(
                {
                    "warehouse": warehouse,
                    "in_stock": in_stock,
                    "purchase_orders_qty": ordered,
                    "replenishment": replenishment,
                    "to_order": replenishment,
                    "lead_time": variant["lead_time"],
                    "review_period": variant["review_period"],
                    "oos": math.floor(in_stock / share) if share else None,
                    "forecast_description": {
                        "sales_velocity1": round(share, 4),
                        "sales_velocity30": round(share * 30, 4),
                    },
                }
            )
        variant["warehouse"] = rows
        in_stock = sum(row["in_stock"] for row in rows)
        variant["in_stock"] = in_stock
        variant["purchase_orders_qty"] = sum(row["purchase_orders_qty"] for row in rows)
        variant["replenishment"] = sum(row["replenishment"] for row in rows)
        variant["to_order"] = variant["replenishment"]
        variant["oos"] = math.floor(in_stock / velocity) if velocity else None
        cost = Decimal(str(variant["cost_price"]))
        variant["to_order_cost"] = _number(cost * variant["to_order"])
        variant["replenishment_cost_value"] = variant["to_order_cost"]
        variant["current_forecast"] = round(velocity * 30, 2)
        variant["last_30_days_sales"] = round(velocity * 30)
        if keep_given:
            variant.update(variant["_given"])
        else:
            variant["_given"] = {}

    # --- reading ----------------------------------------------------------------------------------------------

    @staticmethod
    def _public(record: dict) -> dict:
        return {key: value for key, value in record.items() if not key.startswith("_")}

    def _listing(self, request: Request, name: str, display_name: str, rows: list[dict]) -> Response:
        """One page of ``rows`` after the request's filters and sorts, with Inventory Planner's meta block."""
        args = request.args
        try:
            page = max(0, int(args.get("page", 0)))
            limit = max(1, min(int(args.get("limit", DEFAULT_LIMIT)), MAX_LIMIT))
        except ValueError:
            raise _error("Invalid page or limit") from None
        rows = [row for row in rows if _matches(row, args)]
        for key, direction in args.items():
            if key.endswith("_sort") and direction in ("asc", "desc"):
                field = key.removesuffix("_sort")
                # Rows without the value go last either way, as a spreadsheet sorts blanks.
                present = [row for row in rows if row.get(field) is not None]
                absent = [row for row in rows if row.get(field) is None]
                rows = sorted(present, key=lambda row: _sort_key(row[field]), reverse=direction == "desc") + absent
        start = page * limit
        chosen = rows[start : start + limit]
        fields = [name.strip() for name in args.get("fields", "").split(",") if name.strip()]
        return json_response(
            {
                name: [_project(row, fields) for row in chosen],
                "meta": {
                    "name": name,
                    "display_name": display_name,
                    "total": len(rows),
                    "count": len(chosen),
                    "limit": limit,
                    "page": page,
                    "start": start,
                    "end": 1 if start + limit >= len(rows) else 0,
                },
            }
        )

    def variants_list(self, request: Request) -> Response:
        with self.lock:
            rows = [self._public(v) for v in self.state["variants"].values()]
            return self._listing(request, "variants", "variants", rows)

    def _variant(self, variant_id: str) -> dict:
        variant = self.state["variants"].get(variant_id)
        if variant is None:
            raise _error(f"Failed to find variant {variant_id}", 404)
        return variant

    def variant_get(self, request: Request, variant_id: str) -> Response:
        with self.lock:
            return json_response({"variant": self._public(self._variant(variant_id))})

    def variant_update(self, request: Request, variant_id: str) -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("variant"), dict):
            raise _error("Request must contain variant")
        changes = body["variant"]
        with self.lock:
            variant = self._variant(variant_id)
            for name, value in changes.items():
                if name in ("id", "sku"):
                    raise _error(f"Field {name} is read-only")
                if name not in WRITABLE_VARIANT_FIELDS:
                    raise _error(f"Field {name} cannot be updated")
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise _error(f"Invalid value for {name}: {value!r}")
                if name in ("lead_time", "review_period", "minimum_stock") and value != int(value):
                    raise _error(f"Invalid value for {name}: {value!r}")
            for name, value in changes.items():
                variant[name] = int(value) if name in ("lead_time", "review_period", "minimum_stock") else value
            variant["updated_at"] = _iso(datetime.now(UTC))
            variant["version"] += 1
            self._replan(variant, keep_given=False)
            return json_response({"variant": self._public(variant)})

    def purchase_orders_list(self, request: Request) -> Response:
        with self.lock:
            rows = [copy.deepcopy(order) for order in self.state["purchase_orders"].values()]
            return self._listing(request, "purchase-orders", "purchase orders", rows)

    def _purchase_order(self, po_id: str) -> dict:
        order = self.state["purchase_orders"].get(po_id)
        if order is None:
            raise _error(f"Failed to find purchase-order {po_id}", 404)
        return order

    def purchase_order_get(self, request: Request, po_id: str) -> Response:
        with self.lock:
            return json_response({"purchase-order": self._purchase_order(po_id)})

    def purchase_order_items(self, request: Request, po_id: str) -> Response:
        with self.lock:
            return self._listing(request, "items", "items", copy.deepcopy(self._purchase_order(po_id)["items"]))

    def purchase_order_item(self, request: Request, po_id: str, item_id: str) -> Response:
        with self.lock:
            for item in self._purchase_order(po_id)["items"]:
                if item_id in (item["id"], item["line_id"]):
                    return json_response({"item": item})
            raise _error(f"Failed to find item {item_id}", 404)

    # --- writing purchase orders ------------------------------------------------------------------------------

    def purchase_order_create(self, request: Request) -> Response:
        given = _wrapped(request)
        if given.get("type", "po") == "po" and not given.get("vendor"):
            raise _error("Vendor is required")
        given = {key: value for key, value in given.items() if key not in ("id", "created_at")}
        with self.lock:
            if "variants_filter" in given and "items" not in given:
                # Inventory Planner fills the order from its own suggestions: every matching variant's to_order.
                wanted = given.pop("variants_filter")
                matching = [v for v in self.state["variants"].values() if _matches(self._public(v), wanted)]
                given["items"] = [{"id": v["id"], "replenishment": v["to_order"]} for v in matching if v["to_order"]]
            if not given.get("items"):
                raise _error("Purchase order has no items")
            order = self._add_purchase_order(given)
            self._replan_all()
            return json_response({"purchase-order": order})

    def purchase_order_update(self, request: Request, po_id: str) -> Response:
        changes = _wrapped(request)
        with self.lock:
            order = self._purchase_order(po_id)
            status = str(changes.get("status", order["status"])).upper()
            if status not in PO_STATUSES:
                raise _error(f"Invalid status {changes.get('status')}")
            if order["readonly"] and set(changes) - {"status", "skip_background_jobs", "notes"}:
                raise _error(f"Purchase order {order['reference']} is read-only")
            for item_change in changes.get("items", []):
                self._receive_line(order, item_change, apply=False)  # all refused or all applied, never half
            for item_change in changes.get("items", []):
                self._receive_line(order, item_change)
            for name in ("expected_date", "payment_date", "shipment_date"):
                if name in changes:
                    order[name] = _date(changes[name])
            for name in ("reference", "extra_reference", "notes", "vendor", "currency"):
                if name in changes:
                    order[name] = changes[name]
            if status == "CLOSED" and order["status"] != "closed":
                # Closing an order marks what is left of it received.
                for item in order["items"]:
                    self._receive_line(order, {"id": item["line_id"], "received": item["replenishment"]})
            self._set_status(order, status.lower())
            self._replan_all()
            return json_response({"purchase-order": order})

    def _receive_line(self, order: dict, change: dict, *, apply: bool = True) -> None:
        """Set a line's received total; the difference goes into stock at the order's warehouse. With ``apply``
        False, only check that it could be done."""
        item = next((i for i in order["items"] if str(change.get("id")) in (i["id"], i["line_id"])), None)
        if item is None:
            raise _error(f"Failed to find item {change.get('id')}")
        received = change.get("received", item["received"])
        if isinstance(received, bool) or not isinstance(received, int) or not 0 <= received <= item["replenishment"]:
            raise _error(f"Invalid received quantity for item {item['line_id']}")
        if not apply:
            return
        variant = self.state["variants"].get(item["id"])
        if variant is not None and received != item["received"]:
            stock = variant["_stock"]
            stock[order["warehouse"]] = stock.get(order["warehouse"], 0) + received - item["received"]
            variant["_given"] = {}
        item["received"] = received

    def _set_status(self, order: dict, status: str) -> None:
        self._total_purchase_order(order)
        received, ordered = order["total_received"], order["total_ordered"]
        if status in ("open", "partially received") and received:
            status = "closed" if received >= ordered else "partially received"
        if status == "closed" and not order.get("received_date"):
            order["received_date"] = datetime.now(UTC).date().isoformat()
        order["status"] = status
        order["readonly"] = status in ("closed", "cancelled")
        order["updated_at"] = order["last_modified"] = _iso(datetime.now(UTC))
        order["version"] += 1

    # --- demo -------------------------------------------------------------------------------------------------

    def tick(self, rng: random.Random) -> None:
        """Sales velocities drift and a few units sell; now and then an open purchase order is received, and when
        none is open a buyer raises one for the vendor with the most to order."""
        with self.lock:
            variants = list(self.state["variants"].values())
            if not variants:
                return
            for variant in rng.sample(variants, k=min(5, len(variants))):
                description = variant["forecast_description"]
                velocity = round(max(0.0, description["sales_velocity1"] * rng.uniform(0.85, 1.15)), 4)
                description["sales_velocity1"], description["sales_velocity30"] = velocity, round(velocity * 30, 4)
                main = _warehouse_id("MAIN")
                sold = min(variant["_stock"].get(main, 0), rng.choice([0, 0, 1, 1, 2]))
                variant["_stock"][main] = variant["_stock"].get(main, 0) - sold
                variant["updated_at"] = _iso(datetime.now(UTC))
                variant["_given"] = {}
            open_orders = [o for o in self.state["purchase_orders"].values() if o["status"] in ON_ORDER_STATUSES]
            if open_orders and rng.random() < 0.3:
                order = rng.choice(open_orders)
                for item in order["items"]:
                    if rng.random() < 0.7:
                        self._receive_line(order, {"id": item["line_id"], "received": item["replenishment"]})
                self._set_status(order, "open")
            elif not open_orders:
                self._replan_all()
                wanted: dict[str, list[dict]] = {}
                for variant in variants:
                    vendors = (variant["connections"][0].get("vendors") or [{}]) if variant["connections"] else [{}]
                    if variant["to_order"] and vendors[0].get("vendor"):
                        wanted.setdefault(vendors[0]["vendor"], []).append(variant)
                if wanted:
                    vendor = max(sorted(wanted), key=lambda name: sum(v["to_order"] for v in wanted[name]))
                    self._add_purchase_order(
                        {
                            "status": "OPEN",
                            "vendor": vendor,
                            "expected_date": (datetime.now(UTC).date() + timedelta(days=21)).isoformat(),
                            "items": [{"id": v["id"], "replenishment": v["to_order"]} for v in wanted[vendor][:10]],
                        }
                    )
            self._replan_all()


# --- request parsing ----------------------------------------------------------------------------------------------

RESERVED_PARAMETERS = {"page", "limit", "fields"}


def _matches(row: dict, filters) -> bool:
    """Whether ``row`` passes every ``<field>=value`` and ``<field>_gt=value`` filter. Parameters naming no field
    of the row are ignored, as unknown fields are."""
    for key, wanted in filters.items():
        if key in RESERVED_PARAMETERS or key.endswith("_sort"):
            continue
        if key.endswith("_gt") and key not in row:
            value = row.get(key.removesuffix("_gt"))
            try:
                if value is None or not float(value) > float(wanted):
                    return False
            except (TypeError, ValueError):
                return False
        elif key == "vendor" and key not in row and "connections" in row:
            vendors = {v.get("vendor") for c in row["connections"] for v in c.get("vendors") or []}
            if wanted not in vendors:
                return False
        elif key == "status" and isinstance(row.get(key), str):
            # Statuses are written upper case and read back lower case: either matches.
            if row[key].upper() != str(wanted).upper():
                return False
        elif key in row and not _equal(row[key], wanted):
            return False
    return True


def _equal(value, wanted) -> bool:
    if isinstance(value, bool):
        return str(wanted).lower() == str(value).lower()
    if isinstance(value, int | float):
        try:
            return float(value) == float(wanted)
        except (TypeError, ValueError):
            return False
    return str(value) == str(wanted)


def _sort_key(value):
    return (0, value, "") if isinstance(value, int | float) else (1, 0, str(value))


def _project(row: dict, fields: list[str]) -> dict:
    """The row cut to the requested fields; ``warehouse.<name>`` picks per-warehouse figures (each warehouse block
    keeps its ``warehouse`` id). No ``fields``: everything."""
    if not fields:
        return row
    shaped = {name: row[name] for name in fields if name in row}
    nested = [name.removeprefix("warehouse.") for name in fields if name.startswith("warehouse.")]
    if nested and "warehouse" not in shaped and isinstance(row.get("warehouse"), list):
        shaped["warehouse"] = [
            {"warehouse": block.get("warehouse"), **{name: block[name] for name in nested if name in block}}
            for block in row["warehouse"]
        ]
    return shaped


def _wrapped(request: Request) -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("purchase-order"), dict):
        raise _error("Request must contain purchase-order")
    return dict(body["purchase-order"])


def _date(value) -> str | None:
    """A date as the API reads it back (YYYY-MM-DD), from a date string or Unix seconds."""
    if value in (None, ""):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).date().isoformat()
    try:
        return date.fromisoformat(str(value)[:10]).isoformat()
    except ValueError:
        raise _error(f"Invalid date {value}") from None
