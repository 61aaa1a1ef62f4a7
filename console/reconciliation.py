"""The reconciliation pages: order reconciliation by day, market and currency (finance's month-end starts from the
days already signed off), a day's differences with a sign-off, the CSV export, and the SKU reconciliation's counts.

Reads only; a sign-off goes through ``console.services`` and a run is handed to a worker."""

from datetime import date, timedelta

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_q.tasks import async_task

from console.roles import ECOMMERCE, INTEGRATION_ADMIN, user_roles
from console.services import SIGN_OFF, order_reconciliation_reopen, order_reconciliation_sign_off
from syncs.csv_stream import csv_chunks, text_cell
from syncs.models import OrderReconciliation, SyncRun


class DaysForm(forms.Form):
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    status = forms.ChoiceField(
        required=False,
        choices=[("", "Every day"), ("differences", "With differences"), ("unsigned", "Not signed off")],
    )

    def days(self) -> tuple[date, date]:
        until = (self.cleaned_data.get("until") if self.is_valid() else None) or timezone.localdate()
        since = (self.cleaned_data.get("since") if self.is_valid() else None) or until - timedelta(days=30)
        return since, until


class SignOffForm(forms.Form):
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}), max_length=2000)


def may_run_skus(user) -> bool:
    """Whether ``user`` may start a SKU reconciliation from this page (the page's button and the POST ask alike)."""
    return bool(user_roles(user) & {ECOMMERCE, INTEGRATION_ADMIN})


def order_days(*, since: date, until: date, status: str = ""):
    days = OrderReconciliation.objects.filter(day__range=(since, until)).select_related("signed_off_by")
    if status == "differences":
        days = days.exclude(differences=[])
    elif status == "unsigned":
        days = days.filter(signed_off_at__isnull=True)
    return days.order_by("-day", "market_name", "currency")


@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    form = DaysForm(request.GET or None)
    since, until = form.days()
    days = list(
        order_days(since=since, until=until, status=form.cleaned_data.get("status", "") if form.is_valid() else "")
    )
    last_skus = SyncRun.objects.filter(flow="reconcile_skus", status=SyncRun.Status.SUCCEEDED).order_by("-started_at")
    skus = last_skus.first()
    return render(
        request,
        "console/reconciliation.html",
        {
            "form": form,
            "days": days,
            "since": since,
            "until": until,
            "totals": {
                "days": len(days),
                "differences": sum(1 for day in days if day.differences),
                "signed": sum(1 for day in days if day.signed_off_at),
            },
            "skus": skus,
            "sku_systems": sorted((skus.summary.get("systems") or {}).items()) if skus else [],
            "may_run_orders": request.user.has_perm(SIGN_OFF),
            "may_run_skus": may_run_skus(request.user),
            "yesterday": timezone.localdate() - timedelta(days=1),
        },
    )


@require_GET
def order_day(request: HttpRequest, pk: int) -> HttpResponse:
    reconciliation = get_object_or_404(OrderReconciliation.objects.select_related("signed_off_by"), pk=pk)
    return render(
        request,
        "console/reconciliation_day.html",
        {
            "day": reconciliation,
            "form": SignOffForm(),
            "may_sign": request.user.has_perm(SIGN_OFF),
            "queue_url": reverse("exceptions:queue") + "?flow=reconcile_orders",
        },
    )


@require_POST
def order_day_sign_off(request: HttpRequest, pk: int) -> HttpResponse:
    reconciliation = get_object_or_404(OrderReconciliation, pk=pk)
    form = SignOffForm(request.POST)
    if form.is_valid():
        try:
            order_reconciliation_sign_off(
                reconciliation=reconciliation, actor=request.user, note=form.cleaned_data["note"]
            )
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
        else:
            messages.success(request, f"{reconciliation} signed off.")
    return redirect("reconciliation:day", pk=pk)


@require_POST
def order_day_reopen(request: HttpRequest, pk: int) -> HttpResponse:
    order_reconciliation_reopen(reconciliation=get_object_or_404(OrderReconciliation, pk=pk), actor=request.user)
    messages.success(request, "The day is open again; its earlier sign-off is kept in its history.")
    return redirect("reconciliation:day", pk=pk)


@require_POST
def run(request: HttpRequest) -> HttpResponse:
    """Hand a reconciliation to a worker: the SKU sets, or the orders of the days asked for."""
    if request.POST.get("what") == "skus":
        if not may_run_skus(request.user):
            raise PermissionDenied("Ecommerce or an integration admin starts a SKU reconciliation.")
        async_task("syncs.tasks.run", "reconcile_skus", "manual")
        messages.success(request, "SKU reconciliation started: the counts update when it is done.")
        return redirect("reconciliation:overview")
    if not request.user.has_perm(SIGN_OFF):
        raise PermissionDenied("Finance starts an order reconciliation.")
    form = DaysForm(request.POST)
    since, until = form.days()
    if (until - since).days > 92:
        messages.error(request, "Reconcile at most a quarter at a time.")
    else:
        async_task("syncs.tasks.reconcile_order_days", since.isoformat(), until.isoformat())
        messages.success(request, f"Order reconciliation of {since} to {until} started: refresh in a moment.")
    return redirect("reconciliation:overview")


COLUMNS = [
    "day", "market", "currency", "centra_orders", "centra_value", "fulfil_sales", "fulfil_value", "centra_refunds",
    "refund_value", "fulfil_credits", "credit_value", "difference", "reference", "order", "centra", "fulfil",
    "signed_off_by", "signed_off_at", "note",
]  # fmt: skip


@require_GET
def orders_csv(request: HttpRequest) -> StreamingHttpResponse:
    """Every day in the range, one row per day and one per difference, for the month-end file."""
    form = DaysForm(request.GET or None)
    since, until = form.days()

    def rows():
        for day in order_days(since=since, until=until).iterator(chunk_size=500):
            figures = [
                day.centra_orders, day.centra_value, day.fulfil_sales, day.fulfil_value, day.centra_refunds,
                day.refund_value, day.fulfil_credits, day.credit_value,
            ]  # fmt: skip
            base = [str(day.day), text_cell(day.market_name or str(day.market_id)), text_cell(day.currency)]
            base += [str(value) for value in figures]
            signed = [
                text_cell(day.signed_off_by.get_username() if day.signed_off_by else ""),
                day.signed_off_at.isoformat() if day.signed_off_at else "",
                text_cell(day.sign_off_note),
            ]
            yield [*base, "", "", "", "", "", *signed]
            for difference in day.differences:
                found = [difference["kind"], difference["ref"], difference["order"]]
                amounts = [difference["centra"], difference["fulfil"] or ""]
                yield [*base, *(text_cell(str(value)) for value in found), *amounts, "", "", ""]

    response = StreamingHttpResponse(csv_chunks(COLUMNS, rows()), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="order-reconciliation-{since}-{until}.csv"'
    return response
