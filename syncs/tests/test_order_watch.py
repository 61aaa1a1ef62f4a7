"""Order watch: stalled orders raise order_stalled once, and resolve themselves when the order moves on."""

from datetime import timedelta

import pytest
from django.utils import timezone

from exceptions.models import Status, SyncException
from mappings.models import Channel
from syncs.flows.order_watch import FLOW, order_watch_run
from syncs.models import Link


def order_link(*, age: timedelta, source_system: str = "centra", ref: str = "1001", **steps) -> Link:
    channel = None
    if source_system != "centra":
        channel, _ = Channel.objects.get_or_create(
            code=source_system, defaults={"name": "John Lewis", "system": "virtualstock", "centra_market_id": 3}
        )
    link = Link.objects.create(kind=Link.Kind.ORDER, source_system=source_system, source_ref=ref, channel=channel)
    Link.objects.filter(pk=link.pk).update(created_at=timezone.now() - age, **steps)
    link.refresh_from_db()
    return link


@pytest.mark.django_db
def test_an_order_not_exported_in_time_is_raised_once_for_customer_service(settings):
    settings.ORDER_STALLED_EXPORT_MINUTES = 120
    order_link(age=timedelta(hours=3), ref="1001", centra_number=1001)
    order_link(age=timedelta(minutes=30), ref="1002", centra_number=1002)  # not late yet
    summary = order_watch_run()
    assert (summary.stalled, summary.raised, summary.by_step["export"]) == (1, 1, 1)
    exception = SyncException.objects.get(flow=FLOW)
    assert (exception.kind, exception.team, exception.status) == ("order_stalled", "customer_service", Status.OPEN)
    assert exception.object_ref == "export:centra:1001"
    assert exception.title.startswith("Centra order 1001 stalled: not in Fulfil after 3")
    assert order_watch_run().raised == 0  # already raised: not again
    assert SyncException.objects.get(flow=FLOW).occurrences == 1


@pytest.mark.django_db
def test_a_stalled_order_resolves_itself_when_it_moves_on_and_ships_are_watched_next(settings):
    link = order_link(age=timedelta(hours=3), centra_number=1001)
    order_watch_run()
    Link.objects.filter(pk=link.pk).update(exported_at=timezone.now() - timedelta(hours=80), fulfil_id=55)
    summary = order_watch_run()
    assert summary.moved_on == 1
    exported = SyncException.objects.get(object_ref="export:centra:1001")
    assert exported.status == Status.RESOLVED
    shipping = SyncException.objects.get(object_ref="ship:centra:1001")
    assert shipping.status == Status.OPEN and "not shipped after 3" in shipping.title
    Link.objects.filter(pk=link.pk).update(shipped_at=timezone.now())
    order_watch_run()
    shipping.refresh_from_db()
    assert shipping.status == Status.RESOLVED


@pytest.mark.django_db
def test_an_imported_order_never_acknowledged_is_stalled_at_import_and_cancelled_ones_are_not(settings):
    order_link(age=timedelta(hours=2), source_system="john-lewis", ref="JL-1")
    cancelled = order_link(age=timedelta(hours=2), source_system="john-lewis", ref="JL-2")
    Link.objects.filter(pk=cancelled.pk).update(detail={"cancelled": True})
    order_link(age=timedelta(hours=3), ref="1003", detail={"waiting": "capture"})  # finance's capture lag instead
    order_watch_run()
    [exception] = SyncException.objects.filter(flow=FLOW)
    assert exception.object_ref == "import:john-lewis:JL-1"
    assert exception.title.startswith("John Lewis order JL-1 stalled: not in Centra and acknowledged at its source")


@pytest.mark.django_db
def test_retrying_a_stalled_order_resolves_it_only_once_it_has_moved(settings):
    from exceptions.services import exception_run_retry

    link = order_link(age=timedelta(hours=3), centra_number=1001)
    order_watch_run()
    exception = SyncException.objects.get(flow=FLOW)
    SyncException.objects.filter(pk=exception.pk).update(status=Status.RETRYING)
    assert exception_run_retry(exception_id=exception.pk) is False
    exception.refresh_from_db()
    assert exception.status == Status.OPEN
    Link.objects.filter(pk=link.pk).update(exported_at=timezone.now())
    SyncException.objects.filter(pk=exception.pk).update(status=Status.RETRYING, claimed_at=None)
    assert exception_run_retry(exception_id=exception.pk) is True
