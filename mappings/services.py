"""The look-up API the flows translate through, and the writes staff make to the mapping tables.

Every look-up either answers or raises ``MissingMapping`` naming exactly what is missing: the kind of mapping,
the system and the key. Flows turn that into an ``unmapped_*`` exception; adding the mapping frees it.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

import tablib
from django.conf import settings
from django.db.models import Q
from django.db.models.functions import Lower
from import_export.results import RowResult

from mappings.models import (
    Bundle,
    BundleComponent,
    CarrierMapping,
    Channel,
    MarketMapping,
    ShippingMethodMapping,
    SkuMapping,
    StockBuffer,
    StockStatusRule,
    System,
    TaxMapping,
)
from mappings.money import split_exactly
from mappings.resources import RESOURCES

KIND_LABELS = {
    "sku": "SKU",
    "carrier": "carrier",
    "shipping_method": "shipping method",
    "tax": "tax",
    "market": "market",
    "stock_status": "stock status",
}


class MissingMapping(LookupError):
    """No mapping translates ``key`` for ``system``.

    ``kind`` is one of KIND_LABELS; ``key`` names every part of what was looked up, in order, e.g.
    ``{"carrier": "DHL", "service": "Express"}``. ``exception_kind`` is the exception-queue kind it becomes.
    """

    def __init__(self, *, kind: str, system: str, key: dict[str, object]) -> None:
        self.kind = kind
        self.system = system
        self.key = key
        super().__init__(self.message)

    @property
    def exception_kind(self) -> str:
        return f"unmapped_{self.kind}"

    @property
    def message(self) -> str:
        system_label = System(self.system).label if self.system in System.values else self.system
        parts = ", ".join(f"{name.replace('_', ' ')} {value!r}" for name, value in self.key.items())
        return f"No {KIND_LABELS[self.kind]} mapping for {system_label}: {parts}."

    def __reduce__(self):  # picklable, so it survives a trip through the task queue
        return (_rebuild_missing_mapping, (self.kind, self.system, self.key))


def _rebuild_missing_mapping(kind: str, system: str, key: dict[str, object]) -> MissingMapping:
    return MissingMapping(kind=kind, system=system, key=key)


# --- SKUs -----------------------------------------------------------------------------------------------------


def _sku_same_as_centra(system: str) -> bool:
    return system in settings.SKU_SAME_AS_CENTRA


def sku_for(*, system: str, centra_sku: str) -> str:
    """The code ``system`` knows a Centra SKU by.

    A SkuMapping wins; without one, systems listed in settings.SKU_SAME_AS_CENTRA use the Centra SKU itself.
    Raises MissingMapping otherwise.
    """
    return skus_for(system=system, centra_skus=[centra_sku])[centra_sku]


def skus_for(*, system: str, centra_skus: Iterable[str]) -> dict[str, str]:
    """``sku_for`` for many SKUs in one query: {centra_sku: code}. Raises MissingMapping for the first SKU
    (in the order given) that has no code, so callers that must settle SKU by SKU use ``skus_mapped``."""
    centra_skus = list(centra_skus)
    codes = skus_mapped(system=system, centra_skus=centra_skus)
    for centra_sku in centra_skus:
        if centra_sku not in codes:
            raise MissingMapping(kind="sku", system=system, key={"centra_sku": centra_sku})
    return codes


def skus_mapped(*, system: str, centra_skus: Iterable[str]) -> dict[str, str]:
    """{centra_sku: code} for the SKUs that have a code in ``system``; SKUs without one are left out."""
    return _sku_mappings(system=system, values=centra_skus, given="centra_sku", wanted="external_code")


def _sku_mappings(*, system: str, values: Iterable[str], given: str, wanted: str) -> dict[str, str]:
    """{value: its mapping's ``wanted`` field} for the ``values`` of a SkuMapping field ``given`` (compared without
    case) in one query; a system that knows Centra's SKUs maps the rest to themselves, the others leave them out."""
    asked = {value.lower(): value for value in values}
    rows = (
        SkuMapping.objects.alias(key=Lower(given)).filter(system=system, key__in=list(asked)).values_list(given, wanted)
    )
    found = {asked[value.lower()]: mapped for value, mapped in rows}
    if _sku_same_as_centra(system):
        for value in asked.values():
            found.setdefault(value, value)
    return found


def centra_sku_for(*, system: str, code: str) -> str:
    """The Centra SKU behind ``system``'s code (the reverse of ``sku_for``). Raises MissingMapping."""
    mapped = (
        SkuMapping.objects.alias(key=Lower("external_code"))
        .filter(system=system, key=code.lower())
        .values_list("centra_sku", flat=True)
        .first()
    )
    if mapped is not None:
        return mapped
    if _sku_same_as_centra(system):
        return code
    raise MissingMapping(kind="sku", system=system, key={"code": code})


def centra_skus_mapped(*, system: str, codes: Iterable[str]) -> dict[str, str]:
    """``centra_sku_for`` for many codes in one query: {code: Centra SKU} for the codes that have one (compared
    without case); codes without one are left out, for ``centra_sku_for`` to raise about one by one."""
    return _sku_mappings(system=system, values=codes, given="external_code", wanted="centra_sku")


# --- Carriers and shipping methods ----------------------------------------------------------------------------


def carrier_code_for(*, system: str, carrier: str, service: str = "") -> str:
    """The enumerated carrier code ``system`` wants for a Centra carrier and service.

    A mapping for the exact service wins over one for the carrier with any service. Case and surrounding spaces
    are ignored. Raises MissingMapping.
    """
    carrier_key, service_key = carrier.strip().lower(), service.strip().lower()
    candidates = (
        CarrierMapping.objects.alias(carrier_key=Lower("centra_carrier"), service_key=Lower("centra_service"))
        .filter(system=system, carrier_key=carrier_key)
        .filter(Q(service_key=service_key) | Q(service_key=""))
        .values_list("centra_service", "target_code")
    )
    by_service = {mapped_service.lower(): code for mapped_service, code in candidates}
    if service_key in by_service:
        return by_service[service_key]
    if "" in by_service:
        return by_service[""]
    raise MissingMapping(kind="carrier", system=system, key={"carrier": carrier, "service": service})


def carrier_for_code(*, system: str, code: str) -> tuple[str, str]:
    """The Centra (carrier, service) that ``system``'s carrier code stands for. Several Centra services may share
    one code; the most specific mapping (one with a service) made first is taken. Raises MissingMapping."""
    mapping = (
        CarrierMapping.objects.alias(code_key=Lower("target_code"))
        .filter(system=system, code_key=code.strip().lower())
        .order_by(Lower("centra_service").desc(), "id")
        .values_list("centra_carrier", "centra_service")
        .first()
    )
    if mapping is None:
        raise MissingMapping(kind="carrier", system=system, key={"code": code})
    return mapping


def shipping_method_for(*, system: str, method: str) -> ShippingMethodMapping:
    """How an order from ``system`` with this shipping method is created in Centra. Raises MissingMapping."""
    mapping = (
        ShippingMethodMapping.objects.alias(key=Lower("source_method"))
        .filter(system=system, key=method.strip().lower())
        .first()
    )
    if mapping is None:
        raise MissingMapping(kind="shipping_method", system=system, key={"method": method})
    return mapping


def shipping_methods_for(*, system: str, methods: Iterable[str]) -> dict[str, ShippingMethodMapping]:
    """``shipping_method_for`` for many methods in one query: {method: mapping}, each method as given. Methods
    with no mapping are left out; the caller raises MissingMapping for them."""
    wanted: dict[str, list[str]] = {}
    for method in methods:
        wanted.setdefault(method.strip().lower(), []).append(method)
    found = {}
    mappings = ShippingMethodMapping.objects.annotate(key=Lower("source_method")).filter(
        system=system, key__in=list(wanted)
    )
    for mapping in mappings:
        for method in wanted[mapping.key]:
            found[method] = mapping
    return found


# --- Tax and markets ------------------------------------------------------------------------------------------


def tax_mapping_for(*, tax_class: str, country: str) -> TaxMapping:
    """The Fulfil tax for a Centra tax class in a country; the class's default (no country) when the country has
    none of its own. Raises MissingMapping."""
    candidates = list(
        TaxMapping.objects.alias(key=Lower("centra_tax_class")).filter(
            key=tax_class.strip().lower(), country__in=[country.upper(), ""]
        )
    )
    candidates.sort(key=lambda mapping: mapping.country == "")
    if not candidates:
        raise MissingMapping(kind="tax", system=System.FULFIL, key={"tax_class": tax_class, "country": country})
    return candidates[0]


def tax_code_for(*, tax_class: str, country: str) -> str:
    return tax_mapping_for(tax_class=tax_class, country=country).fulfil_tax_code


def market_for(*, store_id: int, market_id: int, known: dict | None = None) -> MarketMapping:
    """The Fulfil channel, warehouse and currency of a Centra store + market; from ``known`` (``markets_all``),
    when given, instead of a query. Raises MissingMapping."""
    if known is not None:
        mapping = known.get((store_id, market_id))
    else:
        mapping = MarketMapping.objects.filter(centra_store_id=store_id, centra_market_id=market_id).first()
    if mapping is None:
        raise MissingMapping(kind="market", system=System.FULFIL, key={"store_id": store_id, "market_id": market_id})
    return mapping


def markets_all() -> dict[tuple[int, int], MarketMapping]:
    """Every market mapping, by (store id, market id), in one query (a brand has a handful)."""
    return {(mapping.centra_store_id, mapping.centra_market_id): mapping for mapping in MarketMapping.objects.all()}


# --- Bundles --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundlePart:
    component_sku: str
    quantity: int
    amount: Decimal  # this component's share of the bundle amount; the parts add up to it exactly


def bundle_split(*, sku: str, amount: Decimal, currency: str) -> list[BundlePart] | None:
    """Explode a bundle SKU into its components, sharing ``amount`` between them by their price shares so that
    the parts add up to ``amount`` exactly in ``currency``'s minor unit. Returns None when ``sku`` is no bundle."""
    return bundle_parts(bundles_for([sku]).get(sku.lower()), amount=amount, currency=currency)


def bundles_for(skus: Iterable[str]) -> dict[str, list[BundleComponent]]:
    """The components of every bundle among ``skus``, in two queries: {bundle SKU in lower case: components}."""
    keys = list({sku.lower() for sku in skus})
    bundles = (
        Bundle.objects.alias(key=Lower("bundle_sku")).filter(key__in=keys).prefetch_related("components")
        if keys
        else []
    )
    return {bundle.bundle_sku.lower(): list(bundle.components.all()) for bundle in bundles}


def bundle_parts(
    components: list[BundleComponent] | None, *, amount: Decimal, currency: str
) -> list[BundlePart] | None:
    """``amount`` shared between a bundle's ``components`` (from ``bundles_for``) as ``bundle_split`` shares it;
    None for no bundle."""
    if not components:
        return None
    amounts = split_exactly(amount, [component.price_share for component in components], currency)
    return [
        BundlePart(component_sku=component.component_sku, quantity=component.quantity, amount=part)
        for component, part in zip(components, amounts, strict=True)
    ]


# --- Stock ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BufferRule:
    buffer: int = 0
    max_quantity: int | None = None
    zero_at_or_below: int | None = None
    source: str = field(default="default", compare=False)  # which rule applied: sku, product, channel, default


def stock_buffer_for(*, channel: Channel, centra_sku: str, product_number: str) -> BufferRule:
    """The buffer rule for a SKU on a channel: the SKU's own, else its product's, else the channel's, else none."""
    rules = StockBuffer.objects.alias(sku_key=Lower("centra_sku"), product_key=Lower("product_number")).filter(
        Q(sku_key=centra_sku.lower(), product_key="")
        | Q(sku_key="", product_key=product_number.lower())
        | Q(sku_key="", product_key=""),
        channel=channel,
    )
    by_scope = {}
    for rule in rules:
        scope = "sku" if rule.centra_sku else "product" if rule.product_number else "channel"
        by_scope[scope] = rule
    for scope in ("sku", "product", "channel"):
        if scope in by_scope:
            rule = by_scope[scope]
            return BufferRule(rule.buffer, rule.max_quantity, rule.zero_at_or_below, source=scope)
    return BufferRule()


def stock_statuses(*, system: str) -> dict[str, bool]:
    """{status: subtract} for every status the stock master ``system`` has a rule for."""
    return {
        status.lower(): subtract
        for status, subtract in StockStatusRule.objects.filter(system=system).values_list("status", "subtract")
    }


def stock_status_subtracts(*, system: str, status: str) -> bool:
    """Whether stock in ``status`` is taken off what can be sold. A status with no rule is never guessed at:
    raises MissingMapping."""
    statuses = stock_statuses(system=system)
    if status.lower() not in statuses:
        raise MissingMapping(kind="stock_status", system=system, key={"status": status})
    return statuses[status.lower()]


# --- CSV import -----------------------------------------------------------------------------------------------


@dataclass
class ImportReport:
    """What a CSV import did. ``problems`` name the line (the header is line 1) and the reason; when there are
    any, nothing of the file was imported."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class UnreadableCsv(ValueError):
    """A file that is not CSV text Switchyard can read. The message says why and what to do, for the person who
    uploaded it."""


SAVE_AS_UTF8 = "Save it from the spreadsheet as “CSV UTF-8 (comma delimited)” and import it again."


def mapping_csv_text(raw: bytes) -> str:
    """The text of an uploaded CSV file: UTF-8, with or without a byte-order mark. Raises UnreadableCsv for any
    other encoding (Latin-1, UTF-16), invalid bytes, NUL bytes or a binary file."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UnreadableCsv(not_utf8_message(error)) from None
    csv_text_check(text)
    return text


def not_utf8_message(error: UnicodeDecodeError) -> str:
    """What to tell the person whose file failed to decode as UTF-8: where, and how to save it instead."""
    line = error.object[: error.start].count(b"\n") + 1
    return f"The file is not UTF-8 text (line {line} holds bytes that are not). {SAVE_AS_UTF8}"


def csv_text_check(text: str) -> None:
    """Raises UnreadableCsv when decoded text holds a NUL character, which no CSV from a spreadsheet does: a file
    in UTF-16 without its byte-order mark, or not a text file at all."""
    position = text.find("\x00")
    if position >= 0:
        line = text.count("\n", 0, position) + 1
        raise UnreadableCsv(
            f"Line {line} holds a NUL character: the file is not a UTF-8 CSV (perhaps UTF-16, or not a text "
            f"file). {SAVE_AS_UTF8}"
        )


def mapping_import_csv(*, model_name: str, csv_text: str, actor) -> ImportReport:
    """Import a CSV file into one mapping table, all or nothing, recording ``actor`` as the editor.

    ``model_name`` is the table's model name (``skumapping``, ``carriermapping``…). Raises KeyError for a table
    that has no CSV import.
    """
    resource = RESOURCES[model_name]()
    report = ImportReport()
    try:
        csv_text_check(csv_text)
    except UnreadableCsv as error:
        report.problems.append(str(error))
        return report
    try:
        dataset = tablib.Dataset().load(csv_text.lstrip("\ufeff"), format="csv")
    except Exception as error:  # tablib raises several types for unreadable input
        report.problems.append(f"The file could not be read as CSV: {error}")
        return report
    missing_columns = [
        resource.fields[name].column_name
        for name in resource._meta.import_id_fields
        if resource.fields[name].column_name not in (dataset.headers or [])
    ]
    if missing_columns:
        report.problems.append(f"Line 1: the header lacks the column(s) {', '.join(missing_columns)}.")
        return report

    result = resource.import_data(
        dataset, dry_run=False, use_transactions=True, rollback_on_validation_errors=True, user=actor
    )
    for error in result.base_errors:
        report.problems.append(_error_text(error.error))
    for row_number, row_errors in result.row_errors():
        for error in row_errors:
            report.problems.append(f"Line {row_number + 1}: {_error_text(error.error)}")
    for invalid in result.invalid_rows:
        for field_name, messages in invalid.error_dict.items():
            where = "" if field_name == "__all__" else f"{field_name}: "
            for message in messages:
                report.problems.append(f"Line {invalid.number + 1}: {where}{message}")
    report.problems.sort(key=_line_order)
    if report.ok:
        totals = result.totals
        report.created = totals[RowResult.IMPORT_TYPE_NEW]
        report.updated = totals[RowResult.IMPORT_TYPE_UPDATE]
        report.unchanged = totals[RowResult.IMPORT_TYPE_SKIP]
    return report


def _error_text(error: Exception) -> str:
    messages = getattr(error, "messages", None)
    return " ".join(messages) if messages else str(error)


def _line_order(problem: str) -> tuple[int, str]:
    if problem.startswith("Line "):
        return int(problem.split(":")[0].removeprefix("Line ")), problem
    return 0, problem
