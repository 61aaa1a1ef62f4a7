"""The configured connections: one client per external system, built from settings (credentials come only from
the environment), and a summary of each that pages may show — never a credential."""

from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit

from django.conf import settings

from syncs.connection_health import connection_health_observe
from syncs.connectors.centra import CentraClient
from syncs.connectors.fulfil import FulfilClient
from syncs.connectors.http import Timeouts
from syncs.connectors.inventory_planner import InventoryPlannerClient
from syncs.connectors.marketplace import GenericMarketplaceClient
from syncs.connectors.virtualstock import VirtualstockClient
from syncs.rate_budget import shared_like

LABELS = {
    "centra": "Centra",
    "fulfil": "Fulfil",
    "virtualstock": "Virtualstock",
    "inventory_planner": "Inventory Planner",
    "marketplace": "Marketplace",
}
# What must be set for a connection to count as configured.
REQUIRED = {
    "centra": ("base_url", "token"),
    "fulfil": ("base_url", "api_key"),
    "virtualstock": ("base_url", "username", "password"),
    "inventory_planner": ("base_url", "api_key", "account"),
    "marketplace": ("base_url", "api_key"),
}


def _shared(client):
    """Give the client's request limiter a budget shared by every worker (RATE_LIMITS_SHARED), and note its calls'
    outcomes for the dashboard (syncs.connection_health)."""
    if settings.RATE_LIMITS_SHARED:
        client.session.rate_limiter = shared_like(f"{client.session.system}:requests", client.session.rate_limiter)
    connection_health_observe(client.session)
    return client


def _timeouts() -> Timeouts:
    return Timeouts(connect=settings.CONNECTOR_CONNECT_TIMEOUT, read=settings.CONNECTOR_READ_TIMEOUT)


@cache
def centra() -> CentraClient:
    conf = settings.CONNECTIONS["centra"]
    client = CentraClient(
        base_url=conf["base_url"],
        token=conf["token"],
        order_api_url=conf["order_api_url"],
        order_api_key=conf["order_api_key"],
        requests_per_10s=conf["requests_per_10s"],
        mutations_per_10s=conf["mutations_per_10s"],
        mutations_per_hour=conf["mutations_per_hour"],
        timeouts=_timeouts(),
    )
    if settings.RATE_LIMITS_SHARED:
        client.mutation_limiter = shared_like("centra:mutations", client.mutation_limiter)
    connection_health_observe(client.order_api)
    return _shared(client)


@cache
def fulfil() -> FulfilClient:
    conf = settings.CONNECTIONS["fulfil"]
    return _shared(
        FulfilClient(
            base_url=conf["base_url"],
            api_key=conf["api_key"],
            rate_limit=(conf["requests_per_second"], 1.0),
            timeouts=_timeouts(),
        )
    )


@cache
def virtualstock() -> VirtualstockClient:
    conf = settings.CONNECTIONS["virtualstock"]
    return _shared(
        VirtualstockClient(
            base_url=conf["base_url"],
            username=conf["username"],
            password=conf["password"],
            rate_limit=(conf["requests_per_minute"], 60.0),
            timeouts=_timeouts(),
        )
    )


@cache
def inventory_planner() -> InventoryPlannerClient:
    conf = settings.CONNECTIONS["inventory_planner"]
    return _shared(
        InventoryPlannerClient(
            base_url=conf["base_url"],
            api_key=conf["api_key"],
            account=conf["account"],
            rate_limit=(conf["requests_per_minute"], 60.0),
            timeouts=_timeouts(),
        )
    )


@cache
def marketplace() -> GenericMarketplaceClient:
    conf = settings.CONNECTIONS["marketplace"]
    return _shared(
        GenericMarketplaceClient(
            base_url=conf["base_url"],
            api_key=conf["api_key"],
            rate_limit=(conf["requests_per_second"], 1.0),
            timeouts=_timeouts(),
        )
    )


def clients_forget() -> None:
    """Drop every cached client: the next ones are made from the settings as they are now (a test or a bench that
    points the connections elsewhere calls this)."""
    for client in CLIENTS.values():
        client.cache_clear()


@dataclass(frozen=True)
class ConnectionSummary:
    system: str
    label: str
    host: str
    configured: bool
    uses_sandbox: bool


def connection_summaries() -> list[ConnectionSummary]:
    """Each connection's host and whether it is configured, for pages: no path, query or credential."""
    sandbox_host = urlsplit(settings.SANDBOX_URL).netloc
    summaries = []
    for system, label in LABELS.items():
        conf = settings.CONNECTIONS[system]
        host = urlsplit(conf.get("base_url", "")).netloc.rpartition("@")[2]
        summaries.append(
            ConnectionSummary(
                system=system,
                label=label,
                host=host,
                configured=all(conf.get(key) for key in REQUIRED[system]),
                uses_sandbox=bool(host) and host == sandbox_host,
            )
        )
    return summaries


CLIENTS = {
    "centra": centra,
    "fulfil": fulfil,
    "virtualstock": virtualstock,
    "inventory_planner": inventory_planner,
    "marketplace": marketplace,
}


def rate_buckets() -> dict[str, list[tuple[str, list[tuple[int, float]]]]]:
    """Per system, each of its rate-limit buckets: the shared budget's key (a ``RateBudget`` row, when
    RATE_LIMITS_SHARED) and the limiter's windows, ``(calls, seconds)``. Builds the clients; calls nothing."""
    buckets = {}
    for system, client_for in CLIENTS.items():
        client = client_for()
        limiters = [(f"{system}:requests", client.session.rate_limiter)]
        if system == "centra":
            limiters.append(("centra:mutations", client.mutation_limiter))
        buckets[system] = [(key, limiter.windows) for key, limiter in limiters if limiter is not None]
    return buckets
