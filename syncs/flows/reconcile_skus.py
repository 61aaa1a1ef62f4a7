"""SKU reconciliation: Centra's SKUs compared with every system that should hold them.

Centra is the master of the catalogue. Every Centra SKU should exist in Fulfil (it fulfils and invoices it) and in
Inventory Planner (it plans it); on Virtualstock and a marketplace, the SKUs the brand lists there — those with a
SKU mapping for that system, or every SKU where that system's codes are Centra's own (``SKU_SAME_AS_CENTRA``).
Each SKU missing where it should exist is one ``missing_in_target`` exception, raised once and kept night to
night, resolved by itself once the SKU appears. Codes a system holds that match no Centra SKU are counted in the
report (a retired product, or a typo in a mapping), not raised.

The counts per system are the run's summary, which the reconciliation page shows.
"""

from dataclasses import dataclass, field

from django.conf import settings

from exceptions.models import SyncException
from exceptions.registry import register_retry_handler
from exceptions.services import ACTIVE, failure_record, objects_succeeded
from mappings.models import Channel, SkuMapping, System
from mappings.services import sku_for
from syncs import connections
from syncs.connectors.errors import DataError
from syncs.runs import RunCounter

FLOW = "reconcile_skus"
MAX_NEW_PER_RUN = 5000  # exceptions raised per run at most; a larger gap is raised over the next nights
SYSTEMS = (System.FULFIL, System.INVENTORY_PLANNER, System.VIRTUALSTOCK, System.MARKETPLACE)


class MissingInTarget(DataError):
    exception_kind = "missing_in_target"


@dataclass
class SkuReconcileSummary:
    examined: int = 0  # Centra SKUs
    missing: int = 0
    raised: int = 0
    not_raised_yet: int = 0
    resolved: int = 0
    failed: int = 0
    systems: dict[str, dict] = field(default_factory=dict)


def object_ref(system: str, sku: str) -> str:
    return f"{system}:{sku}"


def reconcile_skus_run(*, counter: RunCounter | None = None) -> SkuReconcileSummary:
    """Compare the SKU sets and raise or resolve ``missing_in_target``. A system that cannot be read is reported
    in its row (and the run goes on with the others); its exceptions are left as they were."""
    summary = SkuReconcileSummary()
    centra = {size.sku for size in connections.centra().sizes()}
    summary.examined = len(centra)
    active = set(
        SyncException.objects.filter(flow=FLOW, status__in=ACTIVE).values_list("object_ref", flat=True).iterator()
    )
    missing_now: set[str] = set()
    read: set[str] = set()
    for system in _systems():
        try:
            held, unmatched = _centra_skus_in(system)
        except Exception as error:  # one system down must not stop the others' reconciliation
            summary.failed += 1
            summary.systems[system] = {"error": str(error)[:300]}
            continue
        read.add(system)
        expected = _expected_in(system, centra)
        missing = sorted(expected - held)
        summary.systems[system] = {
            "expected": len(expected),
            "present": len(expected) - len(missing),
            "missing": len(missing),
            "only_there": unmatched + len(held - centra),
        }
        summary.missing += len(missing)
        for sku in missing:
            ref = object_ref(system, sku)
            missing_now.add(ref)
            if ref in active:
                continue
            if summary.raised >= MAX_NEW_PER_RUN:
                summary.not_raised_yet += 1
                continue
            _raise(system, sku)
            summary.raised += 1
    present_again = {ref for ref in active - missing_now if ref.split(":", 1)[0] in read}
    if present_again:
        summary.resolved = objects_succeeded(flow=FLOW, object_refs=sorted(present_again), note="The SKU is there now.")
    if counter:
        counter.add(examined=summary.examined, succeeded=summary.examined)
    return summary


def _systems() -> list[str]:
    """Fulfil and Inventory Planner always; Virtualstock and the marketplace when a channel sells there."""
    channels = set(Channel.objects.filter(active=True).values_list("system", flat=True))
    return [
        system for system in SYSTEMS if system not in (System.VIRTUALSTOCK, System.MARKETPLACE) or system in channels
    ]


def _expected_in(system: str, centra: set[str]) -> set[str]:
    if system in (System.FULFIL, System.INVENTORY_PLANNER) or system in settings.SKU_SAME_AS_CENTRA:
        return set(centra)
    mapped = set(SkuMapping.objects.filter(system=system).values_list("centra_sku", flat=True).iterator())
    return mapped & centra


def _codes_in(system: str):
    if system == System.FULFIL:
        return (product.code for product in connections.fulfil().products(with_stock=False))
    if system == System.INVENTORY_PLANNER:
        return (variant.sku for variant in connections.inventory_planner().variants())
    if system == System.VIRTUALSTOCK:
        return (product.part_number for product in connections.virtualstock().products())
    return (offer.sku for offer in connections.marketplace().offers())


def _centra_skus_in(system: str) -> tuple[set[str], int]:
    """The SKUs ``system`` holds in Centra's terms (its codes read through its SKU mappings), and how many of its
    codes no mapping translates."""
    mapped = _mapped(system)
    same = system in settings.SKU_SAME_AS_CENTRA
    held, unmatched = set(), 0
    for code in _codes_in(system):
        if not code:
            continue
        sku = mapped.get(code.lower()) or (code if same else None)
        if sku is None:
            unmatched += 1
        else:
            held.add(sku)
    return held, unmatched


def _mapped(system: str) -> dict[str, str]:
    rows = SkuMapping.objects.filter(system=system).values_list("external_code", "centra_sku").iterator()
    return {code.lower(): sku for code, sku in rows}


def _holds(system: str, sku: str) -> bool:
    """Whether ``system`` holds the one SKU, asked by its code (for a retry: no full listing)."""
    code = sku_for(system=system, centra_sku=sku)
    if system == System.FULFIL:
        return bool(connections.fulfil().products_by_code([code]))
    if system == System.INVENTORY_PLANNER:
        return any(True for _ in connections.inventory_planner().variants(filters={"sku": code}))
    if system == System.VIRTUALSTOCK:
        return any(True for _ in connections.virtualstock().products(part_number=code))
    return any(offer.sku == code for offer in connections.marketplace().offers(sku=code))


def _raise(system: str, sku: str) -> None:
    label = System(system).label
    failure_record(
        flow=FLOW,
        object_type="sku",
        object_ref=object_ref(system, sku),
        error=MissingInTarget(
            f"{sku} is in Centra's catalogue but not in {label}", system=system, operation="SKU reconciliation"
        ),
        title=f"SKU {sku} is missing in {label}",
        system=system,
        refs=[sku],
        context={"sku": sku, "target": system},
    )


def retry(exception) -> None:
    """Look again for the one SKU (the queue calls this): resolves when it is there, else it stays open."""
    system, sku = exception.context["target"], exception.context["sku"]
    if not _holds(system, sku):
        raise MissingInTarget(
            f"{sku} is still not in {System(system).label}", system=system, operation="SKU reconciliation"
        )


register_retry_handler(FLOW, retry)
