"""Fulfil REST API v2, as an integration sees it.

Fulfil is a Tryton fork, and its v2 API exposes the model methods over HTTP: ``PUT /api/v2/model/<model>/<method>``
with a JSON list of positional arguments (``search_read`` takes ``[domain, offset, limit, order, fields]``,
``create`` takes ``[[{values}, …]]`` and answers a list of ids, workflow buttons take ``[[ids]]``), plus REST-style
``GET``/``POST``/``PUT`` on ``/api/v2/model/<model>[/<id>]``. Authentication is ``x-api-key`` (or
``Authorization: Bearer``). Decimals, dates and datetimes travel as ``{"__class__": "Decimal", "decimal": "9.99"}``
and the like in both directions. Context (``?context={"locations": [ids]}``) makes product quantities count only
those warehouses. Domains are Tryton's: ``[["code", "in", [...]], ["OR", [...], [...]]]`` with dotted fields.

Errors: 400 ``{"type": "UserError", "message", "description", "code"}`` for what Tryton refuses (a required
field, a record that does not exist, too many digits), Werkzeug's ``{"code", "name", "description"}`` for 400
(malformed call), 401, 404 and 429 (with ``X-RateLimit-Limit/Remaining/Reset`` and ``Retry-After``), and a 500
carrying ``X-Sentry-ID``. Webhooks are signed ``X-Fulfil-Hmac-SHA256: base64(HMAC-SHA256(base64decode(secret),
raw body))`` and name their event in ``X-Fulfil-Event``.

Workflow follows Tryton: a transition called on a record in the wrong state is skipped silently; sales go
draft → quotation (numbered) → confirmed → processing (shipments created) → done, or draft/quotation →
cancelled; customer shipments go waiting → assigned → packed → done; return shipments draft → received → done.
A credit is a sale whose ``origin`` is ``"sale.sale,<id>"`` with negative line quantities (Tryton's return_sale).
"""

import base64
import copy
import hashlib
import hmac
import json
import random
import re
import secrets as random_tokens
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

import requests
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from syncs.sandbox.core import ApiError, Simulator, json_response
from syncs.sandbox.world import CARRIERS, WAREHOUSES, generate, money

MAX_PAGE = 500  # Fulfil answers at most 500 records a call (RB1, LAR)
CENT = Decimal("0.01")


# --- Typed JSON values (fulfil_client serialization) ----------------------------------------------------------


def encode(value):
    """Python values as Fulfil sends them: Decimal, date and datetime as ``__class__`` objects."""
    if isinstance(value, Decimal):
        return {"__class__": "Decimal", "decimal": str(value)}
    if isinstance(value, datetime):
        naive = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        return {"__class__": "datetime", "iso_string": naive.isoformat()}
    if isinstance(value, date):
        return {
            "__class__": "date",
            "iso_string": value.isoformat(),
            "year": value.year,
            "month": value.month,
            "day": value.day,
        }
    if isinstance(value, dict):
        return {key: encode(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [encode(item) for item in value]
    return value


def decode(value):
    """The inverse of ``encode``; datetimes are UTC (Tryton stores them naive in UTC)."""
    if isinstance(value, dict):
        kind = value.get("__class__")
        if kind == "Decimal":
            return Decimal(str(value["decimal"]))
        if kind == "date":
            if "iso_string" in value:
                return date.fromisoformat(value["iso_string"])
            return date(int(value["year"]), int(value["month"]), int(value["day"]))
        if kind == "datetime":
            moment = datetime.fromisoformat(value["iso_string"])
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        return {key: decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decode(item) for item in value]
    return value


# --- The models -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    kind: str  # char, int, float, numeric, bool, date, datetime, selection, m2o, o2m, m2m, reference
    label: str
    target: str = ""  # the model an m2o, o2m or m2m points at
    inverse: str = ""  # an o2m's m2o on the target
    required: bool = False
    readonly: bool = False  # computed, or changed only by the workflow
    options: tuple = ()
    digits: int | None = None


def _f(kind: str, label: str, **options) -> Field:
    return Field(kind, label, **options)


STAMPS = {
    "create_date": _f("datetime", "Created at", readonly=True),
    "write_date": _f("datetime", "Edited at", readonly=True),
    "rec_name": _f("char", "Record Name", readonly=True),
}
MODELS: dict[str, tuple[str, dict[str, Field]]] = {
    "currency.currency": ("Currency", {"code": _f("char", "Code", required=True), "name": _f("char", "Name")}),
    "country.country": ("Country", {"code": _f("char", "Code", required=True), "name": _f("char", "Name")}),
    "country.subdivision": (
        "Subdivision",
        {
            "code": _f("char", "Code", required=True),
            "name": _f("char", "Name"),
            "country": _f("m2o", "Country", target="country.country"),
        },
    ),
    "stock.location": (
        "Stock Location",
        {
            "name": _f("char", "Name", required=True),
            "code": _f("char", "Code"),
            "type": _f(
                "selection", "Type", options=("warehouse", "storage", "customer", "supplier", "lost_found", "view")
            ),
            "parent": _f("m2o", "Parent", target="stock.location"),
            "storage_location": _f("m2o", "Storage", target="stock.location"),
        },
    ),
    "account.tax": (
        "Tax",
        {
            "name": _f("char", "Name", required=True),
            "rate": _f("numeric", "Rate", digits=10),
            "type": _f("selection", "Type", options=("percentage", "fixed")),
        },
    ),
    "product.product": (
        "Variant",
        {
            "code": _f("char", "Code"),
            "name": _f("char", "Name", required=True),
            "variant_name": _f("char", "Variant Name"),
            "list_price": _f("numeric", "List Price", digits=4),
            "cost_price": _f("numeric", "Cost Price", digits=4),
            "type": _f("selection", "Type", options=("goods", "service", "assets")),
            "active": _f("bool", "Active"),
            "salable": _f("bool", "Salable"),
            "quantity_on_hand": _f("float", "Quantity On Hand", readonly=True),
            "quantity_available": _f("float", "Quantity Available", readonly=True),
        },
    ),
    "party.party": (
        "Party",
        {
            "name": _f("char", "Name", required=True),
            "code": _f("char", "Code"),
            "addresses": _f("o2m", "Addresses", target="party.address", inverse="party"),
            "contact_mechanisms": _f("o2m", "Contact Mechanisms", target="party.contact_mechanism", inverse="party"),
            "email": _f("char", "E-Mail", readonly=True),
            "phone": _f("char", "Phone", readonly=True),
        },
    ),
    "party.address": (
        "Address",
        {
            "party": _f("m2o", "Party", target="party.party", required=True),
            "name": _f("char", "Building Name"),
            "street": _f("char", "Street"),
            "street_bis": _f("char", "Street (bis)"),
            "city": _f("char", "City"),
            "zip": _f("char", "Zip"),
            "country": _f("m2o", "Country", target="country.country"),
            "subdivision": _f("m2o", "Subdivision", target="country.subdivision"),
            "full_address": _f("char", "Full Address", readonly=True),
        },
    ),
    "party.contact_mechanism": (
        "Contact Mechanism",
        {
            "party": _f("m2o", "Party", target="party.party", required=True),
            "type": _f(
                "selection", "Type", required=True, options=("email", "phone", "mobile", "fax", "website", "other")
            ),
            "value": _f("char", "Value", required=True),
        },
    ),
    "sale.channel": (
        "Sale Channel",
        {
            "name": _f("char", "Name", required=True),
            "code": _f("char", "Code"),
            "source": _f("selection", "Source", options=("manual", "webshop", "marketplace")),
            "warehouse": _f("m2o", "Warehouse", target="stock.location"),
            "currency": _f("m2o", "Currency", target="currency.currency"),
        },
    ),
    "carrier": ("Carrier", {"name": _f("char", "Name", required=True)}),
    "carrier.service": (
        "Carrier Service",
        {
            "carrier": _f("m2o", "Carrier", target="carrier", required=True),
            "name": _f("char", "Name", required=True),
            "code": _f("char", "Code"),
        },
    ),
    "shipment.tracking": (
        "Shipment Tracking",
        {
            "tracking_number": _f("char", "Tracking Number", required=True),
            "carrier": _f("m2o", "Carrier", target="carrier"),
            "tracking_url": _f("char", "Tracking URL"),
        },
    ),
    "sale.sale": (
        "Sale",
        {
            "number": _f("char", "Number", readonly=True),
            "reference": _f("char", "Reference"),
            "channel_identifier": _f("char", "Channel Identifier"),
            "description": _f("char", "Description"),
            "comment": _f("char", "Comment"),
            "channel": _f("m2o", "Channel", target="sale.channel"),
            "party": _f("m2o", "Party", target="party.party", required=True),
            "invoice_address": _f("m2o", "Invoice Address", target="party.address"),
            "shipment_address": _f("m2o", "Shipment Address", target="party.address"),
            "sale_date": _f("date", "Sale Date"),
            "currency": _f("m2o", "Currency", target="currency.currency", required=True),
            "warehouse": _f("m2o", "Warehouse", target="stock.location"),
            "origin": _f("reference", "Origin"),
            "state": _f(
                "selection",
                "State",
                readonly=True,
                options=("draft", "quotation", "confirmed", "processing", "done", "cancelled"),
            ),
            "lines": _f("o2m", "Lines", target="sale.line", inverse="sale"),
            "shipments": _f("m2m", "Shipments", target="stock.shipment.out", readonly=True),
            "shipment_returns": _f("m2m", "Shipment Returns", target="stock.shipment.out.return", readonly=True),
            "untaxed_amount": _f("numeric", "Untaxed", readonly=True),
            "tax_amount": _f("numeric", "Tax", readonly=True),
            "total_amount": _f("numeric", "Total", readonly=True),
            "has_return": _f("bool", "Has Return", readonly=True),
        },
    ),
    "sale.line": (
        "Sale Line",
        {
            "sale": _f("m2o", "Sale", target="sale.sale", required=True),
            "sequence": _f("int", "Sequence"),
            "type": _f("selection", "Type", options=("line", "shipping", "comment")),
            "product": _f("m2o", "Product", target="product.product"),
            "description": _f("char", "Description"),
            "quantity": _f("float", "Quantity"),
            "unit_price": _f("numeric", "Unit Price", digits=4),
            "amount": _f("numeric", "Amount", readonly=True),
            "taxes": _f("m2m", "Taxes", target="account.tax"),
            "channel_identifier": _f("char", "Channel Identifier"),
            "note": _f("char", "Note"),
            "moves": _f("m2m", "Moves", target="stock.move", readonly=True),
        },
    ),
    "stock.move": (
        "Stock Move",
        {
            "product": _f("m2o", "Product", target="product.product", required=True),
            "quantity": _f("float", "Quantity", required=True),
            "from_location": _f("m2o", "From Location", target="stock.location", required=True),
            "to_location": _f("m2o", "To Location", target="stock.location", required=True),
            "shipment": _f("reference", "Shipment"),
            "origin": _f("reference", "Origin"),
            "state": _f("selection", "State", options=("draft", "assigned", "done", "cancelled")),
            "unit_price": _f("numeric", "Unit Price", digits=4),
            "effective_date": _f("date", "Effective Date"),
        },
    ),
    "stock.shipment.out": (
        "Customer Shipment",
        {
            "number": _f("char", "Number", readonly=True),
            "state": _f(
                "selection",
                "State",
                readonly=True,
                options=("draft", "waiting", "assigned", "packed", "done", "cancel"),
            ),
            "warehouse": _f("m2o", "Warehouse", target="stock.location"),
            "customer": _f("m2o", "Customer", target="party.party"),
            "delivery_address": _f("m2o", "Delivery Address", target="party.address"),
            "planned_date": _f("date", "Planned Date"),
            "effective_date": _f("date", "Effective Date", readonly=True),
            "moves": _f("m2m", "Moves", target="stock.move", readonly=True),
            "sales": _f("m2m", "Sales", target="sale.sale", readonly=True),
            "tracking_number": _f("m2o", "Tracking Number", target="shipment.tracking"),
            "carrier": _f("m2o", "Carrier", target="carrier"),
            "carrier_service": _f("m2o", "Carrier Service", target="carrier.service"),
        },
    ),
    "stock.shipment.out.return": (
        "Customer Return Shipment",
        {
            "number": _f("char", "Number", readonly=True),
            "state": _f("selection", "State", readonly=True, options=("draft", "received", "done", "cancel")),
            "warehouse": _f("m2o", "Warehouse", target="stock.location"),
            "customer": _f("m2o", "Customer", target="party.party"),
            "effective_date": _f("date", "Effective Date", readonly=True),
            "moves": _f("m2m", "Moves", target="stock.move", readonly=True),
            "sales": _f("m2m", "Sales", target="sale.sale", readonly=True),
        },
    ),
}
# Ids of each table start apart, so an id sent for the wrong model never happens to exist.
FIRST_ID = {
    "currency.currency": 1,
    "country.country": 1,
    "country.subdivision": 1,
    "stock.location": 1,
    "account.tax": 1,
    "sale.channel": 1,
    "carrier": 1,
    "carrier.service": 1,
    "product.product": 10001,
    "party.party": 20001,
    "party.address": 30001,
    "party.contact_mechanism": 35001,
    "sale.sale": 40001,
    "sale.line": 50001,
    "stock.shipment.out": 60001,
    "stock.shipment.out.return": 65001,
    "stock.move": 70001,
    "shipment.tracking": 80001,
}
WORKFLOW = {
    "sale.sale": {"draft", "quote", "confirm", "process", "cancel"},
    "stock.shipment.out": {"wait", "assign_try", "assign", "pack", "done", "cancel", "draft"},
    "stock.shipment.out.return": {"receive", "done", "cancel"},
}
GENERIC_METHODS = {"search_read", "search", "search_count", "read", "create", "write", "delete"}
OPEN_MOVE_STATES = ("draft", "assigned")

BASE_CURRENCIES = ["EUR", "SEK", "GBP", "USD"]
BASE_COUNTRIES = [
    ("SE", "Sweden"),
    ("DE", "Germany"),
    ("GB", "United Kingdom"),
    ("US", "United States"),
    ("FR", "France"),
    ("NL", "Netherlands"),
]
BASE_SUBDIVISIONS = [("US-NY", "New York", "US"), ("US-CA", "California", "US"), ("GB-ENG", "England", "GB")]
BASE_TAXES = [("VAT 25%", "0.25"), ("VAT 19%", "0.19"), ("VAT 20%", "0.20"), ("No tax", "0")]
BASE_CHANNELS = [("Centra web store", "centra", "webshop"), ("Virtualstock", "virtualstock", "marketplace")]
BASE_CHANNELS += [("Marketplace", "marketplace", "marketplace")]
TRACKING_FORMATS = {"DHL": "JD01460000{:08d}", "UPS": "1Z999AA1{:08d}", "PostNord": "00370731{:010d}"}


class FulfilSimulator(Simulator):
    name = "fulfil"
    default_rate_limit = (10, 1.0)  # Switchyard's setting; Fulfil publishes no figure (research §7)

    def __init__(
        self, api_key: str = "sandbox-fulfil", webhook_secret: str = "c2FuZGJveC1mdWxmaWwtd2ViaG9va3M="
    ) -> None:
        self.api_key = api_key
        super().__init__()
        self.webhook_secret = webhook_secret
        self._pending_webhooks: list[dict] = []

    # --- state ------------------------------------------------------------------------------------------------

    def empty_state(self) -> dict:
        """A fresh Fulfil instance holds its company's reference data: currencies, countries, warehouses (MAIN and
        STORE, each with a storage zone), sale channels, carriers and taxes."""
        state = {
            "config": {
                "max_page_size": MAX_PAGE,
                "send_retry_after": True,
                "process_on_confirm": True,
                # The warehouse splits every sale's customer shipment line by line (one parcel per line).
                "shipment_per_line": False,
            },
            "company_currency": "EUR",
            "next_id": dict(FIRST_ID),
            "sequences": {"sale.sale": 1000, "stock.shipment.out": 5000, "stock.shipment.out.return": 100},
            "records": {model: {} for model in MODELS},
            "stock": {},  # product id → warehouse id → quantity on hand
        }
        self.state = state
        for code in BASE_CURRENCIES:
            self._insert("currency.currency", {"code": code, "name": code})
        for code, name in BASE_COUNTRIES:
            self._insert("country.country", {"code": code, "name": name})
        for code, name, country in BASE_SUBDIVISIONS:
            self._insert("country.subdivision", {"code": code, "name": name, "country": self._id_of_code(country)})
        for kind, name in (("supplier", "Supplier"), ("customer", "Customer"), ("lost_found", "Lost and Found")):
            self._insert("stock.location", {"name": name, "code": kind.upper(), "type": kind})
        for warehouse in WAREHOUSES:
            warehouse_id = self._insert(
                "stock.location", {"name": warehouse["name"], "code": warehouse["code"], "type": "warehouse"}
            )
            storage = self._insert(
                "stock.location",
                {"name": f"{warehouse['name']} storage", "code": "STO", "type": "storage", "parent": warehouse_id},
            )
            self._record("stock.location", warehouse_id)["storage_location"] = storage
        for name, rate in BASE_TAXES:
            self._insert("account.tax", {"name": name, "rate": Decimal(rate), "type": "percentage"})
        main = self._warehouse_ids()[0]
        for name, code, source in BASE_CHANNELS:
            self._insert("sale.channel", {"name": name, "code": code, "source": source, "warehouse": main})
        for carrier_name in dict.fromkeys(name for name, _ in CARRIERS):
            carrier = self._insert("carrier", {"name": carrier_name})
            for name, service in CARRIERS:
                if name == carrier_name:
                    self._insert("carrier.service", {"carrier": carrier, "name": service, "code": service.lower()})
        return state

    def _insert(self, model: str, values: dict) -> int:
        """Store a record as it is (no validation): reference data and seeding."""
        record_id = int(values.get("id") or self.state["next_id"][model])
        self.state["next_id"][model] = max(self.state["next_id"][model], record_id + 1)
        record = {name: None for name, field in MODELS[model][1].items() if field.kind not in ("o2m", "m2m")}
        record.update({name: [] for name, field in MODELS[model][1].items() if field.kind == "m2m"})
        for name in self._computed_fields(model):
            record.pop(name, None)
        if model == "product.product":
            record.update(active=True, salable=True, type="goods")
        record.update({key: value for key, value in values.items() if key != "id"})
        record["id"] = record_id
        record["create_date"] = datetime.now(UTC)
        record["write_date"] = None  # Tryton leaves it empty until the first write
        self.state["records"][model][str(record_id)] = record
        return record_id

    def _record(self, model: str, record_id) -> dict | None:
        return self.state["records"][model].get(str(record_id))

    def _rows(self, model: str) -> list[dict]:
        return list(self.state["records"][model].values())

    def _id_of_code(self, code: str, model: str = "country.country") -> int | None:
        return next((row["id"] for row in self._rows(model) if row.get("code") == code), None)

    def _warehouse_ids(self) -> list[int]:
        return sorted(row["id"] for row in self._rows("stock.location") if row["type"] == "warehouse")

    def _warehouse_by_code(self, code: str) -> int:
        return next(
            row["id"] for row in self._rows("stock.location") if row["type"] == "warehouse" and row["code"] == code
        )

    # --- routes, auth, limits, faults -------------------------------------------------------------------------

    def api_rules(self) -> list[Rule]:
        prefix = "/api/v2/model/<model>"
        return [
            Rule(prefix, endpoint="rest_create", methods=["POST"]),
            Rule(prefix + "/<int:record_id>", endpoint="rest_get", methods=["GET"]),
            Rule(prefix + "/<int:record_id>", endpoint="rest_write", methods=["PUT"]),
            Rule(prefix + "/<int:record_id>", endpoint="rest_delete", methods=["DELETE"]),
            Rule(prefix + "/<int:record_id>/<method>", endpoint="record_method", methods=["PUT", "POST"]),
            Rule(prefix + "/<method>", endpoint="model_method", methods=["PUT", "POST"]),
        ]

    def operation_of(self, request: Request, endpoint: str, arguments: dict) -> str:
        model = arguments.get("model", "")
        method = arguments.get("method") or {
            "rest_create": "create",
            "rest_get": "get",
            "rest_write": "write",
            "rest_delete": "delete",
        }.get(endpoint, endpoint)
        return f"{model}.{method}"

    def authenticate(self, request: Request, operation: str) -> Response | None:
        key = request.headers.get("x-api-key") or ""
        authorization = request.headers.get("Authorization", "")
        if not key and authorization.startswith("Bearer "):
            key = authorization.removeprefix("Bearer ").strip()
        if key and hmac.compare_digest(key, self.api_key):
            return None
        return _werkzeug_error(
            401,
            "Unauthorized",
            "The server could not verify that you are authorized to access the URL requested. "
            "Your API key is missing, invalid or expired.",
        )

    def rate_limited_response(self, retry_after: float) -> Response:
        limit = self.window.limit if self.window else (self.default_rate_limit or (0, 0))[0]
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(time.time() + retry_after) + 1),
        }
        if self.state["config"].get("send_retry_after", True):
            headers["Retry-After"] = str(int(retry_after) + 1)
        return _werkzeug_error(
            429, "Too Many Requests", "This user has exceeded an allotted request count. Try again later.", headers
        )

    def fault_response(self, status: int) -> Response:
        if status in (502, 503, 504):
            title = {502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}[status]
            html = f"<html><head><title>{status} {title}</title></head><body><center><h1>{status} {title}</h1>"
            return Response(html + "</center><hr><center>nginx</center></body></html>", status, mimetype="text/html")
        return _werkzeug_error(
            status,
            "Internal Server Error",
            "The server encountered an internal error and was unable to complete your request.",
            {"X-Sentry-ID": random_tokens.token_hex(16)},
        )

    # --- webhooks ---------------------------------------------------------------------------------------------

    def sign_and_send(self, payload: dict) -> None:
        """POST the event's JSON body, signed as fulfil_client.verify_webhook expects: the key is the secret
        base64-decoded, the signature base64 of the HMAC-SHA256 digest of the raw body."""
        body = json.dumps(payload["data"]).encode()
        try:
            key = base64.b64decode(self.webhook_secret, validate=True)
        except ValueError:  # binascii.Error; a secret set by hand that is not base64: sign with it as it is
            key = self.webhook_secret.encode()
        signature = base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()
        requests.post(
            self.webhook_url,
            data=body,
            headers={
                "Content-Type": "application/json",
                "X-Fulfil-Hmac-SHA256": signature,
                "X-Fulfil-Event": payload["event"],
                "X-Fulfil-Organization": "sandbox",
            },
            timeout=10,
        )

    def _announce(self, event: str, data) -> None:
        # Sent only once the call that caused it has succeeded (see _transaction).
        self._pending_webhooks.append({"event": event, "data": encode(data)})

    @contextmanager
    def _transaction(self):
        """All or nothing, as Tryton's database transaction: a refused call changes nothing and announces
        nothing."""
        snapshot = copy.deepcopy(self.state["records"]), copy.deepcopy(self.state["stock"])
        sequences = (dict(self.state["next_id"]), dict(self.state["sequences"]))
        self._pending_webhooks = []
        try:
            yield
        except BaseException:
            self.state["records"], self.state["stock"] = snapshot
            self.state["next_id"], self.state["sequences"] = sequences
            self._pending_webhooks = []
            raise
        pending, self._pending_webhooks = self._pending_webhooks, []
        for webhook in pending:
            self.emit_webhook(webhook)

    # --- request handling -------------------------------------------------------------------------------------

    def _schema(self, model: str) -> dict[str, Field]:
        if model not in MODELS:
            raise ApiError(_werkzeug_error(404, "Not Found", f'Model "{model}" does not exist.'))
        return {**MODELS[model][1], **STAMPS, "id": _f("int", "ID", readonly=True)}

    def _arguments(self, request: Request):
        try:
            body = json.loads(request.get_data(as_text=True) or "[]")
        except ValueError:
            raise ApiError(_werkzeug_error(400, "Bad Request", "The body is not valid JSON.")) from None
        return decode(body)

    def _context(self, request: Request) -> dict:
        raw = request.args.get("context")
        if not raw:
            return {}
        try:
            context = json.loads(raw)
        except ValueError:
            raise ApiError(_werkzeug_error(400, "Bad Request", "context is not a JSON object.")) from None
        if not isinstance(context, dict):
            raise ApiError(_werkzeug_error(400, "Bad Request", "context is not a JSON object."))
        return decode(context)

    def model_method(self, request: Request, model: str, method: str) -> Response:
        arguments, context = self._arguments(request), self._context(request)
        if model == "res.user" and method == "get_preferences":
            return json_response({"company": 1, "language": "en", "currency": "EUR", "timezone": "UTC"})
        self._schema(model)
        with self.lock:
            result = self._dispatch(model, method, arguments, context)
        return json_response(encode(result))

    def record_method(self, request: Request, model: str, record_id: int, method: str) -> Response:
        arguments = self._arguments(request)
        extra = arguments if isinstance(arguments, list) else [arguments]
        self._schema(model)
        with self.lock:
            if method not in WORKFLOW.get(model, ()):
                raise ApiError(_werkzeug_error(404, "Not Found", f'Method "{method}" of "{model}" does not exist.'))
            result = self._dispatch(model, method, [[record_id], *extra], self._context(request))
        return json_response(encode(result))

    def rest_get(self, request: Request, model: str, record_id: int) -> Response:
        schema = self._schema(model)
        fields = request.args.get("fields")
        names = [name.strip() for name in fields.split(",")] if fields else [n for n in schema if n != "id"]
        with self.lock:
            if self._record(model, record_id) is None:
                raise ApiError(_werkzeug_error(404, "Not Found", f'Record {record_id} of "{model}" does not exist.'))
            return json_response(encode(self._read(model, [record_id], names, self._context(request))[0]))

    def rest_create(self, request: Request, model: str) -> Response:
        self._schema(model)
        body = self._arguments(request)
        records = body if isinstance(body, list) else [body]
        with self.lock, self._transaction():
            ids = self._create(model, records)
        return json_response(ids, 201)

    def rest_write(self, request: Request, model: str, record_id: int) -> Response:
        schema = self._schema(model)
        values = self._arguments(request)
        if not isinstance(values, dict):
            raise ApiError(_werkzeug_error(400, "Bad Request", "Send a JSON object of values."))
        with self.lock:
            if self._record(model, record_id) is None:
                raise ApiError(_werkzeug_error(404, "Not Found", f'Record {record_id} of "{model}" does not exist.'))
            with self._transaction():
                self._write(model, [record_id], values)
            names = [name for name in schema if name != "id"]
            return json_response(encode(self._read(model, [record_id], names, {})[0]))

    def rest_delete(self, request: Request, model: str, record_id: int) -> Response:
        self._schema(model)
        with self.lock:
            if self._record(model, record_id) is None:
                raise ApiError(_werkzeug_error(404, "Not Found", f'Record {record_id} of "{model}" does not exist.'))
            with self._transaction():
                self._delete(model, [record_id])
        return Response(status=204)

    def _dispatch(self, model: str, method: str, arguments, context: dict):
        if method in ("search_read", "search_count") and isinstance(arguments, dict):
            # The keyword form third-party clients send: {filters, fields, offset, limit, order}.
            arguments = [
                arguments.get("filters", []),
                arguments.get("offset"),
                arguments.get("limit"),
                arguments.get("order"),
                arguments.get("fields"),
            ]
        if not isinstance(arguments, list):
            raise ApiError(_werkzeug_error(400, "Bad Request", "Send the method's arguments as a JSON list."))
        if method not in GENERIC_METHODS and method not in WORKFLOW.get(model, ()):
            raise ApiError(_werkzeug_error(404, "Not Found", f'Method "{method}" of "{model}" does not exist.'))
        try:
            if method in GENERIC_METHODS and method not in ("create", "write", "delete"):
                return getattr(self, f"_rpc_{method}")(model, arguments, context)
            with self._transaction():
                if method in GENERIC_METHODS:
                    return getattr(self, f"_rpc_{method}")(model, arguments, context)
                return self._rpc_workflow(model, method, arguments, context)
        except (TypeError, IndexError, KeyError, ValueError, InvalidOperation) as error:
            raise ApiError(_werkzeug_error(400, "Bad Request", f"Bad arguments for {method}: {error}")) from None

    # --- generic methods --------------------------------------------------------------------------------------

    def _rpc_search_read(self, model: str, arguments: list, context: dict) -> list[dict]:
        domain, offset, limit, order, fields = (list(arguments) + [None] * 5)[:5]
        ids = self._search(model, domain or [], offset, limit, order, context)
        schema = self._schema(model)
        return self._read(model, ids, fields or [n for n in schema if n != "id"], context)

    def _rpc_search(self, model: str, arguments: list, context: dict) -> list[int]:
        domain, offset, limit, order = (list(arguments) + [None] * 4)[:4]
        return self._search(model, domain or [], offset, limit, order, context)

    def _rpc_search_count(self, model: str, arguments: list, context: dict) -> int:
        domain = arguments[0] if arguments else []
        return len(self._matching(model, domain or [], context))

    def _rpc_read(self, model: str, arguments: list, context: dict) -> list[dict]:
        ids, fields = (list(arguments) + [None, None])[:2]
        missing = [record_id for record_id in ids if self._record(model, record_id) is None]
        if missing:
            raise _user_error(
                f'You are trying to read records "{", ".join(map(str, missing))}" of "{MODELS[model][0]}" '
                "that don't exist anymore."
            )
        schema = self._schema(model)
        return self._read(model, list(ids), fields or [n for n in schema if n != "id"], context)

    def _rpc_create(self, model: str, arguments: list, context: dict) -> list[int]:
        return self._create(model, arguments[0])

    def _rpc_write(self, model: str, arguments: list, context: dict) -> None:
        # Tryton accepts pairs: write(ids, values, ids, values, …).
        for index in range(0, len(arguments), 2):
            self._write(model, list(arguments[index]), arguments[index + 1])
        return None

    def _rpc_delete(self, model: str, arguments: list, context: dict) -> None:
        self._delete(model, list(arguments[0]))
        return None

    # --- search -----------------------------------------------------------------------------------------------

    def _search(self, model, domain, offset, limit, order, context) -> list[int]:
        cap = int(self.state["config"]["max_page_size"])
        if limit is not None and int(limit) > cap:
            raise _user_error(f"The limit cannot exceed {cap} records a call.", "Page through with offset.")
        limit = cap if limit is None else max(0, int(limit))
        offset = max(0, int(offset or 0))
        rows = self._matching(model, domain, context)
        for name, direction in reversed(list(order or []) + [["id", "ASC"]]):
            descending = str(direction).upper().startswith("DESC")
            read = self._dotted if "." in name else self._value
            rows.sort(
                key=lambda row, name=name, read=read: _sort_key(read(model, row, name, context)), reverse=descending
            )
        return [row["id"] for row in rows[offset : offset + limit]]

    def _matching(self, model: str, domain, context: dict) -> list[dict]:
        if not isinstance(domain, list):
            raise ApiError(_werkzeug_error(400, "Bad Request", "A domain is a list of clauses."))
        rows = [row for row in self._rows(model) if self._matches(model, row, domain, context)]
        if "active" in MODELS[model][1] and not _mentions(domain, "active"):
            rows = [row for row in rows if row.get("active", True)]  # Tryton hides archived records unless asked
        return rows

    def _matches(self, model: str, row: dict, domain: list, context: dict) -> bool:
        if not domain:
            return True
        if _is_clause(domain):
            return self._clause(model, row, domain, context)
        mode = "AND"
        if isinstance(domain[0], str) and domain[0].upper() in ("AND", "OR"):
            mode, domain = domain[0].upper(), domain[1:]
        results = (self._matches(model, row, part, context) for part in domain)
        return any(results) if mode == "OR" else all(results)

    def _clause(self, model: str, row: dict, clause: list, context: dict) -> bool:
        path, operator, expected = clause[0], str(clause[1]).lower(), clause[2]
        values, many = self._path_values(model, row, path, context)
        if many is not None:  # an x2many field: Tryton's "contains" semantics
            wanted = set(expected if isinstance(expected, list) else [expected])
            hit = bool(wanted & set(many))
            if operator in ("=", "in"):
                return hit if expected not in (None, []) else not many
            if operator in ("!=", "not in"):
                return not hit
            raise _user_error(f'The operator "{operator}" cannot be used on "{path}".')
        return any(_compare(value, operator, expected) for value in values)

    def _path_values(self, model: str, row: dict, path: str, context: dict):
        """The values a dotted path reaches from ``row``; for a terminal x2many, also its ids (else None)."""
        first, _, rest = path.partition(".")
        schema = self._schema(model)
        if first not in schema:
            raise ApiError(_werkzeug_error(400, "Bad Request", f'"{model}" has no field "{first}".'))
        field = schema[first]
        value = self._value(model, row, first, context)
        if not rest:
            if field.kind in ("o2m", "m2m"):
                return [], list(value or [])
            return [value], None
        if field.kind == "m2o":
            targets = [value] if value else []
        elif field.kind in ("o2m", "m2m"):
            targets = list(value or [])
        else:
            raise ApiError(_werkzeug_error(400, "Bad Request", f'"{first}" of "{model}" is not a relation.'))
        values: list = []
        for target_id in targets:
            target = self._record(field.target, target_id)
            if target is not None:
                found, many = self._path_values(field.target, target, rest, context)
                values.extend(found if many is None else many)
        return (values or [None]), None

    # --- read -------------------------------------------------------------------------------------------------

    def _read(self, model: str, ids: list[int], fields: list[str], context: dict) -> list[dict]:
        rows = []
        for record_id in ids:
            row = self._record(model, record_id)
            result = {"id": row["id"]}
            for name in fields:
                if name == "id":
                    continue
                if "." in name:
                    # Dotted names read through many2ones and come back as flat keys: {"party.name": "…"}.
                    result[name] = self._dotted(model, row, name, context)
                else:
                    if name not in self._schema(model):
                        raise ApiError(_werkzeug_error(400, "Bad Request", f'"{model}" has no field "{name}".'))
                    result[name] = self._value(model, row, name, context)
            rows.append(result)
        return rows

    def _dotted(self, model: str, row: dict, path: str, context: dict):
        first, _, rest = path.partition(".")
        field = self._schema(model).get(first)
        if field is None:
            raise ApiError(_werkzeug_error(400, "Bad Request", f'"{model}" has no field "{first}".'))
        if field.kind != "m2o":
            raise ApiError(_werkzeug_error(400, "Bad Request", f'"{path}": only many2one fields can be read through.'))
        target = self._record(field.target, self._value(model, row, first, context) or 0)
        if target is None:
            return None
        return (
            self._dotted(field.target, target, rest, context)
            if "." in rest
            else self._value(field.target, target, rest, context)
        )

    def _computed_fields(self, model: str) -> list[str]:
        computed = {
            "product.product": ["quantity_on_hand", "quantity_available"],
            "party.party": ["addresses", "contact_mechanisms", "email", "phone"],
            "party.address": ["full_address"],
            "sale.sale": ["lines", "shipments", "shipment_returns", "untaxed_amount", "tax_amount", "total_amount"],
            "sale.line": ["amount", "moves"],
            "stock.shipment.out": ["moves", "sales"],
            "stock.shipment.out.return": ["moves", "sales"],
        }
        return computed.get(model, []) + (["has_return"] if model == "sale.sale" else [])

    def _value(self, model: str, row: dict, name: str, context: dict):
        if name in row and name not in self._computed_fields(model) and name != "rec_name":
            return row[name]
        field = self._schema(model).get(name)
        if field is None:
            raise ApiError(_werkzeug_error(400, "Bad Request", f'"{model}" has no field "{name}".'))
        if name == "rec_name":
            if model == "product.product":
                return f"[{row.get('code') or ''}] {row.get('variant_name') or row.get('name')}"
            names = ("name", "number", "reference", "code", "tracking_number")
            return str(next((row[key] for key in names if row.get(key)), row["id"]))
        if field.kind == "o2m":
            return sorted(r["id"] for r in self._rows(field.target) if r.get(field.inverse) == row["id"])
        if model == "product.product":
            return float(self._quantities(row["id"], context)[name])
        if model == "party.party":
            kind = {"email": ("email",), "phone": ("phone", "mobile")}[name]
            mechanisms = [r for r in self._rows("party.contact_mechanism") if r["party"] == row["id"]]
            return next((r["value"] for r in sorted(mechanisms, key=lambda r: r["id"]) if r["type"] in kind), None)
        if model == "party.address":
            country = self._record("country.country", row.get("country") or 0)
            parts = [row.get("name"), row.get("street"), row.get("street_bis"), f"{row.get('zip') or ''} "]
            parts[-1] += row.get("city") or ""
            parts.append(country["name"] if country else None)
            return "\n".join(part.strip() for part in parts if part and part.strip())
        if model == "sale.line":
            if name == "amount":
                return _line_amount(row)
            return sorted(m["id"] for m in self._rows("stock.move") if m["origin"] == f"sale.line,{row['id']}")
        if model == "sale.sale":
            return self._sale_value(row, name)
        if model in ("stock.shipment.out", "stock.shipment.out.return"):
            moves = [m for m in self._rows("stock.move") if m["shipment"] == f"{model},{row['id']}"]
            if name == "moves":
                return sorted(m["id"] for m in moves)
            sales = {self._line_sale(m["origin"]) for m in moves} - {None}
            return sorted(sales)
        raise AssertionError(f"no computation for {model}.{name}")

    def _line_sale(self, origin: str | None) -> int | None:
        if not origin or not origin.startswith("sale.line,"):
            return None
        line = self._record("sale.line", origin.partition(",")[2])
        return line["sale"] if line else None

    def _sale_value(self, sale: dict, name: str):
        lines = [line for line in self._rows("sale.line") if line["sale"] == sale["id"]]
        if name == "lines":
            return sorted(line["id"] for line in lines)
        if name in ("shipments", "shipment_returns"):
            model = "stock.shipment.out" if name == "shipments" else "stock.shipment.out.return"
            origins = {f"sale.line,{line['id']}" for line in lines}
            return sorted(
                {
                    int(m["shipment"].partition(",")[2])
                    for m in self._rows("stock.move")
                    if m["origin"] in origins and (m["shipment"] or "").startswith(model + ",")
                }
            )
        if name == "has_return":
            return any(other.get("origin") == f"sale.sale,{sale['id']}" for other in self._rows("sale.sale"))
        untaxed = sum((_line_amount(line) for line in lines), Decimal("0.00"))
        tax = sum((self._line_tax(line) for line in lines), Decimal("0.00"))
        return {"untaxed_amount": untaxed, "tax_amount": tax, "total_amount": untaxed + tax}[name]

    def _line_tax(self, line: dict) -> Decimal:
        amount = _line_amount(line)
        rates = [self._record("account.tax", tax_id)["rate"] for tax_id in line.get("taxes") or []]
        return sum((money(amount * rate) for rate in rates), Decimal("0.00"))

    # --- stock ------------------------------------------------------------------------------------------------

    def _warehouses_in(self, context: dict) -> list[int]:
        """The warehouses a context's ``locations`` name (a storage zone counts for its warehouse); all of them
        when it names none."""
        locations = context.get("locations")
        if not locations:
            return self._warehouse_ids()
        found = []
        for location_id in locations:
            location = self._record("stock.location", location_id)
            if location is None:
                continue
            if location["type"] == "warehouse":
                found.append(location["id"])
            elif location.get("parent") and self._record("stock.location", location["parent"])["type"] == "warehouse":
                found.append(location["parent"])
        return found

    def _quantities(self, product_id: int, context: dict) -> dict[str, int]:
        warehouses = self._warehouses_in(context)
        stock = self.state["stock"].get(str(product_id), {})
        on_hand = sum(stock.get(str(w), 0) for w in warehouses)
        storages = {self._record("stock.location", w)["storage_location"] for w in warehouses}
        committed = sum(
            int(m["quantity"])
            for m in self._rows("stock.move")
            if m["product"] == product_id and m["state"] in OPEN_MOVE_STATES and m["from_location"] in storages
        )
        return {"quantity_on_hand": on_hand, "quantity_available": on_hand - committed}

    def _adjust_stock(self, product_id: int, warehouse_id: int, delta: int) -> None:
        by_warehouse = self.state["stock"].setdefault(str(product_id), {})
        by_warehouse[str(warehouse_id)] = by_warehouse.get(str(warehouse_id), 0) + delta

    def _announce_inventory(self, product_ids: set[int]) -> None:
        now = datetime.now(UTC).replace(tzinfo=None).isoformat()
        payload = []
        for product_id in sorted(product_ids):
            product = self._record("product.product", product_id)
            quantities = []
            for warehouse_id in self._warehouse_ids():
                figures = self._quantities(product_id, {"locations": [warehouse_id]})
                warehouse = self._record("stock.location", warehouse_id)
                quantities.append({"warehouse_id": warehouse_id, "warehouse_code": warehouse["code"], **figures})
            payload.append(
                {
                    "timestamp": now,
                    "product_code": product["code"],
                    "product_id": product_id,
                    "warehouse_quantities": quantities,
                    "listing_quantities": [],
                }
            )
        if payload:
            self._announce("product.product.inventory_level_changed", payload)

    # --- create, write, delete --------------------------------------------------------------------------------

    def _create(self, model: str, records) -> list[int]:
        if not isinstance(records, list) or not all(isinstance(values, dict) for values in records):
            raise ApiError(_werkzeug_error(400, "Bad Request", "create takes a list of objects of values."))
        return [self._create_one(model, values) for values in records]

    def _create_one(self, model: str, values: dict, parent: tuple[str, int] | None = None) -> int:
        schema = self._schema(model)
        relations = {name: value for name, value in values.items() if name in schema and schema[name].kind == "o2m"}
        plain = {name: value for name, value in values.items() if name not in relations}
        if parent:
            plain[parent[0]] = parent[1]
        coerced = self._coerce(model, plain)
        record_id = self._insert(model, {**self._defaults(model, coerced), **coerced, "id": None})
        for name, commands in relations.items():
            self._apply_o2m(model, record_id, name, commands)
        self._validate(model, self._record(model, record_id))
        return record_id

    def _defaults(self, model: str, values: dict) -> dict:
        if model == "sale.sale":
            channel = self._record("sale.channel", values.get("channel") or 0)
            return {
                "state": "draft",
                "currency": self._id_of_code(self.state["company_currency"], "currency.currency"),
                "sale_date": datetime.now(UTC).date(),
                "warehouse": (channel or {}).get("warehouse") or self._warehouse_ids()[0],
            }
        if model == "sale.line":
            return {"type": "line", "sequence": 10, "taxes": []}
        if model == "stock.move":
            return {"state": "draft"}
        return {}

    def _coerce(self, model: str, values: dict) -> dict:
        schema = self._schema(model)
        coerced = {}
        for name, value in values.items():
            field = schema.get(name)
            if field is None:
                raise ApiError(_werkzeug_error(400, "Bad Request", f'"{model}" has no field "{name}".'))
            if field.readonly:
                raise ApiError(_werkzeug_error(400, "Bad Request", f'Field "{name}" of "{model}" is read-only.'))
            coerced[name] = self._coerce_value(model, name, field, value)
        return coerced

    def _coerce_value(self, model: str, name: str, field: Field, value):
        label, model_label = field.label, MODELS[model][0]
        if value is None or field.kind in ("char", "reference", "selection") and value == "":
            return None
        if field.kind == "numeric":
            try:
                number = value if isinstance(value, Decimal) else Decimal(str(value))
            except InvalidOperation:
                raise _user_error(f'The value "{value}" for field "{label}" in "{model_label}" is not valid.') from None
            if field.digits is not None and -number.as_tuple().exponent > field.digits:
                raise _user_error(
                    f'The number of digits in the value "{value}" for field "{label}" in "{model_label}" '
                    f'exceeds the limit of "{field.digits}".'
                )
            return number
        if field.kind == "float":
            return float(value)
        if field.kind == "int":
            return int(value)
        if field.kind == "bool":
            return bool(value)
        if field.kind == "date":
            return value if isinstance(value, date) else date.fromisoformat(str(value))
        if field.kind == "datetime":
            return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        if field.kind == "m2o":
            if self._record(field.target, value) is None:
                raise _user_error(f'The value "{value}" of field "{label}" on "{model_label}" does not exist.')
            return int(value)
        if field.kind == "m2m":
            return self._m2m(field, [], value, label, model_label)
        if field.kind == "selection" and value not in field.options:
            raise _user_error(
                f'The value "{value}" for field "{label}" in "{model_label}" is not one of the allowed options.'
            )
        if field.kind == "reference":
            target, _, target_id = str(value).partition(",")
            if target not in MODELS or self._record(target, target_id) is None:
                raise _user_error(f'The value "{value}" of field "{label}" on "{model_label}" does not exist.')
        return str(value) if field.kind in ("char", "reference") else value

    def _m2m(self, field: Field, current: list[int], commands, label: str, model_label: str) -> list[int]:
        if not isinstance(commands, list) or not all(isinstance(c, list) and c for c in commands):
            raise ApiError(_werkzeug_error(400, "Bad Request", f'"{label}" takes commands such as [["add", [ids]]].'))
        ids = list(current)
        for action, *rest in commands:
            targets = [int(i) for i in (rest[0] if rest else [])]
            for target_id in targets:
                if action in ("add", "set") and self._record(field.target, target_id) is None:
                    raise _user_error(f'The value "{target_id}" of field "{label}" on "{model_label}" does not exist.')
            if action == "add":
                ids += [i for i in targets if i not in ids]
            elif action == "set":
                ids = targets
            elif action == "remove":
                ids = [i for i in ids if i not in targets]
            else:
                raise ApiError(_werkzeug_error(400, "Bad Request", f'Unknown command "{action}" for "{label}".'))
        return ids

    def _apply_o2m(self, model: str, record_id: int, name: str, commands) -> None:
        field = self._schema(model)[name]
        if not isinstance(commands, list) or not all(isinstance(c, list) and c for c in commands):
            raise ApiError(
                _werkzeug_error(400, "Bad Request", f'"{name}" takes commands such as [["create", [{{...}}]]].')
            )
        for action, *rest in commands:
            argument = rest[0] if rest else []
            if action == "create":
                for values in argument:
                    self._create_one(field.target, values, parent=(field.inverse, record_id))
            elif action == "write":
                self._write(field.target, list(argument), rest[1])
            elif action == "delete":
                self._delete(field.target, list(argument))
            elif action == "add":
                self._write(field.target, list(argument), {field.inverse: record_id})
            else:
                raise ApiError(_werkzeug_error(400, "Bad Request", f'Unknown command "{action}" for "{name}".'))

    def _validate(self, model: str, record: dict) -> None:
        """Tryton's checks on save: required fields, then the rules of each model."""
        model_label = MODELS[model][0]
        required = [name for name, field in MODELS[model][1].items() if field.required]
        if model == "sale.line" and record.get("type") == "line":
            required += ["product", "quantity", "unit_price"]
        if model == "sale.line" and record.get("type") == "shipping":
            required += ["unit_price"]
        for name in required:
            if record.get(name) is None:
                label = MODELS[model][1][name].label
                raise _user_error(f'A value is required for field "{label}" in "{model_label}".')
        if model == "sale.line":
            sale = self._record("sale.sale", record["sale"])
            if sale["state"] != "draft":
                raise _user_error(
                    f'You cannot modify line "{record["id"]}" because sale "{_sale_name(sale)}" is not in draft.'
                )

    def _write(self, model: str, ids: list[int], values: dict) -> None:
        if not isinstance(values, dict):
            raise ApiError(_werkzeug_error(400, "Bad Request", "write takes [[ids], {values}]."))
        schema = self._schema(model)
        relations = {name: value for name, value in values.items() if name in schema and schema[name].kind == "o2m"}
        plain = {name: value for name, value in values.items() if name not in relations}
        for record_id in ids:
            record = self._record(model, record_id)
            if record is None:
                raise _user_error(f'You are trying to write records "{record_id}" that don\'t exist anymore.')
            if model == "sale.sale" and record["state"] not in ("draft", "quotation") and values:
                editable = {"comment", "description", "reference"}
                if set(values) - editable:
                    raise _user_error(f'You cannot modify sale "{_sale_name(record)}" in state "{record["state"]}".')
            coerced = {}
            for name, value in plain.items():
                field = schema.get(name)
                if field is not None and field.kind == "m2m" and not field.readonly:
                    coerced[name] = self._m2m(field, record.get(name) or [], value, field.label, MODELS[model][0])
                else:
                    coerced.update(self._coerce(model, {name: value}))
            record.update(coerced)
            record["write_date"] = datetime.now(UTC)
            for name, commands in relations.items():
                self._apply_o2m(model, record_id, name, commands)
            self._validate(model, record)

    def _delete(self, model: str, ids: list[int]) -> None:
        for record_id in ids:
            record = self._record(model, record_id)
            if record is None:
                continue
            if model == "sale.sale" and record["state"] not in ("draft", "cancelled"):
                raise _user_error(f'To delete sale "{_sale_name(record)}" you must cancel it.')
            if model == "sale.line":
                sale = self._record("sale.sale", record["sale"])
                if sale and sale["state"] != "draft":
                    raise _user_error(f'You cannot delete lines of sale "{_sale_name(sale)}": it is not in draft.')
            schema = self._schema(model)
            for field in schema.values():
                if field.kind == "o2m":
                    self._delete(
                        field.target, [r["id"] for r in self._rows(field.target) if r[field.inverse] == record_id]
                    )
            del self.state["records"][model][str(record_id)]

    # --- workflow ---------------------------------------------------------------------------------------------

    def _rpc_workflow(self, model: str, method: str, arguments: list, context: dict):
        ids = arguments[0] if arguments else []
        if isinstance(ids, int):
            ids = [ids]
        records = []
        for record_id in ids:
            record = self._record(model, record_id)
            if record is None:
                raise _user_error(f'You are trying to read records "{record_id}" that don\'t exist anymore.')
            records.append(record)
        result = None
        for record in records:
            before = record["state"]
            result = getattr(self, f"_{model.replace('.', '_')}_{method}")(record)
            if record["state"] != before:
                record["write_date"] = datetime.now(UTC)
        return result if method == "assign_try" else None

    def _transition(self, record: dict, sources: tuple[str, ...], target: str) -> bool:
        # Tryton's @Workflow.transition: records not in a source state are skipped without a word.
        if record["state"] not in sources:
            return False
        record["state"] = target
        return True

    def _sale_sale_draft(self, sale: dict) -> None:
        self._transition(sale, ("quotation", "confirmed", "cancelled"), "draft")

    def _sale_sale_quote(self, sale: dict) -> None:
        if sale["state"] != "draft":
            return
        lines = [line for line in self._rows("sale.line") if line["sale"] == sale["id"]]
        if any(line["type"] == "line" for line in lines):
            for name, label in (("invoice_address", "an invoice"), ("shipment_address", "a shipment")):
                if not sale.get(name):
                    raise _user_error(f'To get a quote for sale "{_sale_name(sale)}" you must enter {label} address.')
        self._transition(sale, ("draft",), "quotation")
        if not sale.get("number"):
            self.state["sequences"]["sale.sale"] += 1
            sale["number"] = f"SO{self.state['sequences']['sale.sale']}"

    def _sale_sale_confirm(self, sale: dict) -> None:
        if self._transition(sale, ("quotation",), "confirmed") and self.state["config"]["process_on_confirm"]:
            self._sale_sale_process(sale)

    def _sale_sale_cancel(self, sale: dict) -> None:
        self._transition(sale, ("draft", "quotation"), "cancelled")

    def _sale_sale_process(self, sale: dict) -> None:
        """Confirmed → processing: a customer shipment for what is sold, a return shipment for what comes back."""
        if sale["state"] != "confirmed":
            return
        sale["state"] = "processing"
        warehouse = self._record("stock.location", sale["warehouse"])
        customer_location = next(r["id"] for r in self._rows("stock.location") if r["type"] == "customer")
        goods = [
            line
            for line in sorted(self._rows("sale.line"), key=lambda line: (line["sequence"], line["id"]))
            if line["sale"] == sale["id"] and line["type"] == "line" and line["quantity"]
        ]
        outgoing = [line for line in goods if line["quantity"] > 0]
        incoming = [line for line in goods if line["quantity"] < 0]
        for kind, lines in (("stock.shipment.out", outgoing), ("stock.shipment.out.return", incoming)):
            if not lines:
                continue
            self.state["sequences"][kind] += 1
            prefix = "CS" if kind == "stock.shipment.out" else "CR"
            values = {
                "number": f"{prefix}{self.state['sequences'][kind]}",
                "state": "waiting" if kind == "stock.shipment.out" else "draft",
                "warehouse": warehouse["id"],
                "customer": sale["party"],
            }
            if kind == "stock.shipment.out":
                values.update(delivery_address=sale.get("shipment_address"), planned_date=sale.get("sale_date"))
            shipment_id = self._insert(kind, values)
            for line in lines:
                self._insert(
                    "stock.move",
                    {
                        "product": line["product"],
                        "quantity": abs(line["quantity"]),
                        "from_location": warehouse["storage_location"] if line["quantity"] > 0 else customer_location,
                        "to_location": customer_location if line["quantity"] > 0 else warehouse["storage_location"],
                        "shipment": f"{kind},{shipment_id}",
                        "origin": f"sale.line,{line['id']}",
                        "state": "draft",
                        "unit_price": line["unit_price"],
                    },
                )
        if self.state["config"].get("shipment_per_line"):
            self._split_shipments(sale)
        self._announce_inventory({line["product"] for line in outgoing})
        self._sale_check_done(sale)

    def _sale_check_done(self, sale: dict) -> None:
        if sale["state"] != "processing":
            return
        shipments = [
            self._record(model, shipment_id)
            for model, name in (("stock.shipment.out", "shipments"), ("stock.shipment.out.return", "shipment_returns"))
            for shipment_id in self._sale_value(sale, name)
        ]
        finished = all(shipment["state"] in ("done", "cancel") for shipment in shipments)
        # Everything cancelled is an exception for a person to look at, not a finished sale.
        if finished and (not shipments or any(shipment["state"] == "done" for shipment in shipments)):
            sale["state"] = "done"
            sale["write_date"] = datetime.now(UTC)

    def _split_shipments(self, sale: dict) -> None:
        """One customer shipment per move: every move after a shipment's first goes to a new shipment."""
        for shipment_id in self._sale_value(sale, "shipments"):
            shipment = self._record("stock.shipment.out", shipment_id)
            for move in sorted(self._shipment_moves("stock.shipment.out", shipment), key=lambda m: m["id"])[1:]:
                self.state["sequences"]["stock.shipment.out"] += 1
                values = {
                    name: shipment[name]
                    for name in ("state", "warehouse", "customer", "delivery_address", "planned_date")
                }
                values["number"] = f"CS{self.state['sequences']['stock.shipment.out']}"
                move["shipment"] = f"stock.shipment.out,{self._insert('stock.shipment.out', values)}"

    def _shipment_moves(self, model: str, shipment: dict) -> list[dict]:
        return [m for m in self._rows("stock.move") if m["shipment"] == f"{model},{shipment['id']}"]

    def _stock_shipment_out_wait(self, shipment: dict) -> None:
        self._transition(shipment, ("draft",), "waiting")

    def _stock_shipment_out_draft(self, shipment: dict) -> None:
        self._transition(shipment, ("waiting", "cancel"), "draft")

    def _stock_shipment_out_assign_try(self, shipment: dict) -> bool:
        """Reserve the stock if every move can have it; answers whether it could."""
        if shipment["state"] != "waiting":
            return shipment["state"] in ("assigned", "packed", "done")
        for move in self._shipment_moves("stock.shipment.out", shipment):
            figures = self._quantities(move["product"], {"locations": [shipment["warehouse"]]})
            if figures["quantity_on_hand"] - self._assigned(move["product"], shipment["warehouse"]) < move["quantity"]:
                return False
        self._stock_shipment_out_assign(shipment)
        return True

    def _assigned(self, product_id: int, warehouse_id: int) -> int:
        storage = self._record("stock.location", warehouse_id)["storage_location"]
        return sum(
            int(m["quantity"])
            for m in self._rows("stock.move")
            if m["product"] == product_id and m["state"] == "assigned" and m["from_location"] == storage
        )

    def _stock_shipment_out_assign(self, shipment: dict) -> None:
        if self._transition(shipment, ("waiting",), "assigned"):
            for move in self._shipment_moves("stock.shipment.out", shipment):
                move["state"] = "assigned"

    def _stock_shipment_out_pack(self, shipment: dict) -> None:
        self._transition(shipment, ("assigned",), "packed")

    def _stock_shipment_out_done(self, shipment: dict, *, announce: bool = True, move_stock: bool = True) -> None:
        """Packed → done: the goods leave the warehouse; Fulfil announces the shipment and the new stock."""
        if not self._transition(shipment, ("packed",), "done"):
            return
        today = datetime.now(UTC).date()
        shipment["effective_date"] = today
        moves = self._shipment_moves("stock.shipment.out", shipment)
        for move in moves:
            move.update(state="done", effective_date=today)
            if move_stock:
                self._adjust_stock(move["product"], shipment["warehouse"], -int(move["quantity"]))
        sale_ids = self._value("stock.shipment.out", shipment, "sales", {})
        for sale_id in sale_ids:
            self._sale_check_done(self._record("sale.sale", sale_id))
        if announce:
            self._announce("stock.shipment.out.done", self._shipment_event(shipment, moves, sale_ids))
            self._announce_inventory({move["product"] for move in moves})

    def _shipment_event(self, shipment: dict, moves: list[dict], sale_ids: list[int]) -> dict:
        tracking = self._record("shipment.tracking", shipment.get("tracking_number") or 0)
        carrier = self._record("carrier", shipment.get("carrier") or 0)
        return {
            "id": shipment["id"],
            "number": shipment["number"],
            "state": shipment["state"],
            "effective_date": shipment["effective_date"],
            "sales": sale_ids,
            "order_numbers": [self._record("sale.sale", sale_id)["number"] for sale_id in sale_ids],
            "tracking_number": tracking["tracking_number"] if tracking else None,
            "carrier": carrier["name"] if carrier else None,
            "moves": [
                {
                    "id": move["id"],
                    "product": move["product"],
                    "product_code": self._record("product.product", move["product"])["code"],
                    "quantity": move["quantity"],
                    "origin": move["origin"],
                }
                for move in moves
            ],
        }

    def _stock_shipment_out_cancel(self, shipment: dict) -> None:
        if self._transition(shipment, ("draft", "waiting", "assigned", "packed"), "cancel"):
            for move in self._shipment_moves("stock.shipment.out", shipment):
                move["state"] = "cancelled"
            for sale_id in self._value("stock.shipment.out", shipment, "sales", {}):
                self._sale_check_done(self._record("sale.sale", sale_id))

    def _stock_shipment_out_return_receive(self, shipment: dict) -> None:
        self._transition(shipment, ("draft",), "received")

    def _stock_shipment_out_return_done(self, shipment: dict) -> None:
        """Received → done: inspected goods go back into the warehouse's stock."""
        if not self._transition(shipment, ("received",), "done"):
            return
        today = datetime.now(UTC).date()
        shipment["effective_date"] = today
        moves = self._shipment_moves("stock.shipment.out.return", shipment)
        for move in moves:
            move.update(state="done", effective_date=today)
            self._adjust_stock(move["product"], shipment["warehouse"], int(move["quantity"]))
        for sale_id in self._value("stock.shipment.out.return", shipment, "sales", {}):
            self._sale_check_done(self._record("sale.sale", sale_id))
        self._announce_inventory({move["product"] for move in moves})

    def _stock_shipment_out_return_cancel(self, shipment: dict) -> None:
        if self._transition(shipment, ("draft", "received"), "cancel"):
            for move in self._shipment_moves("stock.shipment.out.return", shipment):
                move["state"] = "cancelled"

    def _add_tracking(self, shipment: dict, rng) -> None:
        carrier_id = rng.choice(sorted(row["id"] for row in self._rows("carrier")))
        carrier = self._record("carrier", carrier_id)
        pattern = TRACKING_FORMATS.get(carrier["name"], "{:014d}")
        tracking = self._insert(
            "shipment.tracking",
            {"tracking_number": pattern.format(rng.randint(0, 99_999_999)), "carrier": carrier_id},
        )
        services = [row["id"] for row in self._rows("carrier.service") if row["carrier"] == carrier_id]
        shipment.update(tracking_number=tracking, carrier=carrier_id, carrier_service=services[0] if services else None)

    # --- seeding ----------------------------------------------------------------------------------------------

    def seed(self, body: dict) -> dict:
        """``{"generate": {...}}``: the demo brand's variants with stock per warehouse, and Fulfil sales for the
        web orders Centra already shows as processing or shipped (``"sales": false`` leaves them out). Explicit
        objects in API shape: ``products`` (create values plus ``warehouse_quantities``), ``sales`` (create values,
        with a ``state`` to drive them to and ``shipment_per_line`` to split their shipment), ``config``."""
        self.state["config"].update(body.get("config", {}))
        try:
            self._seed_objects(body)
        except ApiError as error:
            raise ValueError(error.response.get_data(as_text=True)) from None
        counts = {model: len(rows) for model, rows in self.state["records"].items()}
        return {
            "products": counts["product.product"],
            "sales": counts["sale.sale"],
            "shipments": counts["stock.shipment.out"],
        }

    def _seed_objects(self, body: dict) -> None:
        with self._transaction():
            if "generate" in body:
                options = dict(body["generate"])
                with_sales = options.pop("sales", True)
                world = generate(**options)
                self._seed_world(world, with_sales, random.Random(options.get("seed", 42)))
            for product in body.get("products", []):
                self._seed_product(decode(product))
            for sale in body.get("sales", []):
                self._seed_sale(decode(sale), random.Random(0))
            self._pending_webhooks = []  # seeding is history, not news

    def _seed_product(self, values: dict) -> int:
        quantities = values.pop("warehouse_quantities", None)
        on_hand = values.pop("quantity_on_hand", None)
        wanted_id = values.pop("id", None)
        existing = next((row for row in self._rows("product.product") if row["code"] == values.get("code")), None)
        if existing:
            product_id = existing["id"]
            existing.update(self._coerce("product.product", values))
        else:
            values.setdefault("name", values.get("variant_name") or values.get("code"))
            product_id = self._insert("product.product", {**self._coerce("product.product", values), "id": wanted_id})
        if quantities is not None:
            for entry in quantities:
                warehouse = entry.get("warehouse_id") or self._warehouse_by_code(entry["warehouse_code"])
                self.state["stock"].setdefault(str(product_id), {})[str(warehouse)] = int(entry["quantity_on_hand"])
        elif on_hand is not None:
            self.state["stock"].setdefault(str(product_id), {})[str(self._warehouse_ids()[0])] = int(on_hand)
        return product_id

    def _seed_sale(self, values: dict, rng) -> int:
        target = values.pop("state", "draft")
        split = bool(values.pop("shipment_per_line", False))
        if isinstance(values.get("lines"), list) and values["lines"] and isinstance(values["lines"][0], dict):
            values["lines"] = [["create", values["lines"]]]
        for line in values.get("lines", [[None, []]])[0][1]:
            if isinstance(line.get("product"), str):  # a product code, for convenience
                code = line["product"]
                line["product"] = next((r["id"] for r in self._rows("product.product") if r["code"] == code), None)
                if line["product"] is None:
                    raise ValueError(f"no product with code {code!r}")
        if isinstance(values.get("party"), dict):
            values["party"] = self._create_one("party.party", values["party"])
        party = self._record("party.party", values["party"])
        addresses = self._value("party.party", party, "addresses", {})
        if addresses:
            values.setdefault("invoice_address", addresses[0])
            values.setdefault("shipment_address", addresses[0])
        sale_id = self._create_one("sale.sale", values)
        self._drive_sale(self._record("sale.sale", sale_id), target, rng, split=split)
        return sale_id

    def _drive_sale(self, sale: dict, target: str, rng, *, split: bool = False) -> None:
        """Move a seeded sale along the workflow to ``target``; shipped history does not move today's stock.
        ``split`` gives each goods line a customer shipment of its own, as a warehouse splits a shipment to send
        what it has now and the rest later."""
        if target == "cancelled":
            self._sale_sale_cancel(sale)
            return
        steps = ["draft", "quotation", "confirmed", "processing", "done"]
        if target not in steps:
            raise ValueError(f"unknown sale state {target!r}")
        if steps.index(target) >= 1:
            self._sale_sale_quote(sale)
        if steps.index(target) >= 2:
            sale["state"] = "confirmed"
        if steps.index(target) >= 3:
            self._sale_sale_process(sale)
            if split:
                self._split_shipments(sale)
        if target == "done":
            for shipment_id in self._sale_value(sale, "shipments"):
                shipment = self._record("stock.shipment.out", shipment_id)
                self._stock_shipment_out_assign(shipment)
                self._stock_shipment_out_pack(shipment)
                self._add_tracking(shipment, rng)
                self._stock_shipment_out_done(shipment, announce=False, move_stock=False)
            for shipment_id in self._sale_value(sale, "shipment_returns"):
                shipment = self._record("stock.shipment.out.return", shipment_id)
                self._stock_shipment_out_return_receive(shipment)
                shipment.update(state="done", effective_date=datetime.now(UTC).date())
            self._sale_check_done(sale)

    def _seed_world(self, world, with_sales: bool, rng) -> None:
        main, store = (self._warehouse_by_code(w["code"]) for w in WAREHOUSES)
        for product, variant, size in world.sizes():
            self._seed_product(
                {
                    "code": size.sku,
                    "name": product.name,
                    "variant_name": f"{product.name} - {variant.name} - {size.size_number}",
                    "list_price": product.price_eur,
                    "cost_price": size.cost_price,
                    "warehouse_quantities": [
                        {"warehouse_id": main, "quantity_on_hand": size.on_hand.get(1, 0)},
                        {"warehouse_id": store, "quantity_on_hand": size.on_hand.get(2, 0)},
                    ],
                }
            )
        if not with_sales:
            return
        channel = next(row["id"] for row in self._rows("sale.channel") if row["code"] == "centra")
        states = {"PROCESSING": "processing", "SHIPPED": "done", "ARCHIVED": "done"}
        known = {row["reference"] for row in self._rows("sale.sale")}
        for order in world.orders:
            if order.status not in states or str(order.number) in known:
                continue  # seeding the same world twice gives the same sales
            customer = order.customer
            country = self._id_of_code(customer["country"])
            lines = [
                {
                    "product": line.sku,
                    "description": line.name,
                    "quantity": line.quantity,
                    # Centra's prices include VAT, so the sale carries them as they are and adds no tax.
                    "unit_price": line.unit_price - line.discount,
                }
                for line in order.lines
            ]
            lines.append(
                {"type": "shipping", "description": order.shipping_method, "quantity": 1, "unit_price": order.shipping}
            )
            party = {
                "name": f"{customer['first_name']} {customer['last_name']}",
                "addresses": [
                    [
                        "create",
                        [
                            {
                                "name": f"{customer['first_name']} {customer['last_name']}",
                                "street": customer["address1"],
                                "city": customer["city"],
                                "zip": customer["zipcode"],
                                "country": country,
                            }
                        ],
                    ]
                ],
                "contact_mechanisms": [["create", [{"type": "email", "value": customer["email"]}]]],
            }
            self._seed_sale(
                {
                    "reference": str(order.number),
                    "channel_identifier": str(order.number),
                    "channel": channel,
                    "party": party,
                    "currency": self._id_of_code(order.currency, "currency.currency"),
                    "sale_date": order.created_at.date(),
                    "lines": lines,
                    "state": states[order.status],
                },
                rng,
            )

    # --- demo mode --------------------------------------------------------------------------------------------

    def tick(self, rng) -> None:
        """Warehouse life: confirmed sales are processed, shipments picked, packed (with a carrier's tracking
        number) and shipped, returns received and put away, deliveries from suppliers arrive, stock is counted."""
        with self.lock, self._transaction():
            for sale in [row for row in self._rows("sale.sale") if row["state"] == "confirmed"][:2]:
                self._sale_sale_process(sale)
            shipments = sorted(
                (row for row in self._rows("stock.shipment.out") if row["state"] in ("waiting", "assigned", "packed")),
                key=lambda row: row["id"],
            )
            changed = 0
            for shipment in shipments:
                if changed >= 3:
                    break
                before = shipment["state"]
                if shipment["state"] == "waiting":
                    self._stock_shipment_out_assign_try(shipment)  # stays waiting while the stock is short
                elif shipment["state"] == "assigned":
                    self._stock_shipment_out_pack(shipment)
                    self._add_tracking(shipment, rng)
                else:
                    self._stock_shipment_out_done(shipment)
                if shipment["state"] != before:
                    shipment["write_date"] = datetime.now(UTC)
                    changed += 1
            returns = [row for row in self._rows("stock.shipment.out.return") if row["state"] in ("draft", "received")]
            for shipment in returns[:1]:
                if shipment["state"] == "draft":
                    self._stock_shipment_out_return_receive(shipment)
                else:
                    self._stock_shipment_out_return_done(shipment)
                shipment["write_date"] = datetime.now(UTC)
            goods = [row["id"] for row in self._rows("product.product") if row["type"] == "goods"]
            if goods and rng.random() < 0.4:
                product_id = rng.choice(goods)
                self._adjust_stock(product_id, self._warehouse_ids()[0], rng.randint(1, 12))
                self._announce_inventory({product_id})
            if goods and rng.random() < 0.15:
                product_id = rng.choice(goods)
                warehouse = self._warehouse_ids()[0]
                if self._quantities(product_id, {"locations": [warehouse]})["quantity_available"] > 0:
                    self._adjust_stock(product_id, warehouse, -1)  # a cycle count found one fewer
                    self._announce_inventory({product_id})


# --- small pieces ---------------------------------------------------------------------------------------------


def _werkzeug_error(status: int, name: str, description: str, headers: dict | None = None) -> Response:
    return json_response({"code": status, "name": name, "description": description}, status, headers)


def _user_error(message: str, description: str = "") -> ApiError:
    return ApiError(
        json_response({"type": "UserError", "message": message, "description": description, "code": None}, 400)
    )


def _sale_name(sale: dict) -> str:
    return sale.get("number") or str(sale["id"])


def _line_amount(line: dict) -> Decimal:
    if line.get("unit_price") is None or line.get("quantity") is None:
        return Decimal("0.00")
    return (Decimal(str(line["quantity"])) * line["unit_price"]).quantize(CENT, rounding=ROUND_HALF_UP)


def _is_clause(domain: list) -> bool:
    return (
        len(domain) >= 3
        and isinstance(domain[0], str)
        and isinstance(domain[1], str)
        and domain[0] not in ("AND", "OR")
    )


def _mentions(domain, name: str) -> bool:
    if _is_clause(domain):
        return str(domain[0]).partition(".")[0] == name
    return any(isinstance(part, list) and _mentions(part, name) for part in domain)


def _comparable(value):
    if isinstance(value, bool) or value is None or isinstance(value, str | date):
        return value
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value))
    return value


def _compare(value, operator: str, expected) -> bool:
    if isinstance(value, datetime) and isinstance(expected, date) and not isinstance(expected, datetime):
        value = value.date()
    if isinstance(value, datetime) and isinstance(expected, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if operator in ("in", "not in"):
        options = [_comparable(item) for item in (expected or [])]
        found = _comparable(value) in options
        return found if operator == "in" else not found
    if operator in ("like", "ilike", "not like", "not ilike"):
        if value is None:
            return operator.startswith("not")
        pattern = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in str(expected))
        flags = re.IGNORECASE if "ilike" in operator else 0
        found = re.fullmatch(pattern, str(value), flags | re.DOTALL) is not None
        return not found if operator.startswith("not") else found
    left, right = _comparable(value), _comparable(expected)
    if operator == "=":
        return left == right
    if operator == "!=":
        return left != right
    if left is None or right is None:
        return False  # SQL: a comparison with NULL is never true
    try:
        return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[operator]
    except KeyError:
        raise _user_error(f'The operator "{operator}" is not supported.') from None
    except TypeError:
        return False


def _sort_key(value):
    value = _comparable(value)
    if isinstance(value, list):
        value = tuple(value)
    if isinstance(value, datetime):
        value = value.timestamp()
    elif isinstance(value, date):
        value = value.toordinal()
    # PostgreSQL sorts NULLs last when ascending; mixed types compare by type name first.
    return (value is None, type(value).__name__ if value is not None else "", value if value is not None else 0)
