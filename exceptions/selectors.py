"""Reads of the exception queue, shared by the pages and the API: the same filters, the same order, the same
keyset pagination, so the queue answers fast at a million rows."""

import base64
import contextlib
import json
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db.models import F, Field, Func, Q, QuerySet, Value
from django.db.models.lookups import GreaterThan, GreaterThanOrEqual, LessThan, LessThanOrEqual
from django.utils import timezone

from exceptions.models import ACTIVE, ExceptionRef, Status, SyncException

AGE_BUCKETS = {
    "1h": ("Under an hour", timedelta(hours=1), None),
    "24h": ("1 to 24 hours", timedelta(hours=24), timedelta(hours=1)),
    "7d": ("1 to 7 days", timedelta(days=7), timedelta(hours=24)),
    "older": ("Over a week", None, timedelta(days=7)),
}
SORTS = {
    # name: (ordering, the fields a cursor carries)
    "impact": (["-priority", "-value_rank", "first_seen", "id"], ["priority", "value_rank", "first_seen", "id"]),
    "age": (["first_seen", "id"], ["first_seen", "id"]),
    "newest": (["-last_seen", "-id"], ["last_seen", "id"]),
}
PAGE_SIZE = 50


@dataclass(frozen=True)
class QueueFilters:
    status: str = "active"  # active (open and retrying), open, retrying, resolved, ignored, all
    team: str = ""
    kind: str = ""
    flow: str = ""
    age: str = ""
    q: str = ""  # an order number, SKU, tracking number or reference, matched exactly (case ignored)
    assignee_id: int | None = None

    @classmethod
    def from_params(cls, params) -> "QueueFilters":
        """From a query string (``request.GET``); unknown values are ignored rather than refused."""
        status = params.get("status") or "active"
        age = params.get("age") or ""
        assignee = params.get("assignee") or ""
        return cls(
            status=status if status in {"active", "all", *Status.values} else "active",
            team=params.get("team") or "",
            kind=params.get("kind") or "",
            flow=params.get("flow") or "",
            age=age if age in AGE_BUCKETS else "",
            q=(params.get("q") or "").strip(),
            assignee_id=int(assignee) if assignee.isdigit() else None,
        )


def exception_queue(filters: QueueFilters) -> QuerySet[SyncException]:
    """The exceptions matching ``filters`` (unordered)."""
    queryset = SyncException.objects.all()
    if filters.status == "active":
        queryset = queryset.filter(status__in=ACTIVE)
    elif filters.status != "all":
        queryset = queryset.filter(status=filters.status)
    for field in ("team", "kind", "flow"):
        value = getattr(filters, field)
        if value:
            queryset = queryset.filter(**{field: value})
    if filters.assignee_id:
        queryset = queryset.filter(assignee_id=filters.assignee_id)
    if filters.age:
        _, older_than, newer_than = AGE_BUCKETS[filters.age]
        now = timezone.now()
        if older_than is not None:
            queryset = queryset.filter(first_seen__gte=now - older_than)
        if newer_than is not None:
            queryset = queryset.filter(first_seen__lt=now - newer_than)
    if filters.q:
        # Every exception's refs include its own object_ref, lower-cased: one index look-up finds it.
        queryset = queryset.filter(pk__in=ExceptionRef.objects.filter(ref=filters.q.lower()).values("exception_id"))
    return queryset


@dataclass
class Page:
    rows: list[SyncException]
    next_cursor: str | None


def queue_page(
    queryset: QuerySet[SyncException], *, sort: str = "impact", cursor: str | None = None, size: int = PAGE_SIZE
) -> Page:
    """One page in ``sort`` order after ``cursor`` (keyset pagination: no OFFSET, so page 1,000 costs what page 1
    costs). An unreadable cursor starts from the beginning."""
    ordering, keys = SORTS.get(sort, SORTS["impact"])
    queryset = queryset.order_by(*ordering).select_related("assignee")
    after = _decode(cursor, len(keys))
    if after is not None:
        # A cursor that decodes but holds the wrong kinds of values starts from the beginning.
        with contextlib.suppress(ValidationError, ValueError, TypeError):
            queryset = queryset.filter(_after(ordering, keys, after))
    rows = list(queryset[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return Page(rows=rows, next_cursor=_encode([getattr(rows[-1], key) for key in keys]) if more else None)


def _after(ordering: list[str], keys: list[str], values: list) -> Q:
    """Rows strictly after ``values`` in ``ordering``.

    The leading keys that sort the same way are compared as one row value — ``(priority, value_rank) <= (p, v)`` —
    which PostgreSQL can use to start the index scan right at the cursor; the exact tie-breaking follows as
    (a > x) or (a = x and b > y) or … When every key sorts the same way, the row comparison alone is exact.
    """
    descending = ordering[0].startswith("-")
    run = 1
    while run < len(ordering) and ordering[run].startswith("-") == descending:
        run += 1
    whole = run == len(keys)
    lookups = {
        (True, True): LessThan,
        (True, False): LessThanOrEqual,
        (False, True): GreaterThan,
        (False, False): GreaterThanOrEqual,
    }
    lookup = lookups[(descending, whole)]
    fields = [SyncException._meta.get_field(key) for key in keys[:run]]
    bound = lookup(
        Func(*[F(key) for key in keys[:run]], template="(%(expressions)s)", output_field=Field()),
        Func(
            *[
                Value(field.to_python(value), output_field=field)
                for field, value in zip(fields, values[:run], strict=True)
            ],
            template="(%(expressions)s)",
            output_field=Field(),
        ),
    )
    if whole:
        return Q(bound)
    exact = Q()
    for index, (order, key) in enumerate(zip(ordering, keys, strict=True)):
        step = Q(**{f"{key}__{'lt' if order.startswith('-') else 'gt'}": values[index]})
        for earlier_key, earlier_value in zip(keys[:index], values[:index], strict=True):
            step &= Q(**{earlier_key: earlier_value})
        exact |= step
    return Q(bound) & exact


def _encode(values: list) -> str:
    plain = [v.isoformat() if hasattr(v, "isoformat") else str(v) if isinstance(v, Decimal) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode()


def _decode(cursor: str | None, length: int) -> list | None:
    if not cursor:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError):
        return None
    if not isinstance(values, list) or len(values) != length:
        return None
    return values


def count_capped(queryset: QuerySet[SyncException], cap: int = 10_000) -> tuple[int, bool]:
    """(count, whether it reached the cap): an exact count up to ``cap`` without scanning a million rows."""
    count = queryset.order_by()[: cap + 1].count()
    return min(count, cap), count > cap


def exception_detail(pk: int) -> SyncException:
    """One exception with its timeline and refs. Raises SyncException.DoesNotExist."""
    return (
        SyncException.objects.select_related("assignee", "resolved_by")
        .prefetch_related("events__actor", "refs")
        .get(pk=pk)
    )
