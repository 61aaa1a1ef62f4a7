from decimal import Decimal

import tablib
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet
from import_export.admin import ImportExportModelAdmin
from import_export.formats.base_formats import CSV
from simple_history.admin import SimpleHistoryAdmin

from mappings import resources
from mappings.models import (
    Bundle,
    BundleComponent,
    CarrierMapping,
    Channel,
    MarketMapping,
    ShippingMethodMapping,
    SkuMapping,
    StockBuffer,
    StockStatusRule,
    TaxMapping,
)
from mappings.services import SAVE_AS_UTF8, UnreadableCsv, csv_text_check, not_utf8_message
from mappings.validators import starts_like_formula


class MappingCSV(CSV):
    """CSV as the mapping tables are imported and exported: a file holding NUL characters is refused with a
    message saying what to do, and every exported cell a spreadsheet would run as a formula is defused the way the
    console's own exports are (a leading apostrophe), not only those starting with "=". The tables hold no
    negative numbers, so no figure is changed."""

    def create_dataset(self, in_stream, **kwargs):
        if isinstance(in_stream, str):
            csv_text_check(in_stream)
        return super().create_dataset(in_stream, **kwargs)

    def export_data(self, dataset, **kwargs):
        defused = tablib.Dataset(headers=dataset.headers)
        for row in dataset:
            defused.append([_defused(cell) for cell in row])
        return defused.export(self.get_title(), **kwargs)


def _defused(cell):
    return f"'{cell}" if isinstance(cell, str) and starts_like_formula(cell) else cell


class MappingAdmin(ImportExportModelAdmin, SimpleHistoryAdmin):
    """CSV import/export (needs the change / view permission) and the change history of every row."""

    formats = [MappingCSV]
    list_per_page = 100
    show_full_result_count = False
    readonly_fields = ("created_at", "updated_at")

    def add_data_read_fail_error_to_form(self, form, error) -> None:
        """Say why the file could not be read in words the person can act on (django-import-export names the
        exception's type)."""
        if isinstance(error, UnicodeDecodeError):
            form.add_error("import_file", not_utf8_message(error))
        elif isinstance(error, UnreadableCsv):
            form.add_error("import_file", str(error))
        else:
            form.add_error("import_file", f"The file could not be read as CSV: {error}. {SAVE_AS_UTF8}")


@admin.register(Channel)
class ChannelAdmin(MappingAdmin):
    resource_classes = [resources.ChannelResource]
    list_display = ("name", "code", "system", "centra_market_id", "active")
    list_filter = ("system", "active")
    search_fields = ("name", "code")
    prepopulated_fields = {"code": ("name",)}


@admin.register(SkuMapping)
class SkuMappingAdmin(MappingAdmin):
    resource_classes = [resources.SkuMappingResource]
    list_display = ("centra_sku", "system", "external_code", "ean", "updated_at")
    list_filter = ("system",)
    search_fields = ("centra_sku", "external_code", "ean")


@admin.register(CarrierMapping)
class CarrierMappingAdmin(MappingAdmin):
    resource_classes = [resources.CarrierMappingResource]
    list_display = ("centra_carrier", "centra_service", "system", "target_code", "updated_at")
    list_filter = ("system", "centra_carrier")
    search_fields = ("centra_carrier", "centra_service", "target_code")


@admin.register(ShippingMethodMapping)
class ShippingMethodMappingAdmin(MappingAdmin):
    resource_classes = [resources.ShippingMethodMappingResource]
    list_display = ("source_method", "system", "centra_shipping_option", "target_service_code", "updated_at")
    list_filter = ("system",)
    search_fields = ("source_method", "centra_shipping_option", "target_service_code")


@admin.register(TaxMapping)
class TaxMappingAdmin(MappingAdmin):
    resource_classes = [resources.TaxMappingResource]
    list_display = ("centra_tax_class", "country", "rate", "fulfil_tax_code", "updated_at")
    list_filter = ("centra_tax_class", "country")
    search_fields = ("centra_tax_class", "country", "fulfil_tax_code")


@admin.register(MarketMapping)
class MarketMappingAdmin(MappingAdmin):
    resource_classes = [resources.MarketMappingResource]
    list_display = (
        "centra_store_id",
        "centra_market_id",
        "label",
        "currency",
        "fulfil_channel_id",
        "fulfil_warehouse_id",
    )
    list_filter = ("currency", "centra_store_id")
    search_fields = ("label", "currency")


class BundleComponentFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        shares = [
            form.cleaned_data["price_share"]
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE") and "price_share" in form.cleaned_data
        ]
        if shares and sum(shares, Decimal(0)) != 100:
            raise ValidationError(
                f"The components' shares of the bundle price add up to {sum(shares, Decimal(0))}%; "
                "they must add up to exactly 100%."
            )


class BundleComponentInline(admin.TabularInline):
    model = BundleComponent
    formset = BundleComponentFormSet
    extra = 1
    fields = ("component_sku", "quantity", "price_share")


@admin.register(Bundle)
class BundleAdmin(MappingAdmin):
    inlines = [BundleComponentInline]
    list_display = ("bundle_sku", "name", "component_count", "updated_at")
    search_fields = ("bundle_sku", "name", "components__component_sku")

    @admin.display(description="components")
    def component_count(self, bundle: Bundle) -> int:
        return bundle.components.count()

    def has_import_permission(self, request) -> bool:
        return False  # bundles are imported as their components, which name the bundle

    def has_export_permission(self, request) -> bool:
        return False


@admin.register(BundleComponent)
class BundleComponentAdmin(MappingAdmin):
    """Component rows on their own, for CSV import/export of many bundles at once."""

    resource_classes = [resources.BundleComponentResource]
    list_display = ("bundle", "component_sku", "quantity", "price_share")
    list_select_related = ("bundle",)
    search_fields = ("bundle__bundle_sku", "component_sku")

    # One component edited alone could leave its bundle's shares off 100%: edits happen on the bundle's page.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(StockBuffer)
class StockBufferAdmin(MappingAdmin):
    resource_classes = [resources.StockBufferResource]
    list_display = ("channel", "centra_sku", "product_number", "buffer", "max_quantity", "zero_at_or_below")
    list_filter = ("channel",)
    list_select_related = ("channel",)
    search_fields = ("centra_sku", "product_number")


@admin.register(StockStatusRule)
class StockStatusRuleAdmin(MappingAdmin):
    resource_classes = [resources.StockStatusRuleResource]
    list_display = ("status", "system", "subtract", "description")
    list_filter = ("system", "subtract")
    search_fields = ("status", "description")
