"""Product sync: Centra's product content → every Virtualstock and marketplace channel.

Centra is the master of titles, copy, images, attributes and prices. Each run reads the Centra products changed
since the newest change the last run saw (Centra's ``updatedAt``, read again with an overlap), or every product on
the full sweep (PRODUCT_SYNC_FULL_SWEEP_HOURS), and for each channel: translate each SKU through the SKU mappings →
compose what the channel should show → leave out the SKUs whose values the channel already accepted (a hash per
SKU × channel, so an unchanged product costs no call) → check the whole product for that channel (its required
attributes, EAN check digits, a price above zero in the channel's currency, an image, sizes) — a product that fails
is one ``validation_failed`` exception listing every problem, and nothing of it is sent → send what changed, in
batches → record what the channel accepted (``ProductState``).

The source-of-truth guard reads back what each channel shows — the marketplace's offers changed since its last look
(its ``offer.updated`` webhook starts a run), and every Virtualstock product on the full sweep — and a value that
differs from what the sync last set there is one ``attribute_drift`` exception per SKU × channel for ecommerce, with
both values. Its retry, the exception page's "Re-assert Centra's value", sends Centra's current values again and
resolves it once the channel reads back the same.
"""

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.utils import timezone

from exceptions.models import ACTIVE, SyncException
from exceptions.registry import register_retry_handler
from exceptions.services import failure_record, objects_succeeded
from mappings.models import Channel, MarketMapping, System
from mappings.money import minor_unit
from mappings.services import skus_mapped
from mappings.validators import gtin_check_digit_ok
from syncs import connections
from syncs.connectors import marketplace as mp
from syncs.connectors.centra import ContentSize, ContentVariant, ProductContent
from syncs.connectors.errors import DataError, TransientError
from syncs.models import ProductState, SyncRun
from syncs.runs import RunCounter, last_summary, moment

FLOW = "product_sync"
BATCH_ITEMS = mp.MAX_BATCH  # SKUs gathered before a batch goes to a channel that takes batches
RESOLVE_CHUNK = 1000
VS_IMAGE_FIELDS = ("image", *(f"image_{n}" for n in range(2, 11)))  # Virtualstock's retailer data holds ten


class ProductInvalid(DataError):
    """A product cannot go to a channel as Centra holds it: ``details`` names every problem."""

    exception_kind = "validation_failed"


class AttributeDrift(DataError):
    """A channel shows a value the product sync did not set there: ``differences`` holds both values."""

    exception_kind = "attribute_drift"

    def __init__(self, message: str, *, differences: list[dict], **kwargs) -> None:
        super().__init__(message, details=[_difference_text(d) for d in differences], **kwargs)
        self.differences = differences


@dataclass
class ProductSyncSummary:
    examined: int = 0  # Centra products read
    sent: int = 0  # SKU × channel pairs sent
    unchanged: int = 0  # … left out because the channel already holds them
    invalid: int = 0  # product × channel pairs refused by the checks or by the channel
    not_listed: int = 0  # SKUs the channel does not list (reconcile_skus reports those)
    drifted: int = 0
    failed: int = 0
    deferred: int = 0  # SKU × channel pairs left for the next run when this one's time budget ran out
    resume_full: bool = False  # a full sweep cut short by its time budget: the next run sweeps again
    full: bool = False
    centra_cursor: str | None = None  # Centra's newest updatedAt seen: where the next run starts, less the overlap
    marketplace_cursor: str | None = None  # the newest offer change read back
    channels: dict[str, dict] = field(default_factory=dict)
    exception_ids: list[int] = field(default_factory=list)


@dataclass
class Item:
    """One SKU to send to one channel: the values it should show and which of them changed."""

    sku: str
    code: str  # the SKU's code on the channel
    values: dict
    changed: set[str]
    state: ProductState | None

    @property
    def external_id(self) -> str:
        return self.state.external_id if self.state else ""


@dataclass
class Plan:
    """What one product needs on one channel."""

    channel: Channel
    product: ProductContent
    items: list[Item]
    unchanged: int = 0  # SKUs left out: the channel already holds their values

    @property
    def ref(self) -> str:
        return product_ref(self.channel, self.product.product_number)


def product_ref(channel: Channel, product_number: str) -> str:
    return f"{channel.code}:{product_number}"


def sku_ref(channel: Channel, sku: str) -> str:
    return f"{channel.code}:{sku}"


# --- the run ------------------------------------------------------------------------------------------------------


def product_sync_run(*, counter: RunCounter | None = None, full: bool | None = None) -> ProductSyncSummary:
    """Send every changed product to every active Virtualstock and marketplace channel, then read back what the
    channels show. ``full`` reads every product and every channel; unset, a full sweep runs when one is due.
    Each product × channel goes through or becomes one exception; a channel that cannot be read is reported in its
    row and the run goes on."""
    summary = ProductSyncSummary()
    channels = list(Channel.objects.filter(active=True, system__in=TARGETS).order_by("code"))
    last = last_summary(FLOW, "centra_cursor")
    summary.full = _full_due(last) if full is None else full
    summary.centra_cursor, summary.marketplace_cursor = last.get("centra_cursor"), last.get("marketplace_cursor")
    if not channels:
        return summary
    targets = {channel.pk: TARGETS[channel.system](channel) for channel in channels}
    deadline = time.monotonic() + settings.PRODUCT_SYNC_MAX_SECONDS
    for target in targets.values():
        target.deadline = deadline
    for channel in channels:
        summary.channels[channel.code] = {"sent": 0, "unchanged": 0, "invalid": 0, "not_listed": 0, "drifted": 0}
    since = None
    if summary.centra_cursor and not summary.full:
        since = moment(summary.centra_cursor) - timedelta(minutes=settings.PRODUCT_SYNC_OVERLAP_MINUTES)
    active = _active_refs()
    pending: dict[int, list[Plan]] = {channel.pk: [] for channel in channels}
    for product in connections.centra().product_content(updated_since=since.isoformat() if since else None):
        summary.examined += 1
        summary.centra_cursor = max(filter(None, [summary.centra_cursor, product.updated_at]), key=moment)
        failed_before = summary.failed
        for channel in channels:
            plan = _plan_or_record(channel, product, targets[channel.pk], summary)
            if plan is not None and not plan.items:
                _succeeded(plan.ref, active)  # the channel holds Centra's values: a problem fixed back heals
            elif plan is not None:
                pending[channel.pk].append(plan)
                if sum(len(p.items) for p in pending[channel.pk]) >= BATCH_ITEMS:
                    _send_and_record(targets[channel.pk], pending[channel.pk], summary, active)
                    pending[channel.pk] = []
        if counter:
            failed = summary.failed - failed_before
            counter.add(examined=1, succeeded=int(not failed), failed=int(bool(failed)))
    for channel in channels:
        _send_and_record(targets[channel.pk], pending[channel.pk], summary, active)
    for channel in channels:
        _guard(channel, targets[channel.pk], summary, active)
    if summary.deferred:
        # What was left waits for the next run: it reads from where this one started, so nothing is skipped (what
        # went through is unchanged by then and costs no call), and a cut-short sweep is swept again.
        summary.centra_cursor = last.get("centra_cursor")
        summary.resume_full = summary.full
    return summary


def _active_refs() -> set[str]:
    """The objects with an active exception in this flow (one query per run, so healing costs nothing when none)."""
    return set(
        SyncException.objects.filter(flow=FLOW, status__in=ACTIVE).values_list("object_ref", flat=True).iterator()
    )


def _succeeded(ref: str, active: set[str]) -> None:
    if ref in active:
        objects_succeeded(flow=FLOW, object_refs=[ref], note="The product went through.")
        active.discard(ref)


def _full_due(last: dict) -> bool:
    """A full sweep when none has run yet, or the last was PRODUCT_SYNC_FULL_SWEEP_HOURS ago."""
    if not last.get("centra_cursor") or last.get("resume_full"):
        return True
    latest_full = (
        SyncRun.objects.filter(flow=FLOW, status=SyncRun.Status.SUCCEEDED, summary__full=True)
        .order_by("-started_at")
        .values_list("started_at", flat=True)
        .first()
    )
    sweep_every = timedelta(hours=settings.PRODUCT_SYNC_FULL_SWEEP_HOURS)
    return latest_full is None or timezone.now() - latest_full >= sweep_every


def _plan_or_record(channel: Channel, product: ProductContent, target, summary: ProductSyncSummary) -> Plan | None:
    row = summary.channels[channel.code]
    try:
        plan = product_plan(channel=channel, product=product, target=target)
    except ProductInvalid as error:
        summary.invalid += 1
        row["invalid"] += 1
        summary.failed += 1
        summary.exception_ids.append(_record_invalid(channel, product, error).pk)
        return None
    if plan is not None:
        summary.unchanged += plan.unchanged
        row["unchanged"] += plan.unchanged
    return plan


# --- planning: what a product needs on a channel ------------------------------------------------------------------


def product_plan(
    *, channel: Channel, product: ProductContent, target, force: bool = False, only_skus: set[str] | None = None
) -> Plan | None:
    """What ``product`` needs on ``channel``: one item per SKU the channel lists (through the SKU mappings) whose
    values differ from what the channel last accepted — every one with ``force``. None when the product is not sold
    there. Raises ProductInvalid, naming every problem, when something is to be sent but the product cannot go."""
    if product.status != "ACTIVE":
        return None
    sizes = [(variant, size) for variant in product.variants for size in variant.sizes]
    codes = skus_mapped(system=channel.system, centra_skus=[size.sku for _, size in sizes])
    listed = [(variant, size) for variant, size in sizes if size.sku in codes]
    if not listed:
        return None
    states = {
        state.sku: state for state in ProductState.objects.filter(channel=channel, sku__in=[s.sku for _, s in listed])
    }
    price_of = _price_lookup(channel)
    items, unchanged = [], 0
    for variant, size in listed:
        if only_skus is not None and size.sku not in only_skus:
            continue
        values = target.values(_centra_values(channel, product, variant, size, price_of(variant)))
        state = states.get(size.sku)
        if not force and state and state.acknowledged_at and state.content_hash == content_hash(values):
            unchanged += 1
            continue
        if force or not (state and state.acknowledged_at):
            changed = set(values)
        else:
            changed = {name for name in values if state.sent_values.get(name) != values[name]}
        items.append(Item(size.sku, codes[size.sku], values, changed, state))
    if not items:
        return Plan(channel, product, [], unchanged)
    problems = product_problems(channel=channel, product=product, listed=listed, price_of=price_of)
    if problems:
        raise ProductInvalid(
            f"{product.product_number} cannot go to {channel.name}: {len(problems)} problem(s)",
            details=problems,
            system="switchyard",
            operation="product check",
        )
    return Plan(channel, product, items, unchanged)


def content_hash(values: dict) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def required_attributes(channel: Channel) -> list[str]:
    """The Centra attributes ``channel`` requires and is sent: named for its code, else for its system."""
    configured = settings.PRODUCT_SYNC_REQUIRED_ATTRIBUTES
    return list(configured.get(channel.code, configured.get(channel.system, [])))


def _centra_values(channel: Channel, product: ProductContent, variant: ContentVariant, size: ContentSize, price):
    """What one SKU should show on ``channel``, in Centra's terms."""
    currency = price.currency if price else ""
    return {
        "title": " ".join(part for part in (product.name, variant.name, size.size_name) if part),
        "description": product.description,
        "images": list(product.images),
        "attributes": {name: product.attributes.get(name, "") for name in required_attributes(channel)},
        "price": _amount(price.price, currency) if price else "",
        "currency": currency,
        "ean": size.ean or "",
    }


def _price_lookup(channel: Channel):
    pricelist = settings.PRODUCT_SYNC_PRICELISTS.get(channel.code, channel.centra_market_id)
    return lambda variant: variant.prices.get(pricelist) if pricelist is not None else None


def _channel_currency(channel: Channel) -> str | None:
    """The currency the channel sells in: its Centra market's, as the market mappings say; None when unknown."""
    if channel.centra_market_id is None:
        return None
    return (
        MarketMapping.objects.filter(centra_market_id=channel.centra_market_id)
        .values_list("currency", flat=True)
        .first()
    )


def product_problems(*, channel: Channel, product: ProductContent, listed: list, price_of) -> list[str]:
    """Every reason ``product`` cannot go to ``channel`` (empty when it can). ``listed`` are the (variant, size)
    pairs the channel lists."""
    problems = []
    if not product.name.strip():
        problems.append("The product has no name.")
    for name in required_attributes(channel):
        if not product.attributes.get(name, "").strip():
            problems.append(f"The attribute {name!r} is missing: {channel.name} requires it.")
    if not product.images:
        problems.append("There is no image: at least one is required.")
    pricelist = settings.PRODUCT_SYNC_PRICELISTS.get(channel.code, channel.centra_market_id)
    currency = _channel_currency(channel)
    seen_variants = set()
    for variant, size in listed:
        if not size.size_name.strip():
            problems.append(f"{size.sku} has no size.")
        if not size.ean:
            problems.append(f"{size.sku} has no EAN.")
        elif not gtin_check_digit_ok(size.ean):
            problems.append(f"{size.sku}: EAN {size.ean} is not a valid EAN/GTIN (its check digit is wrong).")
        if variant.id in seen_variants:
            continue
        seen_variants.add(variant.id)
        price = price_of(variant)
        label = f"{variant.name or variant.variant_number}"
        if pricelist is None:
            problems.append(f"No Centra pricelist is set for {channel.name} (PRODUCT_SYNC_PRICELISTS).")
        elif price is None:
            problems.append(f"Variant {label} has no price in Centra pricelist {pricelist}.")
        elif price.price <= 0:
            amount = _amount(price.price, price.currency)
            problems.append(f"Variant {label}: the price {amount} {price.currency} is not above zero.")
        elif currency and price.currency != currency:
            problems.append(f"Variant {label} is priced in {price.currency}, but {channel.name} sells in {currency}.")
    return list(dict.fromkeys(problems))  # the same problem once, in the order found


# --- sending ------------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a channel made of one item: ``accepted`` (with what it now shows, when it said), ``not_listed``,
    ``rejected`` (with the channel's messages), ``failed`` (the call did not go through: ``error``) or
    ``deferred`` (not sent: the run's time budget was spent)."""

    status: str
    problems: list[str] = field(default_factory=list)
    shown: dict | None = None
    external_id: str = ""
    error: BaseException | None = None


@dataclass
class PlanResult:
    """How a plan went: ``error`` None when the product went through (every SKU accepted, or not listed there),
    else ProductInvalid with the channel's messages, or the connector's error for the call."""

    error: BaseException | None = None
    sent: int = 0
    not_listed: int = 0
    deferred: int = 0


def send_plans(target, plans: list[Plan]) -> dict[str, PlanResult]:
    """Send the plans' items to their channel and record what it accepted. Returns each plan's result by its ref."""
    items = [item for plan in plans for item in plan.items]
    if not items:
        return {plan.ref: PlanResult() for plan in plans}
    try:
        outcomes = target.send(items)
    except (TransientError, DataError) as error:
        return {plan.ref: PlanResult(error) for plan in plans}
    now = timezone.now()
    results: dict[str, PlanResult] = {}
    for plan in plans:
        result, problems = PlanResult(), []
        for item in plan.items:
            outcome = outcomes.get(item.sku)
            if outcome is None or outcome.status == "not_listed":
                result.not_listed += 1
                continue
            if outcome.status == "deferred":
                result.deferred += 1
                continue
            if outcome.status == "failed":
                result.error = outcome.error
                continue
            if outcome.status == "rejected":
                problems += [f"{item.code}: {problem}" for problem in outcome.problems]
                continue
            ProductState.objects.update_or_create(
                channel=plan.channel,
                sku=item.sku,
                defaults={
                    "product_number": plan.product.product_number,
                    "external_code": item.code,
                    "external_id": outcome.external_id or item.external_id,
                    "content_hash": content_hash(item.values),
                    "sent_values": item.values,
                    "sent_at": now,
                    "acknowledged_at": now,
                    "channel_values": outcome.shown if outcome.shown is not None else item.values,
                    "read_at": now if outcome.shown is not None else None,
                },
            )
            result.sent += 1
        if result.error is None and problems:
            result.error = ProductInvalid(
                f"{System(plan.channel.system).label} refused {plan.product.product_number}",
                details=problems,
                system=plan.channel.system,
                operation="product update",
            )
        results[plan.ref] = result
    return results


def _send_and_record(target, plans: list[Plan], summary: ProductSyncSummary, active: set[str]) -> None:
    if not plans:
        return
    results = send_plans(target, plans)
    row = summary.channels[target.channel.code]
    for plan in plans:
        result = results[plan.ref]
        summary.sent += result.sent
        summary.not_listed += result.not_listed
        row["sent"] += result.sent
        row["not_listed"] += result.not_listed
        summary.deferred += result.deferred
        error = result.error
        if error is None:
            if not result.deferred:
                _succeeded(plan.ref, active)
            continue
        summary.failed += 1
        if isinstance(error, ProductInvalid):
            summary.invalid += 1
            row["invalid"] += 1
            summary.exception_ids.append(_record_invalid(plan.channel, plan.product, error).pk)
        else:
            summary.exception_ids.append(_record_failure(plan.channel, plan.product, error).pk)


class MarketplaceTarget:
    """A marketplace: content and prices in batches of up to 500, one result per SKU; offers read back with their
    title, copy, images, attributes and price."""

    fields = ("title", "description", "images", "attributes", "price", "currency")
    content_fields = ("title", "description", "images", "attributes")
    lists_changes = True  # offers can be listed by when they changed

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.client = connections.marketplace()

    def values(self, centra: dict) -> dict:
        return {name: centra[name] for name in self.fields}

    def send(self, items: list[Item]) -> dict[str, Outcome]:
        by_code = {item.code: item for item in items}
        outcomes: dict[str, Outcome] = {}
        content = [
            mp.ContentUpdate(
                sku=item.code,
                title=item.values["title"],
                description=item.values["description"],
                images=tuple(item.values["images"]),
                attributes=item.values["attributes"],
            )
            for item in items
            if item.changed & set(self.content_fields)
        ]
        for result in self.client.update_content(content) if content else []:
            self._note(outcomes, by_code[result.sku], result.status, result.error_codes, result.messages)
        prices = [
            mp.PriceUpdate(item.code, Decimal(item.values["price"]), item.values["currency"])
            for item in items
            if item.changed & {"price", "currency"} and outcomes.get(item.sku, Outcome("accepted")).status == "accepted"
        ]
        for result in self.client.update_prices(prices) if prices else []:
            codes = (result.error_code,) if result.error_code else ()
            message = (f"{result.error_code}: {result.message}",) if result.rejected else ()
            self._note(outcomes, by_code[result.sku], result.status, codes, message)
        for item in items:
            outcomes.setdefault(item.sku, Outcome("accepted"))
        return outcomes

    @staticmethod
    def _note(outcomes: dict, item: Item, status: str, codes: Iterable[str], messages: Iterable[str]) -> None:
        if status == "UPDATED":
            outcomes.setdefault(item.sku, Outcome("accepted"))
        elif "UNKNOWN_SKU" in codes:
            outcomes[item.sku] = Outcome("not_listed")
        else:
            outcomes[item.sku] = Outcome("rejected", list(messages) or [status])

    def read(self, *, since: datetime | None) -> Iterable[tuple[str, str, mp.Offer, datetime | None]]:
        """(code, external id, the offer, when it changed) for every offer changed at or after ``since`` (every
        offer when None)."""
        offers = self.client.offers_updated_since(since) if since else self.client.offers()
        for offer in offers:
            yield offer.sku, "", offer, offer.updated_at

    def read_one(self, item: Item) -> dict | None:
        offer = next((o for o in self.client.offers(sku=item.code) if o.sku == item.code), None)
        return self.shown(offer, item.values) if offer else None

    def shown(self, offer: mp.Offer, sent: dict) -> dict:
        """What an offer shows, in the sync's terms."""
        return {
            "title": offer.title,
            "description": offer.description,
            "images": list(offer.images),
            "attributes": {str(k): str(v) for k, v in offer.attributes.items()},
            "price": _amount(offer.price, offer.currency),
            "currency": offer.currency,
        }


class VirtualstockTarget:
    """Virtualstock: one product per call (``PATCH`` of the retailer data: ``short_description`` as the title,
    ``description``, ``rrp`` as the price in the retailer's currency, ``barcode``, ``image``…``image_10``, and
    each attribute under its own name); products read back from the listing."""

    fields = ("title", "description", "images", "attributes", "price", "ean")
    lists_changes = False  # the product listing has no filter by change: it is read whole, on the full sweep

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.client = connections.virtualstock()
        self.deadline = float("inf")
        self._listing: dict[str, tuple[int, dict]] | None = None

    def values(self, centra: dict) -> dict:
        return {name: centra[name] for name in self.fields}

    def listing(self) -> dict[str, tuple[int, dict]]:
        """Every product Virtualstock holds, by part number: (its REST id, its data). Read once per run."""
        if self._listing is None:
            self._listing = {p.part_number: (p.id, p.data) for p in self.client.products(page_size=1000)}
        return self._listing

    def send(self, items: list[Item]) -> dict[str, Outcome]:
        outcomes: dict[str, Outcome] = {}
        for position, item in enumerate(items):
            if time.monotonic() > self.deadline:  # one product a call: the rest waits for the next run
                for waiting in items[position:]:
                    outcomes[waiting.sku] = Outcome("deferred")
                break
            product_id = item.external_id or (str(self.listing()[item.code][0]) if item.code in self.listing() else "")
            if not product_id:
                outcomes[item.sku] = Outcome("not_listed")
                continue
            try:
                product = self.client.update_product(int(product_id), self.data(item.values, item.changed))
            except DataError as error:
                if error.exchange is not None and error.exchange.status == 404:
                    outcomes[item.sku] = Outcome("not_listed")
                else:
                    outcomes[item.sku] = Outcome("rejected", list(error.details))
                continue
            except TransientError as error:
                # Virtualstock is down or throttling past the retries: the rest waits for the next run or a retry.
                for waiting in items[position:]:
                    outcomes[waiting.sku] = Outcome("failed", error=error)
                break
            if self._listing is not None:  # the read-back later in this run sees what Virtualstock now holds
                self._listing[item.code] = (product.id, product.data)
            shown = self.shown(product.data, item.values)
            outcomes[item.sku] = Outcome("accepted", shown=shown, external_id=str(product.id))
        return outcomes

    def data(self, values: dict, changed: set[str]) -> dict:
        data: dict = {}
        if "title" in changed:
            data["short_description"] = values["title"]
        if "description" in changed:
            data["description"] = values["description"]
        if "price" in changed:
            data["rrp"] = values["price"]
        if "ean" in changed:
            data["barcode"] = values["ean"]
        if "images" in changed:
            images = values["images"][: len(VS_IMAGE_FIELDS)]
            data |= {name: images[n] if n < len(images) else "" for n, name in enumerate(VS_IMAGE_FIELDS)}
        if "attributes" in changed:
            data |= values["attributes"]
        return data

    def shown(self, data: dict, sent: dict) -> dict:
        """What a product's retailer data shows, in the sync's terms (attributes: those the sync sends)."""
        return {
            "title": str(data.get("short_description") or ""),
            "description": str(data.get("description") or ""),
            "images": [str(data[name]) for name in VS_IMAGE_FIELDS if data.get(name)],
            "attributes": {name: str(data.get(name) or "") for name in sent.get("attributes", {})},
            "price": _normalised(data.get("rrp"), sent.get("price", "")),
            "ean": str(data.get("barcode") or ""),
        }

    def read(self, *, since: datetime | None) -> Iterable[tuple[str, str, dict, datetime | None]]:
        """Every product (Virtualstock cannot list changes only): (part number, REST id, its data, None)."""
        for code, (product_id, data) in self.listing().items():
            yield code, str(product_id), data, None

    def read_one(self, item: Item) -> dict | None:
        product = next((p for p in self.client.products(part_number=item.code) if p.part_number == item.code), None)
        return self.shown(product.data, item.values) if product else None


TARGETS = {System.MARKETPLACE: MarketplaceTarget, System.VIRTUALSTOCK: VirtualstockTarget}


# --- the source-of-truth guard ------------------------------------------------------------------------------------


def _guard(channel: Channel, target, summary: ProductSyncSummary, active: set[str]) -> None:
    """Read back what the channel shows and raise (or heal) attribute_drift for each SKU the sync has set there.
    A channel that can list its changes (the marketplace) is read for those since its last look, less the overlap;
    one that cannot (Virtualstock) is read whole, on the full sweep only."""
    row = summary.channels[channel.code]
    if not target.lists_changes and not summary.full:
        return
    since = None
    if target.lists_changes and summary.marketplace_cursor and not summary.full:
        since = moment(summary.marketplace_cursor) - timedelta(minutes=settings.PRODUCT_SYNC_OVERLAP_MINUTES)
    try:
        shown = {}
        for code, external_id, raw, changed_at in target.read(since=since):
            shown[code] = (external_id, raw)
            if changed_at and target.lists_changes:
                newest = max(filter(None, [summary.marketplace_cursor, changed_at.isoformat()]), key=moment)
                summary.marketplace_cursor = newest
    except (TransientError, DataError) as error:
        row["read_error"] = str(error)[:300]
        summary.failed += 1
        return
    row["read"] = len(shown)
    states = ProductState.objects.filter(
        channel=channel, external_code__in=list(shown), acknowledged_at__isnull=False
    ).order_by("sku")
    healthy, read, now = [], [], timezone.now()
    for state in states.iterator():
        external_id, raw = shown[state.external_code]
        values = target.shown(raw, state.sent_values)
        state.channel_values, state.read_at = values, now
        state.external_id = state.external_id or external_id
        read.append(state)
        differences = differences_between(target.fields, state.sent_values, values, channel)
        if differences:
            summary.drifted += 1
            row["drifted"] += 1
            summary.exception_ids.append(_record_drift(channel, state, differences).pk)
        elif sku_ref(channel, state.sku) in active:
            healthy.append(sku_ref(channel, state.sku))
    ProductState.objects.bulk_update(read, ["channel_values", "read_at", "external_id"], batch_size=RESOLVE_CHUNK)
    for start in range(0, len(healthy), RESOLVE_CHUNK):
        objects_succeeded(
            flow=FLOW, object_refs=healthy[start : start + RESOLVE_CHUNK], note="The channel shows Centra's values."
        )


def differences_between(fields: Iterable[str], centra: dict, shown: dict, channel: Channel) -> list[dict]:
    """Each field where the channel shows something other than Centra's value: {field, centra, channel, label}."""
    differences = []
    for name in fields:
        ours, theirs = centra.get(name), shown.get(name)
        if name == "attributes":
            for attribute, value in (ours or {}).items():
                if (theirs or {}).get(attribute, "") != value:
                    differences.append(
                        {"field": f"attribute {attribute}", "centra": value, "channel": (theirs or {}).get(attribute)}
                    )
        elif ours != theirs:
            differences.append({"field": name, "centra": ours, "channel": theirs})
    for difference in differences:
        difference["channel_name"] = channel.name
    return differences


def _difference_text(difference: dict) -> str:
    return (
        f"{difference['field']}: Centra {json.dumps(difference['centra'], ensure_ascii=False)}, "
        f"{difference.get('channel_name', 'the channel')} {json.dumps(difference['channel'], ensure_ascii=False)}"
    )


# --- recording ----------------------------------------------------------------------------------------------------


def _record_invalid(channel: Channel, product: ProductContent, error: ProductInvalid):
    return failure_record(
        flow=FLOW,
        object_type="product",
        object_ref=product_ref(channel, product.product_number),
        error=error,
        title=f"Product {product.product_number} cannot go to {channel.name}",
        system=error.system if error.system != "switchyard" else channel.system,
        refs=[product.product_number, *(size.sku for variant in product.variants for size in variant.sizes)],
        context={"channel": channel.code, "product_number": product.product_number, "problems": error.details},
        payload={"product": _product_payload(product)},
    )


def _record_failure(channel: Channel, product: ProductContent, error: BaseException):
    return failure_record(
        flow=FLOW,
        object_type="product",
        object_ref=product_ref(channel, product.product_number),
        error=error,
        title=f"Product {product.product_number} could not be sent to {channel.name}",
        system=channel.system,
        refs=[product.product_number],
        context={"channel": channel.code, "product_number": product.product_number},
    )


def _record_drift(channel: Channel, state: ProductState, differences: list[dict]):
    fields = ", ".join(difference["field"] for difference in differences)
    # One difference is said in the message itself; several are listed under it, one a line.
    said = f": {_difference_text(differences[0])}" if len(differences) == 1 else ""
    error = AttributeDrift(
        f"{channel.name} shows a {fields} Centra did not set{said}",
        differences=differences,
        system=channel.system,
        operation="read-back",
    )
    return failure_record(
        flow=FLOW,
        object_type="sku",
        object_ref=sku_ref(channel, state.sku),
        error=error,
        title=f"{state.sku} on {channel.name}: {fields} changed outside Centra",
        system=channel.system,
        refs=[state.sku, state.external_code, state.product_number],
        context={
            "channel": channel.code,
            "sku": state.sku,
            "code": state.external_code,
            "product_number": state.product_number,
            "differences": differences,
        },
        payload={"centra": state.sent_values, "channel": state.channel_values},
    )


def _product_payload(product: ProductContent) -> dict:
    return {
        "productNumber": product.product_number,
        "name": product.name,
        "updatedAt": product.updated_at,
        "images": product.images,
        "attributes": product.attributes,
        "variants": [
            {
                "name": variant.name,
                "prices": {str(k): f"{v.price} {v.currency}" for k, v in variant.prices.items()},
                "sizes": [{"sku": s.sku, "ean": s.ean, "size": s.size_name} for s in variant.sizes],
            }
            for variant in product.variants
        ],
    }


# --- one product, for the exception queue -------------------------------------------------------------------------


def _centra_product(product_number: str) -> ProductContent:
    product = next(iter(connections.centra().product_content(product_numbers=[product_number])), None)
    if product is None:
        raise DataError(f"Centra has no product {product_number}", system=System.CENTRA, operation="products")
    return product


def product_sync_one(*, channel: Channel, product_number: str) -> None:
    """Send one product to one channel as Centra holds it now. Raises ProductInvalid or the connector's error."""
    target = TARGETS[channel.system](channel)
    plan = product_plan(channel=channel, product=_centra_product(product_number), target=target)
    if plan is None or not plan.items:
        return
    error = send_plans(target, [plan])[plan.ref].error
    if error is not None:
        raise error


def product_reassert(*, channel: Channel, sku: str, product_number: str) -> None:
    """Send Centra's current values of one SKU to ``channel`` again, whatever the channel last accepted, then read
    the SKU back. Returns when the channel shows them; raises AttributeDrift with what still differs, or the
    product's or connector's error."""
    target = TARGETS[channel.system](channel)
    plan = product_plan(
        channel=channel, product=_centra_product(product_number), target=target, force=True, only_skus={sku}
    )
    if plan is None or not plan.items:
        raise DataError(
            f"{sku} is no longer sold on {channel.name} (inactive in Centra, or no SKU mapping)",
            system="switchyard",
            operation="re-assert",
        )
    error = send_plans(target, [plan])[plan.ref].error
    if error is not None:
        raise error
    item = plan.items[0]
    shown = target.read_one(item)
    if shown is None:
        raise DataError(f"{item.code} is not listed on {channel.name}", system=channel.system, operation="read-back")
    differences = differences_between(target.fields, item.values, shown, channel)
    ProductState.objects.filter(channel=channel, sku=sku).update(channel_values=shown, read_at=timezone.now())
    if differences:
        raise AttributeDrift(
            f"{channel.name} still shows other values after Centra's were sent again",
            differences=differences,
            system=channel.system,
            operation="read-back",
        )


def retry(exception) -> None:
    """The exception queue's retry: a drifted SKU gets Centra's values again (and must read back the same); any
    other failure re-runs its product on its channel."""
    channel = Channel.objects.get(code=exception.context["channel"])
    if exception.kind == "attribute_drift":
        product_reassert(
            channel=channel, sku=exception.context["sku"], product_number=exception.context["product_number"]
        )
    else:
        product_sync_one(channel=channel, product_number=exception.context["product_number"])


register_retry_handler(FLOW, retry)


# --- values -------------------------------------------------------------------------------------------------------


def _amount(amount: Decimal, currency: str) -> str:
    """An amount as a string to the currency's minor unit ("29.00", "349" for SEK)."""
    try:
        return f"{amount.quantize(minor_unit(currency)):f}"
    except (InvalidOperation, KeyError, ValueError):
        return f"{amount:f}"


def _normalised(amount, like: str) -> str:
    """An amount a channel holds as text, to as many decimals as ``like`` (what was sent), so "25.5" and "25.50"
    compare equal; the text itself when it is not an amount."""
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        return str(amount or "")
    places = len(like.partition(".")[2]) if like else 2
    return f"{value.quantize(Decimal(1).scaleb(-places)):f}" if value.is_finite() else str(amount)
