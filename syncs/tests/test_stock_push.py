"""Stock push end to end: Fulfil as the stock master, Centra, Virtualstock and the marketplace as channels, all
over HTTP against the sandbox."""

from datetime import timedelta

import pytest
import requests
from django.db.models import F
from django.utils import timezone

from exceptions.models import Status, SyncException
from exceptions.services import exception_run_retry
from mappings.models import Channel, SkuMapping, StockBuffer
from syncs.flows.stock_push import FLOW, Reading, _push_channel, stock_push_run
from syncs.models import StockState

SKUS = {"TEE100BLKS": 10, "TEE100BLKM": 4, "TEE100BLKL": 25}
CENTRA_TEE = {
    "name": "Organic Cotton Tee",
    "productNumber": "TEE100",
    "prices": {"2": "29.00"},
    "variants": [
        {
            "name": "Black",
            "variantNumber": "BLK",
            "sizes": [{"sizeNumber": size, "name": size, "stock": {"1": 0}} for size in ("S", "M", "L")],
        }
    ],
}


def fulfil_stock(control, quantities: dict[str, int]) -> None:
    control("fulfil").seed(
        products=[
            {"code": sku, "name": sku, "list_price": "29.00", "quantity_on_hand": qty}
            for sku, qty in quantities.items()
        ]
    )


@pytest.fixture
def stock(connected, control, settings, db):
    settings.STOCK_MASTER = "fulfil"
    settings.STOCK_ZERO_GUARD_MIN = 1
    settings.STOCK_ZERO_GUARD_SHARE = 0.5
    fulfil_stock(control, SKUS)
    control("centra").seed(products=[CENTRA_TEE])
    control("virtualstock").seed(products=[{"id": 700 + n, "part_number": sku} for n, sku in enumerate(SKUS)])
    control("marketplace").seed(offers=[{"sku": sku, "title": sku, "price": "29.00"} for sku in SKUS])
    for code, system in (("centra", "centra"), ("john-lewis", "virtualstock"), ("zalando", "marketplace")):
        Channel.objects.create(code=code, name=code, system=system)
    for system in ("virtualstock", "marketplace"):
        SkuMapping.objects.bulk_create([SkuMapping(system=system, centra_sku=sku, external_code=sku) for sku in SKUS])
    for simulator in ("centra", "virtualstock", "marketplace"):
        requests.post(f"{connected.url}/{simulator}/_sandbox/calls/clear", timeout=5)
    return control


def on_channels(control) -> dict[str, dict[str, int]]:
    centra = control("centra").state()
    sizes = {size["id"]: size["SKU"] for size in centra["sizes"].values()}
    centra_free = {}
    for key, level in centra["stock"].items():
        size_id, warehouse = key.split(":")
        if warehouse == "1":
            centra_free[sizes[int(size_id)]] = level["physical"] - level["allocated"]
    vs = {
        p["part_number"]: p["data"]["supplier_free_stock"] for p in control("virtualstock").state()["products"].values()
    }
    market = {o["sku"]: o["quantity"] for o in control("marketplace").state()["offers"].values()}
    return {"centra": centra_free, "john-lewis": vs, "zalando": market}


def writes(control) -> list[str]:
    operations = (
        control("centra").operations() + control("virtualstock").operations() + control("marketplace").operations()
    )
    return [op for op in operations if op in ("setStock", "product_stock", "stock_update")]


def test_a_full_run_leaves_every_channel_with_its_available_to_sell(stock):
    StockBuffer.objects.create(channel=Channel.objects.get(code="zalando"), buffer=2)
    StockBuffer.objects.create(channel=Channel.objects.get(code="john-lewis"), centra_sku="TEE100BLKL", max_quantity=5)
    summary = stock_push_run(full=True)
    assert summary.failed == 0 and summary.exceptions == 0
    assert on_channels(stock) == {
        "centra": {"TEE100BLKS": 10, "TEE100BLKM": 4, "TEE100BLKL": 25},
        "john-lewis": {"TEE100BLKS": 10, "TEE100BLKM": 4, "TEE100BLKL": 5},
        "zalando": {"TEE100BLKS": 8, "TEE100BLKM": 2, "TEE100BLKL": 23},
    }
    # Centra takes all three sizes in one mutation; Virtualstock one product a call; the marketplace one batch.
    assert writes(stock).count("setStock") == 1
    assert stock("virtualstock").operations().count("product_stock") == 3
    assert stock("marketplace").operations().count("stock_update") == 1


def test_a_second_run_makes_no_write_calls(stock):
    stock_push_run()
    for simulator in ("centra", "virtualstock", "marketplace"):
        requests.post(f"{stock('centra').url.rsplit('/', 1)[0]}/{simulator}/_sandbox/calls/clear", timeout=5)
    summary = stock_push_run()
    assert (summary.changed, summary.pushed) == (0, 0)
    assert writes(stock) == []


def test_one_master_change_reaches_every_channel_in_one_incremental_run(stock):
    stock_push_run()
    fulfil_stock(stock, {"TEE100BLKM": 1})
    summary = stock_push_run(skus=["TEE100BLKM"])
    assert summary.pushed == 3
    assert {channel: values["TEE100BLKM"] for channel, values in on_channels(stock).items()} == {
        "centra": 1,
        "john-lewis": 1,
        "zalando": 1,
    }


def test_stock_reserved_for_open_orders_is_not_offered(stock):
    stock("fulfil").seed(
        sales=[
            {
                "reference": "1001",
                "state": "processing",
                "party": {
                    "name": "Alva",
                    "addresses": [["create", [{"street": "1 Main St", "city": "Stockholm", "country": 1}]]],
                },
                "lines": [{"product": "TEE100BLKS", "quantity": 3, "unit_price": "29.00"}],
            }
        ]
    )
    stock_push_run()
    state = StockState.objects.get(channel__code="centra", sku="TEE100BLKS")
    assert (state.master_on_hand, state.master_statuses, state.ats) == (10, {"reserved": 3}, 7)
    assert {channel: values["TEE100BLKS"] for channel, values in on_channels(stock).items()} == {
        "centra": 7,
        "john-lewis": 7,
        "zalando": 7,
    }


def test_an_older_reading_never_overwrites_a_newer_one(stock):
    channel = Channel.objects.get(code="zalando")
    now = timezone.now()
    newer = {"TEE100BLKS": Reading("TEE100BLKS", 7, {}, now)}
    older = {"TEE100BLKS": Reading("TEE100BLKS", 30, {}, now - timedelta(minutes=5))}
    _push_channel(channel, newer, set(), full=False, approve_zero_out=False)
    _push_channel(channel, older, set(), full=False, approve_zero_out=False)
    state = StockState.objects.get(channel=channel, sku="TEE100BLKS")
    assert (state.ats, state.pushed_value, state.master_on_hand) == (7, 7, 7)
    assert on_channels(stock)["zalando"]["TEE100BLKS"] == 7


def test_a_push_that_would_empty_the_storefront_is_held_until_approved(stock):
    stock_push_run()
    fulfil_stock(stock, dict.fromkeys(SKUS, 0))  # bad master data: everything at zero
    summary = stock_push_run()
    assert summary.held == 9 and summary.pushed == 0
    held = SyncException.objects.filter(kind="stock_push_held")
    assert held.count() == 3 and all(e.team == "operations" for e in held)
    assert on_channels(stock)["centra"]["TEE100BLKS"] == 10  # still selling what it had
    approval = held.get(object_ref="centra:zero-out")
    SyncException.objects.filter(pk=approval.pk).update(status=Status.RETRYING)
    assert exception_run_retry(exception_id=approval.pk) is True
    assert on_channels(stock)["centra"] == dict.fromkeys(SKUS, 0)


def test_an_unmapped_sku_on_one_channel_is_one_exception_and_the_others_update(stock):
    SkuMapping.objects.filter(system="virtualstock", centra_sku="TEE100BLKM").delete()
    stock_push_run()
    stock_push_run()
    exception = SyncException.objects.get(flow=FLOW)
    assert (exception.kind, exception.object_ref, exception.occurrences) == ("unmapped_sku", "john-lewis:TEE100BLKM", 2)
    channels = on_channels(stock)
    assert channels["john-lewis"]["TEE100BLKM"] == 0 and channels["john-lewis"]["TEE100BLKS"] == 10
    assert channels["centra"]["TEE100BLKM"] == 4 and channels["zalando"]["TEE100BLKM"] == 4


def test_with_server_errors_and_timeouts_repeated_runs_converge_with_nothing_lost(stock, settings):
    from syncs import connections

    for simulator in ("centra", "virtualstock", "marketplace"):
        stock(simulator).faults(error_rate=0.2, error_status=503, timeout_rate=0.05, timeout_seconds=0.5)
    for client in (connections.centra(), connections.virtualstock(), connections.marketplace()):
        client.session.timeouts = type(client.session.timeouts)(connect=1, read=0.3)
        client.session.retry = type(client.session.retry)(attempts=2, base_delay=0.01)
    for _ in range(8):
        stock_push_run()
        if not StockState.objects.exclude(pushed_value=F("ats")).exists():
            break
    for simulator in ("centra", "virtualstock", "marketplace"):
        stock(simulator).faults()
    stock_push_run()
    assert on_channels(stock) == {
        "centra": SKUS,
        "john-lewis": SKUS,
        "zalando": SKUS,
    }
    assert not SyncException.objects.filter(flow=FLOW, status__in=["open", "retrying"]).exists()


def reserve_in_fulfil(quantity: int) -> int:
    """A sale processed in Fulfil reserves stock there, as an order placed elsewhere would."""
    from decimal import Decimal

    from syncs import connections
    from syncs.connectors.fulfil import Address, Customer, DraftLine, SaleDraft

    client = connections.fulfil()
    address = Address(name="Alva Lind", street="1 Main St", city="Stockholm", zip="11122", country_code="SE")
    sale_id = client.create_sale(
        SaleDraft(
            reference="WEB-77",
            customer=Customer(name="Alva Lind", email="alva@example.com"),
            invoice_address=address,
            shipment_address=address,
            currency_code="EUR",
            lines=(DraftLine(product_code="TEE100BLKS", quantity=quantity, unit_price=Decimal("29.00")),),
        )
    )
    client.confirm_sale(sale_id)
    return sale_id


def test_a_fulfil_inventory_webhook_pushes_just_those_skus(stock, connected, settings):
    from syncs.flows.webhooks import webhook_process
    from syncs.models import InboundWebhook

    stock_push_run()
    fulfil = connected.simulator("fulfil")
    sent = []
    fulfil.webhook_url, fulfil.webhook_secret = "http://127.0.0.1:9/", settings.CONNECTIONS["fulfil"]["webhook_secret"]
    fulfil.sign_and_send = sent.append  # keep what Fulfil would send, to hand it over as the console would
    try:
        reserve_in_fulfil(4)
        connected.app.outbox.join()
    finally:
        del fulfil.sign_and_send
        fulfil.webhook_url = None
    [announcement] = [item for item in sent if item["event"] == "product.product.inventory_level_changed"]
    webhook = InboundWebhook.objects.create(
        system="fulfil", digest="d1", payload={"event": announcement["event"], "payload": announcement["data"]}
    )
    assert webhook_process(webhook_id=webhook.pk).startswith("stock pushed for 1 SKU(s)")
    assert webhook_process(webhook_id=webhook.pk) == "already processed"
    assert {channel: values["TEE100BLKS"] for channel, values in on_channels(stock).items()} == {
        "centra": 6,
        "john-lewis": 6,
        "zalando": 6,
    }


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_master_change_reaches_every_channel_within_seconds_through_webhook_and_worker(
    stock, connected, live_server, worker_cluster, settings
):
    import time

    stock_push_run()
    fulfil = connected.simulator("fulfil")
    fulfil.webhook_url = f"{live_server.url}/webhooks/fulfil/"
    fulfil.webhook_secret = settings.CONNECTIONS["fulfil"]["webhook_secret"]
    try:
        reserve_in_fulfil(3)
        deadline = time.monotonic() + 60  # a bound on the wait, not a speed test
        while time.monotonic() < deadline:
            if {values["TEE100BLKS"] for values in on_channels(stock).values()} == {7}:
                break
            time.sleep(0.2)
    finally:
        fulfil.webhook_url = None
    assert {channel: values["TEE100BLKS"] for channel, values in on_channels(stock).items()} == {
        "centra": 7,
        "john-lewis": 7,
        "zalando": 7,
    }


def test_a_pair_the_channel_has_not_confirmed_for_too_long_is_stale_until_it_is(stock, settings):
    stock_push_run()
    channel = Channel.objects.get(code="john-lewis")
    long_ago = timezone.now() - timedelta(hours=5)
    StockState.objects.filter(channel=channel, sku="TEE100BLKM").update(acknowledged_at=long_ago, pushed_value=99)
    stock("virtualstock").faults(error_rate=1.0, error_status=400, fail_operations=["product_stock"])
    stock_push_run(full=True)
    stale = SyncException.objects.get(kind="stock_stale")
    assert (stale.object_ref, stale.team, stale.status) == ("john-lewis:TEE100BLKM:stale", "operations", Status.OPEN)
    stock("virtualstock").faults()
    stock_push_run(full=True)
    stale.refresh_from_db()
    assert stale.status == Status.RESOLVED


def test_a_run_whose_time_budget_is_spent_leaves_the_rest_for_the_next(stock, settings):
    settings.STOCK_PUSH_MAX_SECONDS = 0
    first = stock_push_run(channel_code="john-lewis")
    assert (first.pushed, first.pending, first.failed) == (0, 3, 0)
    settings.STOCK_PUSH_MAX_SECONDS = 60
    second = stock_push_run(channel_code="john-lewis")
    assert (second.pushed, second.pending) == (3, 0)
    assert on_channels(stock)["john-lewis"] == SKUS


@pytest.mark.django_db
def test_a_fulfil_webhook_with_dates_is_kept(client, settings):
    import base64
    import hashlib
    import hmac
    import json

    from syncs.models import InboundWebhook

    body = json.dumps(
        [
            {
                "timestamp": {"__class__": "datetime", "iso_string": "2026-11-26T04:28:29"},
                "product_code": "TEE100BLKS",
                "product_id": 1,
                "warehouse_quantities": [{"warehouse_id": 4, "quantity_on_hand": 3, "quantity_available": 3}],
            }
        ]
    )
    key = base64.b64decode(settings.CONNECTIONS["fulfil"]["webhook_secret"])
    signature = base64.b64encode(hmac.new(key, body.encode(), hashlib.sha256).digest()).decode()
    response = client.post(
        "/webhooks/fulfil/",
        data=body,
        content_type="application/json",
        headers={"X-Fulfil-Hmac-SHA256": signature, "X-Fulfil-Event": "product.product.inventory_level_changed"},
    )
    assert response.status_code == 202
    stored = InboundWebhook.objects.get()
    assert stored.payload["payload"][0]["timestamp"].startswith("2026-11-26T04:28:29")


def test_retrying_a_sku_that_still_cannot_be_pushed_does_not_call_it_resolved(stock):
    SkuMapping.objects.filter(system="virtualstock", centra_sku="TEE100BLKM").delete()
    stock_push_run()
    exception = SyncException.objects.get(flow=FLOW)
    SyncException.objects.filter(pk=exception.pk).update(status=Status.RETRYING)
    assert exception_run_retry(exception_id=exception.pk) is False
    exception.refresh_from_db()
    assert exception.status != Status.RESOLVED and exception.claimed_at is None
    SkuMapping.objects.create(system="virtualstock", centra_sku="TEE100BLKM", external_code="TEE100BLKM")
    SyncException.objects.filter(pk=exception.pk).update(status=Status.RETRYING)
    assert exception_run_retry(exception_id=exception.pk) is True
    assert on_channels(stock)["john-lewis"]["TEE100BLKM"] == 4


def test_a_targeted_run_does_not_clear_a_held_zero_out(stock):
    stock_push_run()
    fulfil_stock(stock, dict.fromkeys(SKUS, 0))
    stock_push_run()
    stock_push_run(skus=["TEE100BLKS"])
    assert SyncException.objects.filter(kind="stock_push_held", status=Status.OPEN).count() == 3
