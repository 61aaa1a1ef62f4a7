"""Order export, Centra → Fulfil, end to end against the sandbox over HTTP."""

import time
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from django.db import connection
from django.utils import timezone

from exceptions.models import ExceptionEvent, Status, SyncException
from exceptions.services import exception_run_retry
from mappings.models import Bundle, BundleComponent, MarketMapping
from syncs import connections
from syncs.flows.order_export import FLOW, order_export_run
from syncs.models import Link, SyncRun
from syncs.runs import run_flow

PRODUCTS = [
    {
        "name": "Organic Cotton Tee",
        "productNumber": "TEE100",
        "prices": {"2": "29.99"},
        "variants": [
            {
                "name": "Black",
                "variantNumber": "BLK",
                "sizes": [{"sizeNumber": "S", "name": "S", "stock": {"1": 20}}, {"sizeNumber": "M", "name": "M"}],
            }
        ],
    },
    {
        "name": "Loopback Hoodie",
        "productNumber": "HOOD200",
        "prices": {"2": "59.90"},
        "variants": [{"name": "Navy", "variantNumber": "NVY", "sizes": [{"sizeNumber": "M", "name": "M"}]}],
    },
    {
        "name": "Gift Set",
        "productNumber": "GIFT",
        "prices": {"2": "100.00"},
        "variants": [{"name": "Set", "variantNumber": "SET", "sizes": [{"sizeNumber": "OS", "name": "OS"}]}],
    },
]
FULFIL_PRODUCTS = [
    {"code": "TEE100BLKS", "name": "Organic Cotton Tee", "quantity_on_hand": 20},
    {"code": "TEE100BLKM", "name": "Organic Cotton Tee", "quantity_on_hand": 20},
    {"code": "HOOD200NVYM", "name": "Loopback Hoodie", "quantity_on_hand": 20},
]
ALVA = {
    "email": "alva@example.com",
    "first_name": "Alva",
    "last_name": "Lind",
    "address1": "Hauptstraße 1",
    "city": "Berlin",
    "zipcode": "10115",
    "country": "DE",
    "phone": "+49 30 123456",
}


def web_order(number: int, lines: list[dict] | None = None, **values) -> dict:
    """A Centra web order in the Europe market (EUR, 19% VAT included in its prices)."""
    return {
        "number": number,
        "status": "CONFIRMED",
        "marketId": 2,
        "storeId": 1,
        "customer": ALVA,
        "shipping": "4.95",
        "shippingOption": "Standard",
        "captured": True,
        "lines": lines
        or [
            {"sku": "TEE100BLKS", "quantity": 3, "unitPrice": "29.99", "discount": "3.00", "taxPercent": "19"},
            {"sku": "HOOD200NVYM", "quantity": 1, "unitPrice": "59.90", "taxPercent": "19"},
        ],
        **values,
    }


def main_warehouse() -> int:
    return next(warehouse.id for warehouse in connections.fulfil().warehouses() if warehouse.code == "MAIN")


def map_europe() -> MarketMapping:
    return MarketMapping.objects.create(
        centra_store_id=1,
        centra_market_id=2,
        label="Retail Europe",
        currency="EUR",
        fulfil_channel_id=1,
        fulfil_warehouse_id=main_warehouse(),
    )


@pytest.fixture
def shop(connected, control, settings):
    """A brand selling in Centra's Europe market, with its products in Fulfil under the same codes."""
    settings.SKU_SAME_AS_CENTRA = ["fulfil", "inventory_planner"]
    settings.ORDER_EXPORT_STATUSES = ["CONFIRMED", "PROCESSING", "SHIPPED"]
    settings.ORDER_EXPORT_REQUIRE_CAPTURE = True
    settings.PAYMENT_CAPTURE_LAG_MINUTES = 60
    settings.ORDER_EXPORT_SINCE = ""
    control("centra").seed(products=PRODUCTS)
    control("fulfil").seed(products=FULFIL_PRODUCTS)
    return control


def capture(control, number: int) -> None:
    """The payment provider settles the order's pending capture."""
    response = requests.post(f"{control('centra').url}/_sandbox/capture", json={"number": number}, timeout=10)
    response.raise_for_status()


def fulfil_sales(control) -> list[dict]:
    return list(control("fulfil").state()["records"]["sale.sale"].values())


def sale_of(number: int):
    sale = connections.fulfil().sale_by_reference(str(number), with_lines=True)
    assert sale is not None, f"no sale for {number}"
    return sale


@pytest.mark.django_db
def test_an_exported_sale_carries_centra_s_money_to_the_cent(shop):
    map_europe()
    shop("centra").seed(orders=[web_order(1001)])
    summary = order_export_run()
    assert (summary.examined, summary.exported, summary.failed) == (1, 1, 0)
    order = connections.centra().order(1001)
    sale = sale_of(1001)
    # What the customer paid, to the cent: discounted lines, shipping, tax included as Centra computed it.
    assert sale.total_amount == order.grand_total == Decimal("145.82")
    assert (sale.untaxed_amount, sale.tax_amount) == (Decimal("145.82"), Decimal("0"))
    goods = sorted((line.product_code, line.quantity, line.unit_price) for line in sale.lines if line.type == "line")
    assert goods == [("HOOD200NVYM", 1, Decimal("59.90")), ("TEE100BLKS", 3, Decimal("26.99"))]
    assert sum(line.amount for line in sale.lines if line.type == "line") == order.line_values - order.discounts
    [shipping] = [line for line in sale.lines if line.type == "shipping"]
    assert shipping.amount == order.shipping == Decimal("4.95")
    assert (sale.channel_id, sale.warehouse_id, sale.currency_code) == (1, main_warehouse(), "EUR")
    assert sale.state in ("confirmed", "processing")
    record = shop("fulfil").state()["records"]["sale.sale"][str(sale.id)]
    assert f"{order.tax_included} EUR of tax in 145.82" in record["comment"]
    party = shop("fulfil").state()["records"]["party.party"][str(sale.party_id)]
    assert party["name"] == "Alva Lind"
    link = Link.objects.get(centra_number=1001)
    assert (link.source_system, link.source_ref, link.fulfil_id) == ("centra", "1001", sale.id)
    assert link.exported_at is not None
    assert not SyncException.objects.exists()


@pytest.mark.django_db
def test_a_new_customer_s_order_is_exported_in_ten_fulfil_calls(shop):
    map_europe()
    shop("centra").seed(orders=[web_order(1001)])
    order_export_run()  # the worker has met the currency and the country: it remembers their ids
    bo = {**ALVA, "email": "bo@example.com", "first_name": "Bo", "address1": "Torstraße 9"}
    shop("centra").seed(orders=[web_order(1002, customer=bo)])
    requests.post(f"{shop('fulfil').url}/_sandbox/calls/clear", timeout=10).raise_for_status()
    assert order_export_run().exported == 1
    assert shop("fulfil").operations() == [
        "product.product.search_read",  # the SKUs' Fulfil codes exist; their ids go on to the create
        "sale.sale.search_read",  # no sale for the order yet
        "party.contact_mechanism.search_read",  # no party with Bo's e-mail
        "party.party.create",  # Bo, her e-mail, phone and address in one create
        "party.address.search_read",  # the new address's id
        "sale.sale.create",
        "sale.sale.search_read",  # Fulfil's total, without the lines it was just given
        "sale.sale.quote",
        "sale.sale.confirm",
        "sale.sale.search_read",  # confirmed, or refused
    ]
    sale = sale_of(1002)
    assert sale.total_amount == Decimal("145.82") and sale.state in ("confirmed", "processing")
    records = shop("fulfil").state()["records"]
    party = records["party.party"][str(sale.party_id)]
    assert party["name"] == "Bo Lind"
    [address] = [row for row in records["party.address"].values() if row["party"] == sale.party_id]
    assert address["street"] == "Torstraße 9"
    assert records["sale.sale"][str(sale.id)]["shipment_address"] == address["id"]


@pytest.mark.django_db
def test_exporting_twice_or_with_the_link_lost_makes_one_sale(shop):
    map_europe()
    shop("centra").seed(orders=[web_order(1002)])
    order_export_run()
    summary = order_export_run()
    assert (summary.exported, summary.already_exported) == (0, 1)
    # As if the worker died after Fulfil made the sale and before the link recorded it.
    Link.objects.filter(centra_number=1002).update(fulfil_id=None, exported_at=None)
    assert order_export_run().exported == 1
    Link.objects.all().delete()
    assert order_export_run().exported == 1
    assert len(fulfil_sales(shop)) == 1
    assert shop("fulfil").operations().count("sale.sale.create") == 1
    assert Link.objects.get().fulfil_id == sale_of(1002).id


@pytest.mark.django_db
def test_a_bundle_line_is_exploded_into_components_that_add_up_exactly_to_its_price(shop):
    map_europe()
    bundle = Bundle.objects.create(bundle_sku="GIFTSETOS", name="Gift set")
    for sku, share in (("TEE100BLKS", "33.3333"), ("TEE100BLKM", "33.3333"), ("HOOD200NVYM", "33.3334")):
        BundleComponent.objects.create(bundle=bundle, component_sku=sku, quantity=1, price_share=Decimal(share))
    shop("centra").seed(
        orders=[web_order(1003, [{"sku": "GIFTSETOS", "quantity": 1, "unitPrice": "100.00", "taxPercent": "19"}])]
    )
    assert order_export_run().exported == 1
    sale = sale_of(1003)
    goods = sorted((line.product_code, line.quantity, line.unit_price) for line in sale.lines if line.type == "line")
    assert goods == [
        ("HOOD200NVYM", 1, Decimal("33.34")),
        ("TEE100BLKM", 1, Decimal("33.33")),
        ("TEE100BLKS", 1, Decimal("33.33")),
    ]
    assert sum(line.amount for line in sale.lines if line.type == "line") == Decimal("100.00")
    assert sale.total_amount == connections.centra().order(1003).grand_total == Decimal("104.95")


@pytest.mark.django_db
def test_units_that_do_not_share_a_price_evenly_go_on_two_lines_a_cent_apart(shop):
    map_europe()
    bundle = Bundle.objects.create(bundle_sku="GIFTSETOS", name="Gift set")
    BundleComponent.objects.create(bundle=bundle, component_sku="TEE100BLKS", quantity=3, price_share=Decimal(100))
    shop("centra").seed(
        orders=[web_order(1004, [{"sku": "GIFTSETOS", "quantity": 1, "unitPrice": "100.00", "taxPercent": "19"}])]
    )
    order_export_run()
    goods = sorted((line.quantity, line.unit_price) for line in sale_of(1004).lines if line.type == "line")
    assert goods == [(1, Decimal("33.34")), (2, Decimal("33.33"))]


@pytest.mark.django_db
def test_a_one_cent_mismatch_is_a_totals_mismatch_and_nothing_is_posted(shop):
    map_europe()
    # Half-cent prices: Centra rounds each line up, but the grand total once, so the lines add up to a cent more.
    lines = [
        {"sku": "TEE100BLKS", "quantity": 1, "unitPrice": "10.005", "taxPercent": "19"},
        {"sku": "TEE100BLKM", "quantity": 1, "unitPrice": "10.005", "taxPercent": "19"},
    ]
    shop("centra").seed(orders=[web_order(1005, lines)])
    summary = order_export_run()
    assert (summary.exported, summary.failed) == (0, 1)
    exception = SyncException.objects.get()
    assert (exception.kind, exception.team, exception.object_ref) == ("totals_mismatch", "finance", "centra:1005")
    assert "come to 24.97 EUR, but its grand total is 24.96" in exception.message
    assert exception.payload["totals"]["grand total"] == "24.96"
    assert "sale.sale.create" not in shop("fulfil").operations()
    assert fulfil_sales(shop) == []
    assert Link.objects.get(centra_number=1005).exported_at is None


@pytest.mark.django_db
def test_an_unmapped_sku_names_the_centra_sku_and_posts_nothing(shop):
    map_europe()
    shop("centra").seed(
        orders=[web_order(1006, [{"sku": "GIFTSETOS", "quantity": 1, "unitPrice": "100.00", "taxPercent": "19"}])]
    )
    order_export_run()
    exception = SyncException.objects.get()
    assert (exception.kind, exception.mapping_key) == ("unmapped_sku", {"centra_sku": "GIFTSETOS"})
    assert "sale.sale.create" not in shop("fulfil").operations()


@pytest.mark.django_db
def test_a_failed_create_is_retried_from_the_queue_into_one_sale(shop):
    map_europe()
    shop("centra").seed(orders=[web_order(1007)])
    shop("fulfil").faults(error_rate=1.0, error_status=503, fail_operations=["sale.sale.create"])
    order_export_run()
    exception = SyncException.objects.get()
    assert (exception.kind, exception.status, exception.flow) == ("api_unavailable", Status.RETRYING, FLOW)
    shop("fulfil").faults()
    assert exception_run_retry(exception_id=exception.pk) is True
    exception.refresh_from_db()
    assert exception.status == Status.RESOLVED
    assert len(fulfil_sales(shop)) == 1
    assert Link.objects.get(centra_number=1007).exported_at is not None


@pytest.mark.django_db
def test_an_uncaptured_order_waits_raises_capture_lag_once_and_exports_when_captured(shop, settings):
    map_europe()
    shop("centra").seed(orders=[web_order(1008, captured=False)])
    summary = order_export_run()
    assert (summary.waiting_capture, summary.exported, summary.failed) == (1, 0, 0)
    # Made on first sight, so the order's age can be measured; waiting on finance's side, not stalled.
    link = Link.objects.get(centra_number=1008)
    assert link.detail["waiting"] == "capture" and link.exported_at is None
    assert not SyncException.objects.exists()

    settings.PAYMENT_CAPTURE_LAG_MINUTES = 0  # the agreed wait has passed
    order_export_run()
    order_export_run()
    exception = SyncException.objects.get()
    assert (exception.kind, exception.team, exception.status) == ("payment_capture_lag", "finance", Status.OPEN)
    assert exception.occurrences == 2
    assert exception.value == Decimal("145.82")
    assert fulfil_sales(shop) == []

    capture(shop, 1008)
    summary = order_export_run()
    assert (summary.exported, summary.waiting_capture) == (1, 0)
    exception.refresh_from_db()
    assert exception.status == Status.RESOLVED
    link.refresh_from_db()
    assert "waiting" not in link.detail and link.exported_at is not None
    assert len(fulfil_sales(shop)) == 1


@pytest.mark.django_db
def test_orders_waiting_for_capture_are_looked_at_again_whatever_the_cursor(shop, settings):
    map_europe()
    placed = (timezone.now() - timedelta(hours=3)).isoformat()
    shop("centra").seed(orders=[web_order(1009, captured=False, createdAt=placed)])
    run = run_flow(flow=FLOW, action=order_export_run, trigger="manual")
    assert run.summary["waiting_capture"] == 1 and run.summary["cursor"]
    assert SyncException.objects.get().kind == "payment_capture_lag"
    # Nothing changed in Centra since: only the waiting order is read again.
    run = run_flow(flow=FLOW, action=order_export_run, trigger="manual")
    assert (run.examined, run.summary["waiting_capture"]) == (1, 1)
    assert SyncRun.objects.filter(flow=FLOW).count() == 2


@pytest.mark.django_db
def test_a_run_starts_where_the_last_one_stopped(shop):
    map_europe()
    shop("centra").seed(orders=[web_order(1010)])
    first = run_flow(flow=FLOW, action=order_export_run, trigger="manual")
    assert first.summary["exported"] == 1
    # An order last changed long before the cursor is not read again; one changed since is.
    long_ago = (timezone.now() - timedelta(days=2)).isoformat()
    shop("centra").seed(orders=[web_order(1011, createdAt=long_ago), web_order(1012)])
    second = run_flow(flow=FLOW, action=order_export_run, trigger="manual")
    assert second.summary["exported"] == 1
    assert sorted(Link.objects.values_list("centra_number", flat=True)) == [1010, 1012]


@pytest.mark.django_db
def test_orders_not_in_an_export_status_are_left_alone(shop):
    map_europe()
    shop("centra").seed(orders=[web_order(1013, status="PENDING"), web_order(1014, status="CANCELLED")])
    assert order_export_run().examined == 0
    assert not Link.objects.exists()


@pytest.mark.django_db
def test_an_imported_order_is_exported_under_its_import_link_without_waiting_for_a_capture(shop):
    map_europe()
    link = Link.objects.create(
        kind=Link.Kind.ORDER, source_system="zalando", source_ref="MP-1", source_id="MP-1", centra_number=900001
    )
    shop("centra").seed(orders=[web_order(900001, captured=False)])
    assert order_export_run().exported == 1
    link.refresh_from_db()
    assert link.fulfil_id == sale_of(900001).id
    assert Link.objects.count() == 1


def wait_for(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError("timed out")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_an_unmapped_market_waits_and_the_new_mapping_exports_it(shop, worker_cluster, ada):
    shop("centra").seed(orders=[web_order(1020), web_order(1021)])
    order_export_run()
    exceptions = SyncException.objects.filter(kind="unmapped_market", status=Status.OPEN)
    assert exceptions.count() == 2
    assert exceptions.first().mapping_key == {"store_id": 1, "market_id": 2}
    assert exceptions.first().team == "finance"
    assert fulfil_sales(shop) == []
    mapping = MarketMapping(
        centra_store_id=1,
        centra_market_id=2,
        currency="EUR",
        fulfil_channel_id=1,
        fulfil_warehouse_id=main_warehouse(),
    )
    mapping._history_user = ada
    mapping.save()
    wait_for(lambda: not SyncException.objects.exclude(status=Status.RESOLVED).exists())
    assert len(fulfil_sales(shop)) == 2
    assert ExceptionEvent.objects.filter(action="freed_by_mapping").count() == 2
    assert Link.objects.filter(exported_at__isnull=False).count() == 2
    connection.close()


def customer(n: int) -> dict:
    return {**ALVA, "email": f"customer{n}@example.com", "first_name": f"Kund{n}", "address1": f"Torstraße {n}"}


@pytest.mark.django_db
def test_a_chunk_of_orders_is_exported_together_in_ten_fulfil_calls(shop):
    map_europe()
    shop("centra").seed(orders=[web_order(1001)])
    order_export_run()  # Alva is a customer now; the worker has met the currency and the country
    # Thirty orders: Alva twice to her new address, fourteen new customers each ordering twice, and one more.
    moved = {**ALVA, "address1": "Neue Straße 5"}
    orders = [web_order(1100, customer=moved)] + [web_order(1101 + n, customer=customer(n // 2)) for n in range(27)]
    orders.append(web_order(1128, customer=moved))
    orders.append(
        web_order(1129, customer=customer(99), lines=[{"sku": "TEE100BLKM", "quantity": 2, "unitPrice": "29.99"}])
    )
    shop("centra").seed(orders=orders)
    requests.post(f"{shop('fulfil').url}/_sandbox/calls/clear", timeout=10).raise_for_status()

    summary = order_export_run()

    assert (summary.examined, summary.exported, summary.already_exported, summary.failed) == (31, 30, 1, 0)
    assert shop("fulfil").operations() == [
        "product.product.search_read",  # every SKU of the chunk
        "sale.sale.search_read",  # no sale yet for any of its orders
        "party.contact_mechanism.search_read",  # Alva is known, the others are not
        "party.party.create",  # fifteen new customers, each once, in one create
        "party.address.search_read",  # every party's addresses
        "party.address.create",  # Alva's new address, once
        "sale.sale.create",  # thirty sales
        "sale.sale.search_read",  # their totals
        "sale.sale.quote",
        "sale.sale.confirm",
        "sale.sale.search_read",  # their states
    ]
    records = shop("fulfil").state()["records"]
    assert len(records["party.party"]) == 16
    assert [row["street"] for row in records["party.address"].values() if row["party"] == sale_of(1001).party_id] == [
        "Hauptstraße 1",
        "Neue Straße 5",
    ]
    assert len(records["sale.sale"]) == 31
    for order in orders:
        sale = sale_of(order["number"])
        assert sale.state in ("confirmed", "processing")
        assert sale.total_amount == (Decimal("64.93") if order["number"] == 1129 else Decimal("145.82"))
    twice = [sale_of(1101), sale_of(1102)]  # one customer's two orders: one party, one address
    assert twice[0].party_id == twice[1].party_id
    assert len({records["sale.sale"][str(sale.id)]["shipment_address"] for sale in twice}) == 1
    assert sale_of(1100).party_id == sale_of(1128).party_id == sale_of(1001).party_id
    assert Link.objects.filter(exported_at__isnull=False).count() == 31
    assert {link.detail.get("sale_state") for link in Link.objects.all()} <= {"confirmed", "processing"}


@pytest.mark.django_db
def test_an_order_fulfil_refuses_fails_alone_and_the_rest_of_its_chunk_is_exported(shop):
    map_europe()
    # A second market whose mapping names a Fulfil channel that does not exist: Fulfil refuses its sale, and
    # with it the chunk's whole create.
    MarketMapping.objects.create(
        centra_store_id=1,
        centra_market_id=3,
        currency="GBP",
        fulfil_channel_id=999,
        fulfil_warehouse_id=main_warehouse(),
    )
    orders = [web_order(1200 + n, customer=customer(n)) for n in range(5)]
    orders[2] = web_order(1202, customer=customer(2), marketId=3)
    shop("centra").seed(orders=orders)

    summary = order_export_run()

    assert (summary.exported, summary.failed) == (4, 1)
    exception = SyncException.objects.get()
    assert exception.object_ref == "centra:1202" and exception.flow == FLOW
    assert "999" in exception.message
    numbers = sorted(int(sale["reference"]) for sale in fulfil_sales(shop))
    assert numbers == [1200, 1201, 1203, 1204]
    assert shop("fulfil").operations().count("sale.sale.create") == 1 + 5  # the chunk's, then one by one


@pytest.mark.django_db
def test_an_order_another_worker_is_exporting_is_left_to_it(shop):
    import psycopg

    from syncs.links import ORDER_LOCK_BASE

    if connection.vendor != "postgresql":
        pytest.skip("advisory locks are PostgreSQL's")
    map_europe()
    shop("centra").seed(orders=[web_order(1300, customer=customer(1)), web_order(1301, customer=customer(2))])
    busy = Link.objects.create(kind=Link.Kind.ORDER, source_system="centra", source_ref="1301", centra_number=1301)
    params = {k: v for k, v in connection.get_connection_params().items() if k != "cursor_factory"}
    with psycopg.connect(**params, autocommit=True) as other_worker:
        other_worker.execute("SELECT pg_advisory_lock(%s)", [ORDER_LOCK_BASE + busy.pk])
        summary = order_export_run()
        assert (summary.exported, summary.busy, summary.failed) == (1, 1, 0)
        assert [sale["reference"] for sale in fulfil_sales(shop)] == ["1300"]
    # That worker stopped without exporting it: the next run does.
    assert run_flow(flow=FLOW, action=order_export_run, trigger="manual").summary["exported"] == 1
    assert sorted(sale["reference"] for sale in fulfil_sales(shop)) == ["1300", "1301"]


@pytest.mark.django_db
def test_a_chunk_create_that_times_out_is_not_sent_again_until_fulfil_has_finished_it(shop, settings):
    settings.CONNECTOR_READ_TIMEOUT = 0.5
    map_europe()
    shop("centra").seed(orders=[web_order(1400 + n, customer=customer(n)) for n in range(3)])
    # Fulfil takes the create but answers after Switchyard stopped waiting: the sales land a moment later.
    shop("fulfil").faults(timeout_rate=1.0, timeout_seconds=1.5, fail_operations=["sale.sale.create"])

    summary = order_export_run()

    assert (summary.exported, summary.failed) == (0, 3)
    assert shop("fulfil").operations().count("sale.sale.create") == 1  # not sent again at once, one by one
    exceptions = SyncException.objects.order_by("object_ref")
    assert [(e.object_ref, e.kind, e.status) for e in exceptions] == [
        (f"centra:{1400 + n}", "api_unavailable", Status.RETRYING) for n in range(3)
    ]
    shop("fulfil").faults()
    wait_for(lambda: len(fulfil_sales(shop)) == 3, seconds=10)  # the timed-out create landed after all
    for exception in exceptions:
        assert exception_run_retry(exception_id=exception.pk) is True
    assert sorted(sale["reference"] for sale in fulfil_sales(shop)) == ["1400", "1401", "1402"]
    assert shop("fulfil").operations().count("sale.sale.create") == 1  # each retry found its sale
    assert all(sale["state"] in ("confirmed", "processing") for sale in fulfil_sales(shop))
    assert not SyncException.objects.exclude(status=Status.RESOLVED).exists()


@pytest.mark.django_db
def test_an_order_whose_earlier_create_may_still_land_waits_before_a_second_create(shop):
    map_europe()
    shop("centra").seed(orders=[web_order(1500)])
    # A worker sent the sale's create and died before Fulfil answered: Fulfil may still be making it.
    sent = {"sale_create_sent_at": timezone.now().isoformat()}
    link = Link.objects.create(
        kind=Link.Kind.ORDER, source_system="centra", source_ref="1500", centra_number=1500, detail=sent
    )

    assert order_export_run().exported == 0
    assert fulfil_sales(shop) == [] and not SyncException.objects.exists()

    long_ago = (timezone.now() - timedelta(minutes=2)).isoformat()
    Link.objects.filter(pk=link.pk).update(detail={"sale_create_sent_at": long_ago})
    assert order_export_run().exported == 1
    assert [sale["reference"] for sale in fulfil_sales(shop)] == ["1500"]
