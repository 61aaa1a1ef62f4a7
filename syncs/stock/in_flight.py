"""Units in flight: sold on a channel, seen by Switchyard, not yet recorded by the stock master.

An order takes seconds to minutes to reach the stock master (imported into Centra, then exported to Fulfil). In a
flash sale that is long enough for every other channel to sell the same last units. So from the moment Switchyard
sees an order until the master has it, its units count as sold on every channel: available-to-sell subtracts them
(the ``in_flight`` line of the breakdown) and a stock push for those SKUs is started at once.

When the master "has" an order depends on which system it is: Centra has an imported order once it is created
there (and its own web orders always); Fulfil and Inventory Planner have an order once its sale is in Fulfil and
processing (its moves hold the stock), or shipped.
A cancelled order holds nothing, and neither does one seen more than ``STOCK_IN_FLIGHT_MAX_HOURS`` ago: by then it
is an ``order_stalled`` exception someone is working on, and holding its units any longer would only hide stock.
"""

from collections.abc import Iterable, Mapping
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from mappings.models import BundleComponent, System
from syncs.links import link_not_cancelled
from syncs.models import Link, UnitsInFlight

STATUS = "in_flight"  # the name of the subtraction in the available-to-sell breakdown
HELD_STATES = ["processing", "done"]  # Fulfil sale states in which the sale's moves hold its units


def units_in_flight_record(link: Link, quantities: Mapping[str, int]) -> None:
    """Say which units an order holds (Centra SKU → quantity), replacing what it held before. A bundle holds its
    components: the stock master knows only those."""
    units_in_flight_record_many([(link, quantities)])


def units_in_flight_record_many(holdings: Iterable[tuple[Link, Mapping[str, int]]]) -> None:
    """``units_in_flight_record`` for many orders at once (one transaction, three queries): each link's units,
    replacing what it held before."""
    holdings = list(holdings)
    if not holdings:
        return
    components = _bundle_components(
        sorted({sku for _link, quantities in holdings for sku, quantity in quantities.items() if int(quantity) > 0})
    )
    rows = []
    for link, quantities in holdings:
        wanted: dict[str, int] = {}
        for sku, quantity in quantities.items():
            for component, per_unit in components.get(sku, [(sku, 1)]):
                if int(quantity) > 0:
                    wanted[component] = wanted.get(component, 0) + int(quantity) * per_unit
        rows.extend(UnitsInFlight(link=link, sku=sku, quantity=quantity) for sku, quantity in wanted.items())
    with transaction.atomic():
        UnitsInFlight.objects.filter(link__in=[link.pk for link, _quantities in holdings]).delete()
        UnitsInFlight.objects.bulk_create(rows)


def _bundle_components(skus: list[str]) -> dict[str, list[tuple[str, int]]]:
    rows = BundleComponent.objects.filter(bundle__bundle_sku__in=skus).values_list(
        "bundle__bundle_sku", "component_sku", "quantity"
    )
    found: dict[str, list[tuple[str, int]]] = {}
    for bundle, component, quantity in rows:
        found.setdefault(bundle, []).append((component, quantity))
    return found


def _not_yet_at_master() -> Q:
    not_cancelled = link_not_cancelled("link__")
    recent = Q(link__created_at__gte=timezone.now() - timedelta(hours=settings.STOCK_IN_FLIGHT_MAX_HOURS))
    not_cancelled &= recent
    if settings.STOCK_MASTER == System.CENTRA:
        return not_cancelled & ~Q(link__source_system="centra") & Q(link__created_in_target_at__isnull=True)
    # Fulfil (and Inventory Planner, which counts what Fulfil holds) has an order's units once its sale is
    # processing: the sale's moves hold them. A sale confirmed but not yet processed holds nothing there yet.
    # (A missing key is NULL in SQL, which a negated lookup would drop: "absent" is said outright.)
    sale_not_holding = Q(link__detail__sale_state__isnull=True) | ~Q(link__detail__sale_state__in=HELD_STATES)
    not_yet_held = Q(link__exported_at__isnull=True) | (sale_not_holding & Q(link__shipped_at__isnull=True))
    return not_cancelled & not_yet_held


def stock_push_soon(skus: Iterable[str]) -> None:
    """Ask a worker to push these SKUs' stock now (after the current transaction commits)."""
    skus = sorted(set(skus))
    if skus:
        from django_q.tasks import async_task

        transaction.on_commit(lambda: async_task("syncs.tasks.stock_push_skus", skus))


def units_in_flight(skus: Iterable[str] | None = None) -> dict[str, int]:
    """Units each SKU has in flight now (only SKUs with some)."""
    query = UnitsInFlight.objects.filter(_not_yet_at_master())
    if skus is not None:
        query = query.filter(sku__in=list(skus))
    return dict(query.values("sku").annotate(units=Sum("quantity")).values_list("sku", "units").iterator())
