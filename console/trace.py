"""The order trace: search an order by any identifier, and follow its journey across every system."""

from urllib.parse import urlencode

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from console.selectors_orders import (
    STATE_LABELS,
    exceptions_mentioning,
    order_for,
    order_search,
    order_trace,
    recent_orders,
)
from syncs.models import Link


@require_GET
def search(request: HttpRequest) -> HttpResponse:
    """Find orders; one match opens its trace at once."""
    query = (request.GET.get("q") or "").strip()[:200]
    matches = order_search(query) if query else []
    if len(matches) == 1:
        return redirect("orders:trace", pk=matches[0].order.pk)
    context = {
        "query": query,
        "matches": matches,
        "recent": [] if query else recent_orders(),
        "exceptions_found": exceptions_mentioning(query) if query and not matches else 0,
        "exceptions_url": reverse("exceptions:queue") + "?" + urlencode({"q": query, "status": "all"}),
    }
    return render(request, "console/orders.html", context)


@require_GET
def trace(request: HttpRequest, pk: int) -> HttpResponse:
    """An order's journey; a shipment's or a return's link opens its order's."""
    link = get_object_or_404(Link.objects.select_related("channel", "order"), pk=pk)
    order = order_for(link)
    if order.kind != Link.Kind.ORDER:
        raise Http404("This link belongs to no order.")
    if order.pk != link.pk:
        return redirect("orders:trace", pk=order.pk)
    return render(request, "console/order_trace.html", {"trace": order_trace(order), "state_labels": STATE_LABELS})
