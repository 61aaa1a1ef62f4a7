"""Order cancellations, Centra → Fulfil, the order's source and the stock, end to end against the sandbox over HTTP."""

from decimal import Decimal

import pytest
import requests
from django_q.models import OrmQ

from exceptions.models import Status, SyncException
from exceptions.services import exception_run_retry
from mappings.models import Channel, MarketMapping, ShippingMethodMapping, SkuMapping
from syncs import connections
from syncs.flows.order_cancel import FLOW, order_cancel_run
from syncs.flows.order_export import order_export_run
from syncs.flows.order_import import order_import_run
from syncs.models import Link
from syncs.tests.test_order_export import (  # noqa: F401 - the fixture is used by name
    fulfil_sales,
    main_warehouse,
    map_europe,
    sale_of,
    shop,
    web_order,
)
from syncs.tests.test_order_import import marketplace_order, vs_order


def cancel_in_centra(number: int, sku: str, quantity: int | None = None) -> None:
    """Someone cancels units of a line in Centra (all of them when ``quantity`` is None)."""
    order = connections.centra().order(number)
    line = next(line for line in order.lines if line.sku == sku)
    connections.centra().cancel_lines(number, [(line.id, quantity or line.quantity)])


def cancel_everything_in_centra(number: int) -> None:
    order = connections.centra().order(number)
    connections.centra().cancel_lines(number, [(line.id, line.quantity) for line in order.lines if line.quantity])


def stock_pushes() -> list[list[str]]:
    return [task.task["args"][0] for task in OrmQ.objects.all() if task.task["func"] == "syncs.tasks.stock_push_skus"]


@pytest.fixture
def waiting_fulfil(shop):  # noqa: F811 - the fixture imported above
    """Fulfil processes confirmed sales later, as a scheduled job does: a sale stays confirmed for a while."""
    shop("fulfil").seed(config={"process_on_confirm": False})
    map_europe()
    return shop


@pytest.mark.django_db
def test_a_cancelled_order_cancels_its_sale_in_fulfil_once_and_releases_its_stock(
    waiting_fulfil, django_capture_on_commit_callbacks
):
    waiting_fulfil("centra").seed(orders=[web_order(2001)])
    order_export_run()
    cancel_everything_in_centra(2001)
    assert connections.centra().order(2001).status == "CANCELLED"
    with django_capture_on_commit_callbacks(execute=True):
        summary = order_cancel_run()
    assert (summary.examined, summary.applied, summary.failed) == (1, 1, 0)
    assert sale_of(2001).state == "cancelled"
    link = Link.objects.get(centra_number=2001)
    assert link.detail["cancelled"] is True
    assert [entry["did"] for entry in link.detail["cancellations"]["fulfil"]] == ["cancelled the sale"]
    assert stock_pushes() == [["HOOD200NVYM", "TEE100BLKS"]]
    # Run again (or delivered twice): nothing is sent a second time.
    with django_capture_on_commit_callbacks(execute=True):
        again = order_cancel_run()
    assert (again.applied, again.already_handled) == (0, 1)
    assert waiting_fulfil("fulfil").operations().count("sale.sale.cancel") == 1
    assert len(stock_pushes()) == 1


@pytest.mark.django_db
def test_a_partly_cancelled_line_leaves_the_sale_with_centra_s_new_total(waiting_fulfil):
    waiting_fulfil("centra").seed(orders=[web_order(2002)])
    order_export_run()
    cancel_in_centra(2002, "TEE100BLKS", 1)
    order_cancel_run()
    order = connections.centra().order(2002)
    sale = sale_of(2002)
    assert sale.total_amount == order.grand_total == Decimal("118.83")
    goods = sorted((line.product_code, line.quantity) for line in sale.lines if line.type == "line")
    assert goods == [("HOOD200NVYM", 1), ("TEE100BLKS", 2)]
    assert sale.state == "confirmed"  # back where it was
    order_cancel_run()
    assert waiting_fulfil("fulfil").operations().count("sale.sale.write") == 1


@pytest.mark.django_db
def test_an_order_cancelled_before_export_is_never_exported(waiting_fulfil):
    waiting_fulfil("centra").seed(orders=[web_order(2003)])
    cancel_in_centra(2003, "TEE100BLKS", 1)
    order_cancel_run()
    order_export_run()
    goods = sorted((line.product_code, line.quantity) for line in sale_of(2003).lines if line.type == "line")
    assert goods == [("HOOD200NVYM", 1), ("TEE100BLKS", 2)]
    cancel_everything_in_centra(2003)
    waiting_fulfil("centra").seed(orders=[web_order(2004)])
    cancel_everything_in_centra(2004)
    order_cancel_run()
    order_export_run()
    assert sale_of(2003).state == "cancelled"
    assert len(fulfil_sales(waiting_fulfil)) == 1  # 2004 never reached Fulfil
    assert Link.objects.get(centra_number=2004).detail["cancelled"] is True


@pytest.mark.django_db
def test_a_sale_the_warehouse_has_started_cannot_change_and_a_person_is_told(shop):  # noqa: F811
    map_europe()  # Fulfil processes a sale the moment it is confirmed: its shipment exists
    shop("centra").seed(orders=[web_order(2005)])
    order_export_run()
    assert sale_of(2005).state == "processing"
    cancel_everything_in_centra(2005)
    summary = order_cancel_run()
    assert summary.failed == 1
    exception = SyncException.objects.get(flow=FLOW)
    assert exception.object_ref == "centra:2005"
    assert "already processing in Fulfil" in exception.message
    assert (exception.kind, exception.team) == ("cancellation_blocked", "operations")
    assert sale_of(2005).state == "processing"
    assert "handled" not in Link.objects.get(centra_number=2005).detail["cancellations"]


@pytest.fixture
def zalando(waiting_fulfil, settings):
    """Orders from a marketplace are imported into Centra's Europe market, then exported to Fulfil."""
    settings.STOCK_MASTER = "fulfil"
    Channel.objects.create(code="zalando", name="Zalando", system="marketplace", centra_market_id=2)
    ShippingMethodMapping.objects.create(
        system="marketplace", source_method="STANDARD", centra_shipping_option="standard"
    )
    SkuMapping.objects.create(system="marketplace", centra_sku="TEE100BLKS", external_code="MP-TEE-S")
    return waiting_fulfil


@pytest.mark.django_db
def test_a_cancellation_reaches_the_marketplace_once(zalando):
    zalando("marketplace").seed(orders=[marketplace_order("MP-1", quantity=3)])
    order_import_run()
    number = Link.objects.get(source_ref="MP-1").centra_number
    assert order_export_run().exported == 1
    cancel_in_centra(number, "TEE100BLKS", 1)
    assert order_cancel_run().applied == 1
    order_cancel_run()
    [line] = zalando("marketplace").state()["orders"]["MP-1"]["lines"]
    assert (line["quantity"], line["cancelled_quantity"]) == (3, 1)
    assert zalando("marketplace").operations().count("line_cancel") == 1
    sale = sale_of(number)
    assert sale.total_amount == connections.centra().order(number).grand_total == Decimal("54.95")
    ledger = Link.objects.get(source_ref="MP-1").detail["cancellations"]
    assert [(entry["line"], entry["quantity"]) for entry in ledger["marketplace"]] == [("MP-1-1", 1)]


@pytest.mark.django_db
def test_what_the_customer_cancelled_on_the_marketplace_is_not_cancelled_there_again(zalando):
    zalando("marketplace").seed(orders=[marketplace_order("MP-2", quantity=2)])
    order_import_run()
    number = Link.objects.get(source_ref="MP-2").centra_number
    # The customer cancels one unit on the marketplace; the brand then cancels it in Centra too.
    customer_cancel = f"{zalando('marketplace').url}/_sandbox/customer-cancel"
    requests.post(customer_cancel, json={"order_id": "MP-2", "line_id": "MP-2-1", "quantity": 1}, timeout=10)
    cancel_in_centra(number, "TEE100BLKS", 1)
    order_cancel_run()
    assert "line_cancel" not in zalando("marketplace").operations()
    assert zalando("marketplace").state()["orders"]["MP-2"]["lines"][0]["cancelled_quantity"] == 1


@pytest.fixture
def john_lewis(waiting_fulfil, settings):
    """Orders John Lewis relays through Virtualstock are imported into Centra's UK market."""
    settings.STOCK_MASTER = "fulfil"
    Channel.objects.create(code="john-lewis", name="John Lewis", system="virtualstock", centra_market_id=3)
    ShippingMethodMapping.objects.create(
        system="virtualstock", source_method="standard", centra_shipping_option="standard"
    )
    SkuMapping.objects.create(system="virtualstock", centra_sku="TEE100BLKS", external_code="TEE100BLKS")
    MarketMapping.objects.create(
        centra_store_id=1,
        centra_market_id=3,
        currency="GBP",
        fulfil_channel_id=2,
        fulfil_warehouse_id=main_warehouse(),
    )
    return waiting_fulfil


@pytest.mark.django_db
def test_a_retailer_s_cancellation_is_acknowledged_at_virtualstock_once(john_lewis):
    john_lewis("virtualstock").seed(orders=[vs_order(100, "JL-1")])
    order_import_run()
    number = Link.objects.get(source_ref="JL-1").centra_number
    assert order_export_run().exported == 1
    # John Lewis asks to cancel the line; the brand cancels it in Centra.
    requested = vs_order(100, "JL-1")
    requested["status"] = "CANCEL"
    john_lewis("virtualstock").seed(orders=[requested])
    cancel_everything_in_centra(number)
    assert order_cancel_run().applied == 1
    order_cancel_run()
    assert john_lewis("virtualstock").state()["orders"]["100"]["items"][0]["status"] == "CANCEL_ACK"
    assert john_lewis("virtualstock").operations().count("cancel_acknowledge") == 1
    assert sale_of(number).state == "cancelled"


@pytest.mark.django_db
def test_a_cancellation_virtualstock_cannot_take_is_a_person_s_and_the_retry_sends_it_once_asked(john_lewis):
    john_lewis("virtualstock").seed(orders=[vs_order(101, "JL-2")])
    order_import_run()
    number = Link.objects.get(source_ref="JL-2").centra_number
    order_export_run()
    cancel_everything_in_centra(number)  # the brand cancels; John Lewis has not asked
    order_cancel_run()
    exception = SyncException.objects.get(flow=FLOW)
    assert "ask John Lewis to cancel them" in exception.message
    assert exception.kind == "cancellation_blocked"
    assert sale_of(number).state == "cancelled"  # Fulfil did not wait for Virtualstock
    requested = vs_order(101, "JL-2")
    requested["status"] = "CANCEL"
    john_lewis("virtualstock").seed(orders=[requested])
    SyncException.objects.filter(pk=exception.pk).update(status=Status.RETRYING)
    assert exception_run_retry(exception_id=exception.pk) is True
    assert john_lewis("virtualstock").state()["orders"]["101"]["items"][0]["status"] == "CANCEL_ACK"
    assert john_lewis("fulfil").operations().count("sale.sale.cancel") == 1
