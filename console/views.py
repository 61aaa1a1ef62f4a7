from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from console import selectors


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    context = {"worker": selectors.worker_status()}
    if request.htmx and request.htmx.target == "worker-status":
        return render(request, "console/_worker_status.html", context)
    context["recent_changes"] = selectors.recent_mapping_changes(limit=10)
    context["connections"] = selectors.connections()
    context["exception_teams"] = selectors.open_exceptions_by_team()
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
