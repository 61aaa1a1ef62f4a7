from django.utils import timezone

from console.models import WorkerHeartbeat


def heartbeat_record(*, name: str, cluster: str = "") -> WorkerHeartbeat:
    """Stamp the named heartbeat with the current time, creating it the first time."""
    heartbeat, _ = WorkerHeartbeat.objects.update_or_create(
        name=name, defaults={"beat_at": timezone.now(), "cluster": cluster}
    )
    return heartbeat
