"""Order import, Virtualstock → Centra, end to end against the sandbox over HTTP."""

import time
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_q.tasks import async_task

from exceptions.models import ExceptionEvent, Status, SyncException
from mappings.models import Channel, ShippingMethodMapping, SkuMapping
from syncs import connections
from syncs.flows.order_import import FLOW, order_import_run
from syncs.links import ORDER_LOCK_BASE
from syncs.models import Link, UnitsInFlight
from syncs.tests.test_links import other_worker  # noqa: F401 - the fixture is used by name

TEE = {
    "name": "Organic Cotton Tee",
    "productNumber": "TEE100",
    "prices": {"3": "25.00"},
    "variants": [
        {
            "name": "Black",
            "variantNumber": "BLK",
            "sizes": [
                {"sizeNumber": "S", "name": "S", "stock": {"1": 10}},
                {"sizeNumber": "M", "name": "M", "stock": {"1": 10}},
            ],
        }
    ],
}


def vs_order(order_id: int, reference: str, part_number: str = "TEE100BLKS", total: str = "30.00") -> dict:
    return {
        "id": order_id,
        "order_reference": reference,
        "currency_code": "GBP",
        "status": "ORDER",
        "retailer": {"id": 245, "name": "John Lewis"},
        "delivery_service_code": "standard",
        "subtotal": "25.00",
        "tax": "5.00",
        "total": total,
        "shipping_address": {
            "full_name": "Ada Lovelace",
            "line_1": "1 Oxford St",
            "city": "London",
            "postal_code": "W1D 1AN",
            "country": "GB",
            "email": "ada@example.com",
        },
        "items": [
            {
                "part_number": part_number,
                "line_reference": f"{order_id}1",
                "quantity": 1,
                "unit_cost_price": "25.00",
                "subtotal": "25.00",
                "tax": "5.00",
                "tax_rate": "20.00",
                "total": total,
            }
        ],
    }


@pytest.fixture
def brand(connected, control, settings):
    settings.SKU_SAME_AS_CENTRA = ["fulfil", "inventory_planner"]
    control("centra").seed(products=[TEE])
    Channel.objects.create(code="john-lewis", name="John Lewis", system="virtualstock", centra_market_id=3)
    ShippingMethodMapping.objects.create(
        system="virtualstock", source_method="standard", centra_shipping_option="standard"
    )
    SkuMapping.objects.create(system="virtualstock", centra_sku="TEE100BLKS", external_code="TEE100BLKS")
    return control


def centra_orders(control) -> list[dict]:
    return list(control("centra").state()["orders"].values())


@pytest.mark.django_db
def test_a_clean_order_reaches_centra_and_is_acknowledged_only_then(brand):
    brand("virtualstock").seed(orders=[vs_order(100, "JL-1")])
    summary = order_import_run()
    assert (summary.examined, summary.imported, summary.failed) == (1, 1, 0)
    [order] = centra_orders(brand)
    assert (order["status"], order["currency"], order["lines"][0]["unitPrice"]) == ("CONFIRMED", "GBP", "30.00")
    assert brand("virtualstock").state()["orders"]["100"]["status"] == "ORDER_ACK"
    link = Link.objects.get(source_ref="JL-1")
    assert link.centra_number == order["number"] and link.acknowledged_at is not None
    operations = brand("virtualstock").operations()
    assert operations.index("acknowledge") > operations.index("orders_list")
    assert brand("centra").operations() == ["rest_create_order"]


@pytest.mark.django_db
def test_an_order_delivered_twice_is_created_once(brand):
    brand("virtualstock").seed(orders=[vs_order(100, "JL-1")])
    order_import_run()
    # The retailer's order shows up again as new (a redelivery): nothing is created a second time.
    brand("virtualstock").seed(orders=[vs_order(100, "JL-1")])
    summary = order_import_run()
    assert (summary.imported, summary.already_imported) == (0, 1)
    assert len(centra_orders(brand)) == 1


@pytest.mark.django_db
def test_an_unknown_sku_is_one_exception_however_often_it_is_polled(brand):
    brand("virtualstock").seed(orders=[vs_order(100, "JL-2", part_number="NOPE-1")])
    order_import_run()
    order_import_run()
    exception = SyncException.objects.get()
    assert (exception.kind, exception.status, exception.occurrences) == ("unmapped_sku", Status.OPEN, 2)
    assert (exception.team, exception.value, exception.currency) == ("ecommerce", Decimal("30.000"), "GBP")
    assert exception.mapping_key == {"code": "NOPE-1"}
    assert "No SKU mapping for Virtualstock" in exception.title
    assert centra_orders(brand) == []
    assert brand("virtualstock").state()["orders"]["100"]["status"] == "ORDER"  # not acknowledged


@pytest.mark.django_db
def test_amounts_that_cannot_carry_exactly_are_a_totals_mismatch(brand):
    order = vs_order(100, "JL-3")
    order["items"][0]["quantity"] = 3
    order["items"][0]["total"] = "30.01"
    brand("virtualstock").seed(orders=[order])
    order_import_run()
    exception = SyncException.objects.get()
    assert (exception.kind, exception.team) == ("totals_mismatch", "finance")
    assert centra_orders(brand) == []


@pytest.mark.django_db
def test_a_crash_between_creating_in_centra_and_saving_the_link_does_not_double(brand):
    brand("virtualstock").seed(orders=[vs_order(100, "JL-4")])
    brand("virtualstock").faults(error_rate=1.0, error_status=500, fail_operations=["acknowledge"])
    order_import_run()
    assert len(centra_orders(brand)) == 1
    exception = SyncException.objects.get()
    assert (exception.kind, exception.status) == ("api_unavailable", Status.RETRYING)
    # As if the worker died after Centra answered and before the link recorded it.
    Link.objects.filter(source_ref="JL-4").update(created_in_target_at=None)
    brand("virtualstock").faults()
    summary = order_import_run()
    assert (summary.imported, summary.failed) == (0, 0)
    assert len(centra_orders(brand)) == 1
    exception.refresh_from_db()
    assert exception.status == Status.RESOLVED
    assert brand("virtualstock").state()["orders"]["100"]["status"] == "ORDER_ACK"


def wait_for(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError("timed out")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_transient_failure_is_retried_by_the_workers_and_resolves_itself(brand, worker_cluster):
    brand("virtualstock").seed(orders=[vs_order(100, "JL-5")])
    brand("centra").faults(error_rate=1.0, error_status=500, fail_operations=["rest_create_order"])
    order_import_run()
    exception = SyncException.objects.get()
    assert (exception.kind, exception.status) == ("api_unavailable", Status.RETRYING)
    brand("centra").faults()
    SyncException.objects.filter(pk=exception.pk).update(next_retry_at=exception.first_seen)
    async_task("exceptions.tasks.retry_due")
    wait_for(lambda: SyncException.objects.get(pk=exception.pk).status == Status.RESOLVED)
    assert len(centra_orders(brand)) == 1
    actions = list(ExceptionEvent.objects.filter(exception=exception).values_list("action", flat=True))
    assert actions == ["retry_scheduled", "auto_resolved"]
    connection.close()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_adding_the_missing_mapping_retries_and_resolves_the_order_naming_the_change(brand, worker_cluster, ada):
    brand("virtualstock").seed(
        orders=[vs_order(100, "JL-6", part_number="JL-TEE-M"), vs_order(101, "JL-7", part_number="JL-TEE-M")]
    )
    order_import_run()
    assert SyncException.objects.filter(kind="unmapped_sku", status=Status.OPEN).count() == 2
    mapping = SkuMapping(system="virtualstock", centra_sku="TEE100BLKM", external_code="jl-tee-m")
    mapping._history_user = ada
    mapping.save()
    wait_for(lambda: not SyncException.objects.exclude(status=Status.RESOLVED).exists())
    assert len(centra_orders(brand)) == 2
    freed = ExceptionEvent.objects.filter(action="freed_by_mapping")
    assert freed.count() == 2
    event = freed.first()
    assert 'SKU mapping "TEE100BLKM → Virtualstock jl-tee-m" (by ada)' in event.note
    assert event.detail["mapping_id"] == mapping.pk and event.detail["editor"] == "ada"
    assert connections.virtualstock().order(100).status == "ORDER_ACK"
    connection.close()


@pytest.mark.django_db
def test_runsync_prints_one_json_line(brand, capsys):
    import json

    from django.core.management import call_command

    brand("virtualstock").seed(orders=[vs_order(100, "JL-8"), vs_order(101, "JL-9", part_number="NOPE")])
    call_command("runsync", FLOW)
    line = json.loads(capsys.readouterr().out.strip())
    assert (line["flow"], line["examined"], line["imported"], line["failed"]) == (FLOW, 2, 1, 1)


@pytest.mark.django_db
def test_retrying_from_the_queue_finds_the_order_already_in_centra_and_creates_no_second(brand):
    from exceptions.services import exception_run_retry

    brand("virtualstock").seed(orders=[vs_order(100, "JL-10")])
    brand("virtualstock").faults(error_rate=1.0, error_status=500, fail_operations=["acknowledge"])
    order_import_run()
    exception = SyncException.objects.get()
    Link.objects.filter(source_ref="JL-10").update(created_in_target_at=None)  # the link never heard back
    brand("virtualstock").faults()
    assert exception_run_retry(exception_id=exception.pk) is True
    exception.refresh_from_db()
    assert exception.status == Status.RESOLVED
    assert len(centra_orders(brand)) == 1
    assert brand("centra").operations().count("rest_create_order") == 2  # tried, and refused as already there


@pytest.mark.django_db
def test_two_retailers_may_use_the_same_reference(brand):
    Channel.objects.filter(code="john-lewis").update(external_account="John Lewis")
    Channel.objects.create(code="next", name="Next", system="virtualstock", centra_market_id=3, external_account="Next")
    theirs = vs_order(101, "100234")
    theirs["retailer"] = {"id": 300, "name": "Next"}
    brand("virtualstock").seed(orders=[vs_order(100, "100234"), theirs])
    summary = order_import_run()
    assert (summary.imported, summary.failed) == (2, 0)
    assert len(centra_orders(brand)) == 2
    assert sorted(Link.objects.values_list("source_system", flat=True)) == ["john-lewis", "next"]


@pytest.mark.django_db
def test_an_order_that_cannot_be_read_is_one_exception_and_the_rest_still_import(brand):
    broken = vs_order(100, "JL-BAD")
    broken["items"][0]["quantity"] = "two"
    brand("virtualstock").seed(orders=[broken, vs_order(101, "JL-OK")])
    summary = order_import_run()
    assert (summary.examined, summary.imported, summary.failed) == (2, 1, 1)
    exception = SyncException.objects.get()
    assert (exception.kind, exception.object_ref) == ("validation_failed", "virtualstock:JL-BAD")
    assert exception.payload["order"]["order_reference"] == "JL-BAD"


@pytest.mark.django_db
def test_an_order_from_a_retailer_with_no_channel_is_never_placed_under_a_guess(brand):
    Channel.objects.create(code="next", name="Next", system="virtualstock", centra_market_id=3, external_account="Next")
    Channel.objects.filter(code="john-lewis").update(external_account="John Lewis")
    stranger = vs_order(100, "SF-1")
    stranger["retailer"] = {"id": 999, "name": "Selfridges"}
    brand("virtualstock").seed(orders=[stranger])
    order_import_run()
    exception = SyncException.objects.get()
    assert "No Virtualstock channel is set up for the retailer" in exception.message
    assert centra_orders(brand) == []


@pytest.mark.django_db
def test_a_totals_mismatch_that_fails_again_on_retry_keeps_its_kind_and_team(brand):
    from exceptions.services import exception_run_retry

    order = vs_order(100, "JL-3")
    order["items"][0]["quantity"] = 3
    order["items"][0]["total"] = "30.01"
    brand("virtualstock").seed(orders=[order])
    order_import_run()
    exception = SyncException.objects.get()
    SyncException.objects.filter(pk=exception.pk).update(status=Status.RETRYING)
    assert exception_run_retry(exception_id=exception.pk) is False
    assert SyncException.objects.count() == 1
    exception.refresh_from_db()
    assert (exception.kind, exception.team, exception.status) == ("totals_mismatch", "finance", Status.OPEN)
    assert exception.refs.filter(ref="jl-3").exists()


def marketplace_order(order_id: str, *, sku: str = "MP-TEE-S", unit_price: str = "25.00", quantity: int = 2) -> dict:
    return {
        "id": order_id,
        "status": "NEW",
        "currency": "EUR",
        "shipping_method": "STANDARD",
        "shipping_price": "4.95",
        "customer": {
            "first_name": "Grace",
            "last_name": "Hopper",
            "email": "grace@example.com",
            "address1": "Hauptstraße 1",
            "city": "Berlin",
            "zipcode": "10115",
            "country": "DE",
            "phone": "+49 30 123456",
        },
        "lines": [{"id": f"{order_id}-1", "seller_sku": sku, "quantity": quantity, "unit_price": unit_price}],
    }


@pytest.fixture
def marketplace_brand(brand):
    Channel.objects.create(code="zalando", name="Zalando", system="marketplace", centra_market_id=2)
    ShippingMethodMapping.objects.create(
        system="marketplace", source_method="STANDARD", centra_shipping_option="standard"
    )
    SkuMapping.objects.create(system="marketplace", centra_sku="TEE100BLKS", external_code="MP-TEE-S")
    return brand


@pytest.mark.django_db
def test_a_marketplace_order_reaches_centra_with_its_shipping_and_is_acknowledged_after(marketplace_brand):
    marketplace_brand("marketplace").seed(orders=[marketplace_order("MP-1")])
    summary = order_import_run()
    assert (summary.examined, summary.imported, summary.failed) == (1, 1, 0)
    [order] = centra_orders(marketplace_brand)
    assert order["lines"][0]["unitPrice"] == "25.00" and order["lines"][0]["quantity"] == 2
    assert Decimal(order["shipping"]) == Decimal("4.95")
    assert connections.centra().order(order["number"]).grand_total == Decimal("54.95")
    link = Link.objects.get(source_system="zalando", source_ref="MP-1")
    assert link.centra_number == order["number"] and link.acknowledged_at is not None
    assert marketplace_brand("marketplace").state()["orders"]["MP-1"]["acknowledged_at"] is not None
    operations = marketplace_brand("marketplace").operations()
    assert operations.index("order_acknowledge") > operations.index("orders_list")
    # Polled again: nothing new is created and nothing is examined twice.
    assert order_import_run().examined == 0
    assert len(centra_orders(marketplace_brand)) == 1


@pytest.mark.django_db
def test_a_marketplace_order_with_an_unmapped_seller_sku_waits_and_is_not_acknowledged(marketplace_brand):
    marketplace_brand("marketplace").seed(orders=[marketplace_order("MP-2", sku="ZZ-UNKNOWN")])
    order_import_run()
    exception = SyncException.objects.get()
    assert (exception.kind, exception.object_ref, exception.currency) == ("unmapped_sku", "zalando:MP-2", "EUR")
    assert exception.mapping_key == {"code": "ZZ-UNKNOWN"}
    assert "No SKU mapping for Marketplace" in exception.title
    assert centra_orders(marketplace_brand) == []
    assert marketplace_brand("marketplace").state()["orders"]["MP-2"]["acknowledged_at"] is None


@pytest.mark.django_db
def test_a_marketplace_order_with_an_unmapped_shipping_method_names_it(marketplace_brand):
    order = marketplace_order("MP-3")
    order["shipping_method"] = "PICKUP_POINT"
    marketplace_brand("marketplace").seed(orders=[order])
    order_import_run()
    exception = SyncException.objects.get()
    assert (exception.kind, exception.mapping_key) == ("unmapped_shipping_method", {"method": "PICKUP_POINT"})
    assert centra_orders(marketplace_brand) == []


@pytest.mark.django_db
def test_a_marketplace_order_retried_from_the_queue_is_fetched_again_and_imported(marketplace_brand):
    from exceptions.services import exception_run_retry

    marketplace_brand("marketplace").seed(orders=[marketplace_order("MP-4", sku="MP-TEE-M")])
    order_import_run()
    exception = SyncException.objects.get()
    SkuMapping.objects.create(system="marketplace", centra_sku="TEE100BLKM", external_code="MP-TEE-M")
    SyncException.objects.filter(pk=exception.pk).update(status=Status.RETRYING)  # as the mapping change does
    assert exception_run_retry(exception_id=exception.pk) is True
    exception.refresh_from_db()
    assert exception.status == Status.RESOLVED
    [order] = centra_orders(marketplace_brand)
    assert [line.sku for line in connections.centra().order(order["number"]).lines] == ["TEE100BLKM"]
    assert marketplace_brand("marketplace").state()["orders"]["MP-4"]["acknowledged_at"] is not None


@pytest.mark.django_db
def test_every_new_order_is_imported_in_one_run_however_many_pages_the_listing_has(brand):
    brand("virtualstock").seed(orders=[vs_order(200 + n, f"JL-P{n}") for n in range(5)])
    connections.virtualstock().page_size = 2  # acknowledging takes orders out of the listing as it is paged
    summary = order_import_run()
    assert (summary.examined, summary.imported) == (5, 5)
    assert len(centra_orders(brand)) == 5


# --- chunks -------------------------------------------------------------------------------------------------------


class WorkerDied(BaseException):
    """The worker stopping dead (killed, out of memory): nothing in the flow catches it."""


@pytest.mark.django_db
def test_a_chunk_of_orders_costs_a_few_queries_and_one_call_per_order_to_each_system(brand):
    brand("virtualstock").seed(orders=[vs_order(300 + n, f"JL-C{n}") for n in range(40)])
    with CaptureQueriesContext(connection) as queries:
        summary = order_import_run()
    assert (summary.imported, summary.failed) == (40, 0)
    assert len(queries) <= 30  # one order alone takes about 14
    assert brand("centra").operations().count("rest_create_order") == 40
    assert brand("virtualstock").operations().count("acknowledge") == 40
    assert Link.objects.filter(acknowledged_at__isnull=False, created_in_target_at__isnull=False).count() == 40
    assert UnitsInFlight.objects.count() == 40


@pytest.mark.django_db
def test_one_bad_order_in_a_chunk_is_one_exception_and_the_rest_go_through(brand):
    SkuMapping.objects.create(system="virtualstock", centra_sku="GONE100BLKS", external_code="JL-GONE")
    orders = [vs_order(400 + n, f"JL-M{n}") for n in range(6)]
    orders[1] = vs_order(401, "JL-M1", part_number="NOPE-2")  # no mapping
    orders[3] = vs_order(403, "JL-M3", part_number="JL-GONE")  # mapped, but Centra refuses the SKU
    brand("virtualstock").seed(orders=orders)
    summary = order_import_run()
    assert (summary.examined, summary.imported, summary.failed) == (6, 4, 2)
    kinds = dict(SyncException.objects.values_list("object_ref", "kind"))
    assert kinds == {"john-lewis:JL-M1": "unmapped_sku", "john-lewis:JL-M3": "validation_failed"}
    acknowledged = Link.objects.filter(acknowledged_at__isnull=False)
    assert {order["number"] for order in centra_orders(brand)} == set(
        acknowledged.values_list("centra_number", flat=True)
    )
    statuses = {n: order["status"] for n, order in brand("virtualstock").state()["orders"].items()}
    assert statuses == {
        "400": "ORDER_ACK",
        "401": "ORDER",
        "402": "ORDER_ACK",
        "403": "ORDER",
        "404": "ORDER_ACK",
        "405": "ORDER_ACK",
    }


@pytest.mark.django_db
def test_a_chunk_run_again_after_the_worker_died_between_creating_and_saving_the_links_does_not_double(
    brand, monkeypatch
):
    from syncs.flows import order_import

    brand("virtualstock").seed(orders=[vs_order(500 + n, f"JL-D{n}") for n in range(5)])
    stamp = order_import._links_stamp

    def dies_before_saving(links, step):
        if step == "created_in_target_at":
            raise WorkerDied
        stamp(links, step)

    monkeypatch.setattr(order_import, "_links_stamp", dies_before_saving)
    with pytest.raises(WorkerDied):
        order_import_run()
    assert len(centra_orders(brand)) == 5  # in Centra, and no link knows it
    assert not Link.objects.filter(created_in_target_at__isnull=False).exists()
    monkeypatch.setattr(order_import, "_links_stamp", stamp)

    summary = order_import_run()
    assert (summary.imported, summary.already_imported, summary.failed) == (0, 5, 0)
    assert len(centra_orders(brand)) == 5
    assert brand("centra").operations().count("rest_create_order") == 10  # each tried again, refused as there
    assert Link.objects.filter(acknowledged_at__isnull=False).count() == 5
    assert not SyncException.objects.exists()


@pytest.mark.django_db
def test_a_chunk_whose_batched_write_is_refused_goes_through_order_by_order(brand, monkeypatch, caplog):
    from django.db import IntegrityError

    from syncs.flows import order_import

    def refused(holdings):
        raise IntegrityError("refused")

    monkeypatch.setattr(order_import, "units_in_flight_record_many", refused)
    brand("virtualstock").seed(orders=[vs_order(600 + n, f"JL-F{n}") for n in range(3)])
    summary = order_import_run()
    assert (summary.imported, summary.failed) == (3, 0)
    assert len(centra_orders(brand)) == 3
    assert UnitsInFlight.objects.count() == 3  # recorded by each order's own path
    assert not SyncException.objects.exists()
    assert "importing 3 orders one by one" in caplog.text


@pytest.mark.django_db
def test_the_same_reference_twice_in_one_listing_is_created_once(brand):
    brand("virtualstock").seed(orders=[vs_order(700, "JL-TWICE"), vs_order(701, "JL-TWICE")])
    summary = order_import_run()
    assert (summary.imported, summary.already_imported, summary.failed) == (1, 1, 0)
    assert len(centra_orders(brand)) == 1


@pytest.mark.django_db
def test_orders_of_one_chunk_spelling_a_code_differently_translate_alike(brand):
    brand("virtualstock").seed(orders=[vs_order(750, "JL-S0"), vs_order(751, "JL-S1", part_number="tee100blks")])
    summary = order_import_run()
    assert (summary.imported, summary.failed) == (2, 0)
    assert {order["lines"][0]["sku"] for order in centra_orders(brand)} == {"TEE100BLKS"}


@pytest.mark.django_db
def test_an_order_another_worker_is_importing_is_left_to_it(brand, other_worker):  # noqa: F811
    brand("virtualstock").seed(orders=[vs_order(800, "JL-B0", part_number="JL-LATER"), vs_order(801, "JL-B1")])
    order_import_run()  # the first waits for its mapping: its link exists from now on
    SkuMapping.objects.create(system="virtualstock", centra_sku="TEE100BLKM", external_code="JL-LATER")
    link = Link.objects.get(source_ref="JL-B0")
    other_worker.execute("SELECT pg_advisory_lock(%s)", [ORDER_LOCK_BASE + link.pk])
    summary = order_import_run()
    assert (summary.examined, summary.busy, summary.imported, summary.failed) == (1, 1, 0, 0)
    assert len(centra_orders(brand)) == 1
    other_worker.execute("SELECT pg_advisory_unlock(%s)", [ORDER_LOCK_BASE + link.pk])
    summary = order_import_run()
    assert (summary.examined, summary.busy, summary.imported) == (1, 0, 1)
    assert len(centra_orders(brand)) == 2
