"""The stock pages: every SKU × channel pair, found by SKU, product, channel and state (stale, drift, pending,
zero); and one SKU — the stock master's reading, each channel's available-to-sell worked out line by line, what the
channel accepted and shows, its open exceptions, Inventory Planner's replenishment figures — with the SKU's buffer
on each channel editable in place by the roles allowed to change stock buffers.

Reads through ``console.stock_selectors``; a buffer changes only through ``syncs.stock.buffers``."""

from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from console.stock_selectors import (
    STATE_HELP,
    STATES,
    PairFilters,
    channel_stock,
    pairs_page,
    sku_on_channel,
    sku_stock,
    state_counts,
    stock_pairs,
)
from exceptions.views import count_label
from mappings.models import Channel, StockBuffer
from syncs.stock.buffers import (
    stock_buffer_may_edit,
    stock_buffer_may_remove,
    stock_buffer_remove,
    stock_buffer_set,
)
from syncs.stock.planner import planner_figures


class PairFilterForm(forms.Form):
    q = forms.CharField(
        label="SKU or product",
        required=False,
        max_length=100,
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "TEE100 or TEE100BLKM"}),
    )
    exact = forms.BooleanField(label="Whole SKU only", required=False)
    channel = forms.ModelChoiceField(
        queryset=Channel.objects.order_by("name"), to_field_name="code", required=False, empty_label="Every channel"
    )
    state = forms.ChoiceField(choices=[("", "Any state"), *STATES.items()], required=False)

    def filters(self) -> PairFilters:
        """The filters asked for; one that does not validate (a channel that is gone, say) is left out."""
        if not self.is_bound:
            return PairFilters()
        self.is_valid()
        data = self.cleaned_data
        return PairFilters(
            q=data.get("q", "").strip(),
            exact=data.get("exact", False),
            channel=data.get("channel"),
            state=data.get("state", ""),
        )


def _field(name: str) -> forms.IntegerField:
    """A form field labelled and explained as the stock buffer's own field is (its values are checked by the model,
    as in the admin)."""
    model_field = StockBuffer._meta.get_field(name)
    return forms.IntegerField(
        label=model_field.verbose_name.capitalize(), help_text=model_field.help_text, required=name == "buffer"
    )


class BufferForm(forms.Form):
    buffer = _field("buffer")
    max_quantity = _field("max_quantity")
    zero_at_or_below = _field("zero_at_or_below")


@require_GET
def pairs(request: HttpRequest) -> HttpResponse:
    form = PairFilterForm(request.GET or None)
    filters = form.filters()
    cursor = request.GET.get("cursor") or None
    found = stock_pairs(filters)
    page = pairs_page(found, cursor=cursor)
    params = {name: value for name, value in request.GET.items() if name in form.fields and value}
    context = {
        "rows": page.rows,
        "continued": cursor is not None,
        "first_page_url": f"?{urlencode(params)}",
        "next_url": f"?{urlencode(params | {'cursor': page.next_cursor})}" if page.next_cursor else None,
    }
    if request.htmx and not request.htmx.boosted and not request.htmx.history_restore_request:
        return render(request, "console/_stock_pairs.html", context)
    counts = state_counts(channel=filters.channel)
    context["form"] = form
    context["states"] = [
        {
            "code": code,
            "label": label,
            "help": STATE_HELP[code],
            "count": count_label(*counts[code]),
            "url": "?" + urlencode(params | {"state": code}),
            "current": filters.state == code,
        }
        for code, label in STATES.items()
    ]
    return render(request, "console/stock.html", context)


@require_GET
def sku_detail(request: HttpRequest, sku: str) -> HttpResponse:
    stock = sku_stock(sku=sku)
    if stock is None:
        raise Http404(f"No channel has stock of {sku}.")
    may_edit = stock_buffer_may_edit(request.user)
    for entry in stock.channels:
        entry.form = _buffer_form(entry) if may_edit else None
    return render(
        request,
        "console/stock_sku.html",
        {
            "stock": stock,
            "planner": planner_figures(centra_sku=sku),
            "may_remove": stock_buffer_may_remove(request.user),
        },
    )


@require_POST
def buffer_edit(request: HttpRequest, sku: str, channel_code: str) -> HttpResponse:
    """Set (or, with ``remove``, take away) the SKU's own buffer on one channel. To htmx, the channel's part of
    the page comes back; otherwise the SKU's page."""
    if not stock_buffer_may_edit(request.user):
        raise PermissionDenied("Your role may not change stock buffers.")
    channel = get_object_or_404(Channel, code=channel_code)
    if not sku_on_channel(sku=sku, channel=channel):
        raise Http404(f"{channel.name} has no stock of {sku}.")
    done = ""
    if request.POST.get("remove"):
        if stock_buffer_remove(channel=channel, centra_sku=sku, actor=request.user):
            done = f"{sku} on {channel.name} follows its product's or channel's buffer again; stock is being pushed."
        form = None
    else:
        form = BufferForm(request.POST, prefix=channel.code)
        if form.is_valid():
            try:
                stock_buffer_set(channel=channel, centra_sku=sku, actor=request.user, **form.cleaned_data)
            except ValidationError as error:
                _add_errors(form, error)
            else:
                done = f"Buffer for {sku} on {channel.name} saved; its stock is being pushed."
                form = None
    if not request.htmx:
        if done:
            messages.success(request, done)
        elif form is not None:
            messages.error(request, " ".join(f"{name}: {' '.join(errs)}" for name, errs in form.errors.items()))
        return redirect("stock:sku", sku=sku)
    entry = channel_stock(sku=sku, channel=channel)
    if entry is None:
        raise Http404(f"{channel.name} has no stock of {sku}.")
    entry.form = form if form is not None else _buffer_form(entry)
    return render(
        request,
        "console/_stock_channel.html",
        {
            "stock_sku": sku,
            "entry": entry,
            "may_remove": stock_buffer_may_remove(request.user),
            "saved": done,
        },
    )


def _buffer_form(entry) -> BufferForm:
    """The form for the SKU's buffer on a channel, filled with the rule that applies now (its own, or the product's
    or channel's it inherits, which saving makes its own)."""
    rule = entry.rule or entry.buffer
    initial = {"buffer": rule.buffer, "max_quantity": rule.max_quantity, "zero_at_or_below": rule.zero_at_or_below}
    return BufferForm(initial=initial, prefix=entry.channel.code)


def _add_errors(form: BufferForm, error: ValidationError) -> None:
    if hasattr(error, "error_dict"):
        for name, errors in error.message_dict.items():
            form.add_error(name if name in form.fields else None, errors)
    else:
        form.add_error(None, error.messages)
