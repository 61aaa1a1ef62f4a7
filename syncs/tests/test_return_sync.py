"""Returns and refunds, Centra → Fulfil credit → stock back after the warehouse's inspection, end to end against the
sandbox over HTTP."""

import time
from decimal import Decimal

import pytest
import requests

from exceptions.models import Status, SyncException
from exceptions.services import exception_run_retry
from mappings.models import Channel, SkuMapping
from syncs import connections
from syncs.flows.return_sync import FLOW, return_sync_run
from syncs.models import Link
from syncs.runs import run_flow

SMALL, MEDIUM = "TEE100BLKS", "TEE100BLKM"
TEE = {
    "name": "Organic Cotton Tee",
    "productNumber": "TEE100",
    "prices": {"3": "19.99"},
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
LINES = [(SMALL, 2, "19.99"), (MEDIUM, 1, "24.95")]


@pytest.fixture
def brand(connected, control, settings, db):
    """A web order of 2 × S and 1 × M, shipped, in Centra and in Fulfil; a marketplace selling the same tee."""
    settings.SKU_SAME_AS_CENTRA = ["fulfil", "inventory_planner"]
    settings.STOCK_MASTER = "centra"
    control("centra").seed(products=[TEE])
    control("fulfil").seed(products=[{"code": sku, "name": sku, "quantity_on_hand": 10} for sku in (SMALL, MEDIUM)])
    control("centra").seed(
        orders=[
            {
                "number": 1000,
                "marketId": 3,
                "status": "CONFIRMED",
                "shipping": "4.95",
                "lines": [{"sku": sku, "quantity": qty, "unitPrice": price} for sku, qty, price in LINES],
            }
        ]
    )
    control("fulfil").seed(
        sales=[
            {
                "reference": "1000",
                "state": "done",
                "party": {
                    "name": "Ada Lovelace",
                    "addresses": [["create", [{"street": "1 Oxford St", "city": "London", "country": 3}]]],
                },
                "lines": [{"product": sku, "quantity": qty, "unit_price": price} for sku, qty, price in LINES]
                + [{"type": "shipping", "description": "Standard", "quantity": 1, "unit_price": "4.95"}],
            }
        ]
    )
    sale_id = connections.fulfil().sale_by_reference("1000").id
    Link.objects.create(
        kind=Link.Kind.ORDER, source_system="centra", source_ref="1000", centra_number=1000, fulfil_id=sale_id
    )
    Channel.objects.create(code="zalando", name="Zalando", system="marketplace")
    SkuMapping.objects.bulk_create(
        [SkuMapping(system="marketplace", centra_sku=sku, external_code=sku) for sku in (SMALL, MEDIUM)]
    )
    control("marketplace").seed(offers=[{"sku": sku, "title": sku, "price": "19.99"} for sku in (SMALL, MEDIUM)])
    return control


def shipped_and_one_small_returned(*, return_cost: str | None = "2.50") -> int:
    """Ship the whole order in Centra; the customer sends back one S and pays a return cost. The return's id."""
    return returned(shipped(), SMALL, return_cost=return_cost)


def shipped():
    """Ship the whole order in Centra; the shipment."""
    client = connections.centra()
    order = client.order(1000)
    shipment, _ = client.create_shipment(order_number=1000, lines=[(line.id, line.quantity) for line in order.lines])
    client.complete_shipment(shipment_id=shipment.id, carrier="DHL", service="Express", tracking_number="JD1")
    return shipment


def returned(shipment, sku: str, *, return_cost: str | None = None) -> int:
    """The customer sends back one unit of ``sku`` from the shipment (paying a return cost). The return's id."""
    client = connections.centra()
    line_id = next(line.id for line in client.order(1000).lines if line.sku == sku)
    shipment_line = next(line for line in shipment.lines if line.order_line_id == line_id)
    return client.create_return(
        shipment_id=shipment.id,
        lines=[(shipment_line.id, 1)],
        release_to_stock=False,
        return_cost=Decimal(return_cost) if return_cost else None,
        currency="GBP",
    )


def centra_clock(control, *, hours: float) -> None:
    """Set Centra's clock ``hours`` from now for what it makes next (negative: in the past)."""
    url = f"{control('centra').url}/_sandbox/clock"
    requests.post(url, json={"offset_seconds": hours * 3600}, timeout=10).raise_for_status()


def cancelled_in_centra(control, return_id: int) -> None:
    """Someone in Centra's back office cancels the return."""
    url = f"{control('centra').url}/_sandbox/cancel-return"
    requests.post(url, json={"id": return_id}, timeout=10).raise_for_status()


def forget_calls(control, system: str) -> None:
    requests.post(f"{control(system).url}/_sandbox/calls/clear", timeout=10).raise_for_status()


def credits() -> list:
    client = connections.fulfil()
    return [sale for sale in map(client.sale, credit_ids()) if sale is not None]


def credit_ids() -> list[int]:
    rows = connections.fulfil().search_read("sale.sale", [["origin", "like", "sale.sale,%"]], ["origin"])
    return [row["id"] for row in rows]


def warehouse(action: str) -> None:
    """The warehouse receives the returned parcel ("receive"), or finishes inspecting it and shelves it ("done")."""
    client = connections.fulfil()
    [credit] = credits()
    client.call("stock.shipment.out.return", action, list(credit.return_shipment_ids))


def centra_physical(control, sku: str) -> int:
    state = control("centra").state()
    size = next(size for size in state["sizes"].values() if size["SKU"] == sku)
    return state["stock"][f"{size['id']}:1"]["physical"]


def marketplace_quantity(control, sku: str) -> int:
    return control("marketplace").state()["offers"][sku]["quantity"]


def test_a_partial_refund_of_one_line_makes_a_fulfil_credit_exact_to_the_cent(brand):
    return_id = shipped_and_one_small_returned()
    summary = return_sync_run()
    assert (summary.examined, summary.credited, summary.failed) == (1, 1, 0)
    [credit] = credits()
    sale = connections.fulfil().sale_by_reference("1000")
    assert credit.origin_sale_id == sale.id and credit.reference == f"centra-return-{return_id}"
    # 19.99 for the returned S, less the 2.50 return cost Centra kept: what Centra refunds, to the cent.
    assert credit.total_amount == Decimal("-17.49")
    lines = sorted((line.type, line.product_code, line.quantity, line.unit_price) for line in credit.lines)
    assert lines == [("line", SMALL, -1, Decimal("19.99")), ("shipping", None, -1, Decimal("-2.50"))]
    assert credit.state == "processing" and len(credit.return_shipment_ids) == 1
    link = Link.objects.get(kind=Link.Kind.RETURN)
    assert (link.source_ref, link.fulfil_id, link.order.centra_number) == (str(return_id), credit.id, 1000)
    assert link.detail["refund"] == "17.49" and "credit_confirmed_at" in link.detail


def test_running_twice_posts_one_credit(brand):
    shipped_and_one_small_returned()
    return_sync_run()
    summary = return_sync_run()
    assert (summary.credited, summary.awaiting_warehouse, summary.failed) == (0, 1, 0)
    assert len(credit_ids()) == 1


def test_stock_goes_back_to_the_master_only_after_the_warehouse_confirms(brand):
    shipped_and_one_small_returned()
    return_sync_run()
    assert centra_physical(brand, SMALL) == 8  # 10 less the 2 shipped: nothing back before the warehouse says so
    warehouse("receive")  # the parcel arrived; not inspected yet
    summary = return_sync_run()
    assert (summary.awaiting_warehouse, summary.stocked_in) == (1, 0)
    assert centra_physical(brand, SMALL) == 8
    assert "stock_update" not in brand("marketplace").operations()

    warehouse("done")  # inspected and back on the shelf
    summary = return_sync_run()
    assert (summary.stocked_in, summary.failed) == (1, 0)
    assert centra_physical(brand, SMALL) == 9
    assert marketplace_quantity(brand, SMALL) == 9  # the push for that SKU followed at once
    assert return_sync_run().already_synced == 1
    assert centra_physical(brand, SMALL) == 9  # never booked in twice


def test_with_fulfil_as_the_master_its_own_receipt_is_the_stock_in(brand, settings):
    settings.STOCK_MASTER = "fulfil"
    shipped_and_one_small_returned()
    return_sync_run()
    warehouse("receive")
    warehouse("done")
    assert return_sync_run().stocked_in == 1
    assert "changeStock" not in brand("centra").operations()
    assert marketplace_quantity(brand, SMALL) == 11  # Fulfil's 10 and the unit it took back


def test_a_failing_stock_in_raises_return_stock_in_failed(brand, settings):
    settings.RETURNS_CENTRA_WAREHOUSE_ID = 99  # a warehouse Centra does not have
    shipped_and_one_small_returned()
    return_sync_run()
    warehouse("receive")
    warehouse("done")
    summary = return_sync_run()
    assert summary.failed == 1
    exception = SyncException.objects.get(flow=FLOW)
    assert (exception.kind, exception.team, exception.status) == ("return_stock_in_failed", "operations", Status.OPEN)
    assert "Warehouse 99 not found" in exception.message
    assert centra_physical(brand, SMALL) == 8

    settings.RETURNS_CENTRA_WAREHOUSE_ID = 1
    SyncException.objects.filter(pk=exception.pk).update(status=Status.RETRYING)
    assert exception_run_retry(exception_id=exception.pk) is True
    exception.refresh_from_db()
    assert exception.status == Status.RESOLVED
    assert centra_physical(brand, SMALL) == 9


def test_a_refund_for_an_order_not_in_fulfil_is_refund_not_posted_until_it_is(brand):
    order_link = Link.objects.get(kind=Link.Kind.ORDER)
    sale_id = order_link.fulfil_id
    Link.objects.filter(pk=order_link.pk).update(fulfil_id=None)
    shipped_and_one_small_returned()
    return_sync_run()
    exception = SyncException.objects.get(flow=FLOW)
    assert (exception.kind, exception.team, exception.value) == ("refund_not_posted", "finance", Decimal("17.490"))
    assert credit_ids() == []

    Link.objects.filter(pk=order_link.pk).update(fulfil_id=sale_id)
    SyncException.objects.filter(pk=exception.pk).update(status=Status.RETRYING)
    forget_calls(brand, "centra")
    assert exception_run_retry(exception_id=exception.pk) is True
    assert [credit.total_amount for credit in credits()] == [Decimal("-17.49")]
    # The retry asked Centra for its one return, without paging through the others.
    assert "returns" not in brand("centra").operations()
    assert brand("centra").operations().count("returnsById") == 1


def test_a_run_reads_the_returns_made_since_the_last_and_the_unfinished_ones_by_id(brand):
    connections.centra().page_size = 2
    shipment = shipped()
    centra_clock(brand, hours=-3)  # two returns registered three hours ago
    returned(shipment, SMALL)
    returned(shipment, SMALL)
    centra_clock(brand, hours=0)
    returned(shipment, MEDIUM)
    first = run_flow(flow=FLOW, action=return_sync_run, trigger="test")
    assert (first.summary["examined"], first.summary["credited"]) == (3, 3)
    assert brand("centra").operations().count("returns") == 2  # every return: two pages of two

    forget_calls(brand, "centra")
    second = run_flow(flow=FLOW, action=return_sync_run, trigger="test")
    assert (second.summary["examined"], second.summary["credited"], second.summary["awaiting_warehouse"]) == (3, 0, 3)
    # Nothing new: one page (the newest return, read again for the overlap), and the two older returns, still
    # awaited from the warehouse, asked for by their ids.
    assert brand("centra").operations().count("returns") == 1
    assert brand("centra").operations().count("returnsById") == 1
    assert second.summary["cursor"] == first.summary["cursor"]
    assert len(credit_ids()) == 3


def test_a_return_cancelled_before_it_was_read_posts_nothing(brand):
    return_id = shipped_and_one_small_returned()
    cancelled_in_centra(brand, return_id)
    summary = return_sync_run()
    assert (summary.cancelled, summary.credited, summary.failed) == (1, 0, 0)
    assert credit_ids() == []


def test_a_return_cancelled_while_its_credit_can_still_go_has_the_credit_cancelled(brand):
    brand("fulfil").seed(config={"process_on_confirm": False})  # a confirmed credit waits for the warehouse to plan
    return_id = shipped_and_one_small_returned()
    return_sync_run()
    [credit] = credits()
    assert credit.state == "confirmed"
    cancelled_in_centra(brand, return_id)
    summary = return_sync_run()
    assert (summary.cancelled, summary.failed) == (1, 0)
    assert connections.fulfil().sale(credit.id).state == "cancelled"
    assert not SyncException.objects.exists()
    assert return_sync_run().already_synced == 1


def test_a_return_cancelled_after_its_credit_was_posted_is_put_to_finance_naming_the_credit(brand):
    return_id = shipped_and_one_small_returned()
    return_sync_run()
    [credit] = credits()
    assert credit.state == "processing"  # its return shipment is made: Fulfil will not let it go
    cancelled_in_centra(brand, return_id)
    summary = return_sync_run()
    assert (summary.cancelled, summary.failed) == (0, 1)
    exception = SyncException.objects.get(flow=FLOW)
    assert (exception.kind, exception.team, exception.value) == ("refund_not_posted", "finance", Decimal("17.490"))
    assert f"credit {credit.number} (sale id {credit.id}) for 17.49 GBP is already processing" in exception.message
    assert "cancelled in Centra" in exception.title
    # Nothing was undone behind finance's back, and the return goes no further.
    assert connections.fulfil().sale(credit.id).state == "processing"
    link = Link.objects.get(kind=Link.Kind.RETURN)
    assert "cancelled_at" in link.detail and "cancel_settled_at" not in link.detail
    return_sync_run()
    assert SyncException.objects.filter(flow=FLOW).count() == 1


def test_a_return_of_a_marketplace_order_is_reported_there_once(brand):
    channel = Channel.objects.get(code="zalando")
    Link.objects.filter(kind=Link.Kind.ORDER).update(
        source_system="zalando", source_ref="MP-9", source_id="MP-9", channel=channel
    )
    brand("marketplace").seed(
        orders=[
            {
                "id": "MP-9",
                "status": "SHIPPED",
                "lines": [
                    {
                        "id": f"MP-9-{n}",
                        "seller_sku": sku,
                        "quantity": qty,
                        "unit_price": price,
                        "shipped_quantity": qty,
                    }
                    for n, (sku, qty, price) in enumerate(LINES, 1)
                ],
            }
        ]
    )
    shipped_and_one_small_returned(return_cost=None)
    return_sync_run()
    return_sync_run()
    [reported] = brand("marketplace").state()["orders"]["MP-9"]["returns"]
    assert reported["lines"] == [{"line_id": "MP-9-1", "quantity": 1}]
    assert brand("marketplace").operations().count("return_create") == 1
    assert [credit.total_amount for credit in credits()] == [Decimal("-19.99")]


# --- a run takes its returns in chunks ----------------------------------------------------------------------------


def three_returned() -> list[int]:
    """Ship the whole order; the customer sends back each unit in a return of its own (S, S, M). Their ids."""
    shipment = shipped()
    return [returned(shipment, sku) for sku in (SMALL, SMALL, MEDIUM)]


def every_credit_done_by_the_warehouse() -> None:
    client = connections.fulfil()
    shipment_ids = [shipment_id for credit in credits() for shipment_id in credit.return_shipment_ids]
    client.call("stock.shipment.out.return", "receive", shipment_ids)
    client.call("stock.shipment.out.return", "done", shipment_ids)


class WorkerDied(BaseException):
    """The worker's process ends mid-run (not an error the flow handles)."""


def test_a_chunk_of_returns_is_credited_with_one_create_one_quote_and_one_confirm(brand):
    three_returned()
    forget_calls(brand, "fulfil")
    summary = return_sync_run()
    operations = brand("fulfil").operations()
    assert (summary.examined, summary.credited, summary.failed) == (3, 3, 0)
    assert sorted(credit.total_amount for credit in credits()) == [
        Decimal("-24.95"),
        Decimal("-19.99"),
        Decimal("-19.99"),
    ]
    # The credit posted on its own records Fulfil's number for it, as the chunk's do.
    numbers = {link.detail.get("credit_number") for link in Link.objects.filter(kind=Link.Kind.RETURN)}
    assert None not in numbers and len(numbers) == 3
    assert [operations.count(f"sale.sale.{method}") for method in ("create", "quote", "confirm")] == [1, 1, 1]
    # Found-or-created, originals, products, create, totals, quote, confirm, states, the warehouse's work (2).
    assert len(operations) <= 11
    links = Link.objects.filter(kind=Link.Kind.RETURN)
    assert all(link.detail["credit_number"] and "credit_confirmed_at" in link.detail for link in links)


def test_a_refused_credit_in_a_chunk_fails_alone_and_the_others_are_posted(brand):
    SkuMapping.objects.create(system="fulfil", centra_sku=MEDIUM, external_code="TEE100BLKX")  # Fulfil has no such
    small, other_small, medium = three_returned()
    summary = return_sync_run()
    assert (summary.examined, summary.credited, summary.failed) == (3, 2, 1)
    exception = SyncException.objects.get(flow=FLOW)
    assert (exception.kind, exception.object_ref) == ("refund_not_posted", f"centra:return:{medium}")
    assert "TEE100BLKX" in exception.message
    assert sorted(credit.reference for credit in credits()) == sorted(
        [f"centra-return-{small}", f"centra-return-{other_small}"]
    )

    SkuMapping.objects.filter(system="fulfil", centra_sku=MEDIUM).delete()
    SyncException.objects.filter(pk=exception.pk).update(status=Status.RETRYING)
    assert exception_run_retry(exception_id=exception.pk) is True
    assert sorted(credit.total_amount for credit in credits()) == [
        Decimal("-24.95"),
        Decimal("-19.99"),
        Decimal("-19.99"),
    ]


def test_a_chunk_run_again_after_the_worker_died_between_create_and_link_save_makes_no_second_credit(
    brand, monkeypatch
):
    from syncs.flows import return_sync

    three_returned()
    real = return_sync.links_note_each

    def dies_before_the_links_are_saved(notes, *, fields=()):
        if "fulfil_id" in fields:
            raise WorkerDied
        real(notes, fields=fields)

    monkeypatch.setattr(return_sync, "links_note_each", dies_before_the_links_are_saved)
    with pytest.raises(WorkerDied):
        return_sync_run()
    assert len(credit_ids()) == 3  # created in Fulfil, not recorded on the links
    assert not Link.objects.filter(kind=Link.Kind.RETURN, fulfil_id__isnull=False).exists()

    monkeypatch.setattr(return_sync, "links_note_each", real)
    forget_calls(brand, "fulfil")
    summary = return_sync_run()
    assert (summary.credited, summary.failed) == (3, 0)
    assert len(credit_ids()) == 3  # found by their references, none made again
    assert "sale.sale.create" not in brand("fulfil").operations()
    links = Link.objects.filter(kind=Link.Kind.RETURN)
    assert sorted(link.fulfil_id for link in links) == sorted(credit_ids())


def test_a_return_read_twice_in_one_chunk_is_credited_once(brand, monkeypatch):
    from syncs.connectors.centra import CentraClient

    three_returned()
    real = CentraClient.return_records

    def each_twice(self, **options):
        for centra_return in real(self, **options):
            yield centra_return
            yield centra_return

    monkeypatch.setattr(CentraClient, "return_records", each_twice)
    summary = return_sync_run()
    assert (summary.examined, summary.credited) == (3, 3)
    assert len(credit_ids()) == 3


def test_a_chunk_puts_back_what_the_warehouse_is_done_with_reading_its_work_once(brand, settings):
    settings.STOCK_MASTER = "fulfil"
    three_returned()
    return_sync_run()
    every_credit_done_by_the_warehouse()
    forget_calls(brand, "fulfil")
    summary = return_sync_run()
    assert (summary.stocked_in, summary.failed) == (3, 0)
    operations = brand("fulfil").operations()
    assert operations.count("sale.sale.search_read") == 1  # the credits' return shipments
    assert operations.count("stock.shipment.out.return.search_read") == 1
    assert marketplace_quantity(brand, SMALL) == 12 and marketplace_quantity(brand, MEDIUM) == 11
    assert all("stock_pushed_at" in link.detail for link in Link.objects.filter(kind=Link.Kind.RETURN))
    assert return_sync_run().already_synced == 3


def test_when_fulfil_refuses_a_chunks_confirmation_each_credit_is_confirmed_on_its_own(brand):
    three_returned()
    # Fulfil refuses the first quote it is asked for: the chunk's, over the three credits at once.
    brand("fulfil").faults(fail_first=1, error_status=400, fail_operations=["sale.sale.quote"])
    forget_calls(brand, "fulfil")
    summary = return_sync_run()
    assert (summary.credited, summary.failed) == (3, 0)
    assert brand("fulfil").operations().count("sale.sale.create") == 1  # made together, confirmed one by one
    assert brand("fulfil").operations().count("sale.sale.quote") == 1 + 3
    assert brand("fulfil").operations().count("sale.sale.confirm") == 3
    assert len(credit_ids()) == 3 and all(credit.state == "processing" for credit in credits())
    assert all(link.detail.get("credit_number") for link in Link.objects.filter(kind=Link.Kind.RETURN))


def test_a_chunk_credit_create_that_times_out_is_not_sent_again_until_fulfil_has_finished_it(brand, settings):
    three_returned()
    settings.CONNECTOR_READ_TIMEOUT = 0.5
    connections.fulfil.cache_clear()
    # Fulfil takes the credits' create but answers after Switchyard stopped waiting: they land a moment later.
    brand("fulfil").faults(timeout_rate=1.0, timeout_seconds=1.5, fail_operations=["sale.sale.create"])

    summary = return_sync_run()

    assert (summary.credited, summary.failed) == (0, 3)
    assert brand("fulfil").operations().count("sale.sale.create") == 1  # not sent again at once, one by one
    exceptions = list(SyncException.objects.all())
    assert len(exceptions) == 3 and {e.kind for e in exceptions} == {"api_unavailable"}
    brand("fulfil").faults()
    deadline = time.monotonic() + 10
    while len(credit_ids()) < 3 and time.monotonic() < deadline:
        time.sleep(0.3)
    for exception in exceptions:
        assert exception_run_retry(exception_id=exception.pk) is True
    assert len(credit_ids()) == 3 and all(credit.state == "processing" for credit in credits())
    assert brand("fulfil").operations().count("sale.sale.create") == 1  # each retry found its credit
    assert not SyncException.objects.exclude(status=Status.RESOLVED).exists()
