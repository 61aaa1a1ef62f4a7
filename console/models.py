from django.db import models
from django.db.models import Q


class WorkerHeartbeat(models.Model):
    """The last time a background worker ran its scheduled heartbeat task: proof that the scheduler and a
    worker are alive, shown on the dashboard."""

    name = models.CharField(max_length=100, unique=True)
    beat_at = models.DateTimeField()
    cluster = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return f"{self.name} at {self.beat_at:%Y-%m-%d %H:%M:%S}"


class Alert(models.Model):
    """One occurrence of an alert condition (stale stock on a channel, a connection failing…), from when it was
    raised until it cleared. While it holds it is told once; when it clears, once more (``console.alerts``)."""

    key = models.CharField(max_length=150, help_text="The rule and what it is about, e.g. 'stock_stale:john-lewis'.")
    title = models.CharField(max_length=300, help_text="What is wrong, in a few words.")
    raised_at = models.DateTimeField()
    cleared_at = models.DateTimeField(null=True, blank=True)
    last_value = models.FloatField(help_text="The figure the rule measured when last evaluated.")
    threshold = models.FloatField(help_text="The figure it must exceed to hold.")
    last_message = models.TextField(blank=True, help_text="The figure and threshold as last measured, in words.")
    link = models.CharField(max_length=300, blank=True, help_text="The console page that shows it (a path).")
    evaluated_at = models.DateTimeField()
    raise_sent_at = models.DateTimeField(null=True, blank=True, help_text="When the message that it holds went out.")
    recovery_sent_at = models.DateTimeField(null=True, blank=True, help_text="When the recovery message went out.")
    delivery = models.TextField(blank=True, help_text="Where the messages went, and any that failed.")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["key"], condition=Q(cleared_at__isnull=True), name="alert_once_while_it_holds"
            )
        ]
        indexes = [models.Index(fields=["key", "-raised_at"])]
        ordering = ["-raised_at"]

    def __str__(self) -> str:
        return f"{self.title} (raised {self.raised_at:%Y-%m-%d %H:%M})"
