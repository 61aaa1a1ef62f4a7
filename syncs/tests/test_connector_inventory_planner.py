"""The Inventory Planner connector against the Inventory Planner simulator, over HTTP."""

import random
import time
from datetime import date
from decimal import Decimal

import pytest
import requests

from syncs.connectors.errors import AuthError, DataError, RateLimited, TransientError
from syncs.connectors.http import RetryPolicy, Timeouts
from syncs.connectors.inventory_planner import InventoryPlannerClient
from syncs.sandbox.world import generate

FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
KEY, ACCOUNT = "sandbox-inventory-planner", "a1000"


def variant(n: int, **fields) -> dict:
    return {"id": f"c1000_{n}", "sku": f"SKU{n}", "title": f"Item {n}", "in_stock": n, **fields}


@pytest.fixture
def planner(sandbox, control):
    ip = control("inventory-planner")
    client = InventoryPlannerClient(base_url=f"{ip.url}/api/v1", api_key=KEY, account=ACCOUNT, retry=FAST_RETRY)
    return client, ip


def api(ip, method: str, path: str, **kwargs) -> requests.Response:
    """A request as any Inventory Planner client sends it, for what the connector does not do itself."""
    headers = {"Authorization": KEY, "Account": ACCOUNT}
    return requests.request(method, f"{ip.url}/api/v1/{path}", headers=headers, timeout=5, **kwargs)


def test_it_reads_every_page_and_stops_at_the_total(planner):
    client, ip = planner
    ip.seed(variants=[variant(n) for n in range(1, 15)])
    variants = list(client.variants(page_size=7))
    assert [v.sku for v in variants] == [f"SKU{n}" for n in range(1, 15)]
    # 14 rows in pages of 7: the total says the second page was the last, so no third call for an empty page.
    assert ip.operations() == ["variants_list", "variants_list"]
    pages = [call["path"] for call in ip.calls()]
    assert pages == ["/inventory-planner/api/v1/variants"] * 2


def test_a_short_last_page_ends_the_walk(planner):
    client, ip = planner
    ip.seed(variants=[variant(n) for n in range(1, 6)])
    assert len(list(client.variants(page_size=2))) == 5
    assert ip.operations().count("variants_list") == 3


def test_numbers_become_decimal_money_and_whole_quantities(planner):
    client, ip = planner
    ip.seed(
        variants=[
            {
                "id": "c1000_6060",
                "sku": "ABC-1",
                "title": "Tee",
                "barcode": "7300000000017",
                "in_stock": 4.0,
                "price": 29,
                "cost_price": 11.02,
                "replenishment": 15.2,
                "to_order": 16,
                "oos": None,
                "lead_time": 14,
                "review_period": 30,
                "forecast_description": {"sales_velocity1": 0.4333},
                "vendor": "porto textile lda",
            }
        ]
    )
    (found,) = client.variants()
    assert (found.id, found.sku, found.barcode) == ("c1000_6060", "ABC-1", "7300000000017")
    assert (found.in_stock, found.replenishment, found.to_order) == (4, 16, 16)  # an order quantity rounds up
    assert (found.price, found.cost_price) == (Decimal("29"), Decimal("11.02"))
    assert found.velocity_per_day == Decimal("0.4333")
    assert found.oos is None
    assert (found.lead_time, found.review_period, found.vendor) == (14, 30, "porto textile lda")
    assert [w.warehouse for w in found.warehouses] == ["c1000_main", "c1000_store"]
    assert found.warehouses[0].in_stock == 4


def test_filters_and_sorts_go_to_the_api_and_extra_fields_land_in_raw(planner):
    client, ip = planner
    ip.seed(generate={"seed": 3, "products": 6})
    wanted = list(client.variants(filters={"replenishment_gt": 0, "oos_sort": "asc"}, fields=["segment", "brand"]))
    assert wanted and all(v.replenishment > 0 for v in wanted)
    days = [v.oos for v in wanted if v.oos is not None]
    assert days == sorted(days)
    assert wanted[0].raw["brand"] == "Switchyard Demo"
    assert "last_30_days_sales" not in wanted[0].raw  # fields is an allowlist


def test_a_few_skus_are_looked_up_one_call_each_and_many_in_one_walk(planner):
    client, ip = planner
    ip.seed(variants=[variant(n) for n in range(1, 31)])
    few = client.variants_by_sku(["SKU3", "SKU7", "NOT-THERE"])
    assert {sku: v.id for sku, v in few.items()} == {"SKU3": "c1000_3", "SKU7": "c1000_7"}
    assert ip.operations() == ["variants_list"] * 3
    requests.post(f"{ip.url}/_sandbox/calls/clear", timeout=5)
    many = client.variants_by_sku([f"SKU{n}" for n in range(1, 26)])
    assert len(many) == 25
    assert ip.operations() == ["variants_list"]


def test_a_variant_is_read_by_id_and_a_missing_one_is_a_data_error(planner):
    client, ip = planner
    ip.seed(variants=[variant(1)])
    assert client.variant("c1000_1").sku == "SKU1"
    with pytest.raises(DataError) as error:
        client.variant("c1000_999")
    assert error.value.details == ["Failed to find variant c1000_999"]
    assert error.value.exchange.status == 404


def test_planning_settings_are_updated_and_the_variant_is_replanned(planner):
    client, ip = planner
    ip.seed(variants=[variant(1, in_stock=5, velocity=1.0, lead_time=10, review_period=10)])
    before = client.variant("c1000_1")
    after = client.update_variant("c1000_1", lead_time=30, review_period=Decimal("20"))
    assert (after.lead_time, after.review_period) == (30, 20)
    assert after.replenishment > before.replenishment
    assert ip.state()["variants"]["c1000_1"]["lead_time"] == 30


def test_read_only_fields_are_refused_with_the_systems_message(planner):
    client, ip = planner
    ip.seed(variants=[variant(1)])
    with pytest.raises(DataError) as error:
        client.update_variant("c1000_1", sku="OTHER")
    assert error.value.details == ["Field sku is read-only"]
    assert not error.value.transient
    with pytest.raises(DataError, match="Invalid value for lead_time"):
        client.update_variant("c1000_1", lead_time=-3)


def test_a_wrong_key_is_an_auth_error_without_the_key(sandbox, control):
    ip = control("inventory-planner")
    client = InventoryPlannerClient(
        base_url=f"{ip.url}/api/v1", api_key="wrong-key-123456", account=ACCOUNT, retry=FAST_RETRY
    )
    with pytest.raises(AuthError) as error:
        list(client.variants())
    assert "Invalid API key" in str(error.value)
    assert "wrong-key-123456" not in repr(error.value.exchange.as_dict())
    assert error.value.exchange.status == 401


def test_a_bearer_prefix_or_another_account_is_refused(sandbox, control):
    ip = control("inventory-planner")
    bearer = requests.get(f"{ip.url}/api/v1/variants", headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
    assert (bearer.status_code, bearer.json()) == (401, {"result": {"status": "error", "message": "Invalid API key"}})
    client = InventoryPlannerClient(base_url=f"{ip.url}/api/v1", api_key=KEY, account="a2", retry=FAST_RETRY)
    with pytest.raises(AuthError, match="Invalid account"):
        client.variant("c1000_1")


def test_throttling_is_waited_out_as_retry_after_says(planner):
    client, ip = planner
    ip.seed(variants=[variant(1)])
    ip.faults(rate_limit={"limit": 2, "window": 1})
    started = time.monotonic()
    for _ in range(3):
        client.variant("c1000_1")
    elapsed = time.monotonic() - started
    statuses = [call["status"] for call in ip.calls()]
    assert 429 in statuses and statuses[-1] == 200
    assert elapsed >= 0.9


def test_a_long_throttle_is_raised_with_the_seconds_to_wait(planner):
    client, ip = planner
    client.session.retry = RetryPolicy(attempts=3, base_delay=0.01, max_retry_after=0.5)
    ip.seed(variants=[variant(1)])
    ip.faults(rate_limit={"limit": 1, "window": 30})
    client.variant("c1000_1")
    with pytest.raises(RateLimited) as error:
        client.variant("c1000_1")
    assert error.value.retry_after >= 28
    assert "Too many requests" in str(error.value)


def test_server_errors_then_success_are_retried(planner):
    client, ip = planner
    ip.seed(variants=[variant(1)])
    ip.faults(fail_first=2, error_status=500)
    assert client.variant("c1000_1").sku == "SKU1"
    assert [call["status"] for call in ip.calls()] == [500, 500, 200]


def test_a_gateway_page_is_retried_and_its_html_reported(planner):
    client, ip = planner
    ip.faults(fail_first=3, error_status=503)
    with pytest.raises(TransientError, match=r"the system failed \(503\)") as error:
        client.variant("c1000_1")
    assert "cloudflare" in error.value.exchange.response_body


def test_a_timeout_is_a_transient_error_after_the_retries(sandbox, control):
    ip = control("inventory-planner")
    client = InventoryPlannerClient(
        base_url=f"{ip.url}/api/v1",
        api_key=KEY,
        account=ACCOUNT,
        timeouts=Timeouts(connect=1, read=0.3),
        retry=RetryPolicy(attempts=2, base_delay=0.01),
    )
    ip.faults(timeout_rate=1.0, timeout_seconds=0.8)
    with pytest.raises(TransientError, match="no answer within 0.3s"):
        client.variant("c1000_1")
    assert ip.operations() == ["variant_get", "variant_get"]


def test_a_malformed_answer_is_a_clear_transient_error(planner):
    client, ip = planner
    client.session.retry = RetryPolicy(attempts=1)
    ip.faults(malformed_rate=1.0)
    with pytest.raises(TransientError, match="not JSON"):
        list(client.variants())


def test_purchase_orders_are_read_by_status_with_lines_and_dates(planner):
    client, ip = planner
    ip.seed(variants=[variant(1), variant(2)])
    ip.seed(
        purchase_orders=[
            {
                "id": "po1",
                "status": "OPEN",
                "vendor": "porto textile lda",
                "expected_date": "2026-12-01",
                "items": [{"id": "c1000_1", "replenishment": 12, "cost_price": 11.02}],
            },
            {"id": "po2", "status": "CLOSED", "vendor": "x", "items": [{"id": "c1000_2", "replenishment": 3}]},
        ]
    )
    assert [(o.id, o.status) for o in client.purchase_orders()] == [("po1", "OPEN"), ("po2", "CLOSED")]
    (open_order,) = client.purchase_orders(status="open")
    assert open_order.expected_date == date(2026, 12, 1)
    assert open_order.total == Decimal("132.24")
    line = open_order.lines[0]
    assert (line.variant_id, line.ordered, line.received, line.remaining, line.cost_price) == (
        "c1000_1",
        12,
        0,
        12,
        Decimal("11.02"),
    )
    assert client.variant("c1000_1").purchase_orders_qty == 12


def test_purchase_orders_are_created_received_and_refused_in_the_apis_own_shape(planner):
    client, ip = planner
    ip.seed(variants=[variant(1, in_stock=2)])
    created = api(
        ip,
        "POST",
        "purchase-orders",
        json={"purchase-order": {"status": "OPEN", "vendor": "v", "items": [{"id": "c1000_1", "replenishment": 5}]}},
    )
    order = created.json()["purchase-order"]
    assert (created.status_code, order["status"]) == (200, "open")
    received = api(
        ip,
        "PATCH",
        f"purchase-orders/{order['id']}",
        json={"purchase-order": {"items": [{"id": "c1000_1", "received": 2}]}},
    )
    assert received.json()["purchase-order"]["status"] == "partially received"
    assert client.variant("c1000_1").in_stock == 4
    closed = api(ip, "PUT", f"purchase-orders/{order['id']}", json={"purchase-order": {"status": "CLOSED"}})
    assert closed.json()["purchase-order"]["readonly"] is True
    assert client.variant("c1000_1").in_stock == 7
    assert api(ip, "GET", f"purchase-orders/{order['id']}/items").json()["meta"]["total"] == 1
    refused = api(ip, "POST", "purchase-orders", json={"purchase-order": {"vendor": "v", "items": [{"id": "nope"}]}})
    assert (refused.status_code, refused.json()) == (
        400,
        {"result": {"status": "error", "message": "Failed to find variant nope"}},
    )


def test_generated_data_matches_the_world_and_repeats_exactly(planner):
    client, ip = planner
    first = ip.seed(generate={"seed": 5, "products": 8})
    world = generate(seed=5, products=8)
    stock = {size.sku: sum(size.on_hand.values()) for _, _, size in world.sizes()}
    variants = list(client.variants(page_size=50))
    on_order = {}
    for order in client.purchase_orders(status="OPEN"):
        for line in order.lines:
            on_order[line.variant_id] = on_order.get(line.variant_id, 0) + line.remaining
    assert {v.sku: v.in_stock for v in variants} == stock
    assert all(v.purchase_orders_qty >= on_order.get(v.id, 0) for v in variants)
    assert {o.status for o in client.purchase_orders()} >= {"OPEN", "DRAFT", "PARTIALLY RECEIVED", "CLOSED"}
    state = ip.state()
    assert ip.seed(generate={"seed": 5, "products": 8}) == first
    assert ip.state() == state


def test_demo_ticks_move_velocities_and_receive_purchase_orders(planner, sandbox):
    client, ip = planner
    ip.seed(generate={"seed": 5, "products": 8})
    simulator = sandbox.simulator("inventory-planner")

    def received() -> int:
        return sum(line.received for order in client.purchase_orders() for line in order.lines)

    before = {v.id: v.velocity_per_day for v in client.variants(page_size=200)}
    received_before = received()
    rng = random.Random(1)
    for _ in range(30):
        simulator.tick(rng)
    after = {v.id: v.velocity_per_day for v in client.variants(page_size=200)}
    assert sum(1 for key in before if before[key] != after[key]) >= 5
    assert received() > received_before
