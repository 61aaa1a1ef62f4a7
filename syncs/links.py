"""Working with links (syncs.models.Link) safely when several workers on several machines act on one order."""

import contextlib
from collections.abc import Iterable, Iterator

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from syncs.models import Link

ORDER_LOCK_BASE = 0x4F52444552000000  # "ORDER", plus the order link's id


@contextlib.contextmanager
def advisory_lock(key: int):
    """Hold PostgreSQL's advisory lock ``key`` for the block, across every worker on every machine. Session-level,
    outside any transaction, so what the block records stays recorded, and released with the session if the worker
    dies. SQLite (the embedded default, one machine) serialises writes itself: no lock there."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [key])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


def order_lock(order_link: Link):
    """One worker at a time on one order — its export, cancellations, shipments and returns."""
    return advisory_lock(ORDER_LOCK_BASE + order_link.pk)


@contextlib.contextmanager
def order_locks_held(order_links: Iterable[Link]) -> Iterator[set[int]]:
    """The locks of many orders at once, for a batch: each is tried without waiting (one query for all); yields the
    ids of the links whose lock this worker now holds, and releases them together (one query) after the block.
    An order another worker holds is left out: that worker is at it, and this one moves on instead of queueing
    behind it. SQLite (one machine, writes serialised): every link."""
    ids = sorted({link.pk for link in order_links})
    if connection.vendor != "postgresql" or not ids:
        yield set(ids)
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM unnest(%s::bigint[]) AS id WHERE pg_try_advisory_lock(%s + id)", [ids, ORDER_LOCK_BASE]
        )
        held = {row[0] for row in cursor.fetchall()}
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_unlock(%s + id) FROM unnest(%s::bigint[]) AS id",
                    [ORDER_LOCK_BASE, sorted(held)],
                )


def links_made(kind: str, wanted: dict[tuple[str, str], Link]) -> dict[tuple[str, str], Link]:
    """The links of ``kind`` for these (source system, source ref) keys, by key: the stored ones, and — for keys
    with none — the unsaved Link given, made now (one query, three when some are new). Two workers making one link
    at once end with the one row: the unique key decides, and what is read back is what is stored."""

    def stored() -> dict[tuple[str, str], Link]:
        rows = Link.objects.filter(
            kind=kind,
            source_system__in={system for system, _ in wanted},
            source_ref__in={ref for _, ref in wanted},
        )
        found = {(link.source_system, link.source_ref): link for link in rows}
        return {key: link for key, link in found.items() if key in wanted}

    if not wanted:
        return {}
    links = stored()
    missing = [link for key, link in wanted.items() if key not in links]
    if missing:
        Link.objects.bulk_create(missing, ignore_conflicts=True)
        links = stored()
    return links


def links_note(links: Iterable[Link], *, fields: Iterable[str] = (), **changes) -> None:
    """``link_note`` for many links in one transaction (a row lock on each, one UPDATE): merge ``changes`` into
    each link's detail, and save the model ``fields`` named (set on the objects beforehand) with it."""
    links_note_each([(link, changes) for link in links], fields=fields)


def _links_save(links: list[Link], fields: list[str]) -> None:
    """Write ``fields`` of each link: on PostgreSQL one ``UPDATE … FROM unnest(…)``, a typed array per column (Django's
    bulk_update builds a CASE per row and column, milliseconds a row); elsewhere through bulk_update."""
    if connection.vendor != "postgresql":
        Link.objects.bulk_update(links, fields, batch_size=500)
        return
    columns = [Link._meta.get_field(name) for name in ["id", *fields]]
    assignments = ", ".join(f"{column.column} = v.{column.column}" for column in columns[1:])
    typed_arrays = ", ".join(f"%s::{column.cast_db_type(connection)}[]" for column in columns)
    names = ", ".join(column.column for column in columns)
    values = [
        [column.get_db_prep_save(getattr(link, column.attname), connection) for link in links] for column in columns
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Link._meta.db_table} AS link SET {assignments} FROM unnest({typed_arrays}) AS v({names}) "
            "WHERE link.id = v.id",
            values,
        )


def link_note(link: Link, **changes) -> None:
    """Merge ``changes`` into the link's detail (None removes a key), under a row lock, so a note another flow
    makes on the same link at the same moment is never lost."""
    links_note_each([(link, changes)])


def link_step_done(link: Link, step: str, **extra) -> None:
    """Record that ``step`` is done now (``detail[step]`` = the moment), with any ``extra`` notes."""
    link_note(link, **{step: timezone.now().isoformat()}, **extra)


def link_not_cancelled(prefix: str = "") -> Q:
    """Links not wholly cancelled (``detail.cancelled`` absent or false), as a filter; ``prefix`` reaches them
    through a relation (``"link__"``). A missing JSON key is NULL in SQL, which a negated lookup would drop too:
    "absent or false" is said outright."""
    return Q(**{f"{prefix}detail__cancelled__isnull": True}) | Q(**{f"{prefix}detail__cancelled": False})


def links_note_each(notes: Iterable[tuple[Link, dict]], *, fields: Iterable[str] = ()) -> None:
    """``link_note`` for many links, each with changes of its own ([(link, changes)]), in one transaction (a row
    lock on each, one UPDATE): merge each link's changes into its detail (None removes a key), and save the model
    ``fields`` named (set on the objects beforehand) with it."""
    notes = [(link, changes) for link, changes in notes]
    if not notes:
        return
    now = timezone.now()
    with transaction.atomic():
        stored = dict(
            Link.objects.select_for_update().filter(pk__in=[link.pk for link, _ in notes]).values_list("pk", "detail")
        )
        for link, changes in notes:
            detail = dict(stored.get(link.pk) or {})
            for key, value in changes.items():
                if value is None:
                    detail.pop(key, None)
                else:
                    detail[key] = value
            stored[link.pk] = detail  # a link named twice keeps both notes
            link.detail = detail
            link.updated_at = now
        latest = {link.pk: link for link, _ in notes}
        _links_save(list(latest.values()), ["detail", "updated_at", *fields])
