"""Reads for the runs page: every SyncRun, newest first, a page at a time by keyset (no OFFSET, no COUNT: page 2,000
costs what page 1 costs at 100,000 runs), the runs going now with their progress, and the starts still queued."""

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_q.models import Task

from syncs.flows import FLOWS
from syncs.models import SyncRun

PAGE_SIZE = 50
LIVE_LIMIT = 20
QUIET_KEYS = {"examined", "failed", "seconds", "cursor", "exception_ids"}  # shown elsewhere, or not for people


@dataclass(frozen=True)
class RunFilters:
    flow: str = ""
    status: str = ""

    @classmethod
    def from_params(cls, params) -> "RunFilters":
        """From a query string; unknown values are ignored rather than refused."""
        flow = params.get("flow") or ""
        status = params.get("status") or ""
        return cls(flow=flow if flow in FLOWS else "", status=status if status in SyncRun.Status.values else "")

    def as_params(self) -> dict[str, str]:
        return {name: value for name, value in (("flow", self.flow), ("status", self.status)) if value}


@dataclass
class Progress:
    """How far a running run has come: counts as RunCounter last flushed them, time so far, and — when the run
    said how many items it has (``summary["total"]``) — the share done; else the bar is indeterminate."""

    examined: int
    succeeded: int
    failed: int
    elapsed: str
    total: int | None
    percent: int | None
    lost: bool  # still "running" past the task time limit: its worker most likely stopped
    previous: str  # what the flow's last successful run did, for a sense of scale


@dataclass
class RunRow:
    run: SyncRun
    duration: str
    summary_line: str
    summary_rows: list[tuple[str, str]] = field(default_factory=list)
    exception_ids: list[int] = field(default_factory=list)
    more_exceptions: int = 0
    progress: Progress | None = None


@dataclass
class RunsPage:
    rows: list[RunRow]
    next_before: int | None


def runs_page(filters: RunFilters, *, before: int | None = None, size: int = PAGE_SIZE) -> RunsPage:
    """One page of runs matching ``filters``, newest first, older than run ``before`` when given. Runs are ordered
    by id, which is their start order (a run's row is made as it starts)."""
    runs = SyncRun.objects.all()
    if filters.flow:
        runs = runs.filter(flow=filters.flow)
    if filters.status:
        runs = runs.filter(status=filters.status)
    if before:
        runs = runs.filter(pk__lt=before)
    found = list(runs.order_by("-pk")[: size + 1])
    now = timezone.now()
    rows = [run_row(run, now=now, compare=False) for run in found[:size]]
    return RunsPage(rows=rows, next_before=found[size - 1].pk if len(found) > size else None)


def running_runs(*, limit: int = LIVE_LIMIT) -> list[RunRow]:
    """The runs going now (started within the task time limit), newest first, with their progress."""
    cutoff = timezone.now() - timedelta(seconds=settings.Q_TIMEOUT)
    runs = SyncRun.objects.filter(status=SyncRun.Status.RUNNING, started_at__gte=cutoff).order_by("-pk")[:limit]
    now = timezone.now()
    return [run_row(run, now=now) for run in runs]


def run_row(run: SyncRun, *, now: datetime | None = None, compare: bool = True) -> RunRow:
    """A run as the pages show it. ``compare``: a running run's progress says what the flow's last successful run
    did (one query more; the list leaves it out, so a page costs the same whatever it holds)."""
    now = now or timezone.now()
    end = run.finished_at or now
    ids = [pk for pk in run.summary.get("exception_ids") or [] if isinstance(pk, int)]
    return RunRow(
        run=run,
        duration=duration_label((end - run.started_at).total_seconds()),
        summary_line=summary_line(run.summary),
        summary_rows=[
            (name.replace("_", " "), _as_text(value)) for name, value in run.summary.items() if name != "exception_ids"
        ],
        exception_ids=ids[:20],
        more_exceptions=max(0, len(ids) - 20),
        progress=_progress(run, now, compare=compare) if run.status == SyncRun.Status.RUNNING else None,
    )


def _progress(run: SyncRun, now: datetime, *, compare: bool) -> Progress:
    total = run.summary.get("total")
    total = total if isinstance(total, int) and total > 0 else None
    previous = None
    if compare:
        previous = (
            SyncRun.objects.filter(flow=run.flow, status=SyncRun.Status.SUCCEEDED, pk__lt=run.pk)
            .order_by("-started_at")
            .values("examined", "started_at", "finished_at")
            .first()
        )
    said = ""
    if previous and previous["finished_at"]:
        seconds = (previous["finished_at"] - previous["started_at"]).total_seconds()
        said = f"The last successful run examined {previous['examined']:,} in {duration_label(seconds)}."
    elapsed = (now - run.started_at).total_seconds()
    return Progress(
        examined=run.examined,
        succeeded=run.succeeded,
        failed=run.failed,
        elapsed=duration_label(elapsed),
        total=total,
        percent=min(100, run.examined * 100 // total) if total else None,
        lost=elapsed > settings.Q_TIMEOUT,
        previous=said,
    )


def duration_label(seconds: float) -> str:
    """'850 ms', '4.2 s', '3 min 5 s', '2 h 10 min'."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{int(seconds * 1000)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def summary_line(summary: dict) -> str:
    """The summary's non-zero counts in a line: 'exported 3 · already exported 1'."""
    parts = [
        f"{name.replace('_', ' ')} {value:,}"
        for name, value in summary.items()
        if name not in QUIET_KEYS and isinstance(value, int) and not isinstance(value, bool) and value
    ]
    return " · ".join(parts)


def _as_text(value) -> str:
    if isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False, default=str)
        return text if len(text) <= 300 else text[:299] + "…"
    return str(value)


# --- starts handed to a worker and not begun yet ------------------------------------------------------------------


def queued_starts(entries: list[dict]) -> list[dict]:
    """Of the starts a person made (``{"flow", "name", "at"}``), those no worker has begun: no manual run of the
    flow has started since, and no task result is recorded under the task's name. A start older than the task
    retry window is dropped: the queue gave up on it or lost it, and the runs list says what happened."""
    now = timezone.now()
    waiting = []
    for entry in entries:
        at = parse_datetime(entry.get("at") or "")
        if at is None or now - at > timedelta(seconds=settings.Q_RETRY):
            continue
        begun = SyncRun.objects.filter(flow=entry.get("flow"), trigger="manual", started_at__gte=at).exists()
        if begun or Task.objects.filter(name=entry.get("name")).exists():
            continue
        waiting.append(entry | {"at_time": at})
    return waiting
