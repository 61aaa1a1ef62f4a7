"""Forms of the exception pages: the queue's filters, the actions' notes and choices, and the "create the missing
mapping" form prefilled from an exception."""

from django import forms
from django.contrib.auth import get_user_model
from django.db import models

from exceptions.kinds import KINDS, TEAMS
from exceptions.models import SyncException
from exceptions.selectors import AGE_BUCKETS
from mappings.models import (
    CarrierMapping,
    MarketMapping,
    ShippingMethodMapping,
    SkuMapping,
    StockStatusRule,
    TaxMapping,
)

STATUS_CHOICES = [
    ("active", "Active (open or retrying)"),
    ("open", "Open"),
    ("retrying", "Retrying"),
    ("resolved", "Resolved"),
    ("ignored", "Ignored"),
    ("all", "All"),
]
SORT_CHOICES = [("impact", "Impact"), ("age", "Oldest first")]
BULK_ACTIONS = {"retry": "Retry", "resolve": "Resolve", "ignore": "Ignore"}


class QueueFilterForm(forms.Form):
    """Only draws the filter bar: the query string is read by ``QueueFilters.from_params``, which ignores
    unknown values rather than refusing them."""

    status = forms.ChoiceField(choices=STATUS_CHOICES, required=False)
    team = forms.ChoiceField(choices=[("", "Every team"), *TEAMS.items()], required=False)
    kind = forms.ChoiceField(
        choices=[("", "Every kind"), *sorted(((code, k.label) for code, k in KINDS.items()), key=lambda c: c[1])],
        required=False,
    )
    flow = forms.ChoiceField(choices=[("", "Every flow")], required=False)
    age = forms.ChoiceField(
        choices=[("", "Any age"), *((code, label) for code, (label, _, _) in AGE_BUCKETS.items())], required=False
    )
    q = forms.CharField(
        label="Search",
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "Order number, SKU, tracking number…", "type": "search"}),
    )
    sort = forms.ChoiceField(choices=SORT_CHOICES, required=False)

    def __init__(self, *args, flows: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["flow"].choices = [("", "Every flow"), *((flow, flow.replace("_", " ")) for flow in flows)]


class NoteForm(forms.Form):
    """Resolve and ignore: a note saying how it was fixed or why it does not matter. The service refuses a blank one;
    the browser is asked to refuse it first."""

    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 2, "required": True}), required=False, strip=True)


class AssignForm(forms.Form):
    team = forms.ChoiceField(choices=[("", "Keep the team"), *TEAMS.items()], required=False)
    assignee = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        required=False,
        empty_label="Nobody",
    )


class IdListField(forms.Field):
    """Exception ids ticked in the table: every integer is accepted; ids that match nothing act on nothing."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value) -> list[int]:
        return sorted({int(item) for item in value or [] if str(item).isdigit()})


class BulkForm(forms.Form):
    """A bulk action on the ticked exceptions (``ids``) or on everything matching the filters (``all_matching``)."""

    action = forms.ChoiceField(choices=list(BULK_ACTIONS.items()))
    ids = IdListField(required=False)
    all_matching = forms.BooleanField(required=False)
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False, strip=True)
    confirmed = forms.BooleanField(required=False)

    def clean(self) -> dict:
        cleaned = super().clean()
        if not cleaned.get("all_matching") and not cleaned.get("ids"):
            raise forms.ValidationError("Tick the exceptions to act on, or select all matching.")
        if cleaned.get("confirmed") and cleaned.get("action") in {"resolve", "ignore"} and not cleaned.get("note"):
            self.add_error("note", "Say in a note how they were fixed, or why they are ignored.")
        return cleaned


# --- create the missing mapping -----------------------------------------------------------------------------------


class MissingMappingForm(forms.ModelForm):
    """A mapping prefilled with what the exception says is missing; the person fills in the translation.

    ``create(actor=…)`` validates the model in full and saves it with ``actor`` as the history's editor; the save
    frees every exception the mapping was blocking (see ``exceptions.mapping_changes``)."""

    def create(self, *, actor) -> models.Model:
        mapping = self.save(commit=False)
        mapping.full_clean()
        mapping._history_user = actor
        mapping.save()
        return mapping


def _mapping_form(model: type[models.Model], fields: list[str]) -> type[MissingMappingForm]:
    return forms.modelform_factory(model, form=MissingMappingForm, fields=fields)


# mapping_kind: (model, fields, prefill(system, key)). The keys are those mappings.services.MissingMapping names.
MAPPING_FORMS = {
    "sku": (
        SkuMapping,
        ["system", "centra_sku", "external_code", "ean"],
        lambda system, key: {"system": system, "centra_sku": key.get("centra_sku"), "external_code": key.get("code")},
    ),
    "carrier": (
        CarrierMapping,
        ["system", "centra_carrier", "centra_service", "target_code"],
        lambda system, key: {
            "system": system,
            "centra_carrier": key.get("carrier"),
            "centra_service": key.get("service"),
            "target_code": key.get("code"),
        },
    ),
    "shipping_method": (
        ShippingMethodMapping,
        ["system", "source_method", "centra_shipping_option", "target_service_code"],
        lambda system, key: {"system": system, "source_method": key.get("method")},
    ),
    "tax": (
        TaxMapping,
        ["centra_tax_class", "country", "rate", "fulfil_tax_code"],
        lambda system, key: {"centra_tax_class": key.get("tax_class"), "country": key.get("country")},
    ),
    "market": (
        MarketMapping,
        ["centra_store_id", "centra_market_id", "label", "currency", "fulfil_channel_id", "fulfil_warehouse_id"],
        lambda system, key: {"centra_store_id": key.get("store_id"), "centra_market_id": key.get("market_id")},
    ),
    "stock_status": (
        StockStatusRule,
        ["system", "status", "subtract", "description"],
        lambda system, key: {"system": system, "status": key.get("status")},
    ),
}


def mapping_model_for(exception: SyncException) -> type[models.Model] | None:
    """The mapping model whose absence blocks ``exception``, or None when it is not waiting on a mapping."""
    if not exception.kind.startswith("unmapped_") or exception.mapping_kind not in MAPPING_FORMS:
        return None
    return MAPPING_FORMS[exception.mapping_kind][0]


def mapping_add_permission(model: type[models.Model]) -> str:
    return f"{model._meta.app_label}.add_{model._meta.model_name}"


def missing_mapping_form(exception: SyncException, data=None) -> MissingMappingForm | None:
    """The form to create the mapping ``exception`` waits for, prefilled from it; None if it waits for none."""
    if mapping_model_for(exception) is None:
        return None
    model, fields, prefill = MAPPING_FORMS[exception.mapping_kind]
    initial = {
        name: value
        for name, value in prefill(exception.mapping_system, exception.mapping_key or {}).items()
        if value not in (None, "")
    }
    return _mapping_form(model, fields)(data=data, initial=initial, prefix="mapping")
