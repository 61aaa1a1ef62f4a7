"""CSV import/export of the mapping tables (django-import-export resources).

Rows are matched on each table's natural key, so a file exported, edited in a spreadsheet and imported again
updates rows instead of duplicating them. Every row is validated like an edit in the admin; a key that appears
twice in one file is an error on the second row; any invalid row rejects the whole file.
"""

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db.models import CharField
from import_export import fields, resources
from import_export.widgets import ForeignKeyWidget

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
from mappings.validators import starts_like_formula

FORMULA_MESSAGE = (
    "would run as a formula in a spreadsheet (it starts with =, +, -, @, a tab or a line break); "
    "remove the characters before the text."
)


class MappingResource(resources.ModelResource):
    """Shared behaviour: natural keys, duplicate keys within a file, whole-file rollback, the editor in history."""

    def before_import(self, dataset, **kwargs) -> None:
        self._keys_seen: dict[tuple, int] = {}
        self._editor = kwargs.get("user")

    def _natural_key(self, instance) -> tuple:
        key = []
        for name in self._meta.import_id_fields:
            value = getattr(instance, self.fields[name].attribute)
            key.append(value.pk if hasattr(value, "pk") else str(value if value is not None else "").strip().lower())
        return tuple(key)

    def import_instance(self, instance, row, **kwargs) -> None:
        key_was_seen_on = None
        try:
            super().import_instance(instance, row, **kwargs)
        finally:
            key = self._natural_key(instance)
            key_was_seen_on = self._keys_seen.setdefault(key, kwargs.get("row_number"))
            if key_was_seen_on != kwargs.get("row_number"):
                instance._duplicate_of_row = key_was_seen_on

    def validate_instance(self, instance, import_validation_errors=None, validate_unique=True) -> None:
        errors = dict(import_validation_errors or {})
        for name, message in self._formula_cells(instance):
            errors.setdefault(name, []).append(message)
        duplicate_of_row = getattr(instance, "_duplicate_of_row", None)
        if duplicate_of_row is None:
            return super().validate_instance(instance, errors, validate_unique)
        # The earlier row already claims this key: saying so is the whole story, not also a clash with itself.
        names = ", ".join(self._meta.import_id_fields)
        errors.setdefault(NON_FIELD_ERRORS, []).append(
            f"The same {names} appears earlier in this file (line {duplicate_of_row + 1})."
        )
        raise ValidationError(errors)

    def _formula_cells(self, instance) -> list[tuple[str, str]]:
        """(field, message) for each text value of the row that a spreadsheet would run as a formula: refused, so
        no mapping ever holds one that a later export or a colleague's spreadsheet could run."""
        found = []
        for field in instance._meta.get_fields():
            if not isinstance(field, CharField) or field.name not in self.fields:
                continue
            value = getattr(instance, field.attname, "")
            if isinstance(value, str) and starts_like_formula(value):
                found.append((field.name, f"{value[:40]!r} {FORMULA_MESSAGE}"))
        return found

    def before_save_instance(self, instance, row, **kwargs) -> None:
        # django-simple-history records this user as the editor, for imports from the admin and the command.
        if self._editor is not None:
            instance._history_user = self._editor

    class Meta:
        clean_model_instances = True
        skip_unchanged = True
        report_skipped = True
        use_transactions = True
        exclude = ("id", "created_at", "updated_at")


class ChannelResource(MappingResource):
    class Meta(MappingResource.Meta):
        model = Channel
        import_id_fields = ("code",)
        fields = ("code", "name", "system", "active", "centra_market_id", "external_account")


class SkuMappingResource(MappingResource):
    class Meta(MappingResource.Meta):
        model = SkuMapping
        import_id_fields = ("system", "centra_sku")
        fields = ("system", "centra_sku", "external_code", "ean")


class CarrierMappingResource(MappingResource):
    class Meta(MappingResource.Meta):
        model = CarrierMapping
        import_id_fields = ("system", "centra_carrier", "centra_service")
        fields = ("system", "centra_carrier", "centra_service", "target_code")


class ShippingMethodMappingResource(MappingResource):
    class Meta(MappingResource.Meta):
        model = ShippingMethodMapping
        import_id_fields = ("system", "source_method")
        fields = ("system", "source_method", "centra_shipping_option", "target_service_code")


class TaxMappingResource(MappingResource):
    class Meta(MappingResource.Meta):
        model = TaxMapping
        import_id_fields = ("centra_tax_class", "country")
        fields = ("centra_tax_class", "country", "rate", "fulfil_tax_code")


class MarketMappingResource(MappingResource):
    class Meta(MappingResource.Meta):
        model = MarketMapping
        import_id_fields = ("centra_store_id", "centra_market_id")
        fields = (
            "centra_store_id",
            "centra_market_id",
            "label",
            "currency",
            "fulfil_channel_id",
            "fulfil_warehouse_id",
        )


class KnownObjectWidget(ForeignKeyWidget):
    """A foreign key given by a natural key; an unknown one is a row error that names it."""

    def clean(self, value, row=None, **kwargs):
        if value in (None, ""):
            raise ValueError(f"A {self.model._meta.verbose_name} {self.field} is required.")
        try:
            return super().clean(value, row=row, **kwargs)
        except self.model.DoesNotExist:
            raise ValueError(f"There is no {self.model._meta.verbose_name} with {self.field} {value!r}.") from None


class BundleWidget(ForeignKeyWidget):
    """Bundle components name their bundle by SKU; the bundle is created by the first row that names it."""

    def clean(self, value, row=None, **kwargs):
        value = (value or "").strip()
        if not value:
            raise ValueError("A bundle SKU is required.")
        bundle = Bundle.objects.filter(bundle_sku__iexact=value).first()
        if bundle is None:
            bundle = Bundle(bundle_sku=value, name=(row or {}).get("bundle_name", "") or "")
            bundle.full_clean()
            bundle.save()
        return bundle


class BundleComponentResource(MappingResource):
    bundle = fields.Field(column_name="bundle_sku", attribute="bundle", widget=BundleWidget(Bundle, field="bundle_sku"))
    bundle_name = fields.Field(column_name="bundle_name", attribute="bundle__name", readonly=True)

    def before_import(self, dataset, **kwargs) -> None:
        super().before_import(dataset, **kwargs)
        self._bundles_touched: set[int] = set()

    def after_save_instance(self, instance, row, **kwargs) -> None:
        self._bundles_touched.add(instance.bundle_id)

    def after_import(self, dataset, result, **kwargs) -> None:
        # Shares can only be checked once every component of a bundle is in: a file that leaves a bundle's
        # shares not adding up to 100% is rejected as a whole.
        problems = [
            f"Bundle {bundle.bundle_sku}: the price shares of its components add up to "
            f"{bundle.price_shares_total()}%, not 100%."
            for bundle in Bundle.objects.filter(pk__in=self._bundles_touched).prefetch_related("components")
            if bundle.price_shares_total() != 100
        ]
        if problems:
            raise ValidationError(problems)

    class Meta(MappingResource.Meta):
        model = BundleComponent
        import_id_fields = ("bundle", "component_sku")
        fields = ("bundle", "bundle_name", "component_sku", "quantity", "price_share")


class StockBufferResource(MappingResource):
    channel = fields.Field(column_name="channel", attribute="channel", widget=KnownObjectWidget(Channel, field="code"))

    class Meta(MappingResource.Meta):
        model = StockBuffer
        import_id_fields = ("channel", "centra_sku", "product_number")
        fields = ("channel", "centra_sku", "product_number", "buffer", "max_quantity", "zero_at_or_below")


class StockStatusRuleResource(MappingResource):
    class Meta(MappingResource.Meta):
        model = StockStatusRule
        import_id_fields = ("system", "status")
        fields = ("system", "status", "subtract", "description")


RESOURCES: dict[str, type[MappingResource]] = {
    resource._meta.model._meta.model_name: resource
    for resource in (
        ChannelResource,
        SkuMappingResource,
        CarrierMappingResource,
        ShippingMethodMappingResource,
        TaxMappingResource,
        MarketMappingResource,
        BundleComponentResource,
        StockBufferResource,
        StockStatusRuleResource,
    )
}
