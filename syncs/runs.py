"""SyncRun bookkeeping: every flow execution is recorded with its counts, whoever started it."""

import contextlib
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import F
from django.utils import timezone

from syncs.models import SyncRun


class RunCounter:
    """Adds to a run's counts as the flow goes, so a running run shows progress."""

    def __init__(self, run: SyncRun, every: int = 50) -> None:
        self.run, self.every, self._pending = run, every, {"examined": 0, "succeeded": 0, "failed": 0}

    def add(self, **counts: int) -> None:
        for name, value in counts.items():
            self._pending[name] += value
        if self._pending["examined"] >= self.every:
            self.flush()

    def flush(self) -> None:
        if any(self._pending.values()):
            SyncRun.objects.filter(pk=self.run.pk).update(**{k: F(k) + v for k, v in self._pending.items()})
            self._pending = dict.fromkeys(self._pending, 0)


def run_flow(*, flow: str, action: Callable[..., object], trigger: str) -> SyncRun:
    """Run ``action(counter=…)`` as one SyncRun of ``flow`` and record its outcome; returns the finished run.
    A flow that raises (a connection down for the whole run) is recorded as failed and the error re-raised."""
    # A run still "running" past the task time limit lost its worker: say so rather than leave it running forever.
    cutoff = timezone.now() - timedelta(seconds=settings.Q_TIMEOUT)
    SyncRun.objects.filter(flow=flow, status=SyncRun.Status.RUNNING, started_at__lt=cutoff).update(
        status=SyncRun.Status.FAILED, finished_at=timezone.now(), error="The worker running it stopped."
    )
    with _run_alive(flow):
        run = SyncRun.objects.create(flow=flow, trigger=trigger)
        counter = RunCounter(run)
        started = time.monotonic()
        try:
            outcome = action(counter=counter)
        except Exception as error:
            counter.flush()
            SyncRun.objects.filter(pk=run.pk).update(
                status=SyncRun.Status.FAILED, finished_at=timezone.now(), error=str(error)[:2000]
            )
            raise
        summary = asdict(outcome) if is_dataclass(outcome) else dict(outcome or {})
        summary["seconds"] = round(time.monotonic() - started, 3)
        SyncRun.objects.filter(pk=run.pk).update(
            status=SyncRun.Status.SUCCEEDED,
            finished_at=timezone.now(),
            summary=summary,
            examined=summary.get("examined", 0),
            failed=summary.get("failed", 0),
            succeeded=summary.get("examined", 0) - summary.get("failed", 0),
        )
    run.refresh_from_db()
    return run


def flow_running(flow: str) -> bool:
    """Whether a run of ``flow`` started within the task time limit is still going. On PostgreSQL, a run whose
    worker died (killed, out of memory, its machine gone) is not: its runs still marked running are recorded as
    failed here, and the flow is free to run again at once rather than after the task time limit."""
    cutoff = timezone.now() - timedelta(seconds=settings.Q_TIMEOUT)
    running = SyncRun.objects.filter(flow=flow, status=SyncRun.Status.RUNNING, started_at__gte=cutoff)
    if not running.exists() or connection.vendor != "postgresql":
        return running.exists()
    key = run_lock_key(flow)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        if not cursor.fetchone()[0]:
            return True  # a live run holds its share of the lock
        try:
            # No live run: every run still marked running lost its worker. (A run takes its share before its row
            # is made, so none can be starting unseen while this lock is held.)
            SyncRun.objects.filter(flow=flow, status=SyncRun.Status.RUNNING).update(
                status=SyncRun.Status.FAILED, finished_at=timezone.now(), error="The worker running it stopped."
            )
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
    return False


RUN_LOCK_BASE = 0x52554E0000000000  # "RUN", plus a checksum of the flow's name


def run_lock_key(flow: str) -> int:
    return RUN_LOCK_BASE + zlib.crc32(flow.encode())


@contextlib.contextmanager
def _run_alive(flow: str):
    """Hold a share of the flow's advisory lock while a run goes: PostgreSQL releases it when the worker's
    connection ends, however the worker ends, so ``flow_running`` can tell a live run from a dead one. Shared:
    runs never wait for each other here. SQLite (one machine): nothing to hold."""
    if connection.vendor != "postgresql":
        yield
        return
    key = run_lock_key(flow)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock_shared(%s)", [key])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock_shared(%s)", [key])


FOLLOW_UP_SECONDS = 20


def flow_run_soon(flow: str) -> None:
    """An event says ``flow`` has work: run it on a worker now, and once more shortly after, since what the event
    announced may have arrived after a run already going had read its source. A burst of events makes one run and
    one follow-up (a run finds a run going and stands aside; the follow-up is one schedule per flow)."""
    from django_q.models import Schedule
    from django_q.tasks import async_task

    if not flow_running(flow):
        async_task("syncs.tasks.run", flow, "event")
    name = f"{flow}: follow-up after events"
    if not Schedule.objects.filter(name=name).exists():
        Schedule.objects.create(
            name=name,
            func="syncs.tasks.run",
            args=f"{flow!r}, 'event'",
            schedule_type=Schedule.ONCE,
            repeats=-1,  # removed once it has fired
            next_run=timezone.now() + timedelta(seconds=FOLLOW_UP_SECONDS),
        )


# --- cursors: where a flow's next run starts reading -----------------------------------------------------------------


def last_summary(flow: str, key: str = "cursor") -> dict:
    """The summary of ``flow``'s last successful run that recorded ``key`` ({} before the first). A failed run
    never moves a cursor: what it read is read again."""
    last = (
        SyncRun.objects.filter(flow=flow, status=SyncRun.Status.SUCCEEDED, summary__has_key=key)
        .order_by("-started_at")
        .values_list("summary", flat=True)
        .first()
    )
    return last or {}


def moment(text: str) -> datetime:
    """A timestamp from an API or a setting as an aware datetime (a trailing Z or none at all is UTC)."""
    value = datetime.fromisoformat(text.strip().replace(" ", "T", 1).replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def latest(current: str | None, candidate: str) -> str:
    """The later of two timestamps, as ISO text (a cursor moving forward)."""
    if current is None or moment(candidate) > moment(current):
        return moment(candidate).isoformat()
    return current
