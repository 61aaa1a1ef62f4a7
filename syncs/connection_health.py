"""When each external system last answered and when a call to it last failed, kept for the dashboard without a
query per HTTP call.

``connection_health_observe`` wraps a connector session's ``request``: each outcome is noted in this process's
memory, and written to the system's ``ConnectionHealth`` row at most every ``WRITE_EVERY_SECONDS`` — or at once
when the outcome turns (the first error after successes, the first success after errors), so the dashboard never
shows a connection as failing for long after it recovered, or healthy after it broke. A failure noted is the one the
caller sees, after the session's own retries; its text is passed through the session's redactor and shortened.

Nothing is written while the caller is inside a database transaction: the row would stay locked (stalling every
other worker's write) until that transaction ended, and a rollback would lose it. What was noted is written with
the next call made outside one.
"""

import functools
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import IntegrityError, connection, transaction
from django.db.models import Value
from django.db.models.functions import Coalesce, Greatest

from syncs.connectors.errors import ConnectorError
from syncs.connectors.http import ConnectorSession
from syncs.models import ConnectionHealth

WRITE_EVERY_SECONDS = 5.0
ERROR_CHARACTERS = 300


@dataclass
class _Noted:
    success_at: datetime | None = None
    error_at: datetime | None = None
    error: str = ""
    failing: bool | None = None  # the outcome last written: None before the first write of this process
    written_at: float = float("-inf")  # time.monotonic() of the last write


_noted: dict[str, _Noted] = {}
_lock = threading.Lock()


def connection_health_observe(session: ConnectorSession) -> ConnectorSession:
    """Make ``session`` note every call's outcome under its system's name. Returns the session."""
    if getattr(session, "_health_observed", False):
        return session
    send = session.request

    @functools.wraps(send)
    def request(*args, **kwargs):
        try:
            response = send(*args, **kwargs)
        except ConnectorError as error:
            connection_outcome_note(system=session.system, error=session.redactor.text(error.message))
            raise
        connection_outcome_note(system=session.system)
        return response

    session.request = request
    session._health_observed = True
    return session


def connection_outcome_note(*, system: str, error: str | None = None) -> None:
    """Note one call's outcome (``error`` None: it succeeded), and write the system's row if it is due."""
    now = datetime.now(UTC)
    with _lock:
        noted = _noted.setdefault(system, _Noted())
        if error is None:
            noted.success_at = now
        else:
            noted.error_at, noted.error = now, " ".join(error.split())[:ERROR_CHARACTERS]
        turned = noted.failing is not (error is not None)
        due = turned or time.monotonic() - noted.written_at >= WRITE_EVERY_SECONDS
        if not due or connection.in_atomic_block:
            return
        pending = _Noted(success_at=noted.success_at, error_at=noted.error_at, error=noted.error)
        noted.success_at = noted.error_at = None
        noted.failing, noted.written_at = error is not None, time.monotonic()
    _write(system, pending)


def _write(system: str, pending: _Noted) -> None:
    changes = {}
    if pending.success_at is not None:
        changes["last_success_at"] = _later("last_success_at", pending.success_at)
    if pending.error_at is not None:
        changes["last_error_at"] = _later("last_error_at", pending.error_at)
        changes["last_error"] = pending.error
    if not changes:
        return
    if ConnectionHealth.objects.filter(system=system).update(**changes):
        return
    try:
        with transaction.atomic():
            ConnectionHealth.objects.create(
                system=system,
                last_success_at=pending.success_at,
                last_error_at=pending.error_at,
                last_error=pending.error if pending.error_at else "",
            )
    except IntegrityError:  # another process made the row first
        ConnectionHealth.objects.filter(system=system).update(**changes)


def _later(field: str, moment: datetime):
    """The later of the stored moment and ``moment``: another process may have written a newer one meanwhile.
    (GREATEST ignores NULL on PostgreSQL and returns NULL on SQLite: the COALESCE makes both keep ``moment``.)"""
    return Coalesce(Greatest(field, Value(moment)), Value(moment))


def connection_health_forget() -> None:
    """Drop what this process has noted and not written (tests start from nothing)."""
    with _lock:
        _noted.clear()
