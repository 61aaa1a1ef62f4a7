from django.db import models


class InboundWebhook(models.Model):
    """A webhook an outside system sent us, kept once it passed signature verification.

    The same delivery sent twice (a sender retrying, or a replay within the signature's time window) has the same
    digest and is stored once. Flows pick received webhooks up and mark them processed.
    """

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        FAILED = "failed", "Failed"

    system = models.CharField(max_length=30)
    digest = models.CharField(max_length=64, help_text="SHA-256 of the signature and body: one row per delivery.")
    received_at = models.DateTimeField(auto_now_add=True)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["system", "digest"], name="inbound_webhook_once")]
        indexes = [models.Index(fields=["status", "received_at"])]

    def __str__(self) -> str:
        return f"{self.system} webhook {self.received_at:%Y-%m-%d %H:%M:%S}"
