"""Locks and notes on many order links at once, as a batch of orders takes them."""

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from syncs.links import ORDER_LOCK_BASE, links_made, links_note, links_note_each, order_locks_held
from syncs.models import Link

pytestmark = pytest.mark.django_db


def order_links(count: int) -> list[Link]:
    return [
        Link.objects.create(kind=Link.Kind.ORDER, source_system="centra", source_ref=str(n), centra_number=n)
        for n in range(1, count + 1)
    ]


@pytest.fixture
def other_worker():
    """A second PostgreSQL session, as another worker's."""
    if connection.vendor != "postgresql":
        pytest.skip("advisory locks are PostgreSQL's")
    params = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"}, autocommit=True) as other:
        yield other


def test_a_batch_takes_the_orders_no_one_else_holds_and_releases_them(other_worker):
    first, second, third = order_links(3)
    other_worker.execute("SELECT pg_advisory_lock(%s)", [ORDER_LOCK_BASE + second.pk])

    with order_locks_held([first, second, third]) as held:
        assert held == {first.pk, third.pk}
        taken = other_worker.execute(
            "SELECT pg_try_advisory_lock(%s), pg_try_advisory_lock(%s)",
            [ORDER_LOCK_BASE + first.pk, ORDER_LOCK_BASE + third.pk],
        ).fetchone()
        assert taken == (False, False)  # while the batch holds them, nobody else gets them

    taken = other_worker.execute(
        "SELECT pg_try_advisory_lock(%s), pg_try_advisory_lock(%s)",
        [ORDER_LOCK_BASE + first.pk, ORDER_LOCK_BASE + third.pk],
    ).fetchone()
    assert taken == (True, True)


def test_the_locks_are_released_when_the_batch_fails(other_worker):
    (link,) = order_links(1)
    with pytest.raises(RuntimeError), order_locks_held([link]) as held:
        assert held == {link.pk}
        raise RuntimeError("the batch broke")
    assert other_worker.execute("SELECT pg_try_advisory_lock(%s)", [ORDER_LOCK_BASE + link.pk]).fetchone() == (True,)


def test_links_note_merges_into_what_is_stored_and_saves_the_named_fields():
    first, second = order_links(2)
    Link.objects.filter(pk=first.pk).update(detail={"waiting": "capture", "shipment": "noted meanwhile"})
    first.fulfil_id, second.fulfil_id = 11, 12

    links_note([first, second], fields=["fulfil_id"], waiting=None, sale_state="processing")

    stored = {link.pk: (link.fulfil_id, link.detail) for link in Link.objects.all()}
    assert stored == {
        first.pk: (11, {"shipment": "noted meanwhile", "sale_state": "processing"}),
        second.pk: (12, {"sale_state": "processing"}),
    }
    assert first.detail == {"shipment": "noted meanwhile", "sale_state": "processing"}


def test_links_note_each_merges_each_links_own_changes_and_saves_the_named_fields():
    first, second, untouched = order_links(3)
    Link.objects.filter(pk=first.pk).update(detail={"waiting": "capture", "shipment": "noted meanwhile"})
    first.centra_id, second.centra_id = "501", "502"
    first.shipped_at = second.shipped_at = timezone.now()

    links_note_each(
        [(first, {"waiting": None, "lines": [[1, 2]]}), (second, {"lines": [[3, 1]], "price": "25.00"})],
        fields=["centra_id", "shipped_at"],
    )

    stored = {link.pk: (link.centra_id, link.shipped_at, link.detail) for link in Link.objects.all()}
    assert stored == {
        first.pk: ("501", first.shipped_at, {"shipment": "noted meanwhile", "lines": [[1, 2]]}),
        second.pk: ("502", second.shipped_at, {"lines": [[3, 1]], "price": "25.00"}),
        untouched.pk: ("", None, {}),
    }
    assert first.detail == {"shipment": "noted meanwhile", "lines": [[1, 2]]}


def test_links_note_each_keeps_both_notes_of_a_link_named_twice():
    [link] = order_links(1)
    links_note_each([(link, {"a": 1}), (link, {"b": 2})])
    assert Link.objects.get(pk=link.pk).detail == {"a": 1, "b": 2}


def test_links_note_each_saves_a_field_set_to_none_and_removes_keys():
    first, second, untouched = order_links(3)
    Link.objects.filter(pk=first.pk).update(detail={"refund": "17.49", "shipment": "noted meanwhile"})
    first.fulfil_id, second.fulfil_id = 21, None

    links_note_each(
        [(first, {"credit_number": "SO7", "refund": None}), (second, {"credit_number": "SO8", "amount": "1.05"})],
        fields=["fulfil_id"],
    )

    stored = {link.pk: (link.fulfil_id, link.detail) for link in Link.objects.all()}
    assert stored == {
        first.pk: (21, {"shipment": "noted meanwhile", "credit_number": "SO7"}),
        second.pk: (None, {"credit_number": "SO8", "amount": "1.05"}),
        untouched.pk: (None, {}),
    }
    assert second.detail == {"credit_number": "SO8", "amount": "1.05"}


def test_links_made_keeps_the_stored_links_and_makes_only_the_missing_ones():
    kept = Link.objects.create(kind=Link.Kind.RETURN, source_system="centra", source_ref="7", centra_id="kept")
    wanted = {
        ("centra", ref): Link(kind=Link.Kind.RETURN, source_system="centra", source_ref=ref, centra_id=f"new {ref}")
        for ref in ("7", "8")
    }

    links = links_made(Link.Kind.RETURN, wanted)

    assert links[("centra", "7")].pk == kept.pk and links[("centra", "7")].centra_id == "kept"
    assert links[("centra", "8")].pk is not None and links[("centra", "8")].centra_id == "new 8"
    assert Link.objects.filter(kind=Link.Kind.RETURN).count() == 2
    assert links_made(Link.Kind.RETURN, wanted) == links  # asked again, nothing new is made
