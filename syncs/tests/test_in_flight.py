"""Units in flight: an order's units count as sold from the moment Switchyard sees it until the master has it."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import OrmQ

from syncs.flows.order_import import order_import_run
from syncs.models import Link, UnitsInFlight
from syncs.stock.in_flight import units_in_flight, units_in_flight_record, units_in_flight_record_many
from syncs.tests.test_order_import import brand, vs_order  # noqa: F401 - the fixture is used by name


def order(ref: str, source_system: str = "john-lewis", **steps) -> Link:
    return Link.objects.create(kind=Link.Kind.ORDER, source_system=source_system, source_ref=ref, **steps)


@pytest.mark.django_db
def test_units_count_until_the_fulfil_master_has_the_sale(settings):
    settings.STOCK_MASTER = "fulfil"
    seen = order("JL-1")
    exported = order("JL-2", exported_at=timezone.now(), detail={"sale_state": "processing"})
    confirmed = order("JL-4", exported_at=timezone.now(), detail={"sale_state": "confirmed"})
    shipped = order("JL-5", exported_at=timezone.now(), shipped_at=timezone.now(), detail={"sale_state": "confirmed"})
    cancelled = order("JL-3", detail={"cancelled": True})
    web = order("1001", source_system="centra")
    units_in_flight_record(seen, {"TEE-S": 2, "TEE-M": 1})
    units_in_flight_record(exported, {"TEE-S": 5})
    units_in_flight_record(cancelled, {"TEE-S": 7})
    units_in_flight_record(web, {"TEE-S": 1})
    units_in_flight_record(confirmed, {"TEE-M": 10})  # in Fulfil, but its sale holds no stock until processing
    units_in_flight_record(shipped, {"TEE-S": 9})
    assert units_in_flight() == {"TEE-S": 3, "TEE-M": 11}
    assert units_in_flight(["TEE-M", "OTHER"]) == {"TEE-M": 11}
    # Recording again replaces what the order held: a line cancelled before import holds nothing.
    units_in_flight_record(seen, {"TEE-S": 2})
    assert units_in_flight() == {"TEE-S": 3, "TEE-M": 10}


@pytest.mark.django_db
def test_many_orders_record_their_units_at_once_bundles_as_their_components(settings, django_assert_num_queries):
    from decimal import Decimal

    from mappings.models import Bundle, BundleComponent

    settings.STOCK_MASTER = "fulfil"
    bundle = Bundle.objects.create(bundle_sku="GIFTSET", name="Gift set")
    BundleComponent.objects.create(bundle=bundle, component_sku="TEE-S", quantity=2, price_share=Decimal("1"))
    first, second = order("JL-1"), order("JL-2")
    units_in_flight_record(first, {"TEE-M": 9})
    with django_assert_num_queries(5):  # the bundles, then delete and insert in a transaction (savepoint, release)
        units_in_flight_record_many([(first, {"TEE-M": 1, "GIFTSET": 1}), (second, {"TEE-S": 3, "TEE-M": 0})])
    assert units_in_flight() == {"TEE-S": 5, "TEE-M": 1}  # what the first held before is replaced


@pytest.mark.django_db
def test_with_centra_as_master_only_imported_orders_not_yet_in_centra_count(settings):
    settings.STOCK_MASTER = "centra"
    units_in_flight_record(order("JL-1"), {"TEE-S": 2})
    units_in_flight_record(order("JL-2", created_in_target_at=timezone.now()), {"TEE-S": 4})
    units_in_flight_record(order("1001", source_system="centra"), {"TEE-S": 8})  # Centra allocated it itself
    assert units_in_flight() == {"TEE-S": 2}


@pytest.mark.django_db
def test_an_order_seen_too_long_ago_stops_holding_stock(settings):
    settings.STOCK_MASTER, settings.STOCK_IN_FLIGHT_MAX_HOURS = "fulfil", 24
    old = order("JL-1")
    Link.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=25))
    units_in_flight_record(old, {"TEE-S": 2})
    assert units_in_flight() == {}


@pytest.mark.django_db
def test_an_imported_order_holds_its_units_and_starts_one_push_for_them(
    brand,  # noqa: F811
    django_capture_on_commit_callbacks,
    settings,
):
    settings.STOCK_MASTER = "fulfil"
    first, second = vs_order(100, "JL-1"), vs_order(101, "JL-2")
    second["items"][0]["quantity"] = 2
    second["items"][0]["total"] = "60.00"
    brand("virtualstock").seed(orders=[first, second])
    with django_capture_on_commit_callbacks(execute=True):
        order_import_run()
    assert units_in_flight() == {"TEE100BLKS": 3}
    assert UnitsInFlight.objects.count() == 2
    tasks = [task.task for task in OrmQ.objects.all()]
    pushes = [task for task in tasks if task["func"] == "syncs.tasks.stock_push_skus"]
    assert [task["args"] for task in pushes] == [(["TEE100BLKS"],)]
    # The export put them in Fulfil, which processed the sales: the master counts them now.
    Link.objects.update(exported_at=timezone.now(), detail={"sale_state": "processing"})
    assert units_in_flight() == {}
