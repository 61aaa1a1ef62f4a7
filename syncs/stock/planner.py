"""Inventory Planner's replenishment figures for one SKU, read for a person waiting on a page: one call, a short
timeout, no retries, and the answer kept for a minute — so a slow or unreachable Inventory Planner costs the page a
few seconds at most, and a note instead of the figures, never an error."""

from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.core.cache import cache

from mappings.models import System
from mappings.services import MissingMapping, sku_for
from syncs.connectors.errors import ConnectorError
from syncs.connectors.http import RetryPolicy, Timeouts
from syncs.connectors.inventory_planner import InventoryPlannerClient
from syncs.rate_budget import shared_like

TIMEOUTS = Timeouts(connect=2.0, read=4.0)
CACHE_SECONDS = 60
UNREACHABLE_CACHE_SECONDS = 15  # a down Inventory Planner is asked again soon, but not on every page view
WAIT_AT_MOST = 2.0  # seconds the page waits for room in Inventory Planner's rate budget


@dataclass(frozen=True)
class PlannerFigures:
    """What Inventory Planner plans for a SKU, or why it cannot be shown (``note``)."""

    code: str = ""  # the SKU as Inventory Planner knows it
    found: bool = False
    in_stock: int | None = None
    on_order: int | None = None
    replenishment: int | None = None
    to_order: int | None = None
    lead_time: int | None = None  # days
    days_of_stock: int | None = None  # forecast days until it sells out
    note: str = ""


def planner_figures(*, centra_sku: str) -> PlannerFigures:
    """The SKU's figures in Inventory Planner now (or as read in the last minute). Never raises for Inventory
    Planner being slow, down or refusing: the figures carry a note saying so."""
    try:
        code = sku_for(system=System.INVENTORY_PLANNER, centra_sku=centra_sku)
    except MissingMapping as missing:
        return PlannerFigures(note=missing.message)
    key = f"stock-page:planner:{code}"
    figures = cache.get(key)
    if figures is None:
        figures = _read(code)
        cache.set(key, figures, UNREACHABLE_CACHE_SECONDS if figures.note and not figures.found else CACHE_SECONDS)
    return figures


@lru_cache(maxsize=4)
def _client(conf: tuple, timeouts: Timeouts, shared: bool) -> InventoryPlannerClient:
    """A client of its own for the page (short timeout, one attempt), kept per configuration so its connection and
    pacing carry over from one page view to the next. ``conf``: (base URL, API key, account, calls a minute)."""
    base_url, api_key, account, requests_per_minute = conf
    client = InventoryPlannerClient(
        base_url=base_url,
        api_key=api_key,
        account=account,
        rate_limit=(requests_per_minute, 60.0),
        timeouts=timeouts,
        retry=RetryPolicy(attempts=1),
    )
    if shared:  # the syncs' calls and the page's share Inventory Planner's budget
        client.session.rate_limiter = shared_like(f"{client.session.system}:requests", client.session.rate_limiter)
    return client


def _read(code: str) -> PlannerFigures:
    conf = settings.CONNECTIONS["inventory_planner"]
    connection = (conf["base_url"], conf["api_key"], conf["account"], conf["requests_per_minute"])
    client = _client(connection, TIMEOUTS, settings.RATE_LIMITS_SHARED)
    if client.session.rate_limiter.wait_time() > WAIT_AT_MOST:
        return PlannerFigures(code=code, note="Inventory Planner's call budget is taken by a sync just now.")
    try:
        variant = client.variants_by_sku([code]).get(code)
    except ConnectorError as error:
        return PlannerFigures(code=code, note=f"Inventory Planner could not be read: {error.message}")
    if variant is None:
        return PlannerFigures(code=code, note=f"Inventory Planner has no variant with SKU {code!r}.")
    return PlannerFigures(
        code=code,
        found=True,
        in_stock=variant.in_stock,
        on_order=variant.purchase_orders_qty,
        replenishment=variant.replenishment,
        to_order=variant.to_order,
        lead_time=variant.lead_time,
        days_of_stock=variant.oos,
    )
