from django.conf import settings
from django.db import models
from django.db.models import Q

from exceptions.kinds import KINDS, TEAMS


class Status(models.TextChoices):
    OPEN = "open", "Open"
    RETRYING = "retrying", "Retrying"
    RESOLVED = "resolved", "Resolved"
    IGNORED = "ignored", "Ignored"


ACTIVE = (Status.OPEN, Status.RETRYING)


class SyncException(models.Model):
    """One failed item — an order, a SKU's stock update, a shipment, a refund — that a person can see, own, retry
    and resolve. The same failure of the same item is one row with a count of occurrences; it reopens if the item
    fails again after being resolved."""

    flow = models.CharField(max_length=40)
    kind = models.CharField(max_length=40, choices=[(code, k.label) for code, k in KINDS.items()])
    object_type = models.CharField(max_length=20, help_text="order, sku, shipment, return, product…")
    object_ref = models.CharField(max_length=200, help_text="The item's identity in this flow.")
    system = models.CharField(max_length=30, blank=True, help_text="The system the failure happened against.")
    title = models.CharField(max_length=300)
    message = models.TextField(blank=True)
    team = models.CharField(max_length=20, choices=list(TEAMS.items()))
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    priority = models.PositiveSmallIntegerField(help_text="From the kind: money and customer-facing first.")
    value = models.DecimalField(max_digits=14, decimal_places=3, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    value_rank = models.DecimalField(
        max_digits=14, decimal_places=2, default=0, help_text="The value in the ranking currency, to sort by impact."
    )
    attempts = models.PositiveIntegerField(default=0)
    occurrences = models.PositiveIntegerField(default=1)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    next_retry_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="Set while a worker retries it.")
    payload = models.JSONField(default=dict, blank=True, help_text="The request, credentials redacted.")
    response = models.JSONField(default=dict, blank=True, help_text="The error response, credentials redacted.")
    context = models.JSONField(default=dict, blank=True, help_text="What the flow needs to retry the item.")
    mapping_kind = models.CharField(max_length=30, blank=True)
    mapping_system = models.CharField(max_length=30, blank=True)
    mapping_key = models.JSONField(default=dict, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolution_note = models.TextField(blank=True)

    class Meta:
        verbose_name = "exception"
        constraints = [
            models.UniqueConstraint(fields=["flow", "kind", "object_ref"], name="exception_once_per_item"),
        ]
        indexes = [
            # The queue by impact and by age, with and without a team or kind, at a million rows.
            models.Index(fields=["status", "-priority", "-value_rank", "first_seen", "id"], name="exc_by_impact"),
            models.Index(fields=["status", "first_seen", "id"], name="exc_by_age"),
            models.Index(fields=["team", "status", "-priority", "-value_rank", "first_seen"], name="exc_team"),
            models.Index(fields=["kind", "status", "first_seen"], name="exc_kind"),
            models.Index(fields=["flow", "object_ref"], name="exc_object"),
            models.Index(fields=["mapping_kind", "mapping_system"], name="exc_blocked", condition=Q(status__in=ACTIVE)),
            models.Index(fields=["next_retry_at"], name="exc_due", condition=Q(status="retrying")),
            # The default queue is the active ones (about one in seven rows): partial indexes in each page order,
            # so the first page, a team's page and a kind's page read only what they show (bench/exceptions_queue.py).
            models.Index(
                fields=["-priority", "-value_rank", "first_seen", "id"],
                name="exc_active_impact",
                condition=Q(status__in=ACTIVE),
            ),
            models.Index(fields=["first_seen", "id"], name="exc_active_age", condition=Q(status__in=ACTIVE)),
            # The queue's depth by team, kind and status with the oldest of each (the dashboard, /metrics, alerts).
            models.Index(
                fields=["team", "kind", "status", "first_seen"], name="exc_active_depth", condition=Q(status__in=ACTIVE)
            ),
            models.Index(fields=["-last_seen", "-id"], name="exc_active_newest", condition=Q(status__in=ACTIVE)),
            models.Index(
                fields=["team", "-priority", "-value_rank", "first_seen", "id"],
                name="exc_active_team_impact",
                condition=Q(status__in=ACTIVE),
            ),
            models.Index(
                fields=["team", "first_seen", "id"], name="exc_active_team_age", condition=Q(status__in=ACTIVE)
            ),
            models.Index(
                fields=["kind", "-priority", "-value_rank", "first_seen", "id"],
                name="exc_active_kind_impact",
                condition=Q(status__in=ACTIVE),
            ),
            models.Index(
                fields=["flow", "-priority", "-value_rank", "first_seen", "id"],
                name="exc_active_flow_impact",
                condition=Q(status__in=ACTIVE),
            ),
            models.Index(fields=["-priority", "-value_rank", "first_seen", "id"], name="exc_all_impact"),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.object_ref})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE


class ExceptionRef(models.Model):
    """An identifier a person may search an exception by — order number, SKU, tracking number, marketplace
    reference — lower-cased, one row each, so a search is an index look-up even at a million exceptions."""

    exception = models.ForeignKey(SyncException, on_delete=models.CASCADE, related_name="refs")
    ref = models.CharField(max_length=200)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["ref", "exception"], name="exception_ref_once")]

    def __str__(self) -> str:
        return self.ref


class ExceptionEvent(models.Model):
    """The timeline of an exception: every occurrence, attempt and action, with who did it."""

    class Action(models.TextChoices):
        RECORDED = "recorded", "Recorded"
        OCCURRED_AGAIN = "occurred_again", "Failed again"
        REOPENED = "reopened", "Reopened"
        RETRY_SCHEDULED = "retry_scheduled", "Automatic retry scheduled"
        RETRY_REQUESTED = "retry_requested", "Retry requested"
        RETRY_FAILED = "retry_failed", "Retry failed"
        RESOLVED = "resolved", "Resolved"
        AUTO_RESOLVED = "auto_resolved", "Resolved automatically"
        IGNORED = "ignored", "Ignored"
        ASSIGNED = "assigned", "Assigned"
        FREED_BY_MAPPING = "freed_by_mapping", "Freed by a mapping change"

    exception = models.ForeignKey(SyncException, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField()
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=20, choices=Action.choices)
    note = models.TextField(blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["exception", "at"])]

    def __str__(self) -> str:
        return f"{self.get_action_display()} at {self.at:%Y-%m-%d %H:%M}"


class DigestState(models.Model):
    """When each team's digest last went out, so the next one tells only what is new."""

    team = models.CharField(max_length=20, unique=True)
    last_sent_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.team} digest, last {self.last_sent_at:%Y-%m-%d %H:%M}"
