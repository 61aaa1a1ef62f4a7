"""Keyset pagination returns every row once, in order, ties included."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from exceptions.models import SyncException
from exceptions.selectors import SORTS, QueueFilters, exception_queue, queue_page

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("sort", list(SORTS))
def test_walking_the_pages_gives_the_full_order_with_ties(sort):
    base = timezone.now() - timedelta(days=3)
    SyncException.objects.bulk_create(
        [
            SyncException(
                flow="order_import",
                kind="unmapped_sku",
                object_type="order",
                object_ref=f"o{n}",
                title=f"o{n}",
                team="ecommerce",
                priority=(90, 100)[n % 2],
                value_rank=Decimal((n // 3) % 4),
                first_seen=base + timedelta(minutes=n // 5),
                last_seen=base + timedelta(minutes=n // 7),
            )
            for n in range(37)
        ]
    )
    queryset = exception_queue(QueueFilters())
    expected = list(queryset.order_by(*SORTS[sort][0]).values_list("id", flat=True))
    walked, cursor = [], None
    while True:
        page = queue_page(queryset, sort=sort, cursor=cursor, size=5)
        walked += [row.id for row in page.rows]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert walked == expected


def test_an_unreadable_cursor_starts_from_the_beginning():
    now = timezone.now()
    SyncException.objects.bulk_create(
        [
            SyncException(
                flow="f",
                kind="unmapped_sku",
                object_type="order",
                object_ref=f"o{n}",
                title="t",
                team="ecommerce",
                priority=90,
                first_seen=now,
                last_seen=now,
            )
            for n in range(3)
        ]
    )
    first = queue_page(exception_queue(QueueFilters()), size=2)
    for cursor in ("not-a-cursor", "WyJ4IiwgInkiLCAieiIsICJ3Il0=", ""):  # garbage; wrong types; empty
        page = queue_page(exception_queue(QueueFilters()), cursor=cursor, size=2)
        assert [row.id for row in page.rows] == [row.id for row in first.rows]
