"""The order trace: an order found by any identifier, and its journey across every system — made by running the real
flows against the sandbox over HTTP, or by links as the flows write them."""

from html import escape

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from exceptions.models import Status, SyncException
from exceptions.services import failure_record
from mappings.models import CarrierMapping, Channel, MarketMapping, ShippingMethodMapping, SkuMapping
from syncs import connections
from syncs.flows.order_cancel import CancellationBlocked
from syncs.flows.order_export import order_export_run
from syncs.flows.order_import import order_import_run
from syncs.flows.return_sync import return_sync_run
from syncs.flows.shipment_sync import shipment_sync_run
from syncs.link_refs import link_identifiers_record
from syncs.models import Link, LinkRef

pytestmark = pytest.mark.django_db

SKUS = ("TEE100BLKS", "TEE100BLKM")
TEE = {
    "name": "Organic Cotton Tee",
    "productNumber": "TEE100",
    "prices": {"3": "30.00"},
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


def retailer_order(order_id: int, reference: str, skus=SKUS) -> dict:
    """A John Lewis order as Virtualstock relays it: one unit of each SKU at 30.00 GBP, tax included."""
    return {
        "id": order_id,
        "order_reference": reference,
        "currency_code": "GBP",
        "status": "ORDER",
        "retailer": {"id": 245, "name": "John Lewis"},
        "delivery_service_code": "standard",
        "shipping_address": {
            "full_name": "Ada Lovelace",
            "line_1": "1 Oxford St",
            "city": "London",
            "postal_code": "W1D 1AN",
            "country": "GB",
            "email": "ada@example.com",
        },
        "items": [
            {"part_number": sku, "line_reference": f"{order_id}{n}", "quantity": 1, "subtotal": "25.00", "tax": "5.00"}
            | {"tax_rate": "20.00", "total": "30.00"}
            for n, sku in enumerate(skus, 1)
        ],
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
def brand(connected, control, settings):
    """A brand selling through John Lewis (via Virtualstock) in Centra's UK market, with Fulfil as its ERP."""
    settings.SKU_SAME_AS_CENTRA = ["fulfil", "inventory_planner"]
    settings.ORDER_EXPORT_STATUSES = ["CONFIRMED", "PROCESSING", "SHIPPED"]
    settings.ORDER_EXPORT_SINCE = ""
    settings.STOCK_MASTER = "fulfil"
    control("centra").seed(products=[TEE])
    control("fulfil").seed(products=[{"code": sku, "name": sku, "quantity_on_hand": 10} for sku in SKUS])
    Channel.objects.create(code="john-lewis", name="John Lewis", system="virtualstock", centra_market_id=3)
    ShippingMethodMapping.objects.create(
        system="virtualstock", source_method="standard", centra_shipping_option="standard"
    )
    SkuMapping.objects.bulk_create(
        [SkuMapping(system="virtualstock", centra_sku=sku, external_code=sku) for sku in SKUS]
    )
    CarrierMapping.objects.create(
        system="virtualstock", centra_carrier="DHL", centra_service="Express", target_code="dhl"
    )
    warehouse = next(w.id for w in connections.fulfil().warehouses() if w.code == "MAIN")
    MarketMapping.objects.create(
        centra_store_id=1,
        centra_market_id=3,
        label="UK",
        currency="GBP",
        fulfil_channel_id=1,
        fulfil_warehouse_id=warehouse,
    )
    return control


@pytest.fixture
def journey(brand):
    """JL-1 all the way: imported, exported, shipped with tracking JD0001 and dispatched, one unit returned and
    credited. What each system calls it, by name."""
    brand("virtualstock").seed(orders=[retailer_order(100, "JL-1")])
    assert order_import_run().imported == 1
    assert order_export_run().exported == 1
    order = Link.objects.get(kind=Link.Kind.ORDER, source_ref="JL-1")
    [fulfil_shipment] = connections.fulfil().shipments_for_sale(order.fulfil_id)
    ship(fulfil_shipment.id, "JD0001")
    assert shipment_sync_run().shipped == 1
    shipment = Link.objects.get(kind=Link.Kind.SHIPMENT)
    centra = connections.centra()
    [centra_shipment] = centra.order(order.centra_number).shipments
    return_id = centra.create_return(
        shipment_id=centra_shipment.id, lines=[(centra_shipment.lines[0].id, 1)], release_to_stock=False, currency="GBP"
    )
    assert return_sync_run().credited == 1
    credit = Link.objects.get(kind=Link.Kind.RETURN)
    order.refresh_from_db()
    return {
        "order": order,
        "reference": "JL-1",
        "centra_number": str(order.centra_number),
        "fulfil_sale_id": str(order.fulfil_id),
        "tracking_number": "JD0001",
        "fulfil_shipment_id": shipment.source_ref,
        "fulfil_shipment_number": fulfil_shipment.number,
        "centra_shipment_id": shipment.centra_id,
        "centra_return_id": str(return_id),
        "fulfil_credit_id": str(credit.fulfil_id),
    }


def trace_url(order: Link) -> str:
    return reverse("orders:trace", args=[order.pk])


def test_every_identifier_of_the_journey_finds_the_order(journey, cora, client_for):
    client = client_for(cora)
    for name, identifier in journey.items():
        if name == "order":
            continue
        response = client.get(reverse("orders:search"), {"q": identifier})
        assert response.status_code == 302, (name, identifier)
        assert response["Location"] == trace_url(journey["order"]), (name, identifier)
    # People type references in any case, with stray spaces.
    assert client.get(reverse("orders:search"), {"q": " jl-1 "})["Location"] == trace_url(journey["order"])
    assert client.get(reverse("orders:search"), {"q": "jd0001"})["Location"] == trace_url(journey["order"])


def test_the_timeline_tells_each_step_in_order_with_its_system_and_time(journey, erin, client_for):
    page = client_for(erin).get(trace_url(journey["order"])).content.decode()
    steps = [
        "Received from John Lewis",
        "Imported into Centra",
        "Acknowledged at John Lewis",
        "Paid at John Lewis",
        "Exported to Fulfil",
        f"Shipment {journey['fulfil_shipment_number']}",
        "Fully shipped",
        f"Returned (Centra return {journey['centra_return_id']})",
        "Refund credited in Fulfil",
    ]
    journey_part = page.split('<ol class="trace-steps">', 1)[1]
    positions = [journey_part.index(step) for step in steps]
    assert positions == sorted(positions)
    for fact in (
        journey["centra_number"],
        journey["fulfil_sale_id"],
        "DHL Express",
        "JD0001",
        journey["centra_shipment_id"],
        "Dispatched to John Lewis (carrier code dhl)",
        journey["fulfil_credit_id"],
        'Amount</dt><dd class="mono">30.00 GBP',
    ):
        assert fact in page, fact
    # The goods are not back from the customer yet: the return waits for the warehouse, and says so.
    assert "Not yet:</strong> Returned" in page
    assert "Waiting for the warehouse to receive and inspect the goods." in page
    assert "None: nothing about this order has failed." in page


def test_an_order_stuck_at_import_says_what_has_not_happened_and_shows_its_exception(brand, fred, client_for):
    brand("virtualstock").seed(orders=[retailer_order(101, "JL-2", skus=("NOPE-1",))])
    order_import_run()
    exception = SyncException.objects.get()
    assert exception.kind == "unmapped_sku"
    client = client_for(fred)
    response = client.get(reverse("orders:search"), {"q": "JL-2"})
    order = Link.objects.get(source_ref="JL-2")
    assert response["Location"] == trace_url(order)
    page = client.get(response["Location"]).content.decode()
    assert (
        "Not yet:</strong> Imported into Centra · Acknowledged at John Lewis · Exported to Fulfil · Fully shipped"
        in (page)
    )
    assert f"Centra order number {order.centra_number} is reserved for it." in page
    assert reverse("exceptions:detail", args=[exception.pk]) in page
    assert "1 open exception" in page
    # The exception is shown at the step it holds up, before the next step, and again in the list of exceptions.
    journey_part = page.split('<ol class="trace-steps">', 1)[1]
    title = escape(exception.title)
    assert journey_part.index("Imported into Centra") < journey_part.index(title)
    assert journey_part.index(title) < journey_part.index("Acknowledged at John Lewis")
    assert page.count(title) == 2


def test_a_web_order_waiting_for_its_capture_shows_it(erin, client_for):
    order = Link.objects.create(
        kind=Link.Kind.ORDER,
        source_system="centra",
        source_ref="1000",
        centra_number=1000,
        detail={"waiting": "capture"},
    )
    page = client_for(erin).get(trace_url(order)).content.decode()
    assert "Centra order 1000" in page and "Placed in Centra" in page
    assert "Centra has not captured the payment yet" in page
    assert "Not yet:</strong> Payment captured · Exported to Fulfil · Fully shipped" in page
    assert "Received from" not in page and "Imported into Centra" not in page


def test_a_cancelled_order_says_what_was_cancelled_where(erin, client_for):
    channel = Channel.objects.create(code="zalando", name="Zalando", system="marketplace", centra_market_id=2)
    order = Link.objects.create(
        kind=Link.Kind.ORDER,
        source_system="zalando",
        source_ref="MP-7",
        source_id="MP-7",
        channel=channel,
        centra_number=900007,
        fulfil_id=55,
        detail={
            "cancelled": True,
            "cancellations": {
                "fulfil": [{"at": "2026-03-02T10:00:00+00:00", "sale": "SO1044", "did": "cancelled the sale"}],
                "marketplace": [
                    {
                        "at": "2026-03-02T10:00:01+00:00",
                        "line": "L1",
                        "sku": "Z-TEE",
                        "quantity": 2,
                        "did": "cancel_line",
                    }
                ],
                "handled": {"11": 2},
            },
        },
    )
    page = client_for(erin).get(trace_url(order)).content.decode()
    assert "Fulfil: cancelled the sale SO1044" in page
    assert "Marketplace: cancelled 2 × Z-TEE" in page
    assert "Cancelled before it reached Fulfil." not in page  # it had: the sale was cancelled there
    assert "Fully shipped" in page and "Not needed" in page
    assert "Fully shipped" not in page.split("Not yet:", 1)[1].split("</p>", 1)[0]


def test_a_shipment_or_return_link_opens_its_order(cora, client_for):
    order = Link.objects.create(kind=Link.Kind.ORDER, source_system="centra", source_ref="1001", centra_number=1001)
    shipment = Link.objects.create(kind=Link.Kind.SHIPMENT, source_system="fulfil", source_ref="7", order=order)
    response = client_for(cora).get(trace_url(shipment))
    assert (response.status_code, response["Location"]) == (302, trace_url(order))


def test_orders_sharing_a_reference_are_listed_with_what_matched(cora, client_for):
    for code, name in (("john-lewis", "John Lewis"), ("next", "Next")):
        channel = Channel.objects.create(code=code, name=name, system="virtualstock")
        Link.objects.create(kind=Link.Kind.ORDER, source_system=code, source_ref="A-1", channel=channel)
    response = client_for(cora).get(reverse("orders:search"), {"q": "a-1"})
    page = response.content.decode()
    assert response.status_code == 200
    assert "John Lewis" in page and "Next" in page and page.count("order reference") == 2


def test_a_tracking_number_finds_the_order_of_its_parcel_with_what_matched(cora, client_for):
    order = Link.objects.create(kind=Link.Kind.ORDER, source_system="centra", source_ref="1002", centra_number=1002)
    other = Link.objects.create(kind=Link.Kind.ORDER, source_system="centra", source_ref="1003", centra_number=1003)
    for link_order, ref in ((order, "8"), (other, "9")):
        parcel = Link.objects.create(
            kind=Link.Kind.SHIPMENT, source_system="fulfil", source_ref=ref, source_id=f"CS{ref}", order=link_order
        )
        link_identifiers_record(parcel, tracking_number="1Z999", shipment_number=f"CS{ref}")
    page = client_for(cora).get(reverse("orders:search"), {"q": "1z999"}).content.decode()
    assert "tracking number of shipment CS8" in page and "tracking number of shipment CS9" in page


def test_recording_an_identifier_twice_keeps_one_row_and_notes_it_on_the_link(db):
    order = Link.objects.create(kind=Link.Kind.ORDER, source_system="centra", source_ref="1004", centra_number=1004)
    parcel = Link.objects.create(kind=Link.Kind.SHIPMENT, source_system="fulfil", source_ref="10", order=order)
    link_identifiers_record(parcel, tracking_number=" JD77 ", carrier="DHL", carrier_service=None)
    link_identifiers_record(parcel, tracking_number="JD77", carrier="DHL")
    assert list(LinkRef.objects.values_list("ref", "what")) == [("jd77", "tracking_number")]
    parcel.refresh_from_db()
    assert parcel.detail == {"tracking_number": "JD77", "carrier": "DHL"}


def test_nothing_found_points_to_the_exceptions_that_mention_it(brand, cora, client_for, settings):
    # An order from a retailer no channel is set up for never gets a link, only an exception.
    brand("virtualstock").seed(orders=[retailer_order(102, "NX-9") | {"retailer": {"id": 9, "name": "Nowhere"}}])
    Channel.objects.create(code="other", name="Other", system="virtualstock", external_account="Other")
    order_import_run()
    assert not Link.objects.filter(source_ref="NX-9").exists()
    page = client_for(cora).get(reverse("orders:search"), {"q": "NX-9"}).content.decode()
    assert "No order is known by" in page
    assert "1 exception mentions it" in page
    assert reverse("exceptions:queue") + "?q=NX-9&amp;status=all" in page


def test_the_search_costs_the_same_few_queries_however_many_orders_there_are(
    cora, client_for, django_assert_num_queries
):
    def orders(count: int, start: int) -> None:
        Link.objects.bulk_create(
            Link(kind=Link.Kind.ORDER, source_system="centra", source_ref=str(n), centra_number=n)
            for n in range(start, start + count)
        )

    orders(3, 5000)
    client = client_for(cora)
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("orders:search"), {"q": "A-404"})
    orders(500, 6000)
    with django_assert_num_queries(len(few.captured_queries)):
        client.get(reverse("orders:search"), {"q": "A-404"})


def test_the_trace_costs_the_same_queries_however_many_shipments_the_order_has(
    cora, client_for, django_assert_num_queries
):
    order = Link.objects.create(kind=Link.Kind.ORDER, source_system="centra", source_ref="1005", centra_number=1005)
    client = client_for(cora)

    def parcels(count: int, start: int) -> None:
        for n in range(start, start + count):
            parcel = Link.objects.create(
                kind=Link.Kind.SHIPMENT, source_system="fulfil", source_ref=str(n), order=order
            )
            link_identifiers_record(parcel, tracking_number=f"T{n}", synced_at="2026-03-01T10:00:00+00:00")

    parcels(1, 1)
    with CaptureQueriesContext(connection) as few:
        client.get(trace_url(order))
    parcels(10, 100)
    with django_assert_num_queries(len(few.captured_queries)):
        assert client.get(trace_url(order)).status_code == 200


def test_the_pages_need_a_login_and_only_read():
    client = Client()
    for url in (reverse("orders:search"), reverse("orders:trace", args=[1])):
        response = client.get(url)
        assert response.status_code == 302 and "login" in response["Location"]


def test_the_pages_refuse_other_methods(cora, client_for):
    order = Link.objects.create(kind=Link.Kind.ORDER, source_system="centra", source_ref="1006", centra_number=1006)
    client = client_for(cora)
    assert client.post(reverse("orders:search"), {"q": "1006"}).status_code == 405
    assert client.post(trace_url(order)).status_code == 405
    assert client.get(reverse("orders:trace", args=[order.pk + 1000])).status_code == 404


@pytest.mark.parametrize("person", ["ada", "erin", "fred", "cora", "olga"])
def test_every_role_finds_orders_and_the_sidebar_leads_there(person, request, client_for):
    page = client_for(request.getfixturevalue(person)).get(reverse("orders:search")).content.decode()
    assert f'<a href="{reverse("orders:search")}" aria-current="page">Orders</a>' in page
    assert f'<a href="{reverse("runs:list")}">Runs</a>' in page


def test_an_exception_resolved_later_still_shows_on_the_way(brand, cora, client_for):
    brand("virtualstock").seed(orders=[retailer_order(103, "JL-3", skus=("TEE100BLKS", "NOPE-2"))])
    order_import_run()
    SkuMapping.objects.filter(centra_sku="TEE100BLKM").update(external_code="NOPE-2")
    order_import_run()
    exception = SyncException.objects.get()
    assert exception.status == Status.RESOLVED
    page = client_for(cora).get(trace_url(Link.objects.get(source_ref="JL-3"))).content.decode()
    assert escape(exception.title) in page and "Resolved" in page
    assert "open exception" not in page


def test_a_cancellation_that_could_not_be_carried_waits_with_its_exception(erin, client_for):
    order = Link.objects.create(
        kind=Link.Kind.ORDER, source_system="centra", source_ref="1007", centra_number=1007, fulfil_id=77
    )
    exception = failure_record(
        flow="order_cancel",
        object_type="order",
        object_ref="centra:1007",
        error=CancellationBlocked("Sale SO77 is already processing in Fulfil", system="fulfil", operation="cancel"),
        title="Centra order 1007: its cancellation could not be carried everywhere",
        refs=["1007"],
    )
    page = client_for(erin).get(trace_url(order)).content.decode()
    assert "Cancellation carried everywhere" in page.split("Not yet:", 1)[1].split("</p>", 1)[0]
    journey_part = page.split('<ol class="trace-steps">', 1)[1]
    assert journey_part.index("Cancellation carried everywhere") < journey_part.index(escape(exception.title))
