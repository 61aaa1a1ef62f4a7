"""Stock push end to end: Fulfil as the stock master, Centra, Virtualstock and the marketplace as channels, all
over HTTP against the sandbox."""

from datetime import timedelta

import pytest
import requests
from django.db import connection
from django.db.models import F
from django.utils import timezone

from exceptions.models import Status, SyncException
from exceptions.services import exception_run_retry
from mappings.models import Channel, SkuMapping, StockBuffer
from syncs.flows.stock_push import (
    FLOW,
    Reading,
    _acknowledge,
    _push_channel,
    _state_rows,
    _states_by_sku,
    _states_save,
    _versions_move,
    stock_push_run,
)
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


# --- what a run writes, and what it counts ---------------------------------------------------------------------


def row_locations(channel: Channel) -> dict[str, str]:
    """Where each of the channel's state rows lies in its table: PostgreSQL writes a row anew, somewhere else, on
    every UPDATE, even of a value to itself — so a location that did not change is a row that was not written."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT sku, ctid::text FROM {StockState._meta.db_table} WHERE channel_id = %s", [channel.pk])
        return dict(cursor.fetchall())


def readings_as_recorded(channel: Channel) -> dict[str, Reading]:
    """The readings the channel's states already hold: reading them again changes nothing."""
    return {
        state.sku: Reading(state.sku, state.master_on_hand, state.master_statuses, state.master_version)
        for state in StockState.objects.filter(channel=channel)
    }


def test_a_run_writes_only_the_state_rows_whose_figures_changed(stock):
    stock_push_run()
    channel = Channel.objects.get(code="zalando")
    readings = readings_as_recorded(channel)
    before = row_locations(channel)
    later = readings["TEE100BLKM"].version + timedelta(minutes=1)
    readings["TEE100BLKM"] = Reading("TEE100BLKM", 3, readings["TEE100BLKM"].statuses, later)
    outcome = _push_channel(channel, readings, set(), full=False, approve_zero_out=False)
    assert outcome["pushed"] == 1
    after = row_locations(channel)
    assert {sku for sku in before if before[sku] != after[sku]} == {"TEE100BLKM"}
    state = StockState.objects.get(channel=channel, sku="TEE100BLKM")
    assert (state.master_on_hand, state.ats, state.pushed_value, state.master_version) == (3, 3, 3, later)


def test_a_newer_reading_with_the_same_figures_only_moves_the_master_version(stock):
    stock_push_run()
    channel = Channel.objects.get(code="zalando")
    pushed = {state.sku: state for state in StockState.objects.filter(channel=channel)}
    later = timezone.now() + timedelta(minutes=1)
    readings = {sku: Reading(sku, r.on_hand, r.statuses, later) for sku, r in readings_as_recorded(channel).items()}
    requests.post(f"{stock('marketplace').url}/_sandbox/calls/clear", timeout=5)
    outcome = _push_channel(channel, readings, set(), full=False, approve_zero_out=False)
    assert (outcome["changed"], outcome["api_calls"]) == (0, 0)
    for state in StockState.objects.filter(channel=channel):
        before = pushed[state.sku]
        assert state.master_version == later
        assert (state.master_on_hand, state.ats, state.pushed_value, state.pushed_version) == (
            before.master_on_hand,
            before.ats,
            before.pushed_value,
            before.pushed_version,  # nothing was pushed again
        )
    assert stock("marketplace").operations() == []


def test_moving_the_master_version_never_takes_it_backwards(stock):
    stock_push_run()
    channel = Channel.objects.get(code="centra")
    row = _states_by_sku(channel, ["TEE100BLKS"])["TEE100BLKS"]
    recorded = row.master_version
    row.master_version = recorded - timedelta(minutes=5)  # a run that read the master before the one recorded
    _versions_move([row])
    assert StockState.objects.get(pk=row.id).master_version == recorded
    row.master_version = recorded + timedelta(minutes=5)
    _versions_move([row])
    assert StockState.objects.get(pk=row.id).master_version == recorded + timedelta(minutes=5)


def test_the_late_answer_to_an_older_push_never_marks_a_newer_value_acknowledged(stock):
    stock_push_run()
    channel = Channel.objects.get(code="john-lewis")
    row = _states_by_sku(channel, ["TEE100BLKS"])["TEE100BLKS"]
    recorded = StockState.objects.get(pk=row.id)
    row.master_version = recorded.pushed_version - timedelta(minutes=5)
    _acknowledge([(row, 99)])
    state = StockState.objects.get(pk=row.id)
    assert (state.pushed_value, state.pushed_version, state.channel_value) == (10, recorded.pushed_version, 10)
    row.master_version = recorded.pushed_version + timedelta(minutes=5)
    _acknowledge([(row, 8)])
    state = StockState.objects.get(pk=row.id)
    assert (state.pushed_value, state.pushed_version, state.channel_value) == (8, row.master_version, 8)


def test_a_full_run_writes_only_the_rows_that_drifted_or_learnt_an_id(stock):
    stock_push_run()
    market, retailer = Channel.objects.get(code="zalando"), Channel.objects.get(code="john-lewis")
    StockState.objects.filter(channel=retailer, sku="TEE100BLKL").update(external_id="")
    requests.post(
        f"{stock('marketplace').url}/_sandbox/offer-edit", json={"sku": "TEE100BLKS", "quantity": 99}, timeout=5
    )
    before = {channel.code: row_locations(channel) for channel in (market, retailer)}
    drifted = _push_channel(market, readings_as_recorded(market), set(), full=True, approve_zero_out=False)
    learnt = _push_channel(retailer, readings_as_recorded(retailer), set(), full=True, approve_zero_out=False)
    assert (drifted["drift"], drifted["pushed"], learnt["drift"], learnt["pushed"]) == (1, 1, 0, 0)
    after = {channel.code: row_locations(channel) for channel in (market, retailer)}
    assert {sku for sku, place in before["zalando"].items() if after["zalando"][sku] != place} == {"TEE100BLKS"}
    assert {sku for sku, place in before["john-lewis"].items() if after["john-lewis"][sku] != place} == {"TEE100BLKL"}
    assert StockState.objects.get(channel=retailer, sku="TEE100BLKL").external_id == "702"
    assert on_channels(stock)["zalando"]["TEE100BLKS"] == 10  # repaired


def test_the_run_counts_every_call_it_makes_as_the_systems_logged_them(stock):
    stock_push_run()
    fulfil_stock(stock, {"TEE100BLKM": 1})
    for simulator in ("fulfil", "centra", "virtualstock", "marketplace"):
        requests.post(f"{stock(simulator).url}/_sandbox/calls/clear", timeout=5)
    summary = stock_push_run(full=True)
    logged = {name: len(stock(name).calls()) for name in ("fulfil", "centra", "virtualstock", "marketplace")}
    assert summary.api_calls == sum(logged.values())
    assert {code: outcome["api_calls"] for code, outcome in summary.channels.items()} == {
        "centra": logged["centra"],
        "john-lewis": logged["virtualstock"],
        "zalando": logged["marketplace"],
    }
    assert summary.pushed == 3 and logged["fulfil"] > 0


@pytest.fixture
def embedded_database(db, tmp_path):
    """A second database on SQLite, as the embedded default runs, with the stock tables: the writers take their
    portable path (bulk_update and guarded ORM updates) there. Made as a connection of its own, outside
    settings.DATABASES, so no test database is created for it."""
    from django.db import connections
    from django.db.backends.sqlite3.base import DatabaseWrapper

    alias = "embedded"
    sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "embedded.sqlite3")}
    settings_dict = connections.configure_settings({**connections.settings, alias: sqlite})[alias]
    connections[alias] = DatabaseWrapper(settings_dict, alias)
    with connections[alias].schema_editor() as editor:
        editor.create_model(Channel)
        editor.create_model(StockState)
    yield alias
    connections[alias].close()
    del connections[alias]


def test_on_sqlite_the_writers_write_the_same_rows_with_the_same_guards(embedded_database):
    using = embedded_database
    [channel] = Channel.objects.using(using).bulk_create([Channel(code="centra", name="Centra", system="centra")])
    read_at = timezone.now()
    StockState.objects.using(using).bulk_create(
        [StockState(channel=channel, sku=sku, master_version=read_at) for sku in ("A", "B", "C")]
    )
    rows = {row.sku: row for row in _state_rows(StockState.objects.using(using).order_by("sku"))}
    rows["A"].master_on_hand, rows["A"].master_statuses, rows["A"].ats = 5, {"reserved": 1}, 4
    _states_save([rows["A"]], ["master_on_hand", "master_statuses", "ats"], using=using)
    rows["B"].master_version = read_at - timedelta(minutes=5)  # older than the one recorded: left alone
    rows["C"].master_version = read_at + timedelta(minutes=5)
    _versions_move([rows["B"], rows["C"]], using=using)
    _acknowledge([(rows["A"], 4)], using=using)
    rows["A"].master_version = read_at - timedelta(minutes=10)
    _acknowledge([(rows["A"], 9)], using=using)  # the late answer to an older push
    saved = {state.sku: state for state in StockState.objects.using(using).all()}
    assert (saved["A"].master_on_hand, saved["A"].master_statuses, saved["A"].ats) == (5, {"reserved": 1}, 4)
    assert (saved["A"].pushed_value, saved["A"].pushed_version, saved["A"].channel_value) == (4, read_at, 4)
    assert saved["B"].master_version == read_at
    assert saved["C"].master_version == read_at + timedelta(minutes=5)
    assert (saved["B"].ats, saved["B"].pushed_value, saved["C"].pushed_value) == (0, None, None)


def test_units_of_an_order_seen_but_not_yet_at_the_master_are_off_every_channel_until_it_has_them(stock):
    from syncs.models import Link
    from syncs.stock.in_flight import units_in_flight_record

    stock_push_run(full=True)
    before = on_channels(stock)
    order = Link.objects.create(kind=Link.Kind.ORDER, source_system="zalando", source_ref="Z-1")
    units_in_flight_record(order, {"TEE100BLKS": 3})  # sold on Zalando; Fulfil does not know yet
    stock_push_run(skus=["TEE100BLKS"])
    after = on_channels(stock)
    assert {channel: values["TEE100BLKS"] for channel, values in after.items()} == {
        channel: values["TEE100BLKS"] - 3 for channel, values in before.items()
    }
    state = StockState.objects.get(channel__code="john-lewis", sku="TEE100BLKS")
    assert state.master_statuses["in_flight"] == 3  # named in the breakdown
    # Fulfil records the sale (its moves hold the units): they are no longer counted twice.
    Link.objects.filter(pk=order.pk).update(exported_at=timezone.now(), detail={"sale_state": "processing"})
    reserve_in_fulfil(3)
    stock_push_run(skus=["TEE100BLKS"])
    assert {channel: values["TEE100BLKS"] for channel, values in on_channels(stock).items()} == {
        channel: values["TEE100BLKS"] - 3 for channel, values in before.items()
    }


def test_a_write_sent_again_after_a_timeout_is_read_back_later_and_a_late_landing_repaired(stock, settings):
    import time

    from django_q.models import Schedule

    from syncs import connections, tasks

    settings.CONNECTOR_READ_TIMEOUT = 0.5
    connections.clients_forget()
    stock_push_run()
    fulfil_stock(stock, {"TEE100BLKS": 7})
    # Centra takes the setStock for 7 but answers after Switchyard stopped waiting: the connector sends it again.
    stock("centra").faults(hang_first=1, timeout_seconds=2.5, fail_operations=["setStock"])
    stock_push_run(skus=["TEE100BLKS"])
    fulfil_stock(stock, {"TEE100BLKS": 3})
    stock_push_run(skus=["TEE100BLKS"])
    assert on_channels(stock)["centra"]["TEE100BLKS"] == 3
    deadline = time.monotonic() + 10
    while on_channels(stock)["centra"]["TEE100BLKS"] != 7 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert on_channels(stock)["centra"]["TEE100BLKS"] == 7  # the first attempt landed last: an older figure shows

    [verify] = Schedule.objects.filter(func="syncs.tasks.stock_verify")
    assert verify.args == "'centra', ['TEE100BLKS']"
    assert verify.next_run > timezone.now() + timedelta(seconds=settings.STOCK_VERIFY_AFTER_SECONDS - 30)
    summary_line = tasks.stock_verify("centra", ["TEE100BLKS"])  # as the schedule runs it, past the hang

    assert summary_line == "stock verified on centra: 1 drifted, 1 pushed again"
    assert on_channels(stock)["centra"]["TEE100BLKS"] == 3
    assert StockState.objects.get(channel__code="centra", sku="TEE100BLKS").pushed_value == 3
