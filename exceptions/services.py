"""The one way to change the exception queue: record failures (deciding retry or exception in one place), retry,
resolve, ignore, assign — one at a time or in bulk — and free what a new mapping unblocks.

Pages, the API, the admin and tasks all call these. Work for the task queue is enqueued on commit.
"""

import logging
import random
from collections.abc import Callable, Iterable
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django_q.tasks import async_task

from console.roles import INTEGRATION_ADMIN, user_roles
from exceptions.kinds import KINDS, kind
from exceptions.models import ACTIVE, ExceptionEvent, ExceptionRef, Status, SyncException
from exceptions.registry import AlreadyRecorded, retry_handler
from mappings.services import MissingMapping

# The connectors' typed errors are a leaf module with no imports of ours: reading them here does not make the queue
# depend on any flow or connector.
from syncs.connectors.errors import AuthError, ConnectorError, DataError, TransientError

logger = logging.getLogger("switchyard.exceptions")
Action = ExceptionEvent.Action
BULK_CHUNK = 500


# --- permissions --------------------------------------------------------------------------------------------------


def can_act(user, exception: SyncException) -> bool:
    """Everyone reads; a team acts on its own exceptions; integration admins act on all."""
    roles = user_roles(user)
    return INTEGRATION_ADMIN in roles or exception.team in roles


def actable(user, queryset: QuerySet[SyncException]) -> QuerySet[SyncException]:
    """The part of ``queryset`` that ``user`` may act on."""
    roles = user_roles(user)
    if INTEGRATION_ADMIN in roles:
        return queryset
    return queryset.filter(team__in=roles)


def _require(user, exception: SyncException) -> None:
    if not can_act(user, exception):
        raise PermissionDenied(f"The {exception.get_team_display()} team owns this exception.")


# --- recording ----------------------------------------------------------------------------------------------------


def classify(error: BaseException) -> tuple[str, bool]:
    """(kind, transient) for an error raised while processing an item: the single place that decides whether a
    failure is retried automatically or needs a person."""
    if isinstance(error, MissingMapping):
        return error.exception_kind, False
    if isinstance(error, DataError) and getattr(error, "exception_kind", None):
        return error.exception_kind, False  # a flow's own refusal that names its kind (totals_mismatch…)
    if isinstance(error, AuthError):
        return "auth_failed", False
    if isinstance(error, TransientError):
        return "api_unavailable", True
    if isinstance(error, DataError):
        return "validation_failed", False
    return "internal_error", False


def _backoff(attempts: int) -> timedelta:
    base, ceiling = settings.EXCEPTION_RETRY_BASE_SECONDS, settings.EXCEPTION_RETRY_MAX_SECONDS
    return timedelta(seconds=min(ceiling, base * 2 ** (attempts - 1)) * random.uniform(0.5, 1.0))


def _rank(value: Decimal | None, currency: str) -> Decimal:
    if value is None:
        return Decimal(0)
    rate = Decimal(str(settings.EXCEPTION_RANKING_RATES.get(currency, 1)))
    return (value * rate).quantize(Decimal("0.01"))


def failure_record(
    *,
    flow: str,
    object_type: str,
    object_ref: str,
    error: BaseException,
    title: str,
    system: str = "",
    kind_code: str | None = None,
    value: Decimal | None = None,
    currency: str = "",
    refs: Iterable[str] = (),
    context: dict | None = None,
    payload: dict | None = None,
) -> SyncException:
    """Record that an item failed. Transient failures are retried automatically with backoff and become a person's
    problem only when the attempts run out; every other failure is open at once. The same failure of the same
    item updates one row (occurrences counted); a resolved one reopens. Returns the exception."""
    code, transient = classify(error)
    code = kind_code or code
    exchange = getattr(error, "exchange", None)
    details = getattr(error, "details", None)
    message = str(error) if not details or len(details) == 1 else f"{error}\n" + "\n".join(f"• {d}" for d in details)
    fields = {
        "system": system or getattr(error, "system", ""),
        "title": title,
        "message": message,
        "payload": payload if payload is not None else (exchange.as_dict() if exchange else None),
        "response": {"status": exchange.status, "body": exchange.response_body} if exchange else None,
        "context": context or {},
        "value": value,
        "currency": currency,
        "value_rank": _rank(value, currency),
    }
    if isinstance(error, MissingMapping):
        fields |= {"mapping_kind": error.kind, "mapping_system": error.system, "mapping_key": error.key}
    return _record(
        flow=flow,
        code=code,
        object_type=object_type,
        object_ref=object_ref,
        transient=transient,
        fields=fields,
        refs=refs,
    )


def _record(*, flow, code, object_type, object_ref, transient, fields, refs) -> SyncException:
    now = timezone.now()
    with transaction.atomic():
        exception = (
            SyncException.objects.select_for_update().filter(flow=flow, kind=code, object_ref=object_ref).first()
        )
        if exception is None:
            try:
                with transaction.atomic():
                    exception = SyncException.objects.create(
                        flow=flow,
                        kind=code,
                        object_type=object_type,
                        object_ref=object_ref,
                        team=kind(code).team,
                        priority=kind(code).priority,
                        first_seen=now,
                        last_seen=now,
                        attempts=1,
                        **{
                            name: {} if value is None and name in ("payload", "response") else value
                            for name, value in fields.items()
                        },
                    )
            except IntegrityError:  # another worker recorded it a moment ago: count this one on that row
                if not SyncException.objects.filter(flow=flow, kind=code, object_ref=object_ref).exists():
                    raise
                return _record(
                    flow=flow,
                    code=code,
                    object_type=object_type,
                    object_ref=object_ref,
                    transient=transient,
                    fields=fields,
                    refs=refs,
                )
            action = Action.RECORDED
            ExceptionRef.objects.bulk_create(
                [ExceptionRef(exception=exception, ref=ref) for ref in _refs(object_ref, refs)], ignore_conflicts=True
            )
        else:
            action = Action.OCCURRED_AGAIN if exception.is_active else Action.REOPENED
            # Polling meets a blocked item again and again: count it, but write the timeline only when something
            # is new (a different error, a reopening, an automatic retry), so history stays readable.
            same = exception.message == fields["message"]
            repeat = exception.status == Status.OPEN and same and not transient
            if exception.status == Status.IGNORED and same:
                # Someone decided this failure needs no fixing: the same failure again is counted, not reopened.
                exception.occurrences += 1
                exception.last_seen = now
                exception.save(update_fields=["occurrences", "last_seen"])
                return exception
            for name, value in fields.items():
                if value is not None or name not in ("payload", "response"):
                    setattr(exception, name, value)
            if not exception.is_active:
                exception.resolved_at, exception.resolved_by, exception.resolution_note = None, None, ""
                exception.attempts = 0  # a new outage gets its own automatic attempts
            exception.occurrences += 1
            exception.attempts += 1
            exception.last_seen = now
        exhausted = exception.attempts >= settings.EXCEPTION_AUTO_RETRIES
        if transient and not exhausted:
            exception.status = Status.RETRYING
            exception.next_retry_at = now + _backoff(exception.attempts)
            note = f"Attempt {exception.attempts} failed; trying again automatically."
        else:
            exception.status = Status.OPEN
            exception.next_retry_at = None
            note = f"Gave up after {exception.attempts} automatic attempts." if transient else ""
        exception.claimed_at = None
        exception.save()
        if action == Action.OCCURRED_AGAIN and repeat:
            return exception
        ExceptionEvent.objects.create(
            exception=exception,
            at=now,
            action=Action.RETRY_SCHEDULED if exception.status == Status.RETRYING else action,
            note=note,
            detail={"message": exception.message[:2000]},
        )
    return exception


def _refs(object_ref: str, refs: Iterable[str]) -> set[str]:
    return {ref.strip().lower() for ref in (object_ref, *refs) if ref and ref.strip()}


def objects_succeeded(*, flow: str, object_refs: Iterable[str], note: str = "The item went through.") -> int:
    """Resolve every active exception of these items in ``flow``: a later success heals them. Returns how many."""
    now = timezone.now()
    with transaction.atomic():
        healed = list(
            SyncException.objects.select_for_update()
            .filter(flow=flow, object_ref__in=list(object_refs), status__in=ACTIVE)
            .values_list("id", flat=True)
        )
        if healed:
            SyncException.objects.filter(id__in=healed).update(
                status=Status.RESOLVED,
                resolved_at=now,
                resolved_by=None,
                resolution_note=note,
                next_retry_at=None,
                claimed_at=None,
            )
            ExceptionEvent.objects.bulk_create(
                [ExceptionEvent(exception_id=pk, at=now, action=Action.AUTO_RESOLVED, note=note) for pk in healed]
            )
    return len(healed)


def object_succeeded(*, flow: str, object_ref: str) -> int:
    return objects_succeeded(flow=flow, object_refs=[object_ref])


# --- acting -------------------------------------------------------------------------------------------------------


def exception_retry(*, exception: SyncException, actor) -> SyncException:
    """Ask for the item to be re-run through its flow now. Raises PermissionDenied, ValidationError."""
    _require(actor, exception)
    if exception.status == Status.RESOLVED:
        raise ValidationError("This exception is resolved; there is nothing to retry.")
    _schedule_retries([exception.pk], actor=actor, action=Action.RETRY_REQUESTED, note="")
    exception.refresh_from_db()
    return exception


def exception_resolve(*, exception: SyncException, actor, note: str) -> SyncException:
    """Close it as fixed. A note saying how is required. Raises PermissionDenied, ValidationError."""
    return _close(exception=exception, actor=actor, note=note, status=Status.RESOLVED, action=Action.RESOLVED)


def exception_ignore(*, exception: SyncException, actor, note: str) -> SyncException:
    """Close it as not worth fixing. A note saying why is required. Raises PermissionDenied, ValidationError."""
    return _close(exception=exception, actor=actor, note=note, status=Status.IGNORED, action=Action.IGNORED)


def _close(*, exception, actor, note, status, action) -> SyncException:
    _require(actor, exception)
    if not (note or "").strip():
        raise ValidationError("Say in a note how it was fixed, or why it is ignored.")
    now = timezone.now()
    with transaction.atomic():
        SyncException.objects.filter(pk=exception.pk).update(
            status=status,
            resolved_at=now,
            resolved_by=actor,
            resolution_note=note.strip(),
            next_retry_at=None,
            claimed_at=None,
        )
        ExceptionEvent.objects.create(exception=exception, at=now, actor=actor, action=action, note=note.strip())
    exception.refresh_from_db()
    return exception


def exception_assign(*, exception: SyncException, actor, team: str | None = None, assignee=None) -> SyncException:
    """Hand it to another team and/or a person. Raises PermissionDenied, ValidationError."""
    _require(actor, exception)
    changes = {}
    if team is not None:
        if team not in dict(SyncException._meta.get_field("team").choices):
            raise ValidationError(f"{team!r} is not a team.")
        changes["team"] = team
    if assignee is not None or team is None:
        changes["assignee"] = assignee
    with transaction.atomic():
        SyncException.objects.filter(pk=exception.pk).update(**changes)
        ExceptionEvent.objects.create(
            exception=exception,
            at=timezone.now(),
            actor=actor,
            action=Action.ASSIGNED,
            note=", ".join(
                filter(None, [f"team: {team}" if team else "", f"to: {assignee.get_username()}" if assignee else ""])
            ),
        )
    exception.refresh_from_db()
    return exception


# --- in bulk ------------------------------------------------------------------------------------------------------


def exceptions_bulk_retry(*, queryset: QuerySet[SyncException], actor) -> int:
    """Retry every open or retrying exception in ``queryset`` that ``actor`` may act on. The work is enqueued in
    chunks, so ten thousand take one request of a few database statements. Returns how many."""
    ids = list(actable(actor, queryset).filter(status__in=ACTIVE).values_list("id", flat=True))
    _schedule_retries(ids, actor=actor, action=Action.RETRY_REQUESTED, note="Retried in bulk.")
    return len(ids)


def exceptions_bulk_close(*, queryset: QuerySet[SyncException], actor, note: str, ignore: bool) -> int:
    """Resolve (or ignore) every active exception in ``queryset`` that ``actor`` may act on. Returns how many."""
    if not (note or "").strip():
        raise ValidationError("Say in a note how they were fixed, or why they are ignored.")
    status, action = (Status.IGNORED, Action.IGNORED) if ignore else (Status.RESOLVED, Action.RESOLVED)
    ids = list(actable(actor, queryset).filter(status__in=ACTIVE).values_list("id", flat=True))
    now = timezone.now()
    with transaction.atomic():
        for chunk in _chunks(ids):
            SyncException.objects.filter(id__in=chunk).update(
                status=status,
                resolved_at=now,
                resolved_by=actor,
                resolution_note=note.strip(),
                next_retry_at=None,
                claimed_at=None,
            )
            ExceptionEvent.objects.bulk_create(
                [ExceptionEvent(exception_id=pk, at=now, actor=actor, action=action, note=note.strip()) for pk in chunk]
            )
    return len(ids)


def _chunks(ids: list[int], size: int = BULK_CHUNK) -> Iterable[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _schedule_retries(ids: list[int], *, actor, action: str, note: str, detail: dict | None = None) -> None:
    now = timezone.now()
    with transaction.atomic():
        for chunk in _chunks(ids):
            SyncException.objects.filter(id__in=chunk).exclude(status=Status.RESOLVED).update(
                status=Status.RETRYING, next_retry_at=now, claimed_at=None
            )
            ExceptionEvent.objects.bulk_create(
                [
                    ExceptionEvent(exception_id=pk, at=now, actor=actor, action=action, note=note, detail=detail or {})
                    for pk in chunk
                ]
            )
        for chunk in _chunks(ids):
            transaction.on_commit(lambda chunk=chunk: async_task("exceptions.tasks.retry_many", chunk))


# --- running retries (tasks call these) ---------------------------------------------------------------------------


def exception_run_retry(*, exception_id: int) -> bool:
    """Re-run one item through its flow, if no other worker is doing so. Returns True when it went through.

    The claim is a conditional update, so two workers (or a task delivered twice) never retry the same item at
    once; a claim older than the task timeout is taken over, so a worker killed mid-item loses nothing."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.Q_RETRY)
    claimed = (
        SyncException.objects.filter(pk=exception_id, status=Status.RETRYING)
        .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=stale))
        .update(claimed_at=now)
    )
    if claimed != 1:
        return False
    exception = SyncException.objects.get(pk=exception_id)
    try:
        retry_handler(exception.flow)(exception)
    except AlreadyRecorded:
        _retry_failed_recorded(exception)
        return False
    except Exception as error:  # the flow's own errors, and defects: both must land back in the queue
        if not isinstance(error, MissingMapping | ConnectorError):
            logger.exception("retrying exception %s failed unexpectedly", exception_id)
        code, _ = classify(error)
        recorded = failure_record(
            flow=exception.flow,
            object_type=exception.object_type,
            object_ref=exception.object_ref,
            error=error,
            title=_title_for(code, exception),
            system=exception.system,
            value=exception.value,
            currency=exception.currency,
            refs=list(exception.refs.values_list("ref", flat=True)),
            context=exception.context,
        )
        if recorded.pk != exception.pk:  # it moved on to a different problem: this one is behind it
            objects_resolved_as_moved_on(exception=exception, now_blocked_by=recorded)
        return False
    objects_succeeded(flow=exception.flow, object_refs=[exception.object_ref], note="Retried and it went through.")
    return True


def _retry_failed_recorded(exception: SyncException) -> None:
    """The flow recorded the failure itself: release the claim and, if it is still waiting on an automatic retry,
    space the next one out rather than leave it claimed."""
    now = timezone.now()
    with transaction.atomic():
        current = SyncException.objects.select_for_update().get(pk=exception.pk)
        current.claimed_at = None
        if current.status == Status.RETRYING and (current.next_retry_at is None or current.next_retry_at <= now):
            current.attempts += 1
            if current.attempts >= settings.EXCEPTION_AUTO_RETRIES:
                current.status, current.next_retry_at = Status.OPEN, None
            else:
                current.next_retry_at = now + _backoff(current.attempts)
        current.save(update_fields=["claimed_at", "attempts", "status", "next_retry_at"])
        ExceptionEvent.objects.create(
            exception=current, at=now, action=Action.RETRY_FAILED, note="Retried; it still does not go through."
        )


def _title_for(code: str, exception: SyncException) -> str:
    return exception.title if code == exception.kind else f"{KINDS[code].label}: {exception.object_ref}"


def objects_resolved_as_moved_on(*, exception: SyncException, now_blocked_by: SyncException) -> None:
    now = timezone.now()
    note = f"Past this problem; now stopped by: {now_blocked_by.title}."
    with transaction.atomic():
        SyncException.objects.filter(pk=exception.pk, status__in=ACTIVE).update(
            status=Status.RESOLVED, resolved_at=now, resolution_note=note, next_retry_at=None, claimed_at=None
        )
        ExceptionEvent.objects.create(
            exception=exception,
            at=now,
            action=Action.AUTO_RESOLVED,
            note=note,
            detail={"now_blocked_by": now_blocked_by.pk},
        )


def exceptions_retry_due(*, limit: int = 200) -> int:
    """Retry the exceptions whose automatic retry time has come. Returns how many were tried."""
    due = list(
        SyncException.objects.filter(status=Status.RETRYING, next_retry_at__lte=timezone.now())
        .order_by("next_retry_at")
        .values_list("id", flat=True)[:limit]
    )
    for exception_id in due:
        exception_run_retry(exception_id=exception_id)
    return len(due)


# --- mappings free what they blocked ------------------------------------------------------------------------------


def exceptions_blocked_by(
    *, mapping_kind: str, system: str | None, matches: Callable[[dict], bool], prefilter: Q | None = None
) -> list[int]:
    """The ids of active exceptions waiting on a mapping of ``mapping_kind`` for ``system`` (any system when None)
    whose missing key ``matches``; ``prefilter`` narrows the candidates in the database first."""
    candidates = SyncException.objects.filter(mapping_kind=mapping_kind, status__in=ACTIVE)
    if prefilter is not None:
        candidates = candidates.filter(prefilter)
    if system:
        candidates = candidates.filter(mapping_system=system)
    return [pk for pk, key in candidates.values_list("id", "mapping_key") if matches(key or {})]


def exceptions_free_blocked(
    *,
    mapping_kind: str,
    system: str | None,
    matches: Callable[[dict], bool],
    mapping_label: str,
    detail: dict,
    prefilter: Q | None = None,
) -> int:
    """Retry every active exception that waited on a mapping now created or changed, naming the change in each
    one's history. ``matches(mapping_key)`` says whether the mapping answers that exception's missing key.
    Returns how many were freed."""
    freed = exceptions_blocked_by(mapping_kind=mapping_kind, system=system, matches=matches, prefilter=prefilter)
    if freed:
        _schedule_retries(
            freed, actor=None, action=Action.FREED_BY_MAPPING, note=f"Freed by {mapping_label}.", detail=detail
        )
    return len(freed)
