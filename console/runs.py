"""The runs page: every execution of every flow with its counts and summary, the runs going now with their progress
(htmx polls the partials), and starting a flow by hand — with a confirmation that says what it will do — for the
roles console.flow_starts allows."""

from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from console.flow_starts import flow_description, flow_start, may_start, startable_flows
from console.selectors_runs import RunFilters, queued_starts, run_row, running_runs, runs_page
from syncs.flows import FLOWS
from syncs.models import SyncRun
from syncs.runs import flow_running

QUEUED_SESSION_KEY = "runs_queued"  # the starts this person handed to a worker, until one begins them


class RunFilterForm(forms.Form):
    flow = forms.ChoiceField(required=False, choices=[("", "Every flow")] + [(flow, flow) for flow in FLOWS])
    status = forms.ChoiceField(required=False, choices=[("", "Every status"), *SyncRun.Status.choices])


@require_GET
def run_list(request: HttpRequest) -> HttpResponse:
    filters = RunFilters.from_params(request.GET)
    before = request.GET.get("before", "")
    page = runs_page(filters, before=int(before) if before.isdigit() else None)
    params = filters.as_params()
    context = {
        "rows": page.rows,
        "continued": before.isdigit(),
        "first_page_url": f"?{urlencode(params)}",
        "next_url": f"?{urlencode(params | {'before': page.next_before})}" if page.next_before else None,
    }
    if request.htmx and request.htmx.target == "runs-table":
        return render(request, "console/_runs_table.html", context)
    context |= _live(request)
    context["form"] = RunFilterForm(initial=params)
    context["startable"] = [(flow, flow_description(flow)) for flow in startable_flows(request.user)]
    return render(request, "console/runs.html", context)


@require_GET
def live(request: HttpRequest) -> HttpResponse:
    """The runs going now and this person's starts still queued: polled by the runs page."""
    return render(request, "console/_runs_live.html", _live(request))


def _live(request: HttpRequest) -> dict:
    queued = queued_starts(request.session.get(QUEUED_SESSION_KEY, []))
    if len(queued) != len(request.session.get(QUEUED_SESSION_KEY, [])):
        request.session[QUEUED_SESSION_KEY] = [{key: entry[key] for key in ("flow", "name", "at")} for entry in queued]
    running = running_runs()
    # Quick while something moves; slowly otherwise, so a run the schedule starts still shows up.
    return {"running": running, "queued": queued, "poll_seconds": 2 if running or queued else 15}


@require_GET
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One run; to htmx, its progress partial (which polls itself while the run goes)."""
    row = run_row(get_object_or_404(SyncRun, pk=pk))
    if request.htmx:
        return render(request, "console/_run_progress.html", {"row": row, "poll": True})
    return render(request, "console/run_detail.html", {"row": row})


@require_http_methods(["GET", "POST"])
def start(request: HttpRequest) -> HttpResponse:
    """GET: what starting the flow will do, and a button to confirm. POST: hand the run to a worker."""
    flow = (request.POST if request.method == "POST" else request.GET).get("flow", "")
    if flow not in FLOWS:
        raise Http404("No such flow.")
    if not may_start(request.user, flow):
        raise PermissionDenied(f"Your role may not start {flow}.")
    description = flow_description(flow)
    if request.method == "GET":
        last = SyncRun.objects.filter(flow=flow).order_by("-started_at").first()
        context = {
            "flow": flow,
            "description": description,
            "last": run_row(last) if last else None,
            "running": flow_running(flow),
        }
        return render(request, "console/run_start.html", context)
    asked_at = timezone.now()  # before the task exists: a run begun by a quick worker is never missed
    try:
        name = flow_start(flow=flow, actor=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect(reverse("runs:list") + f"?flow={flow}")
    entry = {"flow": flow, "name": name, "at": asked_at.isoformat()}
    request.session[QUEUED_SESSION_KEY] = [*request.session.get(QUEUED_SESSION_KEY, []), entry][-10:]
    messages.success(request, f"{description.label} is queued: it shows as running as soon as a worker takes it.")
    return redirect(reverse("runs:list") + f"?flow={flow}")
