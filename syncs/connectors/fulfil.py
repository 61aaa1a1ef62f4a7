"""Fulfil REST API v2: the ERP that fulfils the brand's orders and keeps its books.

Fulfil is a Tryton fork. Its API calls model methods over HTTP: ``PUT /api/v2/model/<model>/<method>`` with the
positional arguments as a JSON list (``search_read`` takes ``[domain, offset, limit, order, fields]``), authenticated
by an ``x-api-key`` header. Amounts and dates travel as typed objects (``{"__class__": "Decimal", "decimal":
"9.99"}``), which this module encodes and decodes so that callers see only ``Decimal``, ``date`` and ``datetime``.
A call answers at most 500 records, so listings page with offset and limit to the end.

``create`` is not idempotent: a create that timed out may have happened, so it is never resent here, and flows
look a sale up by its reference (``sale_by_reference``, one call) before creating it. Workflow buttons (``quote``,
``confirm``) are safe to repeat: Fulfil skips records that are not in the state a transition starts from.
"""

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_FLOOR, Decimal

import requests

from syncs.connectors.errors import (
    ConnectorError,
    DataError,
    Exchange,
    RateLimited,
    TransientError,
    WebhookRejected,
)
from syncs.connectors.http import ConnectorSession, RateLimiter, RetryPolicy, Timeouts, parse_retry_after

SYSTEM = "fulfil"
MAX_PAGE = 500  # Fulfil's cap on records per call
SIGNATURE_HEADER = "X-Fulfil-Hmac-SHA256"
EVENT_HEADER = "X-Fulfil-Event"
WORKING_STATES = ("confirmed", "processing", "done")

PRODUCT_FIELDS = ["code", "name", "variant_name", "list_price", "cost_price", "active", "type"]
QUANTITY_FIELDS = ["quantity_on_hand", "quantity_available"]
SALE_FIELDS = [
    "number",
    "reference",
    "channel_identifier",
    "state",
    "channel",
    "party",
    "currency.code",
    "warehouse",
    "origin",
    "sale_date",
    "untaxed_amount",
    "tax_amount",
    "total_amount",
    "lines",
    "shipments",
    "shipment_returns",
]
SALE_LINE_FIELDS = [
    "sale",
    "type",
    "product",
    "product.code",
    "description",
    "quantity",
    "unit_price",
    "amount",
    "channel_identifier",
]
SHIPMENT_FIELDS = [
    "number",
    "state",
    "sales",
    "warehouse",
    "tracking_number.tracking_number",
    "carrier",
    "carrier.rec_name",
    "carrier_service.rec_name",
    "effective_date",
    "create_date",
    "write_date",
    "moves",
]
ADDRESS_FIELDS = ("name", "street", "street_bis", "city", "zip", "country", "subdivision")
MOVE_FIELDS = ["product", "product.code", "quantity", "origin", "state"]
RETURN_SHIPMENT_FIELDS = ["number", "state", "warehouse", "effective_date", "create_date", "write_date", "moves"]


# --- Fulfil's typed JSON values -------------------------------------------------------------------------------


def encode(value):
    """Python values as Fulfil reads them: Decimal, date and datetime become ``__class__`` objects (datetimes in
    naive UTC, as Tryton stores them)."""
    if isinstance(value, Decimal):
        return {"__class__": "Decimal", "decimal": str(value)}
    if isinstance(value, datetime):
        naive = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        return {"__class__": "datetime", "iso_string": naive.isoformat()}
    if isinstance(value, date):
        return {"__class__": "date", "iso_string": value.isoformat()}
    if isinstance(value, dict):
        return {key: encode(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [encode(item) for item in value]
    return value


def decode(value):
    """Fulfil's typed objects as Python values: Decimal, date, and datetime (aware, UTC). Both the current
    ``iso_string`` form and the older ``year``/``month``/``day`` form of dates are read."""
    if isinstance(value, dict):
        kind = value.get("__class__")
        if kind == "Decimal":
            return Decimal(str(value["decimal"]))
        if kind == "date":
            if value.get("iso_string"):
                return date.fromisoformat(value["iso_string"])
            return date(int(value["year"]), int(value["month"]), int(value["day"]))
        if kind == "datetime":
            moment = datetime.fromisoformat(value["iso_string"])
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
        return {key: decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decode(item) for item in value]
    return value


def _amount(value) -> Decimal | None:
    """An amount from an answer: a typed Decimal (already decoded) or a plain number or string, never a float."""
    if value is None or value == "":
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _count(value) -> int:
    """Stock figures come as floats (30.0); stock is whole units, and a fraction is never rounded up."""
    if value is None:
        return 0
    return int(_amount(value).to_integral_value(rounding=ROUND_FLOOR))


# --- What the client returns and takes ------------------------------------------------------------------------


@dataclass(frozen=True)
class Warehouse:
    id: int
    code: str
    name: str


@dataclass(frozen=True)
class Product:
    id: int
    code: str  # the SKU
    name: str
    variant_name: str
    list_price: Decimal | None
    cost_price: Decimal | None
    active: bool
    quantity_on_hand: int | None  # None unless asked for
    quantity_available: int | None
    raw: dict = field(repr=False, compare=False)


@dataclass(frozen=True)
class SaleLine:
    id: int
    type: str  # "line" (goods) or "shipping"
    product_id: int | None
    product_code: str | None
    description: str
    quantity: int  # negative on a credit
    unit_price: Decimal | None
    amount: Decimal | None
    channel_identifier: str | None = None  # the source's own id for the line (a Centra order line id)


@dataclass(frozen=True)
class Sale:
    """A ``sale.sale``. ``lines`` is filled only when asked for (``sale``, ``sale_by_reference(with_lines=True)``);
    ``line_ids`` always is."""

    id: int
    number: str | None  # given when the sale is quoted
    reference: str | None
    channel_identifier: str | None
    state: str  # draft, quotation, confirmed, processing, done, cancelled
    channel_id: int | None
    party_id: int
    currency_code: str | None
    warehouse_id: int | None
    origin_sale_id: int | None  # set on a credit: the sale it returns or refunds
    sale_date: date | None
    untaxed_amount: Decimal | None
    tax_amount: Decimal | None
    total_amount: Decimal | None
    line_ids: tuple[int, ...]
    shipment_ids: tuple[int, ...]
    return_shipment_ids: tuple[int, ...]
    lines: tuple[SaleLine, ...] = ()
    raw: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Address:
    name: str
    street: str
    city: str
    zip: str
    country_code: str  # ISO 3166-1 alpha-2
    street_bis: str = ""
    subdivision_code: str | None = None  # e.g. "US-CA"


@dataclass(frozen=True)
class Customer:
    name: str
    email: str  # how an existing party is found again
    phone: str | None = None


@dataclass(frozen=True)
class DraftLine:
    product_code: str
    quantity: int
    unit_price: Decimal  # sent exactly as given, never recalculated
    description: str = ""
    tax_ids: tuple[int, ...] = ()
    channel_identifier: str | None = None
    product_id: int | None = None  # Fulfil's id for the code, when the caller already looked it up


@dataclass(frozen=True)
class SaleDraft:
    """A sale to create. ``reference`` is the source order number; it is also the ``channel_identifier`` unless
    one is given, so ``sale_by_reference`` finds the sale again."""

    reference: str
    customer: Customer
    invoice_address: Address
    shipment_address: Address
    currency_code: str
    lines: tuple[DraftLine, ...]
    channel_id: int | None = None
    warehouse_id: int | None = None
    shipping_amount: Decimal | None = None  # a shipping line when not None
    shipping_description: str = "Shipping"
    shipping_tax_ids: tuple[int, ...] = ()
    sale_date: date | None = None
    comment: str = ""
    channel_identifier: str | None = None


@dataclass(frozen=True)
class CreditLine:
    """What a credit gives back: ``quantity`` units (a positive number; the credit line carries it negated) at
    ``unit_price`` each. ``shipping`` lines refund shipping and need no product."""

    quantity: int
    unit_price: Decimal
    product_code: str | None = None
    description: str = ""
    shipping: bool = False
    tax_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class CreditDraft:
    """A credit to create against ``original_sale_id``; ``reference`` identifies it for ``sale_by_reference``."""

    original_sale_id: int
    lines: tuple[CreditLine, ...]
    reference: str
    comment: str = ""


@dataclass(frozen=True)
class ShipmentMove:
    id: int
    product_id: int
    product_code: str | None
    quantity: int
    sale_line_id: int | None
    state: str


@dataclass(frozen=True)
class Shipment:
    id: int
    number: str | None
    state: str  # draft, waiting, assigned, packed, done, cancel
    sale_ids: tuple[int, ...]
    warehouse_id: int | None
    tracking_number: str | None
    carrier_id: int | None
    carrier: str | None
    carrier_service: str | None
    effective_date: date | None
    changed_at: datetime | None
    moves: tuple[ShipmentMove, ...]
    raw: dict = field(repr=False, compare=False)


@dataclass(frozen=True)
class InventoryLevel:
    product_id: int
    product_code: str
    warehouse_id: int
    warehouse_code: str | None
    quantity_on_hand: int
    quantity_available: int


class FulfilClient:
    system = SYSTEM

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        rate_limit: tuple[int, float] = (10, 1.0),
        timeouts: Timeouts = Timeouts(),
        retry: RetryPolicy = RetryPolicy(),
        page_size: int = MAX_PAGE,
        sleep=time.sleep,
    ) -> None:
        """``base_url`` ends in ``/api/v2`` (``https://<subdomain>.fulfil.io/api/v2``)."""
        self.page_size = min(page_size, MAX_PAGE)
        self.session = ConnectorSession(
            system=SYSTEM,
            base_url=base_url,
            headers={"x-api-key": api_key},
            secrets=[api_key],
            timeouts=timeouts,
            retry=retry,
            rate_limiter=RateLimiter([rate_limit]),
            sleep=sleep,
        )
        self._ids_by_code: dict[tuple[str, str], int] = {}

    # --- requests ---------------------------------------------------------------------------------------------

    def _classify(self, operation: str):
        def classify(response: requests.Response, exchange: Exchange | None) -> ConnectorError | None:
            context = {"system": SYSTEM, "operation": operation, "exchange": exchange}
            if response.status_code == 429:
                # Retry-After when Fulfil sends it; else the window's end from X-RateLimit-Reset (epoch seconds).
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if retry_after is None:
                    retry_after = parse_retry_after(response.headers.get("X-RateLimit-Reset"))
                return RateLimited(f"rate limited (429): {_problems(response)[0]}", retry_after=retry_after, **context)
            if response.status_code == 400:
                problems = _problems(response)
                return DataError(f"refused: {problems[0]}", details=problems, **context)
            return None

        return classify

    def _rpc(self, model: str, method: str, arguments: list, *, context: dict | None = None, idempotent: bool = True):
        """Call ``method`` of ``model`` with positional ``arguments``; the decoded answer."""
        operation = f"{model}.{method}"
        response = self.session.request(
            "PUT",
            f"model/{model}/{method}",
            operation=operation,
            params={"context": json.dumps(encode(context))} if context else None,
            json_body=encode(arguments),
            idempotent=idempotent,
            classify=self._classify(operation),
        )
        return self._json(response, operation)

    def _json(self, response: requests.Response, operation: str):
        # Like http.response_json, but numbers with a fraction are read as Decimal: no amount passes through float.
        if not response.content:
            return None
        try:
            return decode(json.loads(response.content, parse_float=Decimal))
        except (ValueError, KeyError, TypeError):
            raise TransientError(
                f"the answer was not JSON ({response.headers.get('Content-Type', 'no content type')})",
                system=SYSTEM,
                operation=operation,
                exchange=self.session.exchange_for(response),
            ) from None

    def _shape_error(self, operation: str, what: str) -> TransientError:
        return TransientError(f"an answer in an unexpected shape: {what}", system=SYSTEM, operation=operation)

    # --- generic model methods --------------------------------------------------------------------------------

    def _pages(
        self, model: str, domain: list, fields: list[str], order: list | None, page_size: int | None, context
    ) -> Iterator[list[dict]]:
        size = max(1, min(page_size or self.page_size, MAX_PAGE))
        # Ordered by id last, so that offset paging never skips or repeats a record when others share a value.
        order = [list(item) for item in (order or [])]
        if not any(item[0] == "id" for item in order):
            order.append(["id", "ASC"])
        offset = 0
        while True:
            rows = self._rpc(model, "search_read", [domain, offset, size, order, fields], context=context)
            if not isinstance(rows, list):
                raise self._shape_error(f"{model}.search_read", "not a list of records")
            if rows:
                yield rows
            if len(rows) < size:
                return
            offset += size

    def search_read(
        self,
        model: str,
        domain: list,
        fields: list[str],
        order: list | None = None,
        *,
        page_size: int | None = None,
        context: dict | None = None,
    ) -> Iterator[dict]:
        """Every record of ``model`` matching the Tryton ``domain``, with ``fields`` (dotted names read through
        many2ones and come back as flat keys) and ``id``; page after page to the end."""
        for rows in self._pages(model, domain, fields, order, page_size, context):
            yield from rows

    def search_count(self, model: str, domain: list) -> int:
        count = self._rpc(model, "search_count", [domain])
        if not isinstance(count, int):
            raise self._shape_error(f"{model}.search_count", "not a number")
        return count

    def read(self, model: str, ids: Iterable[int], fields: list[str], *, context: dict | None = None) -> list[dict]:
        """The records with ``ids``, in 500s. Raises DataError if one does not exist."""
        ids, rows = list(ids), []
        for start in range(0, len(ids), MAX_PAGE):
            rows += self._rpc(model, "read", [ids[start : start + MAX_PAGE], fields], context=context)
        return rows

    def get(self, model: str, record_id: int, fields: list[str], *, context: dict | None = None) -> dict | None:
        """One record, or None when it does not exist (one call)."""
        rows = self._rpc(model, "search_read", [[["id", "=", record_id]], 0, 1, None, fields], context=context)
        return rows[0] if rows else None

    def create(self, model: str, records: list[dict]) -> list[int]:
        """Create ``records`` (values; one2many fields as ``[["create", [...]]]``); their ids, in order. Not
        retried once it may have reached Fulfil: look the record up before trying again."""
        ids = self._rpc(model, "create", [records], idempotent=False)
        if not isinstance(ids, list) or len(ids) != len(records) or not all(isinstance(i, int) for i in ids):
            raise self._shape_error(f"{model}.create", "not a list of ids")
        return ids

    def write(self, model: str, ids: list[int], values: dict, *, idempotent: bool = True) -> None:
        """Set ``values`` on the records. Writing the same values twice is harmless; pass ``idempotent=False``
        when ``values`` create one2many records."""
        self._rpc(model, "write", [list(ids), values], idempotent=idempotent)

    def call(self, model: str, method: str, ids_or_args: list[int] | tuple, *, idempotent: bool = False):
        """Call any model method. A list of ids is sent as the records to act on (``[[ids]]``, as workflow
        buttons take them); a tuple is sent as the positional arguments as they are. Returns the decoded answer."""
        arguments = list(ids_or_args) if isinstance(ids_or_args, tuple) else [list(ids_or_args)]
        return self._rpc(model, method, arguments, idempotent=idempotent)

    def _id_by_code(self, model: str, code: str, operation: str) -> int:
        """The id of a currency, country or subdivision by its code, remembered: these never change."""
        key = (model, code)
        if key not in self._ids_by_code:
            row = next(iter(self._rpc(model, "search_read", [[["code", "=", code]], 0, 1, None, ["code"]])), None)
            if row is None:
                raise DataError(f"Fulfil has no {model} with code {code!r}", system=SYSTEM, operation=operation)
            self._ids_by_code[key] = row["id"]
        return self._ids_by_code[key]

    # --- products and stock -----------------------------------------------------------------------------------

    def warehouses(self) -> list[Warehouse]:
        rows = self.search_read("stock.location", [["type", "=", "warehouse"]], ["code", "name"])
        return [Warehouse(row["id"], row.get("code") or "", row.get("name") or "") for row in rows]

    def products_by_code(
        self, codes: Iterable[str], *, warehouse_ids: list[int] | None = None, with_stock: bool = True
    ) -> dict[str, Product]:
        """The variants with these codes (SKUs), by code; unknown codes are simply absent. Stock figures are
        summed over ``warehouse_ids`` (every warehouse when None). One call per 500 codes when all of them exist."""
        codes = sorted(set(codes))
        found: dict[str, Product] = {}
        fields = PRODUCT_FIELDS + (QUANTITY_FIELDS if with_stock else [])
        context = {"locations": list(warehouse_ids)} if warehouse_ids else None
        for start in range(0, len(codes), MAX_PAGE):
            chunk = codes[start : start + MAX_PAGE]
            missing = set(chunk)
            for rows in self._pages("product.product", [["code", "in", chunk]], fields, None, None, context):
                for row in rows:
                    found[row["code"]] = _product(row)
                    missing.discard(row["code"])
                if not missing:
                    break  # a full page that holds every code asked for: there is no next page to ask for
        return found

    def stock_by_warehouse(self, codes: Iterable[str], warehouse_ids: list[int]) -> dict[int, dict[str, Product]]:
        """For each warehouse, the variants with these codes and their stock there (one listing per warehouse)."""
        codes = list(codes)
        return {warehouse: self.products_by_code(codes, warehouse_ids=[warehouse]) for warehouse in warehouse_ids}

    def products(self, *, warehouse_ids: list[int] | None = None, with_stock: bool = True) -> Iterator[Product]:
        """Every active goods variant, with stock summed over ``warehouse_ids`` (every warehouse when None)."""
        fields = PRODUCT_FIELDS + (QUANTITY_FIELDS if with_stock else [])
        context = {"locations": list(warehouse_ids)} if warehouse_ids else None
        for row in self.search_read("product.product", [["type", "=", "goods"]], fields, context=context):
            yield _product(row)

    # --- sales ------------------------------------------------------------------------------------------------

    def sale_by_reference(
        self, reference: str, *, channel_id: int | None = None, with_lines: bool = False
    ) -> Sale | None:
        """The sale whose reference or channel identifier is ``reference`` (one call; two with lines), or None.
        A live sale is preferred to a cancelled one, a newer to an older."""
        domain: list = ["OR", [["reference", "=", reference]], [["channel_identifier", "=", reference]]]
        if channel_id is not None:
            domain = [domain, ["channel", "=", channel_id]]
        rows = self._rpc("sale.sale", "search_read", [domain, 0, 20, [["id", "DESC"]], SALE_FIELDS])
        sale = preferred_sale([_sale(row, "sale.sale.search_read") for row in rows])
        return self._with_lines(sale) if with_lines and sale is not None else sale

    def sales_matching(self, references: Iterable[str], *, chunk: int = MAX_PAGE // 2) -> dict[str, list[Sale]]:
        """``sale_by_reference`` for many references, one call a ``chunk``: {reference: every sale whose reference
        or channel identifier it is, newest first}, cancelled ones included; ``preferred_sale`` picks as
        ``sale_by_reference`` does. References with no sale are absent."""
        references = list(dict.fromkeys(references))
        found: dict[str, list[Sale]] = {}
        for begin in range(0, len(references), chunk):
            part = references[begin : begin + chunk]
            domain = ["OR", [["reference", "in", part]], [["channel_identifier", "in", part]]]
            for row in self.search_read("sale.sale", domain, SALE_FIELDS, [["id", "DESC"]]):
                sale = _sale(row, "sale.sale.search_read")
                for reference in {sale.reference, sale.channel_identifier} & set(part):
                    found.setdefault(reference, []).append(sale)
        return found

    def sales_by_reference(self, references: Iterable[str], *, chunk: int = 500) -> dict[str, Sale]:
        """The live (not cancelled) sales whose reference is one of ``references``: {reference: sale}, one call a
        ``chunk`` of references. A reference with several live sales gives the newest."""
        references = list(dict.fromkeys(references))
        found: dict[str, Sale] = {}
        for begin in range(0, len(references), chunk):
            part = references[begin : begin + chunk]
            domain = [["reference", "in", part], ["state", "!=", "cancelled"]]
            rows = self._rpc("sale.sale", "search_read", [domain, 0, None, [["id", "ASC"]], SALE_FIELDS])
            for row in rows:
                sale = _sale(row, "sale.sale.search_read")
                found[sale.reference] = sale
        return found

    def sale(self, sale_id: int, *, with_lines: bool = True) -> Sale | None:
        """The sale, with its lines unless ``with_lines`` is False (one call instead of two), or None."""
        row = self.get("sale.sale", sale_id, SALE_FIELDS)
        if not row:
            return None
        sale = _sale(row, "sale.sale.search_read")
        return self._with_lines(sale) if with_lines else sale

    def sales(self, sale_ids: Iterable[int]) -> dict[int, Sale]:
        """The sales with these ids, without their lines, by id (one call per 500); ids Fulfil does not have are
        absent."""
        ids = sorted(set(sale_ids))
        found: dict[int, Sale] = {}
        for start in range(0, len(ids), MAX_PAGE):
            for row in self.search_read("sale.sale", [["id", "in", ids[start : start + MAX_PAGE]]], SALE_FIELDS):
                found[row["id"]] = _sale(row, "sale.sale.search_read")
        return found

    def _with_lines(self, sale: Sale) -> Sale:
        rows = self.search_read("sale.line", [["sale", "=", sale.id]], SALE_LINE_FIELDS)
        lines = tuple(_sale_line(row) for row in rows)
        return Sale(**{**{name: getattr(sale, name) for name in sale.__dataclass_fields__}, "lines": lines})

    def sale_lines(self, line_ids: Iterable[int]) -> dict[int, SaleLine]:
        """The sale lines with these ids, by id (a stock move's ``sale_line_id`` is its origin sale line); ids
        Fulfil does not have are absent."""
        ids = sorted(set(line_ids))
        found: dict[int, SaleLine] = {}
        for start in range(0, len(ids), MAX_PAGE):
            domain = [["id", "in", ids[start : start + MAX_PAGE]]]
            for row in self.search_read("sale.line", domain, SALE_LINE_FIELDS):
                found[row["id"]] = _sale_line(row)
        return found

    def create_sale(self, draft: SaleDraft) -> int:
        """Create the sale in draft: the customer's party is found by e-mail (or created with its addresses), the
        addresses found among the party's (or created), lines carry the exact unit prices given, plus a shipping
        line when the draft has a shipping amount. Products are looked up by code unless every line carries its
        ``product_id``. Returns the new sale's id. Not retried once sent: call ``sale_by_reference`` before trying
        again. Raises DataError naming unknown product codes."""
        return self.create_sales([draft])[0]

    def create_sales(self, drafts: list[SaleDraft]) -> list[int]:
        """``create_sale`` for many drafts: the customers' parties found together (one call) and the new ones
        created together (one call), their addresses likewise, then every sale in one create. Returns the new
        sales' ids in the drafts' order. Fulfil takes or refuses a create whole: a DataError names the problem and
        leaves no sale behind (parties and addresses made for it stay, and are found by e-mail next time)."""
        operation = "sale.sale.create"
        for draft in drafts:
            if not draft.lines:
                raise DataError("a sale needs at least one line", system=SYSTEM, operation=operation)
            _check_amounts([line.unit_price for line in draft.lines] + [draft.shipping_amount], operation)
        products = self._products_of([line for draft in drafts for line in draft.lines], operation)
        records = []
        for draft, (party, invoice_address, shipment_address) in zip(
            drafts, self._parties_and_addresses(drafts), strict=True
        ):
            values = {
                "party": party,
                "invoice_address": invoice_address,
                "shipment_address": shipment_address,
                "currency": self._id_by_code("currency.currency", draft.currency_code, operation),
                "reference": draft.reference,
                "channel_identifier": draft.channel_identifier or draft.reference,
                "lines": [["create", _draft_line_values(draft, products, operation)]],
            }
            optional = {
                "channel": draft.channel_id,
                "warehouse": draft.warehouse_id,
                "sale_date": draft.sale_date,
                "comment": draft.comment or None,
            }
            values.update({name: value for name, value in optional.items() if value is not None})
            records.append(values)
        return self.create("sale.sale", records)

    def replace_sale_lines(self, sale_id: int, draft: SaleDraft) -> str:
        """Give the sale exactly the lines (and shipping line) of ``draft``, as when the order changed before the
        warehouse started on it: a quotation or confirmed sale goes back to draft, its lines are replaced, and it
        is quoted and confirmed again to where it was. Returns its state. Raises DataError when the sale is
        processing or done (its shipments must be changed in Fulfil) or cancelled. Not retried once sent: read
        the sale before trying again."""
        operation = "sale.sale.write"
        if not draft.lines:
            raise DataError("a sale needs at least one line", system=SYSTEM, operation=operation)
        _check_amounts([line.unit_price for line in draft.lines] + [draft.shipping_amount], operation)
        row = self.get("sale.sale", sale_id, ["state", "number", "lines"])
        if row is None:
            raise DataError(f"there is no sale {sale_id}", system=SYSTEM, operation=operation)
        state = row["state"]
        if state not in ("draft", "quotation", "confirmed"):
            raise DataError(
                f"sale {row.get('number') or sale_id} is {state}: its lines can no longer change",
                system=SYSTEM,
                operation=operation,
            )
        products = self._products_of(draft.lines, operation)
        lines = _draft_line_values(draft, products, operation)
        if state != "draft":
            self.call("sale.sale", "draft", [sale_id], idempotent=True)
        commands: list = [["create", lines]]
        if row.get("lines"):
            commands.insert(0, ["delete", list(row["lines"])])
        self.write("sale.sale", [sale_id], {"lines": commands}, idempotent=False)
        if state == "quotation":
            self.call("sale.sale", "quote", [sale_id], idempotent=True)
            return self._expect_state(sale_id, ("quotation",), "quote")
        if state == "confirmed":
            return self.confirm_sale(sale_id)
        return state

    def delete_sale(self, sale_id: int) -> None:
        """Delete a sale still in draft (or cancelled), as if it had never been made. Safe to repeat."""
        self.call("sale.sale", "delete", [sale_id], idempotent=True)

    def confirm_sale(self, sale_id: int) -> str:
        """Quote and confirm the sale (Fulfil then processes it into shipments). Safe to repeat. Returns its
        state; raises DataError when Fulfil refused or left it unconfirmed."""
        return self.confirmed_sale(sale_id).state

    def confirmed_sale(self, sale_id: int) -> Sale:
        """``confirm_sale``, answering the sale as it stands after (its number is given when it is quoted)."""
        sale = self.confirm_sales([sale_id]).get(sale_id)
        if sale is None:
            raise DataError(f"there is no sale {sale_id}", system=SYSTEM, operation="sale.sale.confirm")
        if sale.state not in WORKING_STATES:
            raise DataError(
                f"sale {sale.number or sale_id} is {sale.state} after confirm",
                system=SYSTEM,
                operation="sale.sale.confirm",
            )
        return sale

    def confirm_sales(self, sale_ids: list[int]) -> dict[int, Sale]:
        """Quote and confirm many sales (or credits), each button one call for all of them (as Fulfil's buttons take
        a list of records), then read them: {id: sale} as they stand after, for the caller to check each state; a
        sale Fulfil no longer has is absent. Safe to repeat. Fulfil runs a button over its records in one
        transaction: when it refuses one sale (DataError), none moved, and ``confirm_sale`` one by one tells which."""
        ids = list(dict.fromkeys(sale_ids))
        for start in range(0, len(ids), MAX_PAGE):
            part = ids[start : start + MAX_PAGE]
            self.call("sale.sale", "quote", part, idempotent=True)
            self.call("sale.sale", "confirm", part, idempotent=True)
        return self.sales(ids)

    def cancel_sale(self, sale_id: int) -> None:
        """Cancel the sale. A confirmed sale is put back to draft first, as Fulfil requires; a sale already
        processing cannot be cancelled here (its shipments must be cancelled in Fulfil): DataError."""
        row = self.get("sale.sale", sale_id, ["state"])
        if row is None:
            raise DataError(f"there is no sale {sale_id}", system=SYSTEM, operation="sale.sale.cancel")
        if row["state"] == "cancelled":
            return
        if row["state"] == "confirmed":
            self.call("sale.sale", "draft", [sale_id], idempotent=True)
        self.call("sale.sale", "cancel", [sale_id], idempotent=True)
        self._expect_state(sale_id, ("cancelled",), "cancel")

    def _expect_state(self, sale_id: int, states: tuple[str, ...], action: str) -> str:
        row = self.get("sale.sale", sale_id, ["state", "number"])
        operation = f"sale.sale.{action}"
        if row is None:
            raise DataError(f"there is no sale {sale_id}", system=SYSTEM, operation=operation)
        if row["state"] not in states:
            raise DataError(
                f"sale {row.get('number') or sale_id} is {row['state']} after {action}",
                system=SYSTEM,
                operation=operation,
            )
        return row["state"]

    def create_credit(
        self, original_sale_id: int, lines: list[CreditLine], *, reference: str, comment: str = ""
    ) -> int:
        """Create a credit (return) sale against the original, in draft: same party, addresses, currency, channel
        and warehouse, ``origin`` the original, every line negative with the exact unit price given. Goods
        lines make a return shipment once confirmed; stock comes back when the warehouse marks it done.
        ``reference`` identifies the credit for ``sale_by_reference``. Not retried once sent."""
        draft = CreditDraft(original_sale_id, tuple(lines), reference, comment)
        return self.create_credits([draft])[0]

    def create_credits(self, drafts: list[CreditDraft]) -> list[int]:
        """``create_credit`` for many credits in one create (the originals read in one call, the products looked up
        in one): their ids, in order. All or nothing, as Fulfil's create is: a refusal of one creates none. Not
        retried once sent: look the credits up by reference before trying again. Raises DataError."""
        operation = "sale.sale.create"
        for draft in drafts:
            if not draft.lines:
                raise DataError("a credit needs at least one line", system=SYSTEM, operation=operation)
            if any(line.quantity <= 0 for line in draft.lines):
                raise DataError("credit quantities are given as positive numbers", system=SYSTEM, operation=operation)
            _check_amounts([line.unit_price for line in draft.lines], operation)
        fields = ["party", "invoice_address", "shipment_address", "currency", "channel", "warehouse", "state"]
        wanted = sorted({draft.original_sale_id for draft in drafts})
        originals = (
            {row["id"]: row for row in self.search_read("sale.sale", [["id", "in", wanted]], fields)} if wanted else {}
        )
        for draft in drafts:
            if draft.original_sale_id not in originals:
                raise DataError(
                    f"there is no sale {draft.original_sale_id} to credit", system=SYSTEM, operation=operation
                )
        codes = [line.product_code for draft in drafts for line in draft.lines if not line.shipping]
        products = self._product_ids(codes, operation) if codes else {}
        records = [_credit_values(draft, originals[draft.original_sale_id], products) for draft in drafts]
        return self.create("sale.sale", records) if records else []

    def _product_ids(self, codes: list[str | None], operation: str) -> dict[str, int]:
        if any(not code for code in codes):
            raise DataError("a goods line needs a product code", system=SYSTEM, operation=operation)
        products = self.products_by_code(codes, with_stock=False)
        missing = sorted(set(codes) - set(products))
        if missing:
            raise DataError(
                f"Fulfil has no product with code {', '.join(missing)}",
                details=[f"unknown product code {code}" for code in missing],
                system=SYSTEM,
                operation=operation,
            )
        return {code: product.id for code, product in products.items()}

    def _products_of(self, lines: Iterable[DraftLine], operation: str) -> dict[str, int]:
        """Product ids by code: the ones the lines carry, or — when one does not — looked up (one call)."""
        lines = list(lines)
        if all(line.product_code and line.product_id is not None for line in lines):
            return {line.product_code: line.product_id for line in lines}
        return self._product_ids([line.product_code for line in lines], operation)

    def _parties_and_addresses(self, drafts: list[SaleDraft]) -> list[tuple[int, int, int]]:
        """For each draft, the customer's party and the ids of its invoice and shipment addresses among the
        party's. Known parties are found by e-mail in one call; the new customers' parties are created in one
        call, each with its contact mechanisms and first addresses; the parties' addresses are then searched in
        one call and the missing ones created together. A customer met twice in ``drafts`` is one party."""
        wanted: list[list[dict]] = []
        for draft in drafts:
            addresses = [draft.invoice_address]
            if draft.shipment_address != draft.invoice_address:
                addresses.append(draft.shipment_address)
            # Read before anything is created: an unknown country leaves no party behind.
            wanted.append([self._address_values(address, "party.address.create") for address in addresses])
        parties = self._parties_by_email(draft.customer.email for draft in drafts)
        new = {}
        for draft, values in zip(drafts, wanted, strict=True):
            customer = draft.customer
            if customer.email in parties or customer.email in new:
                continue
            mechanisms = [{"type": "email", "value": customer.email}]
            if customer.phone:
                mechanisms.append({"type": "phone", "value": customer.phone})
            # Not idempotent either; a duplicate party after a timed-out create is harmless and found by e-mail
            # later. The create answers the parties' ids only: their new addresses are read back below.
            new[customer.email] = {
                "name": customer.name,
                "contact_mechanisms": [["create", mechanisms]],
                "addresses": [["create", values]],
            }
        if new:
            parties.update(zip(new, self.create("party.party", list(new.values())), strict=True))
        known: dict[int, list[dict]] = {}
        for row in self.search_read(
            "party.address", [["party", "in", sorted(set(parties.values()))]], ["party", *ADDRESS_FIELDS]
        ):
            known.setdefault(row["party"], []).append(row)
        missing: dict[tuple, dict] = {}  # one new address per party, however many drafts want it
        for draft, values in zip(drafts, wanted, strict=True):
            party = parties[draft.customer.email]
            for address in values:
                if _address_id(known.get(party, []), address) is None:
                    missing.setdefault((party, _address_key(address)), {**address, "party": party})
        if missing:
            created = self.create("party.address", list(missing.values()))
            for address, address_id in zip(missing.values(), created, strict=True):
                known.setdefault(address["party"], []).append({**address, "id": address_id})
        found = []
        for draft, values in zip(drafts, wanted, strict=True):
            party = parties[draft.customer.email]
            ids = [_address_id(known[party], address) for address in values]
            found.append((party, ids[0], ids[-1]))
        return found

    def _parties_by_email(self, emails: Iterable[str]) -> dict[str, int]:
        """{e-mail: the first party with that e-mail address}, one call per 500 addresses; unknown ones absent."""
        emails = sorted(set(emails))
        found: dict[str, int] = {}
        for start in range(0, len(emails), MAX_PAGE):
            domain = [["type", "=", "email"], ["value", "in", emails[start : start + MAX_PAGE]]]
            for row in self.search_read("party.contact_mechanism", domain, ["party", "value"], [["id", "ASC"]]):
                found.setdefault(row["value"], row["party"])
        return found

    def _address_values(self, address: Address, operation: str) -> dict:
        """An address as ``party.address`` values, without the empty ones."""
        country = self._id_by_code("country.country", address.country_code, operation)
        subdivision = (
            self._id_by_code("country.subdivision", address.subdivision_code, operation)
            if address.subdivision_code
            else None
        )
        values = {
            "name": address.name,
            "street": address.street,
            "street_bis": address.street_bis or None,
            "city": address.city,
            "zip": address.zip,
            "country": country,
            "subdivision": subdivision,
        }
        return {name: value for name, value in values.items() if value is not None}

    # --- shipments --------------------------------------------------------------------------------------------

    def shipments_since(self, since: datetime, *, states: tuple[str, ...] = ("done",)) -> Iterator[Shipment]:
        """Customer shipments in ``states`` created or changed at or after ``since``, oldest first, with their
        moves (one extra call per page)."""
        domain = [
            ["state", "in", list(states)],
            ["OR", [["write_date", ">=", since]], [["create_date", ">=", since]]],
        ]
        for rows in self._pages("stock.shipment.out", domain, SHIPMENT_FIELDS, None, None, None):
            yield from self._shipments(rows)

    def shipments_for_sale(self, sale_id: int) -> list[Shipment]:
        """The sale's customer shipments, in any state, with their moves."""
        row = self.get("sale.sale", sale_id, ["shipments"])
        if not row or not row.get("shipments"):
            return []
        domain = [["id", "in", list(row["shipments"])]]
        rows = [
            row for page in self._pages("stock.shipment.out", domain, SHIPMENT_FIELDS, None, None, None) for row in page
        ]
        return self._shipments(rows)

    def shipment(self, shipment_id: int) -> Shipment | None:
        """One customer shipment with its moves, or None."""
        domain = [["id", "=", shipment_id]]
        rows = [
            row for page in self._pages("stock.shipment.out", domain, SHIPMENT_FIELDS, None, None, None) for row in page
        ]
        return self._shipments(rows)[0] if rows else None

    def return_shipments(self, shipment_ids: Iterable[int]) -> list[Shipment]:
        """Customer return shipments (``stock.shipment.out.return``, made when a credit is confirmed) with their
        moves. The warehouse marks one ``received`` when the parcel arrives and ``done`` once the goods are
        inspected and put back in stock; ``cancel`` when nothing comes back. Carrier fields are None."""
        ids = list(shipment_ids)
        if not ids:
            return []
        domain = [["id", "in", ids]]
        model = "stock.shipment.out.return"
        rows = [row for page in self._pages(model, domain, RETURN_SHIPMENT_FIELDS, None, None, None) for row in page]
        return self._shipments(rows)

    def _shipments(self, rows: list[dict]) -> list[Shipment]:
        move_ids = [move_id for row in rows for move_id in row.get("moves") or []]
        moves = {move["id"]: move for move in self.read("stock.move", move_ids, MOVE_FIELDS)} if move_ids else {}
        try:
            return [
                Shipment(
                    id=row["id"],
                    number=row.get("number"),
                    state=row["state"],
                    sale_ids=tuple(row.get("sales") or ()),
                    warehouse_id=row.get("warehouse"),
                    tracking_number=row.get("tracking_number.tracking_number"),
                    carrier_id=row.get("carrier"),
                    carrier=row.get("carrier.rec_name"),
                    carrier_service=row.get("carrier_service.rec_name"),
                    effective_date=row.get("effective_date"),
                    changed_at=row.get("write_date") or row.get("create_date"),
                    moves=tuple(_move(moves[move_id]) for move_id in row.get("moves") or [] if move_id in moves),
                    raw=row,
                )
                for row in rows
            ]
        except (KeyError, TypeError, ValueError) as error:
            raise self._shape_error("stock.shipment.out.search_read", f"{type(error).__name__}: {error}") from None


# --- Webhooks -------------------------------------------------------------------------------------------------


def verify_webhook(*, secret: str, body: bytes, headers) -> dict:
    """Check a webhook from Fulfil and return ``{"event": <X-Fulfil-Event or None>, "payload": <decoded JSON>}``.

    Fulfil signs the raw body with HMAC-SHA256 keyed by the webhook secret *base64-decoded* (the secret is shown
    base64-encoded in Fulfil) and sends the base64 digest in ``X-Fulfil-Hmac-SHA256``. The scheme has no
    timestamp, so replays cannot be told apart here: handlers must be idempotent. Raises WebhookRejected for a
    missing or wrong signature or a body that is not JSON; ValueError when ``secret`` is not base64 (a
    configuration error, not the sender's).
    """
    signature = _header(headers, SIGNATURE_HEADER)
    if not signature:
        raise WebhookRejected(f"no {SIGNATURE_HEADER} header")
    try:
        key = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the Fulfil webhook secret is not base64; copy it as Fulfil shows it") from None
    expected = base64.b64encode(hmac.new(key, body, hashlib.sha256).digest())
    if not hmac.compare_digest(expected, signature.strip().encode("utf-8", errors="replace")):
        raise WebhookRejected("the signature does not match the body")
    try:
        payload = decode(json.loads(body, parse_float=Decimal))
    except (ValueError, KeyError, TypeError, ArithmeticError):  # ArithmeticError: a typed Decimal that is no number
        raise WebhookRejected("the body is not JSON") from None
    return {"event": _header(headers, EVENT_HEADER), "payload": payload}


def inventory_levels(payload: list[dict]) -> list[InventoryLevel]:
    """The per-warehouse figures of a ``product.product.inventory_level_changed`` webhook payload."""
    return [
        InventoryLevel(
            product_id=int(entry["product_id"]),
            product_code=entry["product_code"],
            warehouse_id=int(level["warehouse_id"]),
            warehouse_code=level.get("warehouse_code"),
            quantity_on_hand=_count(level.get("quantity_on_hand")),
            quantity_available=_count(level.get("quantity_available")),
        )
        for entry in payload
        for level in entry.get("warehouse_quantities") or []
    ]


# --- Reading answers ------------------------------------------------------------------------------------------


def _header(headers, name: str) -> str | None:
    if hasattr(headers, "get") and headers.get(name) is not None:
        return headers.get(name)
    lowered = name.lower()
    return next((value for key, value in dict(headers).items() if key.lower() == lowered), None)


def _problems(response: requests.Response) -> list[str]:
    """Fulfil's messages: a UserError's message (and description), Werkzeug's description, or the text."""
    try:
        body = response.json()
    except ValueError:
        return [response.text.strip()[:300] or f"HTTP {response.status_code}"]
    if not isinstance(body, dict):
        return [str(body)[:300]]
    message = body.get("message") or body.get("description") or body.get("error_description") or body.get("error")
    if body.get("type") == "UserError" and body.get("description"):
        return [f"{message}: {body['description']}"]
    return [str(message or body)[:300]]


def _draft_line_values(draft: SaleDraft, products: dict[str, int], operation: str) -> list[dict]:
    """A draft's goods lines and shipping line as ``sale.line`` create values, unit prices exactly as given."""
    lines: list[dict] = []
    for line in draft.lines:
        if line.quantity <= 0:
            raise DataError(
                f"{line.product_code}: a sale line's quantity must be positive", system=SYSTEM, operation=operation
            )
        values = {
            "type": "line",
            "product": products[line.product_code],
            "quantity": line.quantity,
            "unit_price": line.unit_price,
            "description": line.description or line.product_code,
        }
        if line.tax_ids:
            values["taxes"] = [["add", list(line.tax_ids)]]
        if line.channel_identifier:
            values["channel_identifier"] = line.channel_identifier
        lines.append(values)
    if draft.shipping_amount is not None:
        shipping = {
            "type": "shipping",
            "description": draft.shipping_description,
            "quantity": 1,
            "unit_price": draft.shipping_amount,
        }
        if draft.shipping_tax_ids:
            shipping["taxes"] = [["add", list(draft.shipping_tax_ids)]]
        lines.append(shipping)
    return lines


def _credit_values(draft: CreditDraft, original: dict, products: dict[str, int]) -> dict:
    """A credit's ``sale.sale`` values: the original's party, addresses, currency, channel and warehouse, and the
    lines negated at their exact unit prices."""
    lines = []
    for line in draft.lines:
        values = {"quantity": -line.quantity, "unit_price": line.unit_price}
        if line.shipping:
            values.update(type="shipping", description=line.description or "Shipping refund")
        else:
            values.update(
                type="line",
                product=products[line.product_code],
                description=line.description or f"Return of {line.product_code}",
            )
        if line.tax_ids:
            values["taxes"] = [["add", list(line.tax_ids)]]
        lines.append(values)
    values = {
        name: original[name]
        for name in ("party", "invoice_address", "shipment_address", "currency", "channel", "warehouse")
        if original.get(name) is not None
    }
    values.update(
        reference=draft.reference,
        channel_identifier=draft.reference,
        origin=f"sale.sale,{draft.original_sale_id}",
        lines=[["create", lines]],
    )
    if draft.comment:
        values["comment"] = draft.comment
    return values


def _check_amounts(amounts: list, operation: str) -> None:
    for amount in amounts:
        if amount is not None and not isinstance(amount, Decimal):
            raise TypeError(f"{operation}: amounts must be Decimal, not {type(amount).__name__}")


def preferred_sale(sales: list[Sale]) -> Sale | None:
    """Of the sales found for one reference, the one that stands for it: a live one before a cancelled one, the
    newest (highest id) first."""
    ordered = sorted(sales, key=lambda sale: sale.id, reverse=True)
    return next((sale for sale in ordered if sale.state != "cancelled"), ordered[0] if ordered else None)


def _address_id(rows: list[dict], values: dict) -> int | None:
    """The id of the address among ``rows`` that is the same as ``values``, or None."""
    wanted = _address_key(values)
    return next((row["id"] for row in rows if _address_key(row) == wanted), None)


def _address_key(values: dict) -> tuple:
    """An address as it compares: case and spacing set aside, the same address typed twice is the same address."""
    return tuple(_normalised(values.get(name)) for name in ADDRESS_FIELDS)


def _normalised(value) -> str | None:
    return " ".join(str(value).split()).casefold() if value not in (None, "") else None


def _product(row: dict) -> Product:
    return Product(
        id=row["id"],
        code=row.get("code") or "",
        name=row.get("name") or "",
        variant_name=row.get("variant_name") or "",
        list_price=_amount(row.get("list_price")),
        cost_price=_amount(row.get("cost_price")),
        active=bool(row.get("active", True)),
        quantity_on_hand=_count(row["quantity_on_hand"]) if "quantity_on_hand" in row else None,
        quantity_available=_count(row["quantity_available"]) if "quantity_available" in row else None,
        raw=row,
    )


def _sale(row: dict, operation: str) -> Sale:
    try:
        origin = row.get("origin") or ""
        return Sale(
            id=row["id"],
            number=row.get("number"),
            reference=row.get("reference"),
            channel_identifier=row.get("channel_identifier"),
            state=row["state"],
            channel_id=row.get("channel"),
            party_id=row["party"],
            currency_code=row.get("currency.code"),
            warehouse_id=row.get("warehouse"),
            origin_sale_id=int(origin.partition(",")[2]) if origin.startswith("sale.sale,") else None,
            sale_date=row.get("sale_date"),
            untaxed_amount=_amount(row.get("untaxed_amount")),
            tax_amount=_amount(row.get("tax_amount")),
            total_amount=_amount(row.get("total_amount")),
            line_ids=tuple(row.get("lines") or ()),
            shipment_ids=tuple(row.get("shipments") or ()),
            return_shipment_ids=tuple(row.get("shipment_returns") or ()),
            raw=row,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise TransientError(
            f"a sale in an unexpected shape ({type(error).__name__}: {error})", system=SYSTEM, operation=operation
        ) from None


def _sale_line(row: dict) -> SaleLine:
    return SaleLine(
        id=row["id"],
        type=row.get("type") or "line",
        product_id=row.get("product"),
        product_code=row.get("product.code"),
        description=row.get("description") or "",
        quantity=int(_amount(row.get("quantity")) or 0),
        unit_price=_amount(row.get("unit_price")),
        amount=_amount(row.get("amount")),
        channel_identifier=row.get("channel_identifier"),
    )


def _move(row: dict) -> ShipmentMove:
    origin = row.get("origin") or ""
    return ShipmentMove(
        id=row["id"],
        product_id=row["product"],
        product_code=row.get("product.code"),
        quantity=_count(row.get("quantity")),
        sale_line_id=int(origin.partition(",")[2]) if origin.startswith("sale.line,") else None,
        state=row.get("state") or "",
    )
