"""The exception queue's pages: the queue with its filters and bulk actions, one exception with its playbook,
timeline and actions, and the playbooks (the brand's operating manual).

Views read through ``exceptions.selectors`` and change state only through ``exceptions.services``, which check
who may act and write the timeline. One URL serves the whole queue page or, to htmx, just its table.
"""

import contextlib
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from console.roles import INTEGRATION_ADMIN, user_roles
from exceptions import registry
from exceptions.forms import (
    BULK_ACTIONS,
    SORT_CHOICES,
    AssignForm,
    BulkForm,
    NoteForm,
    QueueFilterForm,
    mapping_add_permission,
    mapping_model_for,
    missing_mapping_form,
)
from exceptions.kinds import CUSTOMER, DATA, KINDS, MONEY, PLUMBING, STOCK, TEAMS
from exceptions.mapping_changes import blocked_by
from exceptions.models import ACTIVE, Status, SyncException
from exceptions.selectors import QueueFilters, count_capped, exception_detail, exception_queue, queue_page
from exceptions.services import (
    actable,
    can_act,
    exception_assign,
    exception_ignore,
    exception_resolve,
    exception_retry,
    exception_run_retry,
    exceptions_bulk_close,
    exceptions_bulk_retry,
)
from mappings.models import System
from mappings.money import is_currency, minor_unit
from mappings.services import KIND_LABELS as MAPPING_LABELS
from syncs.sandbox import SANDBOX_PATHS

PRIORITY_BANDS = {
    MONEY: "Money",
    CUSTOMER: "Customer-facing",
    STOCK: "Stock",
    DATA: "Data quality",
    PLUMBING: "Connections",
}


# --- the queue ----------------------------------------------------------------------------------------------------


@require_GET
def queue(request: HttpRequest) -> HttpResponse:
    filters = QueueFilters.from_params(request.GET)
    sort = request.GET.get("sort") if request.GET.get("sort") in dict(SORT_CHOICES) else "impact"
    cursor = request.GET.get("cursor") or None
    queryset = exception_queue(filters)
    page = queue_page(queryset, sort=sort, cursor=cursor)
    count, capped = count_capped(queryset)
    params = _filter_params(filters) | ({"sort": sort} if sort != "impact" else {})
    context = {
        "rows": _for_display(page.rows),
        "count": count,
        "count_label": count_label(count, capped),
        "params": params,
        "continued": cursor is not None,
        "first_page_url": f"?{urlencode(params)}",
        "next_url": f"?{urlencode(params | {'cursor': page.next_cursor})}" if page.next_cursor else None,
        "bulk_actions": BULK_ACTIONS,
    }
    if request.htmx and not request.htmx.boosted and not request.htmx.history_restore_request:
        return render(request, "exceptions/_table.html", context)
    initial = {name: getattr(filters, name) for name in ("status", "team", "kind", "flow", "age", "q")}
    context["form"] = QueueFilterForm(initial=initial | {"sort": sort}, flows=_flows(filters.flow))
    return render(request, "exceptions/queue.html", context)


def _filter_params(filters: QueueFilters) -> dict[str, str]:
    """The query string that selects ``filters`` again (empty filters left out)."""
    params = {name: getattr(filters, name) for name in ("status", "team", "kind", "flow", "age", "q")}
    if filters.assignee_id:
        params["assignee"] = str(filters.assignee_id)
    return {name: value for name, value in params.items() if value}


def _flows(current: str) -> list[str]:
    # The flows that can be retried are the flows that record exceptions. Asking the registry, not the table: a
    # DISTINCT over a million rows would cost more than the page itself.
    return sorted(set(registry.registered_flows()) | ({current} if current else set()))


def _for_display(rows: list[SyncException]) -> list[SyncException]:
    now = timezone.now()
    for row in rows:
        row.age_label = age_label(row.first_seen, now)
        row.value_label = money_label(row.value, row.currency)
    return rows


def count_label(count: int, capped: bool) -> str:
    """'9,840', or '10,000+' when counting stopped at the cap."""
    return f"{count:,}{'+' if capped else ''}"


def age_label(since: datetime, now: datetime) -> str:
    """How long ago, in the unit a person would use: '12 min', '3 h', '5 d'."""
    seconds = max(0, (now - since).total_seconds())
    if seconds < 3600:
        return f"{max(1, int(seconds // 60))} min"
    if seconds < 48 * 3600:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


def money_label(value: Decimal | None, currency: str) -> str:
    """'1,234.50 EUR', to the currency's minor unit; empty when there is no value."""
    if value is None:
        return ""
    if is_currency(currency):
        value = value.quantize(minor_unit(currency))
    return f"{value:,} {currency}".strip()


# --- bulk actions -------------------------------------------------------------------------------------------------


@require_POST
def bulk(request: HttpRequest) -> HttpResponse:
    """Retry, resolve or ignore the ticked exceptions or every one matching the filters: first a confirmation that
    says how many, then (``confirmed``) the bulk service, which enqueues the work in chunks."""
    form = BulkForm(request.POST)
    filters = QueueFilters.from_params(request.POST)
    back = f"{reverse('exceptions:queue')}?{urlencode(_filter_params(filters))}"
    valid = form.is_valid()
    if form.non_field_errors() or "action" in form.errors:
        messages.error(request, " ".join([*form.non_field_errors(), *form.errors.get("action", [])]))
        return redirect(back)
    data = form.cleaned_data
    ids = SyncException.objects.filter(pk__in=data["ids"])
    selection = exception_queue(filters) if data["all_matching"] else ids
    if valid and data["confirmed"]:
        try:
            if data["action"] == "retry":
                done = exceptions_bulk_retry(queryset=selection, actor=request.user)
            else:
                ignore = data["action"] == "ignore"
                done = exceptions_bulk_close(queryset=selection, actor=request.user, note=data["note"], ignore=ignore)
        except ValidationError as error:
            form.add_error("note", error)
        else:
            verb = {"retry": "Retrying", "resolve": "Resolved", "ignore": "Ignored"}[data["action"]]
            messages.success(request, f"{verb} {done:,} exception{pluralize(done)}.")
            return redirect(back)
    selected, selected_capped = count_capped(selection)
    may_act, may_act_capped = count_capped(actable(request.user, selection).filter(status__in=ACTIVE))
    context = {
        "form": form,
        "action": data["action"],
        "action_label": BULK_ACTIONS[data["action"]],
        "selected": selected,
        "selected_label": count_label(selected, selected_capped),
        "may_act": may_act,
        "may_act_label": count_label(may_act, may_act_capped),
        "teams": _teams_of(request.user),
        "ids": data["ids"],
        "all_matching": data["all_matching"],
        "params": _filter_params(filters),
        "back": back,
    }
    return render(request, "exceptions/bulk_confirm.html", context)


def _teams_of(user) -> list[str] | None:
    """The teams whose exceptions ``user`` may act on; None for all of them (integration admins)."""
    roles = user_roles(user)
    if INTEGRATION_ADMIN in roles:
        return None
    return [label for team, label in TEAMS.items() if team in roles]


# --- one exception ------------------------------------------------------------------------------------------------


def _exception(pk: int) -> SyncException:
    try:
        return exception_detail(pk)
    except SyncException.DoesNotExist:
        raise Http404("No such exception.") from None


@require_GET
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _render_detail(request, _exception(pk))


def _render_detail(request: HttpRequest, exception: SyncException, **forms) -> HttpResponse:
    may_act = can_act(request.user, exception)
    mapping_model = mapping_model_for(exception)
    may_add_mapping = mapping_model is not None and request.user.has_perm(mapping_add_permission(mapping_model))
    context = {
        "exception": exception,
        "kind": KINDS.get(exception.kind),
        "band": PRIORITY_BANDS.get(exception.priority, ""),
        "value_label": money_label(exception.value, exception.currency),
        "age_label": age_label(exception.first_seen, timezone.now()),
        "links": object_links(exception),
        "payload": pretty_json(_for_reading(exception.payload)),
        "response": pretty_json(_for_reading(exception.response)),
        "events": list(exception.events.all()),
        "refs": [ref.ref for ref in exception.refs.all() if ref.ref != exception.object_ref.lower()],
        "may_act": may_act,
        "error": forms.pop("error", ""),
        "resolve_form": forms.pop("resolve_form", None) or NoteForm(auto_id="resolve_%s"),
        "ignore_form": forms.pop("ignore_form", None) or NoteForm(auto_id="ignore_%s"),
        "assign_form": forms.pop("assign_form", None)
        or AssignForm(initial={"team": "", "assignee": exception.assignee_id}),
        "mapping_name": mapping_model._meta.verbose_name if mapping_model else "",
        "differences": drift_differences(exception),
        "mapping_form": (forms.pop("mapping_form", None) or missing_mapping_form(exception))
        if may_add_mapping
        else None,
    }
    return render(request, "exceptions/detail.html", context)


def pretty_json(value) -> str:
    """Indented JSON for people to read (the template escapes it); empty when there is nothing to show."""
    if value in (None, "", {}, []):
        return ""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _for_reading(recorded: dict) -> dict:
    """A recorded request or response with bodies that arrived as JSON text decoded, so they indent like the rest."""
    if not isinstance(recorded, dict):
        return recorded
    readable = dict(recorded)
    for name in ("body", "request_body", "response_body"):
        text = readable.get(name)
        if isinstance(text, str) and text.lstrip()[:1] in ("{", "["):
            with contextlib.suppress(ValueError):  # not JSON after all: shown as the text it is
                readable[name] = json.loads(text)
    return readable


def _message(error: ValidationError) -> str:
    return " ".join(error.messages)


@require_POST
def retry(request: HttpRequest, pk: int) -> HttpResponse:
    exception = _exception(pk)
    try:
        exception_retry(exception=exception, actor=request.user)
    except ValidationError as error:
        return _render_detail(request, exception, error=_message(error))
    messages.success(request, "Retry requested: the item is being run through its flow again.")
    return redirect("exceptions:detail", pk=pk)


@require_POST
def resolve(request: HttpRequest, pk: int) -> HttpResponse:
    return _close(request, pk, service=exception_resolve, form_name="resolve_form", done="Resolved.")


@require_POST
def ignore(request: HttpRequest, pk: int) -> HttpResponse:
    return _close(request, pk, service=exception_ignore, form_name="ignore_form", done="Ignored.")


def _close(request: HttpRequest, pk: int, *, service, form_name: str, done: str) -> HttpResponse:
    exception = _exception(pk)
    form = NoteForm(request.POST, auto_id=f"{form_name.removesuffix('_form')}_%s")
    form.is_valid()  # the service decides whether the note will do
    try:
        service(exception=exception, actor=request.user, note=form.cleaned_data.get("note", ""))
    except ValidationError as error:
        form.add_error("note", error)
        return _render_detail(request, exception, **{form_name: form})
    messages.success(request, done)
    return redirect("exceptions:detail", pk=pk)


@require_POST
def assign(request: HttpRequest, pk: int) -> HttpResponse:
    exception = _exception(pk)
    form = AssignForm(request.POST)
    if not form.is_valid():
        if not can_act(request.user, exception):
            raise PermissionDenied(f"The {exception.get_team_display()} team owns this exception.")
        return _render_detail(request, exception, assign_form=form)
    team, assignee = form.cleaned_data["team"] or None, form.cleaned_data["assignee"]
    try:
        exception_assign(exception=exception, actor=request.user, team=team, assignee=assignee)
    except ValidationError as error:
        form.add_error(None, error)
        return _render_detail(request, exception, assign_form=form)
    parts = [f"to the {TEAMS[team]} team" if team else "", f"to {assignee.get_username()}" if assignee else ""]
    messages.success(request, "Assigned " + " and ".join(filter(None, parts)) + "." if any(parts) else "Unassigned.")
    return redirect("exceptions:detail", pk=pk)


@require_POST
def create_mapping(request: HttpRequest, pk: int) -> HttpResponse:
    """Create the mapping the exception waits for. Saving it retries every exception it was blocking."""
    exception = _exception(pk)
    model = mapping_model_for(exception)
    if model is None:
        raise Http404("This exception does not wait for a mapping.")
    if not request.user.has_perm(mapping_add_permission(model)):
        raise PermissionDenied(f"You may not add {model._meta.verbose_name_plural}.")
    form = missing_mapping_form(exception, data=request.POST)
    if form.is_valid():
        try:
            with transaction.atomic():
                mapping = form.create(actor=request.user)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            waiting = len(blocked_by(mapping))
            waiting_label = f"{waiting:,} waiting exception{pluralize(waiting)} {pluralize(waiting, 'is,are')}"
            messages.success(request, f"Mapping created; {waiting_label} being retried.")
            return redirect("exceptions:detail", pk=pk)
    return _render_detail(request, exception, mapping_form=form)


# --- a value changed outside Centra ------------------------------------------------------------------------------

DRIFT = "attribute_drift"


def drift_differences(exception: SyncException) -> list[dict]:
    """For an attribute_drift exception, each field the channel shows differently: {field, centra, channel}, the
    values as text for people to read; empty for any other kind."""
    if exception.kind != DRIFT:
        return []
    return [
        {
            "field": str(difference.get("field", "")),
            "centra": _as_text(difference.get("centra")),
            "channel": _as_text(difference.get("channel")),
        }
        for difference in exception.context.get("differences") or []
        if isinstance(difference, dict)
    ]


def _as_text(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return "\n".join(str(item) for item in value) or "(none)"
    if isinstance(value, dict):
        return "\n".join(f"{key}: {item}" for key, item in value.items()) or "(none)"
    return str(value) if value != "" else "(empty)"


@require_POST
def reassert(request: HttpRequest, pk: int) -> HttpResponse:
    """Send Centra's value to the channel again, now, and resolve the exception once the channel reads back the
    same. The retry is asked for in the actor's name (the timeline says who) and run here rather than by a worker:
    the person who clicked sees what the channel now shows."""
    exception = _exception(pk)
    if exception.kind != DRIFT:
        raise Http404("Only a value changed outside Centra can be re-asserted.")
    try:
        exception_retry(exception=exception, actor=request.user)
    except ValidationError as error:
        return _render_detail(request, exception, error=_message(error))
    if exception_run_retry(exception_id=exception.pk):
        messages.success(request, "Centra's value was sent again and the channel now shows it.")
        return redirect("exceptions:detail", pk=pk)
    exception.refresh_from_db()
    if exception.status == Status.RESOLVED:  # it moved on to another problem, which the note names
        messages.error(request, f"Centra's value could not be sent. {exception.resolution_note}")
    elif exception.status == Status.RETRYING:
        messages.info(request, "A worker is re-asserting it already: look again in a moment.")
    else:
        messages.error(request, "Centra's value was sent again, but the channel still shows something else.")
    return redirect("exceptions:detail", pk=pk)


# --- links to the object in each system ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectLink:
    label: str
    url: str
    hint: str = ""


def object_links(exception: SyncException) -> list[ObjectLink]:
    """Where a person can look at the exception's object, in the systems involved (the one it failed against, the
    one a mapping is missing for, and Centra, the hub of every flow).

    Only what Switchyard honestly knows: a system gets a link only when ``settings.CONNECTIONS`` has its base URL,
    and only to pages whose address is known — Centra's backend (search there for the reference) and, when the
    flow recorded the sale's id, the Fulfil sale. A connection pointing at the sandbox, which has no back office,
    links to the simulator's state as JSON."""
    systems = dict.fromkeys(s for s in (exception.system, exception.mapping_system, "centra") if s)
    sandbox_host = urlsplit(settings.SANDBOX_URL).netloc
    links = []
    for system in systems:
        base_url = settings.CONNECTIONS.get(system, {}).get("base_url")
        if not base_url:
            continue
        label = System(system).label if system in System.values else system
        parts = urlsplit(base_url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if parts.netloc == sandbox_host and system in SANDBOX_PATHS:
            url = f"{settings.SANDBOX_URL.rstrip('/')}/{SANDBOX_PATHS[system]}/_sandbox/state"
            links.append(ObjectLink(f"{label} (sandbox)", url, "everything the simulator holds, as JSON"))
        elif system == "centra":
            links.append(ObjectLink("Centra backend", f"{origin}/ams/", f"search for {exception.object_ref}"))
        elif system == "fulfil" and str(exception.context.get("fulfil_sale_id", "")).isdigit():
            sale_id = exception.context["fulfil_sale_id"]
            links.append(ObjectLink(f"Fulfil sale {sale_id}", f"{origin}/client/#/model/sale.sale/{sale_id}"))
    return links


# --- playbooks ----------------------------------------------------------------------------------------------------


@require_GET
def playbooks(request: HttpRequest) -> HttpResponse:
    """Every kind of exception with its owner, priority, playbook and how many are active now."""
    queue_url = reverse("exceptions:queue")
    entries = []
    for code, kind in sorted(KINDS.items(), key=lambda item: (-item[1].priority, item[1].label)):
        # Capped, like the queue's count: each is an index look-up however large the queue grows.
        active, capped = count_capped(exception_queue(QueueFilters(kind=code)))
        entries.append(
            {
                "code": code,
                "kind": kind,
                "team": TEAMS[kind.team],
                "band": PRIORITY_BANDS.get(kind.priority, str(kind.priority)),
                "mapping": MAPPING_LABELS.get(kind.mapping or "", ""),
                "active": active,
                "capped": capped,
                "queue_url": f"{queue_url}?{urlencode({'kind': code})}",
            }
        )
    return render(request, "exceptions/playbooks.html", {"entries": entries})
