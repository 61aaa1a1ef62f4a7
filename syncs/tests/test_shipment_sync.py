"""Shipment sync, Fulfil → Centra → Virtualstock or the marketplace, end to end against the sandbox over HTTP."""

import time
from collections import Counter
from decimal import Decimal

import pytest
import requests
from django.db import connection

from exceptions.models import ExceptionEvent, Status, SyncException
from exceptions.services import exception_run_retry
from mappings.models import Bundle, BundleComponent, CarrierMapping, Channel, MarketMapping, SkuMapping
from syncs import connections
from syncs.connectors.errors import TransientError
from syncs.flows.order_export import order_export_run
from syncs.flows.shipment_sync import FLOW, shipment_sync_run
from syncs.models import Link, SyncRun
from syncs.runs import run_flow

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
SKUS = ("TEE100BLKS", "TEE100BLKM")
NUMBER = 900001  # the Centra number order import reserved for the retailer's order


@pytest.fixture
def brand(connected, control, settings):
    settings.SKU_SAME_AS_CENTRA = ["fulfil", "inventory_planner"]
    control("centra").seed(products=[TEE])
    control("fulfil").seed(products=[{"code": sku, "name": sku, "quantity_on_hand": 10} for sku in SKUS])
    return control


def centra_order(control, *, number: int = NUMBER, captured: bool = True) -> None:
    control("centra").seed(
        orders=[
            {
                "number": number,
                "marketId": 3,
                "status": "CONFIRMED",
                "captured": captured,
                "lines": [{"sku": sku, "quantity": 1, "unitPrice": "25.00"} for sku in SKUS],
            }
        ]
    )


def fulfil_sale(control, reference: str = str(NUMBER)) -> int:
    """A processing sale of both SKUs whose warehouse split it: one customer shipment per line."""
    control("fulfil").seed(
        sales=[
            {
                "reference": reference,
                "state": "processing",
                "shipment_per_line": True,
                "party": {
                    "name": "Ada Lovelace",
                    "addresses": [["create", [{"street": "1 Oxford St", "city": "London", "country": 3}]]],
                },
                "lines": [{"product": sku, "quantity": 1, "unit_price": "25.00"} for sku in SKUS],
            }
        ]
    )
    return connections.fulfil().sale_by_reference(reference).id


def shipments_by_sku(sale_id: int) -> dict[str, int]:
    return {
        shipment.moves[0].product_code: shipment.id for shipment in connections.fulfil().shipments_for_sale(sale_id)
    }


def ship(shipment_id: int, tracking: str, carrier: str = "DHL", service: str = "Express") -> None:
    """The warehouse picks, packs, labels and sends one shipment in Fulfil."""
    client = connections.fulfil()
    carrier_id = next(client.search_read("carrier", [["name", "=", carrier]], ["name"]))["id"]
    domain = [["carrier", "=", carrier_id], ["name", "=", service]]
    service_id = next(client.search_read("carrier.service", domain, ["name"]))["id"]
    tracking_id = client.create("shipment.tracking", [{"tracking_number": tracking, "carrier": carrier_id}])[0]
    client.call("stock.shipment.out", "assign", [shipment_id])
    client.call("stock.shipment.out", "pack", [shipment_id])
    values = {"tracking_number": tracking_id, "carrier": carrier_id, "carrier_service": service_id}
    client.write("stock.shipment.out", [shipment_id], values)
    client.call("stock.shipment.out", "done", [shipment_id])


@pytest.fixture
def retailer_order(brand, db):
    """A John Lewis order relayed by Virtualstock, imported into Centra and exported to Fulfil."""
    channel = Channel.objects.create(code="john-lewis", name="John Lewis", system="virtualstock", centra_market_id=3)
    SkuMapping.objects.bulk_create(
        [SkuMapping(system="virtualstock", centra_sku=sku, external_code=sku) for sku in SKUS]
    )
    centra_order(brand)
    brand("virtualstock").seed(
        orders=[
            {
                "id": 100,
                "order_reference": "JL-1",
                "status": "ORDER_ACK",
                "retailer": {"id": 245, "name": "John Lewis"},
                "items": [
                    {"part_number": sku, "line_reference": f"100{n}", "quantity": 1, "total": "25.00"}
                    for n, sku in enumerate(SKUS, 1)
                ],
            }
        ]
    )
    sale_id = fulfil_sale(brand)
    Link.objects.create(
        kind=Link.Kind.ORDER,
        source_system="john-lewis",
        source_ref="JL-1",
        source_id="100",
        channel=channel,
        centra_number=NUMBER,
        fulfil_id=sale_id,
    )
    return shipments_by_sku(sale_id)


def dhl_express_for_virtualstock(user=None) -> CarrierMapping:
    mapping = CarrierMapping(system="virtualstock", centra_carrier="DHL", centra_service="Express", target_code="dhl")
    mapping._history_user = user
    mapping.save()
    return mapping


def centra_shipments(control) -> list[dict]:
    return sorted(control("centra").state()["shipments"].values(), key=lambda shipment: shipment["id"])


def centra_lines(control) -> dict[str, int]:
    """Order line id → SKU, for the order."""
    order = control("centra").state()["orders"][str(NUMBER)]
    sizes = {size["id"]: size["SKU"] for size in control("centra").state()["sizes"].values()}
    return {line["id"]: sizes[line["sizeId"]] for line in order["lines"]}


def dispatches(control) -> dict[str, list[dict]]:
    items = control("virtualstock").state()["orders"]["100"]["items"]
    return {item["part_number"]: item.get("dispatches", []) for item in items}


@pytest.mark.django_db
def test_a_partial_shipment_reaches_centra_line_by_line_then_the_rest(retailer_order, brand):
    dhl_express_for_virtualstock()
    ship(retailer_order["TEE100BLKS"], "JD0001")
    summary = shipment_sync_run()
    assert (summary.examined, summary.shipped, summary.failed) == (1, 1, 0)
    [first] = centra_shipments(brand)
    lines = centra_lines(brand)
    assert [(lines[line["orderLineId"]], line["quantity"]) for line in first["lines"]] == [("TEE100BLKS", 1)]
    assert (first["isShipped"], first["carrier"], first["service"], first["trackingNumber"]) == (
        True,
        "DHL",
        "Express",
        "JD0001",
    )
    assert brand("centra").state()["orders"][str(NUMBER)]["status"] == "PROCESSING"
    order_link = Link.objects.get(kind=Link.Kind.ORDER)
    assert order_link.shipped_at is None

    ship(retailer_order["TEE100BLKM"], "JD0002")
    summary = shipment_sync_run()
    assert (summary.shipped, summary.already_synced) == (1, 1)
    first, second = centra_shipments(brand)
    assert [(lines[line["orderLineId"]], line["quantity"]) for line in second["lines"]] == [("TEE100BLKM", 1)]
    assert second["trackingNumber"] == "JD0002"
    assert brand("centra").state()["orders"][str(NUMBER)]["status"] == "SHIPPED"
    order_link.refresh_from_db()
    assert order_link.shipped_at is not None
    links = Link.objects.filter(kind=Link.Kind.SHIPMENT, order=order_link).order_by("pk")
    assert [link.centra_id for link in links] == [str(first["id"]), str(second["id"])]
    assert all({"centra_completed_at", "source_reported_at", "synced_at"} <= set(link.detail) for link in links)


@pytest.mark.django_db
def test_the_virtualstock_dispatch_carries_the_mapped_carrier_code(retailer_order, brand):
    dhl_express_for_virtualstock()
    ship(retailer_order["TEE100BLKS"], "JD0001")
    shipment_sync_run()
    sent = dispatches(brand)
    assert [(d["carrier"], d["tracking_number"], d["quantity"]) for d in sent["TEE100BLKS"]] == [("dhl", "JD0001", 1)]
    assert sent["TEE100BLKM"] == []  # not shipped yet: not dispatched


@pytest.mark.django_db
def test_running_twice_makes_one_centra_shipment_and_one_dispatch(retailer_order, brand):
    dhl_express_for_virtualstock()
    ship(retailer_order["TEE100BLKS"], "JD0001")
    shipment_sync_run()
    summary = shipment_sync_run()
    assert (summary.shipped, summary.already_synced) == (0, 1)
    assert brand("centra").operations().count("createShipment") == 1
    assert brand("virtualstock").operations().count("dispatch") == 1
    assert len(centra_shipments(brand)) == 1


@pytest.mark.django_db
def test_a_retry_after_a_lost_answer_resumes_without_a_second_shipment_or_dispatch(retailer_order, brand):
    dhl_express_for_virtualstock()
    ship(retailer_order["TEE100BLKS"], "JD0001")
    brand("virtualstock").faults(error_rate=1.0, error_status=500, fail_operations=["dispatch"])
    shipment_sync_run()
    exception = SyncException.objects.get(flow=FLOW)
    assert (exception.kind, exception.status) == ("api_unavailable", Status.RETRYING)
    # As if the worker died after Centra answered and before the link recorded the shipment.
    link = Link.objects.get(kind=Link.Kind.SHIPMENT)
    del link.detail["centra_completed_at"]
    link.centra_id = ""
    link.save()
    brand("virtualstock").faults()
    summary = shipment_sync_run()
    assert (summary.shipped, summary.failed) == (1, 0)
    assert len(centra_shipments(brand)) == 1 and brand("centra").operations().count("createShipment") == 1
    link.refresh_from_db()
    assert link.centra_id == str(centra_shipments(brand)[0]["id"])
    assert len(dispatches(brand)["TEE100BLKS"]) == 1
    exception.refresh_from_db()
    assert exception.status == Status.RESOLVED


@pytest.mark.django_db
def test_a_payment_centra_could_not_capture_is_surfaced_and_the_parcel_still_reported(brand):
    centra_order(brand, number=1000, captured=False)
    sale_id = fulfil_sale(brand, reference="1000")
    Link.objects.create(
        kind=Link.Kind.ORDER, source_system="centra", source_ref="1000", centra_number=1000, fulfil_id=sale_id
    )
    ship(shipments_by_sku(sale_id)["TEE100BLKS"], "JD0003")
    summary = shipment_sync_run()
    assert (summary.shipped, summary.failed) == (1, 0)
    [shipment] = centra_shipments(brand)
    assert shipment["isShipped"] and not shipment["isCaptured"]
    exception = SyncException.objects.get(flow=FLOW)
    assert (exception.kind, exception.team, exception.status) == ("payment_capture_lag", "finance", Status.RETRYING)
    assert "Capture failed" in exception.message and exception.object_ref == "centra:1000:capture"


@pytest.mark.django_db
def test_the_marketplace_is_told_with_its_own_carrier_code(brand):
    channel = Channel.objects.create(code="zalando", name="Zalando", system="marketplace", centra_market_id=2)
    SkuMapping.objects.bulk_create(
        [SkuMapping(system="marketplace", centra_sku=sku, external_code=f"Z-{sku}") for sku in SKUS]
    )
    CarrierMapping.objects.create(system="marketplace", centra_carrier="DHL", target_code="DHL_EXPRESS")
    brand("marketplace").seed(
        orders=[
            {
                "id": "MP-1",
                "status": "ACCEPTED",
                "lines": [
                    {"id": f"MP-1-{n}", "seller_sku": f"Z-{sku}", "quantity": 1, "unit_price": "25.00"}
                    for n, sku in enumerate(SKUS, 1)
                ],
            }
        ]
    )
    centra_order(brand)
    sale_id = fulfil_sale(brand)
    Link.objects.create(
        kind=Link.Kind.ORDER,
        source_system="zalando",
        source_ref="MP-1",
        source_id="MP-1",
        channel=channel,
        centra_number=NUMBER,
        fulfil_id=sale_id,
    )
    ship(shipments_by_sku(sale_id)["TEE100BLKM"], "JD0004")
    shipment_sync_run()
    shipment_sync_run()
    [parcel] = brand("marketplace").state()["orders"]["MP-1"]["shipments"]
    assert (parcel["carrier_code"], parcel["tracking_number"], parcel["lines"]) == (
        "DHL_EXPRESS",
        "JD0004",
        [{"line_id": "MP-1-2", "quantity": 1}],
    )


@pytest.mark.django_db
def test_a_shipment_of_a_sale_switchyard_did_not_make_is_left_alone(brand):
    sale_id = fulfil_sale(brand, reference="WHOLESALE-7")
    ship(shipments_by_sku(sale_id)["TEE100BLKS"], "JD0005")
    summary = shipment_sync_run()
    assert (summary.examined, summary.skipped, summary.failed) == (1, 1, 0)
    assert centra_shipments(brand) == [] and not SyncException.objects.exists()


@pytest.mark.django_db
def test_the_cursor_moves_on_only_with_a_successful_run_and_is_read_again_with_an_overlap(retailer_order, brand):
    dhl_express_for_virtualstock()
    ship(retailer_order["TEE100BLKS"], "JD0001")
    first = run_flow(flow=FLOW, action=shipment_sync_run, trigger="test")
    changed_at = connections.fulfil().shipment(retailer_order["TEE100BLKS"]).changed_at
    assert first.summary["cursor"] == changed_at.isoformat()
    brand("fulfil").faults(error_rate=1.0, error_status=500, fail_operations=["stock.shipment.out.search_read"])
    with pytest.raises(TransientError):
        run_flow(flow=FLOW, action=shipment_sync_run, trigger="test")
    assert SyncRun.objects.filter(flow=FLOW, status=SyncRun.Status.FAILED).count() == 1
    brand("fulfil").faults()
    second = run_flow(flow=FLOW, action=shipment_sync_run, trigger="test")
    # The shipment at the cursor is read again (the overlap) and found already synced: nothing is sent twice.
    assert (second.summary["examined"], second.summary["already_synced"]) == (1, 1)
    assert second.summary["cursor"] == first.summary["cursor"]


# --- bundles ------------------------------------------------------------------------------------------------------

GIFT_SET = {
    "name": "Gift Set",
    "productNumber": "GIFT",
    "prices": {"3": "100.00"},
    "variants": [{"name": "Set", "variantNumber": "SET", "sizes": [{"sizeNumber": "OS", "name": "OS"}]}],
}
HOODIE = {
    "name": "Loopback Hoodie",
    "productNumber": "HOOD200",
    "prices": {"3": "50.00"},
    "variants": [{"name": "Navy", "variantNumber": "NVY", "sizes": [{"sizeNumber": "M", "name": "M"}]}],
}
GIFT_SKU, COMPONENTS = "GIFTSETOS", ("TEE100BLKS", "TEE100BLKM", "HOOD200NVYM")
GIFT_ORDER = 900002


@pytest.fixture
def gift_set(brand, db, settings):
    """John Lewis orders one gift set — a bundle of an S tee, an M tee and a hoodie — through Virtualstock, as part
    number JL-GIFT. The order is imported into Centra as one bundle line; ``gift_set()`` exports it to Fulfil, which
    sells the three components (``parcel_per_line``: its warehouse sends each in a parcel of its own). Returns the
    sale's id."""
    settings.ORDER_EXPORT_STATUSES = ["CONFIRMED"]
    settings.ORDER_EXPORT_SINCE = ""
    brand("centra").seed(products=[GIFT_SET, HOODIE])
    brand("fulfil").seed(products=[{"code": "HOOD200NVYM", "name": "Hoodie", "quantity_on_hand": 10}])
    bundle = Bundle.objects.create(bundle_sku=GIFT_SKU, name="Gift set")
    for sku, share in zip(COMPONENTS, ("25", "25", "50"), strict=True):
        BundleComponent.objects.create(bundle=bundle, component_sku=sku, quantity=1, price_share=Decimal(share))
    warehouse = next(warehouse.id for warehouse in connections.fulfil().warehouses() if warehouse.code == "MAIN")
    MarketMapping.objects.create(
        centra_store_id=1, centra_market_id=3, currency="GBP", fulfil_channel_id=2, fulfil_warehouse_id=warehouse
    )
    channel = Channel.objects.create(code="john-lewis", name="John Lewis", system="virtualstock", centra_market_id=3)
    SkuMapping.objects.create(system="virtualstock", centra_sku=GIFT_SKU, external_code="JL-GIFT")
    brand("centra").seed(
        orders=[
            {
                "number": GIFT_ORDER,
                "marketId": 3,
                "status": "CONFIRMED",
                "customer": {
                    "email": "ada@example.com",
                    "first_name": "Ada",
                    "last_name": "Lovelace",
                    "address1": "1 Oxford St",
                    "city": "London",
                    "zipcode": "W1D 1AN",
                    "country": "GB",
                },
                "lines": [{"sku": GIFT_SKU, "quantity": 1, "unitPrice": "100.00"}],
            }
        ]
    )
    brand("virtualstock").seed(
        orders=[
            {
                "id": 200,
                "order_reference": "JL-2",
                "status": "ORDER_ACK",
                "retailer": {"id": 245, "name": "John Lewis"},
                "items": [{"part_number": "JL-GIFT", "line_reference": "2001", "quantity": 1, "total": "100.00"}],
            }
        ]
    )
    Link.objects.create(
        kind=Link.Kind.ORDER,
        source_system="john-lewis",
        source_ref="JL-2",
        source_id="200",
        channel=channel,
        centra_number=GIFT_ORDER,
    )
    dhl_express_for_virtualstock()

    def export(*, parcel_per_line: bool = False) -> int:
        brand("fulfil").seed(config={"shipment_per_line": parcel_per_line})
        assert order_export_run().exported == 1
        return connections.fulfil().sale_by_reference(str(GIFT_ORDER)).id

    return export


def gift_line_id(control) -> int:
    [line] = control("centra").state()["orders"][str(GIFT_ORDER)]["lines"]
    return line["id"]


def gift_dispatches(control) -> list[tuple]:
    """(part number, units, tracking number, carrier) of every dispatch Virtualstock has for the gift set order."""
    items = control("virtualstock").state()["orders"]["200"]["items"]
    return [
        (item["part_number"], entry["quantity"], entry["tracking_number"], entry["carrier"])
        for item in items
        for entry in item.get("dispatches", [])
    ]


@pytest.mark.django_db
def test_a_bundle_shipped_in_fulfil_as_its_components_reaches_centra_as_its_one_line(gift_set, brand):
    sale_id = gift_set()
    [shipment] = connections.fulfil().shipments_for_sale(sale_id)
    assert sorted(move.product_code for move in shipment.moves) == sorted(COMPONENTS)
    ship(shipment.id, "JD0100")
    summary = shipment_sync_run()
    assert (summary.shipped, summary.held, summary.failed) == (1, 0, 0)
    [centra_shipment] = centra_shipments(brand)
    assert [(line["orderLineId"], line["quantity"]) for line in centra_shipment["lines"]] == [(gift_line_id(brand), 1)]
    assert (centra_shipment["isShipped"], centra_shipment["trackingNumber"]) == (True, "JD0100")
    assert brand("centra").state()["orders"][str(GIFT_ORDER)]["status"] == "SHIPPED"
    # The retailer sold a gift set: it is told of a gift set, under its own part number.
    assert gift_dispatches(brand) == [("JL-GIFT", 1, "JD0100", "dhl")]
    assert Link.objects.get(kind=Link.Kind.ORDER, centra_number=GIFT_ORDER).shipped_at is not None


@pytest.mark.django_db
def test_a_bundle_split_over_parcels_ships_when_its_last_component_leaves(gift_set, brand):
    parcels = shipments_by_sku(gift_set(parcel_per_line=True))
    assert sorted(parcels) == sorted(COMPONENTS)
    ship(parcels["TEE100BLKS"], "JD0201")
    ship(parcels["HOOD200NVYM"], "JD0202")
    summary = shipment_sync_run()
    assert (summary.shipped, summary.held, summary.failed) == (0, 2, 0)
    assert centra_shipments(brand) == [] and gift_dispatches(brand) == []
    assert "createShipment" not in brand("centra").operations()

    ship(parcels["TEE100BLKM"], "JD0203")
    summary = shipment_sync_run()
    assert (summary.shipped, summary.already_synced, summary.failed) == (1, 2, 0)
    [centra_shipment] = centra_shipments(brand)
    assert [(line["orderLineId"], line["quantity"]) for line in centra_shipment["lines"]] == [(gift_line_id(brand), 1)]
    assert centra_shipment["trackingNumber"] == "JD0203"
    assert gift_dispatches(brand) == [("JL-GIFT", 1, "JD0203", "dhl")]
    assert brand("centra").state()["orders"][str(GIFT_ORDER)]["status"] == "SHIPPED"
    assert shipment_sync_run().shipped == 0
    assert brand("centra").operations().count("createShipment") == 1


def wait_for(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError("timed out")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_an_unmapped_carrier_waits_and_adding_the_mapping_retries_and_clears_it(
    retailer_order, brand, worker_cluster, ada
):
    ship(retailer_order["TEE100BLKS"], "JD0001")
    summary = shipment_sync_run()
    assert summary.failed == 1
    exception = SyncException.objects.get(flow=FLOW)
    assert (exception.kind, exception.team, exception.status) == ("unmapped_carrier", "operations", Status.OPEN)
    assert (exception.mapping_system, exception.mapping_key) == (
        "virtualstock",
        {"carrier": "DHL", "service": "Express"},
    )
    assert "carrier 'DHL'" in exception.title and "Virtualstock" in exception.title
    # Centra already has the shipment and the customer their tracking; only the retailer waits.
    [shipment] = centra_shipments(brand)
    assert shipment["isShipped"] and dispatches(brand)["TEE100BLKS"] == []

    dhl_express_for_virtualstock(ada)
    wait_for(lambda: SyncException.objects.get(pk=exception.pk).status == Status.RESOLVED)
    assert [d["carrier"] for d in dispatches(brand)["TEE100BLKS"]] == ["dhl"]
    assert len(centra_shipments(brand)) == 1
    assert ExceptionEvent.objects.filter(exception=exception, action="freed_by_mapping").exists()
    connection.close()


@pytest.mark.django_db
def test_a_run_that_finds_only_shipments_already_synced_asks_the_database_once_for_all_of_them(retailer_order, brand):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    dhl_express_for_virtualstock()
    ship(retailer_order["TEE100BLKS"], "JD0001")
    ship(retailer_order["TEE100BLKM"], "JD0002")
    first = shipment_sync_run()
    assert first.shipped == 2
    with CaptureQueriesContext(connection) as queries:
        again = shipment_sync_run()
    assert (again.examined, again.already_synced, again.shipped) == (2, 2, 0)
    assert len(queries) <= 2  # the cursor, and the synced links of the whole chunk: nothing per shipment


# --- batches ------------------------------------------------------------------------------------------------------


def clear_calls(simulator) -> None:
    requests.post(f"{simulator.url}/_sandbox/calls/clear", timeout=10).raise_for_status()


def web_orders_shipped(control, numbers: list[int], *, cancelled: tuple[int, ...] = ()) -> None:
    """Centra web orders of both SKUs, each exported to Fulfil as one sale that the warehouse sends in one parcel
    (tracking number T<number>). An order in ``cancelled`` was cancelled in Centra after Fulfil had it."""
    control("centra").seed(
        orders=[
            {
                "number": number,
                "marketId": 3,
                "status": "CANCELLED" if number in cancelled else "CONFIRMED",
                "captured": True,
                "lines": [{"sku": sku, "quantity": 1, "unitPrice": "25.00"} for sku in SKUS],
            }
            for number in numbers
        ]
    )
    for number in numbers:
        sale_id = fulfil_sale(control, reference=str(number))
        Link.objects.create(
            kind=Link.Kind.ORDER,
            source_system="centra",
            source_ref=str(number),
            centra_number=number,
            fulfil_id=sale_id,
        )
        for shipment in connections.fulfil().shipments_for_sale(sale_id):
            ship(shipment.id, f"T{number}-{shipment.moves[0].product_code}")


@pytest.mark.django_db
def test_a_batch_reads_the_orders_once_and_creates_every_shipment_sent_in_one_centra_request(brand):
    numbers = [1001, 1002, 1003]
    web_orders_shipped(brand, numbers)
    clear_calls(brand("centra"))
    summary = shipment_sync_run()
    # Fulfil ships each order as two parcels: one of each order is in the batch, the other follows on its own.
    assert (summary.examined, summary.shipped, summary.failed) == (6, 6, 0)
    shipments = centra_shipments(brand)
    assert len(shipments) == 6 and all(shipment["isShipped"] for shipment in shipments)
    assert {shipment["trackingNumber"] for shipment in shipments} == {
        f"T{number}-{sku}" for number in numbers for sku in SKUS
    }
    operations = brand("centra").operations()
    # The batch: one read of the three orders, one request creating three shipments already sent. The second
    # parcel of each order on its own: its order read, created, completed, read again to see it fully shipped.
    assert operations.count("createShipment") == 1 + 3
    assert operations.count("completeShipment") == 3
    assert all(brand("centra").state()["orders"][str(number)]["status"] == "SHIPPED" for number in numbers)
    assert Link.objects.filter(kind=Link.Kind.ORDER, shipped_at__isnull=False).count() == 3


@pytest.mark.django_db
def test_an_order_centra_refuses_in_a_batch_gets_its_exception_and_the_others_go_through(brand):
    web_orders_shipped(brand, [1001, 1002, 1003], cancelled=(1002,))
    summary = shipment_sync_run()
    assert (summary.shipped, summary.failed) == (4, 2)
    shipped_orders = {shipment["orderNumber"] for shipment in centra_shipments(brand)}
    assert shipped_orders == {1001, 1003}
    exceptions = SyncException.objects.filter(flow=FLOW)
    assert exceptions.count() == 2  # one for each of the cancelled order's parcels
    assert all("CANCELLED" in exception.message for exception in exceptions)
    failed = {exception.object_ref for exception in exceptions}
    cancelled_links = Link.objects.filter(kind=Link.Kind.SHIPMENT, order__centra_number=1002)
    assert failed == {f"fulfil:{link.source_ref}" for link in cancelled_links}
    assert not any("synced_at" in link.detail for link in cancelled_links)


class WorkerDied(BaseException):
    """The worker stopped (killed, out of memory) at that moment: nothing after it ran."""


@pytest.mark.django_db
def test_a_batch_rerun_after_the_worker_died_between_centra_and_the_links_makes_no_second_shipment(brand, monkeypatch):
    numbers = [1001, 1002]
    web_orders_shipped(brand, numbers)
    client = connections.centra()
    create = client.create_sent_shipments

    def created_then_died(*args, **kwargs):
        create(*args, **kwargs)
        raise WorkerDied

    monkeypatch.setattr(client, "create_sent_shipments", created_then_died)
    with pytest.raises(WorkerDied):
        shipment_sync_run()
    assert len(centra_shipments(brand)) == 2  # Centra made them; no link knows
    assert not Link.objects.filter(kind=Link.Kind.SHIPMENT).exclude(centra_id="").exists()
    monkeypatch.undo()

    clear_calls(brand("centra"))
    summary = shipment_sync_run()
    assert (summary.shipped, summary.failed) == (4, 0)
    shipments = centra_shipments(brand)
    assert len(shipments) == 4 and all(shipment["isShipped"] for shipment in shipments)
    assert sorted(Counter(shipment["orderNumber"] for shipment in shipments).values()) == [2, 2]
    # The two found again in Centra by the lines noted before asking; only the two other parcels are created.
    links = Link.objects.filter(kind=Link.Kind.SHIPMENT)
    assert sorted(int(link.centra_id) for link in links) == sorted(shipment["id"] for shipment in shipments)
    assert brand("centra").operations().count("createShipment") == 2


@pytest.mark.django_db
def test_a_create_that_times_out_is_not_sent_again_until_centra_has_finished_it(brand, settings):
    settings.CONNECTOR_READ_TIMEOUT = 0.5
    connections.centra.cache_clear()
    web_orders_shipped(brand, [1001, 1002])
    # Centra takes the creates but answers after Switchyard stopped waiting: the shipments land a moment later.
    brand("centra").faults(timeout_rate=1.0, timeout_seconds=1.5, fail_operations=["createShipment"])

    summary = shipment_sync_run()

    assert (summary.shipped, summary.failed) == (0, 4)
    sent = brand("centra").operations().count("createShipment")
    exceptions = list(SyncException.objects.all())
    assert len(exceptions) == 4 and {e.kind for e in exceptions} == {"api_unavailable"}
    brand("centra").faults()
    deadline = time.monotonic() + 10
    while len(centra_shipments(brand)) < 4 and time.monotonic() < deadline:
        time.sleep(0.3)
    for exception in exceptions:
        assert exception_run_retry(exception_id=exception.pk) is True
    shipments = centra_shipments(brand)
    assert len(shipments) == 4 and all(shipment["isShipped"] for shipment in shipments)
    assert brand("centra").operations().count("createShipment") == sent  # each retry found its shipment
    assert not SyncException.objects.exclude(status=Status.RESOLVED).exists()


@pytest.mark.django_db
def test_a_retailer_order_whose_carrier_has_no_code_fails_alone_and_the_batchs_others_are_dispatched(brand):
    channel = Channel.objects.create(code="john-lewis", name="John Lewis", system="virtualstock", centra_market_id=3)
    SkuMapping.objects.bulk_create(
        [SkuMapping(system="virtualstock", centra_sku=sku, external_code=sku) for sku in SKUS]
    )
    dhl_express_for_virtualstock()
    numbers = {1001: "DHL", 1002: "UPS", 1003: "DHL"}  # no Virtualstock code for UPS
    brand("virtualstock").seed(
        orders=[
            {
                "id": number,
                "order_reference": f"JL-{number}",
                "status": "ORDER_ACK",
                "retailer": {"id": 245, "name": "John Lewis"},
                "items": [{"part_number": SKUS[0], "line_reference": f"{number}1", "quantity": 1, "total": "25.00"}],
            }
            for number in numbers
        ]
    )
    brand("centra").seed(
        orders=[
            {
                "number": number,
                "marketId": 3,
                "status": "CONFIRMED",
                "captured": True,
                "lines": [{"sku": SKUS[0], "quantity": 1, "unitPrice": "25.00"}],
            }
            for number in numbers
        ]
    )
    shipment_ids = {}
    for number, carrier in numbers.items():
        brand("fulfil").seed(
            sales=[
                {
                    "reference": str(number),
                    "state": "processing",
                    "party": {"name": "Ada Lovelace", "addresses": [["create", [{"street": "1 Oxford St"}]]]},
                    "lines": [{"product": SKUS[0], "quantity": 1, "unit_price": "25.00"}],
                }
            ]
        )
        sale_id = connections.fulfil().sale_by_reference(str(number)).id
        Link.objects.create(
            kind=Link.Kind.ORDER,
            source_system="john-lewis",
            source_ref=f"JL-{number}",
            source_id=str(number),
            channel=channel,
            centra_number=number,
            fulfil_id=sale_id,
        )
        [shipment] = connections.fulfil().shipments_for_sale(sale_id)
        shipment_ids[number] = shipment.id
        ship(shipment.id, f"T{number}", carrier=carrier, service="Express" if carrier == "DHL" else "Standard")
    summary = shipment_sync_run()
    assert (summary.shipped, summary.failed) == (2, 1)
    [exception] = SyncException.objects.filter(flow=FLOW)
    assert exception.kind == "unmapped_carrier" and exception.context["shipment_id"] == shipment_ids[1002]
    orders = brand("virtualstock").state()["orders"]
    dispatched = {int(number) for number, order in orders.items() if order["items"][0].get("dispatches")}
    assert dispatched == {1001, 1003}
    assert len(centra_shipments(brand)) == 3  # Centra has all three: only the retailer waits for UPS's code
