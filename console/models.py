from django.db import models


class WorkerHeartbeat(models.Model):
    """The last time a background worker ran its scheduled heartbeat task: proof that the scheduler and a
    worker are alive, shown on the dashboard."""

    name = models.CharField(max_length=100, unique=True)
    beat_at = models.DateTimeField()
    cluster = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return f"{self.name} at {self.beat_at:%Y-%m-%d %H:%M:%S}"
