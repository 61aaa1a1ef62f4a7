"""The journey a person takes through the console, in a real browser, against the live server, a real worker
cluster and the sandbox over HTTP."""

import re
import time

import pytest
from django.db import connection
from playwright.sync_api import Page, expect

from conftest import PASSWORD
from exceptions.models import Status, SyncException
from mappings.models import Channel, SkuMapping
from syncs.flows.shipment_sync import shipment_sync_run
from syncs.models import Link
from syncs.runs import run_flow
from syncs.tests.test_shipment_sync import NUMBER, SKUS, TEE, centra_order, fulfil_sale, ship, shipments_by_sku


@pytest.fixture
def shipped_without_a_carrier_mapping(connected, control, settings, db):
    """A John Lewis order (Virtualstock) imported into Centra and exported to Fulfil, whose first parcel the
    warehouse sent in two parcels with DHL Express — a carrier nobody mapped for Virtualstock — and the shipment
    sync that met them. Returns the exception of the first parcel."""
    settings.SKU_SAME_AS_CENTRA = ["fulfil", "inventory_planner"]
    control("centra").seed(products=[TEE])
    control("fulfil").seed(products=[{"code": sku, "name": sku, "quantity_on_hand": 10} for sku in SKUS])
    channel = Channel.objects.create(code="john-lewis", name="John Lewis", system="virtualstock", centra_market_id=3)
    SkuMapping.objects.bulk_create(
        [SkuMapping(system="virtualstock", centra_sku=sku, external_code=sku) for sku in SKUS]
    )
    centra_order(control)
    control("virtualstock").seed(
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
    sale_id = fulfil_sale(control)
    Link.objects.create(
        kind=Link.Kind.ORDER,
        source_system="john-lewis",
        source_ref="JL-1",
        source_id="100",
        channel=channel,
        centra_number=NUMBER,
        fulfil_id=sale_id,
    )
    parcels = shipments_by_sku(sale_id)
    ship(parcels["TEE100BLKS"], "JD0001")
    ship(parcels["TEE100BLKM"], "JD0002")
    assert run_flow(flow="shipment_sync", action=shipment_sync_run, trigger="manual").failed == 2
    return SyncException.objects.filter(kind="unmapped_carrier").order_by("object_ref").first()


def reload_until(page: Page, locator: str, text: str, *, seconds: float = 60) -> None:
    """Reload ``page`` until ``locator`` shows ``text``: for a change a background worker makes, which the page
    does not push. Bounded; each look waits for the page with Playwright's own retrying assertion."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            expect(page.locator(locator)).to_contain_text(text, timeout=1_000)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            page.reload()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_an_admin_sees_an_unmapped_carrier_maps_it_and_watches_it_resolve(
    page: Page, shipped_without_a_carrier_mapping, worker_cluster, ada
):
    """Sign in; the dashboard shows operations' unmapped-carrier exceptions; open one; create the missing carrier
    mapping from it; the worker retries both and they resolve; find the order by a parcel's tracking number and
    follow its trace to fully shipped, every parcel told to the retailer."""
    exception = shipped_without_a_carrier_mapping

    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    card = page.locator("#dashboard-exceptions")
    expect(card.get_by_role("row", name="Operations")).to_contain_text("2")
    expect(card.get_by_role("link", name="Unknown carrier")).to_be_visible()
    expect(page.locator("#flow-shipment_sync")).to_contain_text("2 failed")
    page.snap("dashboard")

    card.get_by_role("link", name="Unknown carrier").click()
    expect(page).to_have_url(re.compile(r"/exceptions/\?team=operations&kind=unmapped_carrier$"))
    page.snap("queue")
    page.get_by_role("link", name=exception.title).click()
    expect(page.get_by_role("heading", name=exception.title)).to_be_visible()
    expect(page.locator(".exc-status")).to_have_text("Open")
    page.snap("exception")

    form = page.locator("#create-mapping")
    expect(form.get_by_label("Centra carrier")).to_have_value("DHL")
    form.get_by_label("Code in that system").fill("dhl")
    form.get_by_role("button", name="Create the carrier mapping").click()
    expect(page.locator(".messages")).to_contain_text("Mapping created; 2 waiting exceptions are being retried.")
    page.snap("mapping-created")

    reload_until(page, ".exc-status", "Resolved")
    expect(page.locator(".exc-timeline")).to_contain_text("Freed by a mapping change")
    page.snap("resolved")
    assert SyncException.objects.get(pk=exception.pk).status == Status.RESOLVED

    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Orders").click()
    page.get_by_label("Order, reference, sale, shipment, tracking or return").fill("JD0002")
    page.get_by_role("button", name="Find").click()
    # One order matches the parcel's tracking number: the search opens its trace.
    expect(page.get_by_role("heading", name="John Lewis order JL-1")).to_be_visible()
    expect(page.locator("#step-shipped")).to_contain_text("Done")
    expect(page.locator("#step-shipped")).to_contain_text("Every unit is in a completed Centra shipment.")
    for parcel in ("CS5001", "CS5002"):  # the second parcel's retry may finish a moment after the first's
        reload_until(page, f".trace-step:has-text('Shipment {parcel}')", "Dispatched to John Lewis (carrier code dhl)")
    page.snap("order-trace")

    page.goto("/")
    reload_until(page, "#dashboard-exceptions .dash-team:has-text('Operations')", "0")
    page.snap("dashboard-after")
    connection.close()
