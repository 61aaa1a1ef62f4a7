from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower


class InboundWebhook(models.Model):
    """A webhook an outside system sent us, kept once it passed signature verification.

    The same delivery sent twice (a sender retrying, or a replay within the signature's time window) has the same
    digest and is stored once. Flows pick received webhooks up and mark them processed.
    """

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSING = "processing", "Being processed"
        PROCESSED = "processed", "Processed"
        FAILED = "failed", "Failed"

    system = models.CharField(max_length=30)
    digest = models.CharField(max_length=64, help_text="SHA-256 of the signature and body: one row per delivery.")
    received_at = models.DateTimeField(auto_now_add=True)
    # Verified payloads may hold dates and amounts (Fulfil's typed values): kept as their ISO / decimal strings.
    payload = models.JSONField(encoder=DjangoJSONEncoder)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["system", "digest"], name="inbound_webhook_once")]
        indexes = [models.Index(fields=["status", "received_at"])]

    def __str__(self) -> str:
        return f"{self.system} webhook {self.received_at:%Y-%m-%d %H:%M:%S}"


class Link(models.Model):
    """The identity of one business object across systems: a marketplace or retailer order, the Centra order it
    became, the Fulfil sale. Every write looks here first, so a retried or twice-delivered task never makes a
    second order.

    For an imported order the Centra order number is reserved when the link is made (a fixed base plus the link's
    id): Centra refuses a second order with the same number, so even a crash between "created in Centra" and
    "link saved" cannot double it.
    """

    class Kind(models.TextChoices):
        ORDER = "order", "Order"
        SHIPMENT = "shipment", "Shipment"
        RETURN = "return", "Return"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    source_system = models.CharField(max_length=30)
    source_ref = models.CharField(max_length=100, help_text="The source's own reference.")
    source_id = models.CharField(max_length=100, blank=True, help_text="The source's id for API calls, if different.")
    channel = models.ForeignKey("mappings.Channel", null=True, blank=True, on_delete=models.PROTECT)
    order = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="parts",
        help_text="For a shipment or a return: the order it belongs to.",
    )
    centra_number = models.BigIntegerField(null=True, blank=True, unique=True)
    fulfil_id = models.BigIntegerField(null=True, blank=True)
    centra_id = models.CharField(max_length=100, blank=True, help_text="Centra's id (a shipment's, a return's).")
    created_in_target_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    exported_at = models.DateTimeField(null=True, blank=True, help_text="An order: when Fulfil got its sale.")
    shipped_at = models.DateTimeField(null=True, blank=True, help_text="An order: when it was fully shipped.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "source_system", "source_ref"], name="link_once_per_source")
        ]
        indexes = [
            models.Index(fields=["kind", "fulfil_id"]),
            models.Index(fields=["kind", "centra_id"]),
            # The order trace finds a reference however it is typed: one index look-up on either database.
            models.Index(Lower("source_ref"), name="link_source_ref_any_case"),
            # Orders waiting for their payment's capture: the export looks at them every run, the dashboard and
            # /metrics count them; a handful among every order ever made.
            models.Index(
                fields=["kind", "created_at"], name="link_waiting_capture", condition=Q(detail__waiting="capture")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.source_system}:{self.source_ref}"


class LinkRef(models.Model):
    """An identifier people quote for a link that no Link column holds — a parcel's tracking number, Fulfil's
    shipment number — lower-cased, one row each, so the order trace finds the order with one index look-up.
    Written by the flows through ``syncs.link_refs.link_identifiers_record``."""

    link = models.ForeignKey(Link, on_delete=models.CASCADE, related_name="refs")
    ref = models.CharField(max_length=200)
    what = models.CharField(max_length=30, help_text="Which identifier it is, e.g. tracking_number.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["ref", "link"], name="link_ref_once")]

    def __str__(self) -> str:
        return f"{self.what} {self.ref}"


class SyncRun(models.Model):
    """One execution of a flow, with what it did."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    flow = models.CharField(max_length=40)
    trigger = models.CharField(max_length=20, default="schedule")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    examined = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    summary = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["flow", "-started_at"]),
            # The runs page by status (the running ones every few seconds), with or without a flow, newest first.
            models.Index(fields=["status", "flow", "-id"], name="syncrun_by_status"),
        ]

    def __str__(self) -> str:
        return f"{self.flow} run {self.started_at:%Y-%m-%d %H:%M:%S}"


# Pairs the stock page picks out, each with its own partial index (the stock page's filters at 300,000 pairs):
# a value not yet accepted by the channel (stale, too, when its last confirmation is older than STOCK_STALE_MINUTES),
# a channel showing something else than what it last accepted, nothing to sell.
STOCK_PENDING = models.Q(pushed_value__isnull=True) | ~models.Q(pushed_value=models.F("ats"))
STOCK_DRIFT = models.Q(channel_value__isnull=False) & (
    models.Q(pushed_value__isnull=True) | ~models.Q(channel_value=models.F("pushed_value"))
)
STOCK_ZERO = models.Q(ats=0)


class StockState(models.Model):
    """What Switchyard knows of one SKU on one channel: the stock master's latest reading and its version, the
    available-to-sell computed from it, and what the channel last accepted — so only changes are sent, and an
    older reading can never overwrite a newer one."""

    channel = models.ForeignKey("mappings.Channel", on_delete=models.CASCADE, related_name="stock_states")
    sku = models.CharField(max_length=100)
    product_number = models.CharField(max_length=100, blank=True)
    master_on_hand = models.IntegerField(default=0)
    master_statuses = models.JSONField(default=dict, blank=True)
    master_version = models.DateTimeField(null=True, blank=True, help_text="When the stock master was read.")
    ats = models.IntegerField(default=0)
    pushed_value = models.IntegerField(null=True, blank=True, help_text="What the channel last accepted.")
    pushed_version = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    channel_value = models.IntegerField(null=True, blank=True, help_text="What the channel showed when last read.")
    external_id = models.CharField(max_length=100, blank=True, help_text="The item's id in the channel's API.")
    external_detail = models.JSONField(default=dict, blank=True)
    velocity = models.DecimalField(max_digits=10, decimal_places=3, default=0, help_text="Units sold a day.")
    attempts = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "sku"], name="stock_state_once")]
        indexes = [
            models.Index(fields=["channel", "acknowledged_at"]),
            # The stock page lists pairs by SKU, finds SKUs by prefix (LIKE 'TEE1%' needs the pattern operator
            # class unless the database collation is C) or product number, and each of its filters in SKU order.
            models.Index(fields=["sku", "channel"], name="stock_state_by_sku"),
            models.Index(fields=["sku"], name="stock_state_sku_prefix", opclasses=["varchar_pattern_ops"]),
            models.Index(fields=["product_number"], name="stock_state_product"),
            models.Index(fields=["sku", "channel"], name="stock_state_pending", condition=STOCK_PENDING),
            models.Index(fields=["sku", "channel"], name="stock_state_drift", condition=STOCK_DRIFT),
            models.Index(fields=["sku", "channel"], name="stock_state_zero", condition=STOCK_ZERO),
        ]

    def __str__(self) -> str:
        return f"{self.sku} on {self.channel_id}: {self.ats}"

    @property
    def needs_push(self) -> bool:
        return self.pushed_value != self.ats


class UnitsInFlight(models.Model):
    """Units of an order Switchyard has seen that the stock master has not recorded yet (an order imported but not
    yet in Centra, or not yet in Fulfil). Until the master has them, every channel's available-to-sell counts them
    as sold: otherwise a flash sale oversells in the seconds to minutes an order takes to reach the master."""

    link = models.ForeignKey(Link, on_delete=models.CASCADE, related_name="units_in_flight")
    sku = models.CharField(max_length=100, help_text="Centra SKU.")
    quantity = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["link", "sku"], name="units_in_flight_once")]
        indexes = [models.Index(fields=["sku"])]
        verbose_name_plural = "units in flight"

    def __str__(self) -> str:
        return f"{self.quantity} × {self.sku} ({self.link})"


class RateBudget(models.Model):
    """The calls made recently against one API rate limit, by every worker on every machine: what keeps several
    workers together inside a budget meant for one integration (see syncs.rate_budget)."""

    key = models.CharField(max_length=100, unique=True, help_text="The system and bucket, e.g. 'centra:mutations'.")
    calls = models.JSONField(default=list, help_text="When each recent call went (Unix seconds).")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.key


class OrderReconciliation(models.Model):
    """One day's orders in one Centra market and currency, Centra's against Fulfil's: how many and how much, the
    refunds against the credit notes, every difference, and finance's sign-off.

    A day is looked at again each night for a week (orders exported late settle it); if its figures change after
    it was signed off, the sign-off is cleared and kept in ``sign_off_history``, so a signature never covers
    figures nobody saw."""

    day = models.DateField()
    market_id = models.PositiveIntegerField("Centra market id")
    market_name = models.CharField(max_length=100, blank=True)
    currency = models.CharField(max_length=3)
    centra_orders = models.PositiveIntegerField(default=0)
    centra_value = models.DecimalField(max_digits=16, decimal_places=3, default=0)
    fulfil_sales = models.PositiveIntegerField(default=0)
    fulfil_value = models.DecimalField(max_digits=16, decimal_places=3, default=0)
    centra_refunds = models.PositiveIntegerField(default=0)
    refund_value = models.DecimalField(max_digits=16, decimal_places=3, default=0)
    fulfil_credits = models.PositiveIntegerField(default=0)
    credit_value = models.DecimalField(max_digits=16, decimal_places=3, default=0)
    differences = models.JSONField(default=list, blank=True, help_text="Each order or refund that does not match.")
    checked_at = models.DateTimeField()
    signed_off_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    signed_off_at = models.DateTimeField(null=True, blank=True)
    sign_off_note = models.TextField(blank=True)
    sign_off_history = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "market_id", "currency"], name="order_reconciliation_once")
        ]
        ordering = ["-day", "market_name", "currency"]
        permissions = [("sign_off_orderreconciliation", "Can sign off a reconciled day")]

    def __str__(self) -> str:
        return f"{self.day} {self.market_name or self.market_id} {self.currency}"

    @property
    def balanced(self) -> bool:
        return not self.differences

    def figures(self) -> dict:
        """What a sign-off vouches for."""
        names = ["centra_orders", "centra_value", "fulfil_sales", "fulfil_value", "centra_refunds", "refund_value"]
        names += ["fulfil_credits", "credit_value"]
        return {name: str(getattr(self, name)) for name in names} | {"differences": len(self.differences)}


class ProductState(models.Model):
    """What Switchyard last sent of one SKU's product content (title, copy, images, attributes, price) to one channel,
    and whether the channel accepted it — so a product Centra has not changed costs no call — and what the channel
    showed when last read back, to notice an edit made there."""

    channel = models.ForeignKey("mappings.Channel", on_delete=models.CASCADE, related_name="product_states")
    sku = models.CharField(max_length=100, help_text="Centra SKU.")
    product_number = models.CharField(max_length=100)
    external_code = models.CharField(max_length=100, help_text="The SKU's code on the channel.")
    external_id = models.CharField(max_length=100, blank=True, help_text="The item's id in the channel's API.")
    content_hash = models.CharField(max_length=64, help_text="Of the values sent.")
    sent_values = models.JSONField(default=dict, blank=True, help_text="Centra's values as last sent.")
    sent_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True, help_text="When the channel accepted them.")
    channel_values = models.JSONField(default=dict, blank=True, help_text="What the channel showed when last read.")
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "sku"], name="product_state_once")]
        indexes = [models.Index(fields=["channel", "external_code"])]

    def __str__(self) -> str:
        return f"{self.sku} on {self.channel_id}"


class ConnectionHealth(models.Model):
    """When Switchyard last reached one external system and when a call to it last failed, for the dashboard.
    Written by ``syncs.connection_health`` at most every few seconds per system and process, never per call."""

    system = models.CharField(max_length=30, unique=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True, help_text="The error, short and redacted.")

    class Meta:
        verbose_name_plural = "connection health"

    def __str__(self) -> str:
        return f"{self.system} health"
