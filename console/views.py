from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from console import selectors


def _flows_card(now: datetime, freshness: list[selectors.ChannelFreshness] | None = None) -> dict:
    # The stock push's lag is the oldest change a channel has not confirmed: the stock card's figures tell it.
    if freshness is None:
        freshness = selectors.stock_freshness(now=now)
    oldest = min((channel.oldest_waiting for channel in freshness if channel.oldest_waiting), default=None)
    return {"flows": selectors.flow_cards(now=now, oldest_stock_waiting=oldest)}


def _exceptions_card(now: datetime) -> dict:
    groups = selectors.open_exceptions_by_team_and_kind()
    return {
        "exception_teams": selectors.exception_team_totals(groups),
        "exception_groups": groups,
        "trend": selectors.exception_trend(now=now),
    }


# Each card that refreshes itself: its element id (htmx sends it as HX-Target), its partial and its context.
CARDS: dict[str, tuple[str, Callable[[datetime], dict]]] = {
    "worker-status": ("console/_worker_status.html", lambda now: {"worker": selectors.worker_status()}),
    "dashboard-flows": ("console/_dashboard_flows.html", _flows_card),
    "dashboard-exceptions": ("console/_dashboard_exceptions.html", _exceptions_card),
    "dashboard-stock": ("console/_dashboard_stock.html", lambda now: {"stock": selectors.stock_freshness(now=now)}),
    "dashboard-capture": (
        "console/_dashboard_capture.html",
        lambda now: {"capture": selectors.orders_waiting_capture()},
    ),
    "dashboard-connections": (
        "console/_dashboard_connections.html",
        lambda now: {"connections": selectors.connection_health(now=now)},
    ),
}


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    """The dashboard, or one of its cards alone when htmx refreshes it (the card's id in HX-Target)."""
    now = timezone.now()
    if request.htmx and request.htmx.target in CARDS:
        template, context_for = CARDS[request.htmx.target]
        return render(
            request, template, {"now": now, "stale_minutes": settings.STOCK_STALE_MINUTES, **context_for(now)}
        )
    freshness = selectors.stock_freshness(now=now)
    context = {
        "now": now,
        "stale_minutes": settings.STOCK_STALE_MINUTES,
        "worker": selectors.worker_status(),
        **_flows_card(now, freshness),
        "stock": freshness,
        "capture": selectors.orders_waiting_capture(),
        "connections": selectors.connection_health(now=now),
        "recent_changes": selectors.recent_mapping_changes(limit=10),
        **_exceptions_card(now),
    }
    return render(request, "console/dashboard.html", context)


@require_GET
def mappings_overview(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "console/mappings.html",
        {
            "tables": selectors.mapping_tables(user=request.user),
            "recent_changes": selectors.recent_mapping_changes(limit=25),
        },
    )
