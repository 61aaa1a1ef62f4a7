"""The translation tables staff own: how Centra's codes read in every other system.

Each table has database constraints against duplicates (case-insensitive where people type the keys), model
validation with messages a person can act on, and a full history of who changed what.
"""

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.functions import Lower
from django_countries.fields import CountryField
from simple_history.models import HistoricalRecords

from mappings.validators import validate_code, validate_currency, validate_gtin


class System(models.TextChoices):
    CENTRA = "centra", "Centra"
    FULFIL = "fulfil", "Fulfil"
    VIRTUALSTOCK = "virtualstock", "Virtualstock"
    MARKETPLACE = "marketplace", "Marketplace"
    INVENTORY_PLANNER = "inventory_planner", "Inventory Planner"


# Systems that have their own product codes, carriers and so on, as opposed to Centra, whose codes are the keys.
TARGET_SYSTEMS = [choice for choice in System.choices if choice[0] != System.CENTRA]
# Where orders come from besides Centra itself.
ORDER_SOURCE_SYSTEMS = [(System.VIRTUALSTOCK.value, "Virtualstock"), (System.MARKETPLACE.value, "Marketplace")]
# Systems that can be the stock master.
STOCK_MASTER_SYSTEMS = [
    (System.CENTRA.value, "Centra"),
    (System.FULFIL.value, "Fulfil"),
    (System.INVENTORY_PLANNER.value, "Inventory Planner"),
]
# Systems that sell: each channel is one of these.
CHANNEL_SYSTEMS = [
    (System.CENTRA.value, "Centra"),
    (System.VIRTUALSTOCK.value, "Virtualstock"),
    (System.MARKETPLACE.value, "Marketplace"),
]

code_field_validators = [validate_code]


class MappingModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

    def clean_fields(self, exclude=None) -> None:
        self.normalize()
        super().clean_fields(exclude=exclude)

    def normalize(self) -> None:
        """Tidy what people type before it is validated. People paste codes from spreadsheets: stray spaces at
        either end are never meant."""
        for field in self._meta.concrete_fields:
            value = getattr(self, field.attname)
            if isinstance(value, str):
                setattr(self, field.attname, value.strip())


class Channel(MappingModel):
    """A place that sells: Centra itself, one Virtualstock retailer account, or one marketplace account."""

    code = models.SlugField(
        max_length=50, unique=True, help_text="Short permanent name, e.g. 'john-lewis'. Used in settings and URLs."
    )
    name = models.CharField(max_length=100)
    system = models.CharField(max_length=20, choices=CHANNEL_SYSTEMS)
    active = models.BooleanField(default=True, help_text="Inactive channels receive no stock or product updates.")
    centra_market_id = models.PositiveIntegerField(
        "Centra market id", null=True, blank=True, help_text="The Centra market this channel's orders are placed in."
    )
    external_account = models.CharField(
        max_length=100, blank=True, help_text="The account or retailer this channel is in the other system, if several."
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SkuMapping(MappingModel):
    """A Centra SKU and the code another system knows the same item by, where the two differ."""

    system = models.CharField(max_length=20, choices=TARGET_SYSTEMS)
    centra_sku = models.CharField(
        "Centra SKU", max_length=100, validators=code_field_validators, help_text="productNumber+variant+size."
    )
    external_code = models.CharField(
        "code in that system",
        max_length=100,
        validators=code_field_validators,
        help_text="Fulfil product code, Virtualstock part number, marketplace seller SKU or Inventory Planner SKU.",
    )
    ean = models.CharField("EAN/GTIN", max_length=14, blank=True, validators=[validate_gtin])
    history = HistoricalRecords()

    class Meta:
        verbose_name = "SKU mapping"
        ordering = ["system", "centra_sku"]
        constraints = [
            models.UniqueConstraint(
                "system",
                Lower("centra_sku"),
                name="sku_mapping_unique_centra_sku",
                violation_error_message="This Centra SKU is already mapped for that system.",
            ),
            models.UniqueConstraint(
                "system",
                Lower("external_code"),
                name="sku_mapping_unique_external_code",
                violation_error_message="That code is already mapped to another Centra SKU in that system.",
            ),
        ]
        indexes = [models.Index(fields=["centra_sku"]), models.Index(fields=["external_code"])]

    def __str__(self) -> str:
        return f"{self.centra_sku} → {self.get_system_display()} {self.external_code}"


class CarrierMapping(MappingModel):
    """Centra's carrier and service (free text on a shipment) ↔ a target system's enumerated carrier code."""

    system = models.CharField(max_length=20, choices=TARGET_SYSTEMS)
    centra_carrier = models.CharField(max_length=100, help_text="As written on Centra shipments, e.g. 'DHL'.")
    centra_service = models.CharField(
        max_length=100, blank=True, help_text="e.g. 'Express'. Leave empty to match every service of the carrier."
    )
    target_code = models.CharField(
        "code in that system",
        max_length=100,
        validators=code_field_validators,
        help_text="Virtualstock carrier slug, Fulfil carrier_identifier or the marketplace's carrier code.",
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["system", "centra_carrier", "centra_service"]
        constraints = [
            models.UniqueConstraint(
                "system",
                Lower("centra_carrier"),
                Lower("centra_service"),
                name="carrier_mapping_unique",
                violation_error_message="This carrier and service are already mapped for that system.",
            )
        ]

    def __str__(self) -> str:
        service = f" {self.centra_service}" if self.centra_service else ""
        return f"{self.centra_carrier}{service} → {self.get_system_display()} {self.target_code}"


class ShippingMethodMapping(MappingModel):
    """A marketplace's or Virtualstock's shipping method ↔ the Centra shipping option an imported order gets,
    and the service code used when shipping back to that source."""

    system = models.CharField("source system", max_length=20, choices=ORDER_SOURCE_SYSTEMS)
    source_method = models.CharField(max_length=100, help_text="As the source names it, e.g. 'NEXT_DAY'.")
    centra_shipping_option = models.CharField(
        max_length=100, help_text="The Centra shipping option the order is created with."
    )
    target_service_code = models.CharField(
        max_length=100, blank=True, help_text="The source's service code for dispatch, when it needs one."
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["system", "source_method"]
        constraints = [
            models.UniqueConstraint(
                "system",
                Lower("source_method"),
                name="shipping_method_mapping_unique",
                violation_error_message="This shipping method is already mapped for that system.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_system_display()} {self.source_method} → {self.centra_shipping_option}"


class TaxMapping(MappingModel):
    """A Centra tax class in a country ↔ the Fulfil tax code posted on the sale."""

    centra_tax_class = models.CharField(max_length=100, help_text="Centra's tax class, e.g. 'standard'.")
    country = CountryField(blank=True, help_text="Leave empty for the default of this tax class.")
    rate = models.DecimalField(
        "rate (%)",
        max_digits=6,
        decimal_places=3,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(100))],
        help_text="The expected rate, checked against orders; optional.",
    )
    fulfil_tax_code = models.CharField(max_length=100)
    history = HistoricalRecords()

    class Meta:
        ordering = ["centra_tax_class", "country"]
        constraints = [
            models.UniqueConstraint(
                Lower("centra_tax_class"),
                "country",
                name="tax_mapping_unique",
                violation_error_message="This tax class is already mapped for that country.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.centra_tax_class} {self.country or '(any country)'} → {self.fulfil_tax_code}"


class MarketMapping(MappingModel):
    """A Centra store and market ↔ the Fulfil sales channel and warehouse its orders go to."""

    centra_store_id = models.PositiveIntegerField("Centra store id")
    centra_market_id = models.PositiveIntegerField("Centra market id")
    label = models.CharField(max_length=100, blank=True, help_text="For people: e.g. 'Retail EU'.")
    currency = models.CharField(
        max_length=3,
        validators=[validate_currency],
        help_text="The currency of this market's orders, ISO 4217 (EUR, GBP, SEK…).",
    )
    fulfil_channel_id = models.PositiveIntegerField("Fulfil channel id")
    fulfil_warehouse_id = models.PositiveIntegerField("Fulfil warehouse id")
    history = HistoricalRecords()

    class Meta:
        ordering = ["centra_store_id", "centra_market_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["centra_store_id", "centra_market_id"],
                name="market_mapping_unique",
                violation_error_message="This Centra store and market are already mapped.",
            )
        ]

    def __str__(self) -> str:
        label = f" ({self.label})" if self.label else ""
        return f"store {self.centra_store_id} market {self.centra_market_id}{label} → channel {self.fulfil_channel_id}"

    def normalize(self) -> None:
        super().normalize()
        self.currency = self.currency.upper()


class Bundle(MappingModel):
    """A SKU sold as one item that is fulfilled as several: the ERP receives its components."""

    bundle_sku = models.CharField("bundle SKU", max_length=100, unique=True, validators=code_field_validators)
    name = models.CharField(max_length=200, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["bundle_sku"]

    def __str__(self) -> str:
        return self.bundle_sku

    def price_shares_total(self) -> Decimal:
        return sum((component.price_share for component in self.components.all()), Decimal(0))


class BundleComponent(MappingModel):
    """One component of a bundle: how many of it are in the bundle and what share of the bundle price it carries.

    The shares of a bundle's components add up to exactly 100%; the order export splits each bundle price by
    them so the component lines sum to the bundle price to the minor unit.
    """

    bundle = models.ForeignKey(Bundle, on_delete=models.CASCADE, related_name="components")
    component_sku = models.CharField("component SKU", max_length=100, validators=code_field_validators)
    quantity = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    price_share = models.DecimalField(
        "share of the bundle price (%)",
        max_digits=7,
        decimal_places=4,
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(100))],
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["bundle", "component_sku"]
        constraints = [
            models.UniqueConstraint(
                "bundle",
                Lower("component_sku"),
                name="bundle_component_unique",
                violation_error_message="This SKU is already a component of that bundle.",
            ),
            models.CheckConstraint(condition=models.Q(quantity__gte=1), name="bundle_component_quantity_positive"),
            models.CheckConstraint(
                condition=models.Q(price_share__gte=0, price_share__lte=100),
                name="bundle_component_share_is_a_percentage",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.component_sku} ({self.price_share}%)"

    def clean(self) -> None:
        super().clean()
        if self.bundle_id and self.component_sku.lower() == self.bundle.bundle_sku.lower():
            raise ValidationError({"component_sku": "A bundle cannot contain itself."})


class StockBuffer(MappingModel):
    """How much of a SKU's stock a channel is not shown, and caps on what it is shown.

    Applies to one SKU, to every SKU of a product, or (both empty) to every SKU on the channel; the most specific
    rule wins.
    """

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="stock_buffers")
    centra_sku = models.CharField("Centra SKU", max_length=100, blank=True, validators=code_field_validators)
    product_number = models.CharField(
        max_length=100,
        blank=True,
        validators=code_field_validators,
        help_text="Applies to every SKU of this Centra product. Leave SKU and product empty for the whole channel.",
    )
    buffer = models.PositiveIntegerField("safety buffer", default=0, help_text="Units held back from this channel.")
    max_quantity = models.PositiveIntegerField(
        null=True, blank=True, help_text="Never show the channel more than this."
    )
    zero_at_or_below = models.PositiveIntegerField(
        "send 0 at or below",
        null=True,
        blank=True,
        help_text="When what could be sold is this or less, send 0 instead.",
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["channel", "product_number", "centra_sku"]
        constraints = [
            models.UniqueConstraint(
                "channel",
                Lower("centra_sku"),
                Lower("product_number"),
                name="stock_buffer_unique",
                violation_error_message="This channel already has a buffer for that SKU or product.",
            ),
            models.CheckConstraint(
                condition=models.Q(centra_sku="") | models.Q(product_number=""),
                name="stock_buffer_sku_or_product",
                violation_error_message="Give a SKU or a product, not both.",
            ),
        ]

    def __str__(self) -> str:
        scope = self.centra_sku or (f"product {self.product_number}" if self.product_number else "all SKUs")
        return f"{self.channel} · {scope}: buffer {self.buffer}"


class StockStatusRule(MappingModel):
    """Whether stock in a given status counts as sellable. Which statuses exist depends on the stock master."""

    system = models.CharField("stock master", max_length=20, choices=STOCK_MASTER_SYSTEMS)
    status = models.SlugField(
        max_length=50, help_text="The status as the stock master names it: reserved, quarantined, qc, allocated…"
    )
    subtract = models.BooleanField(
        "subtract from available to sell",
        default=True,
        help_text="Ticked: stock in this status cannot be sold and is taken off what channels see.",
    )
    description = models.CharField(max_length=200, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["system", "status"]
        constraints = [
            models.UniqueConstraint(
                "system",
                Lower("status"),
                name="stock_status_rule_unique",
                violation_error_message="This status already has a rule for that stock master.",
            )
        ]

    def __str__(self) -> str:
        verb = "subtracted" if self.subtract else "sellable"
        return f"{self.get_system_display()} {self.status}: {verb}"
