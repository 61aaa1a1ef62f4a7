import time

import pytest
from django.urls import reverse
from django_q.models import Schedule
from django_q.tasks import async_task

from console.models import WorkerHeartbeat
from console.tasks import SCHEDULER_HEARTBEAT, heartbeat


@pytest.mark.django_db
def test_the_heartbeat_is_scheduled_every_minute_by_a_migration():
    schedule = Schedule.objects.get(func="console.tasks.heartbeat")
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == (Schedule.MINUTES, 1, -1)


@pytest.mark.django_db
def test_the_dashboard_says_when_the_worker_has_never_been_seen(ada, client_for):
    page = client_for(ada).get(reverse("dashboard")).content.decode()
    assert "Never seen" in page


@pytest.mark.django_db
def test_a_heartbeat_shows_the_worker_running_and_an_old_one_does_not(ada, client_for):
    heartbeat()
    client = client_for(ada)
    assert "Running" in client.get(reverse("dashboard")).content.decode()
    WorkerHeartbeat.objects.filter(name=SCHEDULER_HEARTBEAT).update(beat_at="2020-01-01T00:00:00Z")
    partial = client.get(reverse("dashboard"), headers={"HX-Request": "true", "HX-Target": "worker-status"})
    body = partial.content.decode()
    assert "Not seen for" in body
    assert "<html" not in body  # htmx gets the card alone


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_real_worker_cluster_runs_the_heartbeat_task(worker_cluster):
    async_task("console.tasks.heartbeat")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not WorkerHeartbeat.objects.filter(name=SCHEDULER_HEARTBEAT).exists():
        assert worker_cluster.poll() is None, worker_cluster.log_path.read_text()
        time.sleep(0.3)
    beat = WorkerHeartbeat.objects.get(name=SCHEDULER_HEARTBEAT)
    assert beat.cluster and ":" in beat.cluster
