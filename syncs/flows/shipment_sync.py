"""Shipment sync: Fulfil's shipments → Centra → the retailer or marketplace the order came from.

For each customer shipment Fulfil marked done since the last run (a cursor on Fulfil's own clock, read again with
an overlap so a shipment committed late is never skipped): find the order through its sale → create a Centra
shipment of exactly the lines and units that left the warehouse (a partial shipment ships those lines only) and
complete it with the carrier, service and tracking number → when the order came from Virtualstock or a
marketplace, report it there with the carrier translated to that system's code. The shipment's link records every
step as it is done, so a retry resumes where it stopped: Centra never gets a second shipment, the retailer never a
second dispatch. A warning from Centra (a payment that could not be captured) becomes an exception for finance and
never holds the parcel's tracking back. Once every unit of the order has shipped, the order's link says when.

**Bundles.** A bundle Centra sold as one line reaches Fulfil as its components (order export), each Fulfil sale
line carrying the Centra line's id as its ``channel_identifier``; a stock move's origin is its sale line, so each
component that leaves is traced back to its bundle line. The bundle line ships in Centra — and is dispatched to the
retailer or marketplace under the bundle SKU they sold — when the last component of a bundle unit leaves the
warehouse, with that parcel's carrier and tracking number. Until then the parcels carrying some of the components
are *held*: their link records the parts and says synced, and nothing is told to Centra or the source. A brand
expects this: a customer told "your gift set has shipped" must be getting all of it, the retailer invoices the
bundle SKU as one item, and Centra's order line cannot ship two thirds of a unit. The components count across every
Fulfil shipment of the order (recorded on their links), against the units Centra already shows shipped, so neither
the order the parcels are synced in nor a retry can ship a bundle unit twice. A sale line without Centra's line id
(a sale made by hand) falls back to its SKU: the order's own line of that SKU, else the one bundle line that has it
as a component.
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice

from django.conf import settings
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from exceptions.registry import register_retry_handler
from exceptions.services import failure_record, object_succeeded, objects_succeeded
from mappings.models import Bundle, System
from mappings.services import (
    MissingMapping,
    carrier_code_for,
    centra_sku_for,
    centra_skus_mapped,
    skus_for,
    skus_mapped,
)
from syncs import connections
from syncs.connectors.centra import Order as CentraOrder
from syncs.connectors.centra import ShipmentToCreate
from syncs.connectors.errors import DataError, TransientError, may_have_landed
from syncs.connectors.fulfil import Shipment
from syncs.connectors.marketplace import ShipmentLine
from syncs.connectors.virtualstock import DispatchLine
from syncs.connectors.virtualstock import Order as VirtualstockOrder
from syncs.flows.reconcile_skus import MissingInTarget
from syncs.link_refs import link_identifiers_record, links_identifiers_record
from syncs.links import link_note, link_step_done, links_note_each, order_lock, order_locks_held
from syncs.models import Link
from syncs.runs import RunCounter, last_summary, moment

FLOW = "shipment_sync"
CHUNK = 500  # shipments looked up together
BATCH = 100  # shipments taken through together: one read and one write in Centra, a few queries, for all of them

SHIPPED, HELD, ALREADY_SYNCED, NOT_OURS = "shipped", "held", "already synced", "not ours"


@dataclass
class ShipmentSummary:
    examined: int = 0
    shipped: int = 0
    held: int = 0  # parcels of bundle components whose bundle unit is not complete yet: nothing to tell Centra
    already_synced: int = 0
    skipped: int = 0  # shipments of sales Switchyard did not make (wholesale, entered by hand in Fulfil)
    failed: int = 0
    exception_ids: list[int] = field(default_factory=list)
    cursor: str | None = None  # the newest change Fulfil showed: where the next run starts, less the overlap


class CaptureNotSettled(TransientError):
    """Centra created the shipment but did not capture the payment. Checked again automatically: an asynchronous
    payment provider may still settle it."""


class ShipmentDoesNotMatch(DataError):
    """What Fulfil shipped is not what is left to ship of the order in Centra or at its source."""


def object_ref(shipment_id: int) -> str:
    return f"fulfil:{shipment_id}"


# --- the run ------------------------------------------------------------------------------------------------------


def shipment_sync_run(*, counter: RunCounter | None = None) -> ShipmentSummary:
    """Sync every customer shipment Fulfil marked done since the cursor, a batch at a time (``_sync_batch``). Each
    shipment goes through or becomes an exception on its own. The cursor moves on only when a whole run succeeds
    (run_flow keeps the summary), so a run that fails half-way reads the same shipments again."""
    summary = ShipmentSummary()
    cursor = _cursor()
    newest = cursor
    since = cursor - timedelta(minutes=settings.SHIPMENT_SYNC_OVERLAP_MINUTES)
    shipments = connections.fulfil().shipments_since(since)
    while chunk := list(islice(shipments, CHUNK)):
        # The overlap reads again shipments already synced: known by one query a chunk, not two per shipment.
        done = set(
            Link.objects.filter(
                kind=Link.Kind.SHIPMENT,
                source_system=System.FULFIL,
                source_ref__in=[str(shipment.id) for shipment in chunk],
                detail__has_key="synced_at",
            ).values_list("source_ref", flat=True)
        )
        for shipment in chunk:
            if shipment.changed_at and shipment.changed_at > newest:
                newest = shipment.changed_at
        synced = [shipment for shipment in chunk if str(shipment.id) in done]
        summary.examined += len(synced)
        summary.already_synced += len(synced)
        if counter and synced:
            counter.add(examined=len(synced), succeeded=len(synced))
        waiting = [shipment for shipment in chunk if str(shipment.id) not in done]
        for start in range(0, len(waiting), BATCH):
            _sync_batch(waiting[start : start + BATCH], summary, counter)
    summary.cursor = newest.isoformat()
    return summary


def _sync_counted(shipment: Shipment, summary: ShipmentSummary, counter) -> None:
    """Take one shipment through on its own (``shipment_sync_one``), counting how it went."""
    try:
        outcome = shipment_sync_one(shipment=shipment)
    except Exception as error:  # every failure of one shipment lands in the queue, whatever it is
        _count_failed(shipment, error, summary, counter)
    else:
        _count(outcome, summary, counter)


def _count(outcome: str, summary: ShipmentSummary, counter) -> None:
    summary.examined += 1
    summary.shipped += int(outcome == SHIPPED)
    summary.held += int(outcome == HELD)
    summary.already_synced += int(outcome == ALREADY_SYNCED)
    summary.skipped += int(outcome == NOT_OURS)
    if counter:
        counter.add(examined=1, succeeded=1)


def _count_failed(shipment: Shipment, error: BaseException, summary: ShipmentSummary, counter) -> None:
    summary.examined += 1
    summary.failed += 1
    summary.exception_ids.append(_record(shipment, error).pk)
    if counter:
        counter.add(examined=1, failed=1)


def _cursor() -> datetime:
    """Where the last successful run left off; the first time, SHIPMENT_SYNC_FIRST_LOOKBACK_HOURS ago."""
    cursor = last_summary(FLOW).get("cursor")
    if cursor:
        return moment(cursor)
    return timezone.now() - timedelta(hours=settings.SHIPMENT_SYNC_FIRST_LOOKBACK_HOURS)


# --- a batch of shipments ------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Parcel:
    """One Fulfil shipment of a batch, with what the batch read for it."""

    shipment: Shipment
    order_link: Link
    link: Link | None = None
    order: CentraOrder | None = None
    siblings: list[Link] = field(default_factory=list)  # the order's other shipment links
    to_create: list[list[int]] = field(default_factory=list)  # [[Centra line id, quantity]] to ship now

    @property
    def system(self) -> str:
        """The system of the channel the order came from ("" for none)."""
        return self.order_link.channel.system if self.order_link.channel else ""


def _sync_batch(shipments: list[Shipment], summary: ShipmentSummary, counter) -> None:
    """Take a batch of shipments through together — the same steps as ``shipment_sync_one``, with each system read
    once and the database written once for the whole batch: the order links and the shipment links in a few
    queries; the Centra orders in one call; the Centra shipments, each created already sent, in one request; the
    steps done noted on every link at once. A shipment the batch cannot take (another of its order in the batch, an
    order another worker holds, a sale Switchyard does not know, anything refused or failing) goes through
    ``shipment_sync_one`` on its own afterwards, so its failure is its own exception and the rest go on."""
    alone: list[Shipment] = []
    later: list[tuple[Shipment, BaseException]] = []  # failed as a batch in a way that may yet land: retried later
    parcels = _parcels(shipments, alone)
    order_links = [parcel.order_link for parcel in parcels]
    with order_locks_held(order_links) as held:
        alone += [parcel.shipment for parcel in parcels if parcel.order_link.pk not in held]
        parcels = [parcel for parcel in parcels if parcel.order_link.pk in held]
        done = _batch_links(parcels, summary, counter)
        parcels = [parcel for parcel in parcels if parcel not in done]
        parcels = _batch_centra(parcels, alone, later)
        reported = _batch_report(parcels, summary, counter)
        synced_at = timezone.now().isoformat()
        links_note_each((parcel.link, {"synced_at": synced_at}) for parcel in reported)
        _batch_mark_orders_shipped(reported)
    objects_succeeded(flow=FLOW, object_refs=[object_ref(parcel.shipment.id) for parcel in reported])
    for parcel in reported:
        _count(SHIPPED if parcel.link.centra_id else HELD, summary, counter)
    for shipment, error in later:
        _count_failed(shipment, error, summary, counter)
    for shipment in alone:
        _sync_counted(shipment, summary, counter)


def _parcels(shipments: list[Shipment], alone: list[Shipment]) -> list[Parcel]:
    """A parcel for each shipment of a sale Switchyard made (its order link found by the sale's id), one per order;
    the others go to ``alone``."""
    sale_ids = {sale_id for shipment in shipments for sale_id in shipment.sale_ids}
    by_sale: dict[int, list[Link]] = {}
    for order_link in Link.objects.filter(kind=Link.Kind.ORDER, fulfil_id__in=sale_ids).select_related("channel"):
        by_sale.setdefault(order_link.fulfil_id, []).append(order_link)
    parcels, orders = [], set()
    for shipment in shipments:
        found = {link.pk: link for sale_id in shipment.sale_ids for link in by_sale.get(sale_id, [])}
        if len(found) != 1 or next(iter(found)) in orders:
            alone.append(shipment)
            continue
        [order_link] = found.values()
        orders.add(order_link.pk)
        parcels.append(Parcel(shipment, order_link))
    return parcels


def _batch_links(parcels: list[Parcel], summary: ShipmentSummary, counter) -> list[Parcel]:
    """Give every parcel its shipment link (made now where missing) and its order's other shipment links, and
    note the identifiers people search by. Returns the parcels another worker already synced (counted as such)."""
    if not parcels:
        return []
    Link.objects.bulk_create(
        [
            Link(
                kind=Link.Kind.SHIPMENT,
                source_system=System.FULFIL,
                source_ref=str(parcel.shipment.id),
                order=parcel.order_link,
                channel=parcel.order_link.channel,
                source_id=parcel.shipment.number or "",
            )
            for parcel in parcels
        ],
        ignore_conflicts=True,
    )
    refs = {str(parcel.shipment.id): parcel for parcel in parcels}
    order_ids = {parcel.order_link.pk for parcel in parcels}
    links = Link.objects.filter(kind=Link.Kind.SHIPMENT).filter(
        Q(order__in=order_ids) | Q(source_system=System.FULFIL, source_ref__in=list(refs))
    )
    by_order: dict[int, list[Link]] = {}
    for link in links:
        parcel = refs.get(link.source_ref) if link.source_system == System.FULFIL else None
        if parcel is not None:
            parcel.link = link
        else:
            by_order.setdefault(link.order_id, []).append(link)
    for parcel in parcels:
        parcel.siblings = by_order.get(parcel.order_link.pk, [])
    done = [parcel for parcel in parcels if parcel.link.detail.get("synced_at")]
    for _ in done:
        _count(ALREADY_SYNCED, summary, counter)
    _batch_identifiers([parcel for parcel in parcels if parcel not in done])
    return done


def _batch_identifiers(parcels: list[Parcel]) -> None:
    """``link_identifiers_record`` for every parcel's shipment number, tracking number and carrier, at once."""
    links_identifiers_record(
        (
            parcel.link,
            {
                "shipment_number": parcel.shipment.number,
                "tracking_number": parcel.shipment.tracking_number,
                "carrier": parcel.shipment.carrier,
                "carrier_service": parcel.shipment.carrier_service,
            },
        )
        for parcel in parcels
    )


def _batch_centra(
    parcels: list[Parcel], alone: list[Shipment], later: list[tuple[Shipment, BaseException]]
) -> list[Parcel]:
    """Bring the parcels to Centra: the orders read in one call, the lines of each planned (and noted on its link
    before Centra is asked), the shipments created already sent in one request, what Centra made noted on the
    links. Returns the parcels whose Centra step is done (or has nothing to ship: bundle parts held); the others go
    to ``alone``."""
    numbers = [parcel.order_link.centra_number for parcel in parcels if parcel.order_link.centra_number]
    try:
        orders = (
            {order.number: order for order in connections.centra().orders(where={"number": numbers})} if numbers else {}
        )
    except Exception:  # Centra unreachable: each shipment tries on its own and, failing, gets its own exception
        alone += [parcel.shipment for parcel in parcels]
        return []
    bundles = _bundles_by_sku({line.sku.lower() for order in orders.values() for line in order.lines})
    codes = {move.product_code for parcel in parcels for move in parcel.shipment.moves if move.product_code}
    centra_skus = centra_skus_mapped(system=System.FULFIL, codes=codes)
    ready, planned, notes, landed = [], [], [], []
    for parcel in parcels:
        parcel.order = orders.get(parcel.order_link.centra_number)
        try:
            if parcel.link.centra_id or parcel.order is None:
                raise _OnItsOwn  # an earlier attempt got part of the way, or no order: the one-shipment path
            note = _batch_plan(parcel, bundles, centra_skus)
        except Exception:  # planning refused (a mapping, a mismatch…): the one-shipment path raises it on its own
            alone.append(parcel.shipment)
            continue
        if note is None:
            landed.append(parcel)
            continue
        notes.append((parcel.link, note))
        (planned if parcel.to_create else ready).append(parcel)
    links_note_each(notes)
    now = timezone.now()
    for parcel in landed:
        parcel.link.created_in_target_at = now
    links_note_each(
        [(parcel.link, {"centra_completed_at": now.isoformat()}) for parcel in landed],
        fields=["centra_id", "created_in_target_at"],
    )
    return ready + landed + _batch_create(planned, alone, later)


class _OnItsOwn(Exception):
    """A parcel the batch leaves to ``shipment_sync_one``."""


def _batch_plan(parcel: Parcel, bundles: dict[str, Bundle], centra_skus: dict[str, str]) -> dict | None:
    """Plan a parcel's Centra shipment as ``_centra_create`` does; returns the notes for its link, or None when an
    earlier attempt's shipment is found in Centra, already sent (then ``link.centra_id`` is set). Raises
    _OnItsOwn for one found not sent yet, and what planning raises."""
    order, link = parcel.order, parcel.link
    planned = link.detail.get("centra_lines")
    if planned:
        claimed = {sibling.centra_id for sibling in parcel.siblings if sibling.centra_id}
        found = _landed(order, planned, set(link.detail.get("centra_known") or []), claimed)
        if found is not None:
            if not found.is_shipped:
                raise _OnItsOwn
            link.centra_id = str(found.id)
            return None
    goods = _shipped_goods(parcel.shipment, order, bundles=bundles, centra_skus=centra_skus)
    planned = _plan_centra_lines(order, goods.skus)
    earlier = _parts_recorded(sibling.detail for sibling in parcel.siblings)
    bundle_planned, bundle_skus = _plan_bundle_lines(order, goods, earlier)
    parcel.to_create = planned + bundle_planned
    return {
        "centra_lines": parcel.to_create,
        "centra_known": [known.id for known in order.shipments],
        "bundle_parts": [[line_id, sku, units] for (line_id, sku), units in sorted(goods.parts.items())],
        "source_skus": dict(Counter(goods.skus) + bundle_skus),
    }


def _batch_create(
    parcels: list[Parcel], alone: list[Shipment], later: list[tuple[Shipment, BaseException]]
) -> list[Parcel]:
    """Create the parcels' Centra shipments, already sent, in one request; note what Centra made on the links.
    Returns the parcels Centra took; the ones it refused (or all, when the request was refused) go to ``alone``,
    whose path finds a shipment that did land by the lines noted before asking. When the request failed in a way
    that may yet land (a timeout, a 5xx), asking again now could make the shipments twice: they go to ``later``,
    each an exception the queue retries once Centra has finished what it was doing."""
    if not parcels:
        return []
    capture = settings.CENTRA_CAPTURE_ON_SHIPMENT
    wanted = [
        ShipmentToCreate(
            order_number=parcel.order.number,
            lines=[(line_id, quantity) for line_id, quantity in parcel.to_create],
            carrier=parcel.shipment.carrier or "",
            service=parcel.shipment.carrier_service or "",
            tracking_number=parcel.shipment.tracking_number or "",
        )
        for parcel in parcels
    ]
    try:
        answers = connections.centra().create_sent_shipments(wanted, capture=capture)
    except Exception as error:
        if may_have_landed(error):
            later += [(parcel.shipment, error) for parcel in parcels]
        else:
            alone += [parcel.shipment for parcel in parcels]
        return []
    made, notes, now = [], [], timezone.now()
    for parcel, answer in zip(parcels, answers, strict=True):
        if isinstance(answer, Exception):
            alone.append(parcel.shipment)
            continue
        created, warnings = answer
        parcel.link.centra_id, parcel.link.created_in_target_at = str(created.id), now
        parcel.order.shipments.append(created)
        notes.append((parcel.link, {"centra_warnings": warnings, "centra_completed_at": now.isoformat()}))
        made.append((parcel, created, warnings))
    links_note_each(notes, fields=["centra_id", "created_in_target_at"])
    for parcel, created, warnings in made:
        if capture and not created.is_captured:
            _capture_not_settled(parcel.order.number, created.id, warnings)
        _other_warnings(parcel.link, parcel.order.number, [w for w in warnings if "captur" not in w.lower()])
    return [parcel for parcel, _, _ in made]


def _batch_report(parcels: list[Parcel], summary: ShipmentSummary, counter) -> list[Parcel]:
    """Tell each parcel's source, as ``_report_to_source`` does: the source's order read and the lines planned for
    each, every plan noted on its link before anything is sent, then each dispatch or marketplace shipment sent,
    and what was sent noted on the links at once. A parcel an earlier attempt already planned goes through
    ``_report_to_source`` (it looks for what landed). Returns the parcels done; a failure is that shipment's
    exception (its Centra shipment stays recorded, so a retry starts at the source)."""
    done, waiting = [], []
    for parcel in parcels:
        quantities = _source_skus(parcel.link, parcel.shipment)
        if parcel.system in SOURCE_LINES and quantities and not parcel.link.detail.get("source_reported_at"):
            waiting.append((parcel, quantities))
        else:
            done.append(parcel)
    skus = {
        system: skus_mapped(system=system, centra_skus={sku for p, q in waiting for sku in q if p.system == system})
        for system in {parcel.system for parcel, _ in waiting}
    }
    carriers: dict = {}
    planned, notes = [], []
    for parcel, quantities in waiting:
        key = SOURCE_LINES[parcel.system]
        try:
            if parcel.link.detail.get(key):
                _report_to_source(parcel.link, parcel.order_link, parcel.shipment, quantities)
                done.append(parcel)
                continue
            carrier = _source_carrier(parcel.shipment, parcel.order_link.channel, carriers)
            order, lines = _plan_source_lines(parcel, quantities, skus[parcel.system])
        except Exception as error:  # this shipment's own failure: its exception, the others go on
            _count_failed(parcel.shipment, error, summary, counter)
            continue
        planned.append((parcel, order, lines, carrier))
        notes.append((parcel.link, {key: lines}))
    links_note_each(notes)
    sent = []
    for parcel, order, lines, carrier in planned:
        try:
            note = _send_to_source(parcel, order, lines, carrier)
        except Exception as error:
            _count_failed(parcel.shipment, error, summary, counter)
            continue
        sent.append(
            (parcel.link, {"source_reported_at": timezone.now().isoformat(), "source_carrier": carrier, **note})
        )
        done.append(parcel)
    links_note_each(sent)
    return done


SOURCE_LINES = {System.VIRTUALSTOCK: "virtualstock_lines", System.MARKETPLACE: "marketplace_lines"}


def _plan_source_lines(parcel: Parcel, quantities: dict[str, int], codes: dict[str, str]):
    """(the source's order, the lines to report) for a parcel, from the source's order as it is now."""
    if parcel.system == System.VIRTUALSTOCK:
        order = connections.virtualstock().order(int(parcel.order_link.source_id))
        reported = _lines_recorded((sibling.detail for sibling in parcel.siblings), SOURCE_LINES[parcel.system])
        return order, _plan_virtualstock_lines(order, quantities, reported, codes)
    order_id = parcel.order_link.source_id or parcel.order_link.source_ref
    order = connections.marketplace().order(order_id)
    return order, _plan_marketplace_lines(order, order_id, quantities, codes)


def _send_to_source(parcel: Parcel, order, lines: list, carrier: str) -> dict:
    """Send the parcel's planned lines to its source; returns what to note on its link."""
    if parcel.system == System.VIRTUALSTOCK:
        _dispatch(order, parcel.shipment, lines, carrier)
        return {}
    order_id = parcel.order_link.source_id or parcel.order_link.source_ref
    shipped = [ShipmentLine(line_id, quantity) for line_id, quantity in lines]
    return {
        "marketplace_shipment_id": connections.marketplace().ship(
            order_id, shipped, carrier, parcel.shipment.tracking_number
        )
    }


def _batch_mark_orders_shipped(parcels: list[Parcel]) -> None:
    """``_mark_order_shipped`` for the parcels' orders, from what the batch read and made, in one UPDATE."""
    shipped_orders = []
    for parcel in parcels:
        order_link, order = parcel.order_link, parcel.order
        if order_link.shipped_at or order is None:
            continue
        if any(not sibling.detail.get("synced_at") for sibling in parcel.siblings):
            continue
        if fully_shipped(order):
            shipped_orders.append(order_link.pk)
    if shipped_orders:
        Link.objects.filter(pk__in=shipped_orders, shipped_at__isnull=True).update(shipped_at=timezone.now())


# --- one shipment -------------------------------------------------------------------------------------------------


def shipment_sync_one(*, shipment: Shipment) -> str:
    """Bring one Fulfil shipment to Centra and to the order's source, resuming after the last step done. Returns
    SHIPPED, HELD (only parts of bundles whose units are not complete yet), ALREADY_SYNCED, or NOT_OURS for a sale
    Switchyard does not know. Raises MissingMapping (a SKU or carrier), ShipmentDoesNotMatch, or the connectors'
    errors."""
    order_link = _order_link_for(shipment)
    if order_link is None:
        return NOT_OURS
    link, _ = Link.objects.get_or_create(
        kind=Link.Kind.SHIPMENT,
        source_system=System.FULFIL,
        source_ref=str(shipment.id),
        defaults={"order": order_link, "channel": order_link.channel, "source_id": shipment.number or ""},
    )
    if link.detail.get("synced_at"):
        return ALREADY_SYNCED
    with order_lock(order_link):
        link.refresh_from_db()
        if link.detail.get("synced_at"):  # another worker finished it while this one waited
            return ALREADY_SYNCED
        link_identifiers_record(
            link,
            shipment_number=shipment.number,
            tracking_number=shipment.tracking_number,
            carrier=shipment.carrier,
            carrier_service=shipment.carrier_service,
        )
        _centra_create(link, order_link, shipment)
        if link.centra_id:
            _centra_complete(link, order_link, shipment)
        _report_to_source(link, order_link, shipment, _source_skus(link, shipment))
        link_step_done(link, "synced_at")
        _mark_order_shipped(order_link)
    object_succeeded(flow=FLOW, object_ref=object_ref(shipment.id))
    return SHIPPED if link.centra_id else HELD


def _order_link_for(shipment: Shipment) -> Link | None:
    """The order a shipment ships: by its sale's id (set when Switchyard made the sale), else by the Centra order
    number the sale carries as its reference. None for a sale Switchyard did not make."""
    links = list(Link.objects.filter(kind=Link.Kind.ORDER, fulfil_id__in=shipment.sale_ids))
    if not links and shipment.sale_ids:
        sale = connections.fulfil().get("sale.sale", shipment.sale_ids[0], ["reference", "channel_identifier"]) or {}
        numbers = {int(value) for value in (sale.get("reference"), sale.get("channel_identifier")) if _digits(value)}
        links = list(Link.objects.filter(kind=Link.Kind.ORDER, centra_number__in=numbers))
    if len(links) > 1:
        raise ShipmentDoesNotMatch(
            f"Shipment {shipment.number} ships the sales of {len(links)} orders; ship each order separately",
            system=System.FULFIL,
            operation="shipment sync",
        )
    return links[0] if links else None


def _digits(value) -> bool:
    return isinstance(value, str) and value.isdigit()


def _shipped_skus(shipment: Shipment) -> dict[str, int]:
    """Centra SKU → units that left the warehouse in this shipment, each component of a bundle as itself."""
    quantities: Counter[str] = Counter()
    for move in shipment.moves:
        if move.state == "cancelled" or move.quantity <= 0:
            continue
        if not move.product_code:
            raise ShipmentDoesNotMatch(
                f"Shipment {shipment.number}: a move has no product code", system=System.FULFIL, operation="shipment"
            )
        quantities[centra_sku_for(system=System.FULFIL, code=move.product_code)] += move.quantity
    if not quantities:
        raise ShipmentDoesNotMatch(
            f"Shipment {shipment.number} is done in Fulfil with no goods in it",
            system=System.FULFIL,
            operation="shipment sync",
        )
    return dict(quantities)


# --- Centra -------------------------------------------------------------------------------------------------------


def _centra_order(order_link: Link) -> CentraOrder:
    order = connections.centra().order(order_link.centra_number) if order_link.centra_number else None
    if order is None:
        raise MissingInTarget(
            f"Centra has no order {order_link.centra_number} for {order_link}", system=System.CENTRA, operation="orders"
        )
    return order


def _centra_create(link: Link, order_link: Link, shipment: Shipment) -> None:
    """Create the Centra shipment of what this Fulfil shipment ships, once: its own lines' units and the bundle units
    it completes. The lines are recorded before Centra is asked, so when an answer is lost the next attempt finds the
    shipment that did land instead of making a second one. A parcel of bundle parts that completes no bundle unit
    makes no Centra shipment: the link keeps the parts (``bundle_parts``) and no ``centra_id``."""
    if link.centra_id:
        return
    order = _centra_order(order_link)
    planned = link.detail.get("centra_lines")
    if planned:
        landed = _landed(order, planned, set(link.detail.get("centra_known") or []), _claimed(order_link, link))
        if landed is not None:
            link.centra_id = str(landed.id)
            link.created_in_target_at = timezone.now()
            link.save(update_fields=["centra_id", "created_in_target_at", "updated_at"])
            return
    goods = _shipped_goods(shipment, order)
    planned = _plan_centra_lines(order, goods.skus)
    bundle_planned, bundle_skus = _plan_bundle_lines(order, goods, _sibling_parts(order_link, link))
    planned += bundle_planned
    link_note(
        link,
        centra_lines=planned,
        centra_known=[known.id for known in order.shipments],
        bundle_parts=[[line_id, sku, units] for (line_id, sku), units in sorted(goods.parts.items())],
        source_skus=dict(Counter(goods.skus) + bundle_skus),
    )
    if not planned:
        return  # parts of bundles whose units are not complete: held until the rest leaves the warehouse
    capture = settings.CENTRA_CAPTURE_ON_SHIPMENT
    created, warnings = connections.centra().create_shipment(
        order_number=order.number, lines=[(line_id, quantity) for line_id, quantity in planned], capture=capture
    )
    link.centra_id = str(created.id)
    link.created_in_target_at = timezone.now()
    links_note_each([(link, {"centra_warnings": warnings})], fields=["centra_id", "created_in_target_at"])
    if capture and not created.is_captured:
        _capture_not_settled(order.number, created.id, warnings)
    _other_warnings(link, order.number, [warning for warning in warnings if "captur" not in warning.lower()])


def _claimed(order_link: Link, link: Link) -> set[str]:
    """The Centra shipments other Fulfil shipments of the order already stand for."""
    siblings = order_link.parts.filter(kind=Link.Kind.SHIPMENT).exclude(pk=link.pk).exclude(centra_id="")
    return set(siblings.values_list("centra_id", flat=True))


def _landed(order: CentraOrder, planned: list, known: set[int], claimed: set[str]):
    """A Centra shipment made by an earlier attempt: new since it was planned, unclaimed, with exactly its lines."""
    wanted = sorted((int(line_id), int(quantity)) for line_id, quantity in planned)
    for shipment in order.shipments:
        lines = sorted((line.order_line_id, line.quantity) for line in shipment.lines)
        if shipment.id not in known and str(shipment.id) not in claimed and lines == wanted:
            return shipment
    return None


def _in_shipments(order: CentraOrder) -> Counter[int]:
    """Order line id → units already in the order's Centra shipments."""
    in_shipments: Counter[int] = Counter()
    for shipment in order.shipments:
        for line in shipment.lines:
            in_shipments[line.order_line_id] += line.quantity
    return in_shipments


def _plan_centra_lines(order: CentraOrder, quantities: dict[str, int]) -> list[list[int]]:
    """[[order line id, quantity]] covering these units, line by line, from what is left to ship on each line."""
    in_shipments = _in_shipments(order)
    planned = []
    for sku, quantity in quantities.items():
        left = quantity
        for line in sorted((line for line in order.lines if line.sku == sku), key=lambda line: line.id):
            take = min(left, line.quantity - in_shipments[line.id])
            if take > 0:
                planned.append([line.id, take])
                left -= take
        if left:
            raise ShipmentDoesNotMatch(
                f"Centra order {order.number} has {quantity - left} unit(s) of {sku} left to ship, "
                f"but Fulfil shipped {quantity}",
                system=System.CENTRA,
                operation="createShipment",
            )
    return planned


# --- bundles ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleLine:
    """A Centra order line sold as a bundle, which Fulfil ships as its components."""

    line_id: int
    sku: str
    quantity: int  # bundle units ordered
    components: dict[str, int]  # component Centra SKU → units of it in one bundle

    def component(self, sku: str) -> str | None:
        """The bundle's own spelling of component ``sku`` (compared without case), or None when it has no such
        component."""
        return next((name for name in self.components if name.lower() == sku.lower()), None)


@dataclass
class ShippedGoods:
    """What left the warehouse in one Fulfil shipment, in Centra's terms."""

    skus: Counter[str]  # Centra SKU → units, for the order's own lines
    parts: Counter[tuple[int, str]]  # (bundle line id, component SKU) → units
    bundles: dict[int, BundleLine]  # the order's bundle lines, by id


def _bundles_by_sku(skus: set[str]) -> dict[str, Bundle]:
    """The bundles among these SKUs (lower-cased), by lower-cased bundle SKU, with their components."""
    return {
        bundle.bundle_sku.lower(): bundle
        for bundle in Bundle.objects.alias(key=Lower("bundle_sku")).filter(key__in=skus).prefetch_related("components")
    }


def _bundle_lines(order: CentraOrder, known: dict[str, Bundle] | None = None) -> dict[int, BundleLine]:
    """The order's lines whose SKU is a bundle with components, by line id. ``known``: the bundles already read
    for these SKUs (``_bundles_by_sku``), else they are read now."""
    skus = {line.sku.lower() for line in order.lines if line.quantity > 0}
    bundles = _bundles_by_sku(skus) if known is None else known
    found = {}
    for line in order.lines:
        bundle = bundles.get(line.sku.lower())
        components = {part.component_sku: part.quantity for part in bundle.components.all()} if bundle else {}
        if components and line.quantity > 0:
            found[line.id] = BundleLine(line.id, line.sku, line.quantity, components)
    return found


def _shipped_goods(
    shipment: Shipment,
    order: CentraOrder,
    *,
    bundles: dict[str, Bundle] | None = None,
    centra_skus: dict[str, str] | None = None,
) -> ShippedGoods:
    """Sort the units that left the warehouse between the order's own lines (by Centra SKU) and its bundle lines (by
    the Centra line id the move's sale line carries). A batch passes what it read for all its shipments at once:
    the ``bundles`` among the orders' SKUs and the ``centra_skus`` of the moves' product codes. Raises
    ShipmentDoesNotMatch, MissingMapping."""
    moves = [move for move in shipment.moves if move.state != "cancelled" and move.quantity > 0]
    if any(not move.product_code for move in moves):
        raise ShipmentDoesNotMatch(
            f"Shipment {shipment.number}: a move has no product code", system=System.FULFIL, operation="shipment"
        )
    if not moves:
        raise ShipmentDoesNotMatch(
            f"Shipment {shipment.number} is done in Fulfil with no goods in it",
            system=System.FULFIL,
            operation="shipment sync",
        )
    centra_skus = centra_skus or {}
    bundle_lines = _bundle_lines(order, bundles)
    # A move's origin is its sale line, which names the Centra line; only a bundle needs it, so only then is it read.
    sale_lines = (
        connections.fulfil().sale_lines(move.sale_line_id for move in moves if move.sale_line_id)
        if bundle_lines
        else {}
    )
    own_skus = {line.sku.lower() for line in order.lines if line.id not in bundle_lines}
    goods = ShippedGoods(skus=Counter(), parts=Counter(), bundles=bundle_lines)
    for move in moves:
        sku = centra_skus.get(move.product_code) or centra_sku_for(system=System.FULFIL, code=move.product_code)
        sale_line = sale_lines.get(move.sale_line_id) if move.sale_line_id else None
        bundle = _bundle_of(sku, sale_line.channel_identifier if sale_line else None, bundle_lines, own_skus)
        if bundle is None:
            goods.skus[sku] += move.quantity
        elif component := bundle.component(sku):
            goods.parts[(bundle.line_id, component)] += move.quantity
        else:
            raise ShipmentDoesNotMatch(
                f"Shipment {shipment.number} ships {sku} for Centra order {order.number}'s bundle {bundle.sku}, "
                f"which has no such component: correct the bundle mapping or the sale",
                system=System.FULFIL,
                operation="shipment sync",
            )
    return goods


def _bundle_of(
    sku: str, centra_line: str | None, bundles: dict[int, BundleLine], own_skus: set[str]
) -> BundleLine | None:
    """The bundle line a unit of ``sku`` ships part of: the Centra line its sale line names, when that is a bundle.
    A sale line that names no Centra line (a sale made by hand): the order's one bundle with this component, unless
    the order has the SKU as a line of its own."""
    if centra_line and centra_line.isdigit():
        return bundles.get(int(centra_line))
    if sku.lower() in own_skus:
        return None
    candidates = [bundle for bundle in bundles.values() if bundle.component(sku)]
    return candidates[0] if len(candidates) == 1 else None


def _sibling_parts(order_link: Link, link: Link) -> Counter[tuple[int, str]]:
    """Bundle components the order's other Fulfil shipments carried, as their links recorded them."""
    siblings = order_link.parts.filter(kind=Link.Kind.SHIPMENT).exclude(pk=link.pk)
    return _parts_recorded(siblings.values_list("detail", flat=True))


def _parts_recorded(details) -> Counter[tuple[int, str]]:
    """Bundle components as these shipment links' details recorded them."""
    parts: Counter[tuple[int, str]] = Counter()
    for detail in details:
        for line_id, sku, units in detail.get("bundle_parts") or []:
            parts[(int(line_id), sku)] += int(units)
    return parts


def _plan_bundle_lines(
    order: CentraOrder, goods: ShippedGoods, earlier: Counter[tuple[int, str]]
) -> tuple[list[list[int]], Counter[str]]:
    """[[bundle line id, units]] this shipment completes, and the same by bundle SKU. A bundle unit is complete once
    every component of it has left the warehouse, counted over the order's Fulfil shipments (``earlier`` and this
    one); units Centra already shows shipped are not shipped again. Raises ShipmentDoesNotMatch when more of a
    component left than the line's bundles hold."""
    in_shipments = _in_shipments(order)
    planned: list[list[int]] = []
    shipped: Counter[str] = Counter()
    for line_id in sorted({line_id for line_id, _ in goods.parts}):
        bundle = goods.bundles[line_id]
        complete = bundle.quantity
        for component, per_unit in bundle.components.items():
            units = earlier[(line_id, component)] + goods.parts[(line_id, component)]
            if units > per_unit * bundle.quantity:
                raise ShipmentDoesNotMatch(
                    f"Centra order {order.number} has {bundle.quantity} × bundle {bundle.sku}, so "
                    f"{per_unit * bundle.quantity} unit(s) of {component}, but Fulfil has shipped {units}",
                    system=System.CENTRA,
                    operation="createShipment",
                )
            complete = min(complete, units // per_unit)
        if (take := complete - in_shipments[line_id]) > 0:
            planned.append([line_id, take])
            shipped[bundle.sku] += take
    return planned, shipped


def _centra_complete(link: Link, order_link: Link, shipment: Shipment) -> None:
    """Mark the Centra shipment sent with the carrier, service and tracking number, once."""
    if link.detail.get("centra_completed_at"):
        return
    client = connections.centra()
    try:
        _done_shipment, warnings = client.complete_shipment(
            shipment_id=int(link.centra_id),
            carrier=shipment.carrier or "",
            service=shipment.carrier_service or "",
            tracking_number=shipment.tracking_number or "",
        )
    except DataError:
        # Refused: maybe an earlier attempt completed it and the answer was lost. Look before giving up.
        current = next((s for s in _centra_order(order_link).shipments if str(s.id) == link.centra_id), None)
        if current is None or not current.is_shipped:
            raise
        warnings = []
    link_step_done(link, "centra_completed_at", centra_warnings=link.detail.get("centra_warnings", []) + warnings)
    _other_warnings(link, order_link.centra_number, warnings)


def _capture_not_settled(order_number: int, centra_shipment_id: int, warnings: list[str]) -> None:
    message = "; ".join(warnings) or "Centra did not capture the payment when the shipment was created"
    failure_record(
        flow=FLOW,
        object_type="order",
        object_ref=f"centra:{order_number}:capture",
        error=CaptureNotSettled(message, system=System.CENTRA, operation="createShipment"),
        kind_code="payment_capture_lag",
        title=f"Order {order_number} shipped but its payment was not captured",
        system=System.CENTRA,
        refs=[str(order_number)],
        context={"check": "capture", "order_number": order_number, "centra_shipment_id": centra_shipment_id},
    )


def _other_warnings(link: Link, order_number: int, warnings: list[str]) -> None:
    """Centra's other warnings on a shipment it made: shown to a person, never dropped."""
    if not warnings:
        return
    failure_record(
        flow=FLOW,
        object_type="shipment",
        object_ref=f"{object_ref(int(link.source_ref))}:warning",
        error=DataError("; ".join(warnings), system=System.CENTRA, operation="shipment"),
        title=f"Order {order_number}: Centra warned about shipment {link.centra_id}",
        system=System.CENTRA,
        refs=[str(order_number), link.source_id],
        context={"check": "warning", "shipment_id": int(link.source_ref)},
    )


def _mark_order_shipped(order_link: Link) -> None:
    """Record when the order is fully shipped: every unit in a completed Centra shipment, every shipment synced."""
    if order_link.shipped_at:
        return
    if order_link.parts.filter(kind=Link.Kind.SHIPMENT).exclude(detail__has_key="synced_at").exists():
        return
    if fully_shipped(_centra_order(order_link)):
        Link.objects.filter(pk=order_link.pk, shipped_at__isnull=True).update(shipped_at=timezone.now())


def fully_shipped(order: CentraOrder) -> bool:
    """Whether every unit of the Centra order is in one of its completed shipments."""
    shipped: Counter[int] = Counter()
    for shipment in order.shipments:
        if shipment.is_shipped:
            for line in shipment.lines:
                shipped[line.order_line_id] += line.quantity
    return all(shipped[line.id] >= line.quantity for line in order.lines)


# --- the order's source -------------------------------------------------------------------------------------------


def _source_skus(link: Link, shipment: Shipment) -> dict[str, int]:
    """Centra SKU → units of the order's lines this shipment ships, a bundle under its own SKU, as planned for
    Centra; for a shipment planned before bundles were traced, its moves as they are."""
    if "source_skus" in link.detail:
        return link.detail["source_skus"]
    return _shipped_skus(shipment)


def _report_to_source(link: Link, order_link: Link, shipment: Shipment, quantities: dict[str, int]) -> None:
    """Tell the retailer (Virtualstock) or marketplace the order came from, with its own carrier code, once. A parcel
    of held bundle parts has nothing to tell."""
    channel = order_link.channel
    if channel is None or channel.system not in (System.VIRTUALSTOCK, System.MARKETPLACE) or not quantities:
        return
    if link.detail.get("source_reported_at"):
        return
    carrier = _source_carrier(shipment, channel)
    if channel.system == System.VIRTUALSTOCK:
        _dispatch_at_virtualstock(link, order_link, shipment, quantities, carrier)
    else:
        _ship_at_marketplace(link, order_link, shipment, quantities, carrier)
    link_step_done(link, "source_reported_at", source_carrier=carrier)


def _source_carrier(shipment: Shipment, channel, codes: dict | None = None) -> str:
    """The source's code for the parcel's carrier and service (``codes``: those a batch already looked up, by
    (system, carrier, service)). Raises ShipmentDoesNotMatch without a carrier and tracking number, MissingMapping."""
    if not shipment.tracking_number or not shipment.carrier:
        raise ShipmentDoesNotMatch(
            f"Shipment {shipment.number} is done in Fulfil without a carrier and tracking number; "
            f"{channel.name} needs both",
            system=System.FULFIL,
            operation="shipment sync",
        )
    key = (channel.system, shipment.carrier, shipment.carrier_service or "")
    if codes is not None and key in codes:
        return codes[key]
    code = carrier_code_for(system=channel.system, carrier=shipment.carrier, service=shipment.carrier_service or "")
    if codes is not None:
        codes[key] = code
    return code


def _sibling_lines(order_link: Link, link: Link, key: str) -> Counter[str]:
    """Units of each source line the order's other shipments have already reported."""
    siblings = order_link.parts.filter(kind=Link.Kind.SHIPMENT).exclude(pk=link.pk)
    return _lines_recorded(siblings.values_list("detail", flat=True), key)


def _lines_recorded(details, key: str) -> Counter[str]:
    """Units of each source line as these shipment links' details recorded them under ``key``."""
    reported: Counter[str] = Counter()
    for detail in details:
        for entry in detail.get(key) or []:
            reported[str(entry[-2])] += int(entry[-1])
    return reported


def _dispatch_at_virtualstock(
    link: Link, order_link: Link, shipment: Shipment, quantities: dict[str, int], carrier: str
) -> None:
    client = connections.virtualstock()
    order = client.order(int(order_link.source_id))
    planned = link.detail.get("virtualstock_lines")
    if planned and _dispatched(order, planned, shipment.tracking_number):
        return  # an earlier attempt's dispatch landed; its answer was lost
    if not planned:
        planned = _plan_virtualstock_lines(order, quantities, _sibling_lines(order_link, link, "virtualstock_lines"))
        link_note(link, virtualstock_lines=planned)
    _dispatch(order, shipment, planned, carrier)


def _dispatch(order: VirtualstockOrder, shipment: Shipment, planned: list, carrier: str) -> None:
    """Send Virtualstock the dispatch of the planned lines, once."""
    client = connections.virtualstock()
    when = shipment.effective_date or timezone.localdate()
    lines = [
        DispatchLine(part_number, line_ref, quantity, shipment.tracking_number, carrier, when)
        for part_number, line_ref, quantity in planned
    ]
    try:
        client.dispatch(order.id, lines)
    except DataError:
        # Refused: an earlier attempt may have landed after all. Look before giving up.
        if not _dispatched(client.order(order.id), planned, shipment.tracking_number):
            raise


def _plan_virtualstock_lines(
    order: VirtualstockOrder, quantities: dict[str, int], reported: Counter[str], known: dict[str, str] | None = None
) -> list:
    """[[part number, line ref, quantity]] for these units, from what each line has left to dispatch (``known``:
    part numbers a batch already read, by Centra SKU)."""
    codes = _source_codes(System.VIRTUALSTOCK, quantities, known)
    planned = []
    for sku, quantity in quantities.items():
        left = quantity
        for line in order.lines:
            if line.part_number.lower() != codes[sku].lower() or line.status.startswith("CANCEL"):
                continue
            take = min(left, line.quantity - reported[line.line_ref])
            if take > 0:
                planned.append([line.part_number, line.line_ref, take])
                left -= take
        if left:
            raise ShipmentDoesNotMatch(
                f"Virtualstock order {order.reference} has {quantity - left} unit(s) of {codes[sku]} left to "
                f"dispatch, but Fulfil shipped {quantity}",
                system=System.VIRTUALSTOCK,
                operation="dispatch",
            )
    return planned


def _dispatched(order: VirtualstockOrder, planned: list, tracking_number: str) -> bool:
    """Whether every planned line shows this parcel's dispatch (or, where the order lists no dispatches, has been
    dispatched in full)."""
    items = {str(item.get("line_reference")): item for item in order.raw.get("items") or []}
    for _part_number, line_ref, _quantity in planned:
        item = items.get(str(line_ref)) or {}
        if "dispatches" in item:
            if not any(entry.get("tracking_number") == tracking_number for entry in item["dispatches"] or []):
                return False
        elif item.get("status") != "DISPATCH":
            return False
    return True


def _ship_at_marketplace(
    link: Link, order_link: Link, shipment: Shipment, quantities: dict[str, int], carrier: str
) -> None:
    client = connections.marketplace()
    order_id = order_link.source_id or order_link.source_ref
    planned = link.detail.get("marketplace_lines")
    if not planned:
        planned = _plan_marketplace_lines(client.order(order_id), order_id, quantities)
        # Kept before sending: the marketplace knows a parcel by its tracking number and the same lines, so a
        # retry sends exactly this again and gets the first shipment back rather than a second.
        link_note(link, marketplace_lines=planned)
    lines = [ShipmentLine(line_id, quantity) for line_id, quantity in planned]
    link_note(link, marketplace_shipment_id=client.ship(order_id, lines, carrier, shipment.tracking_number))


def _plan_marketplace_lines(order, order_id: str, quantities: dict[str, int], known: dict[str, str] | None = None):
    """[[line id, quantity]] for these units, from what each line has open (``known``: seller SKUs a batch already
    read, by Centra SKU)."""
    codes = _source_codes(System.MARKETPLACE, quantities, known)
    planned = []
    for sku, quantity in quantities.items():
        left = quantity
        for line in order.lines:
            if line.sku.lower() == codes[sku].lower() and (take := min(left, line.open_quantity)) > 0:
                planned.append([line.line_id, take])
                left -= take
        if left:
            raise ShipmentDoesNotMatch(
                f"Marketplace order {order_id} has {quantity - left} unit(s) of {codes[sku]} open, "
                f"but Fulfil shipped {quantity}",
                system=System.MARKETPLACE,
                operation="shipment_create",
            )
    return planned


def _source_codes(system: str, quantities: dict[str, int], known: dict[str, str] | None) -> dict[str, str]:
    """The source's code of each Centra SKU: from ``known`` when it has them all, else read (raising
    MissingMapping for one without a code)."""
    if known is not None and all(sku in known for sku in quantities):
        return known
    return skus_for(system=system, centra_skus=list(quantities))


# --- failures and retries -----------------------------------------------------------------------------------------


def _record(shipment: Shipment, error: BaseException):
    number = shipment.number or str(shipment.id)
    link = (
        Link.objects.filter(kind=Link.Kind.SHIPMENT, source_system=System.FULFIL, source_ref=str(shipment.id))
        .select_related("order")
        .first()
    )
    order_refs = [str(link.order.centra_number or ""), link.order.source_ref] if link and link.order else []
    if isinstance(error, MissingMapping):
        title = f"Shipment {number} waits for a mapping: {error.message}"
    else:
        title = f"Shipment {number} could not be synced"
    return failure_record(
        flow=FLOW,
        object_type="shipment",
        object_ref=object_ref(shipment.id),
        error=error,
        title=title,
        system=getattr(error, "system", "") or System.FULFIL,
        refs=[number, shipment.tracking_number or "", *order_refs],
        context={"shipment_id": shipment.id},
        payload={"shipment": _as_shown(shipment)} if isinstance(error, MissingMapping | ShipmentDoesNotMatch) else None,
    )


def _as_shown(shipment: Shipment) -> dict:
    """The shipment as people need to see it on the exception (JSON-safe)."""
    return {
        "id": shipment.id,
        "number": shipment.number,
        "sales": list(shipment.sale_ids),
        "carrier": shipment.carrier,
        "service": shipment.carrier_service,
        "tracking_number": shipment.tracking_number,
        "moves": [{"product": move.product_code, "quantity": move.quantity} for move in shipment.moves],
    }


def retry(exception) -> None:
    """Re-run one shipment through the flow, or check a capture again (the exception queue calls this)."""
    check = exception.context.get("check")
    if check == "capture":
        order = connections.centra().order(exception.context["order_number"])
        shipments = [s for s in order.shipments if s.id == exception.context["centra_shipment_id"]] if order else []
        if not (order and (order.is_captured or any(s.is_captured for s in shipments))):
            raise CaptureNotSettled(
                "Centra still shows the payment as not captured", system=System.CENTRA, operation="orders"
            )
        return
    if check == "warning":
        return  # read and acted on: there is nothing to send again
    shipment = connections.fulfil().shipment(exception.context["shipment_id"])
    if shipment is None:
        raise DataError(
            f"Fulfil has no shipment {exception.context['shipment_id']} any more",
            system=System.FULFIL,
            operation="stock.shipment.out.search_read",
        )
    shipment_sync_one(shipment=shipment)


register_retry_handler(FLOW, retry)
