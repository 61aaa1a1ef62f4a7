"""The Virtualstock connector against the Virtualstock simulator, over HTTP."""

import time
from datetime import date
from decimal import Decimal

import pytest
import requests

from syncs.connectors.errors import AuthError, DataError, RateLimited, TransientError
from syncs.connectors.http import RetryPolicy, Timeouts
from syncs.connectors.virtualstock import DispatchLine, LineQuantity, VirtualstockClient

FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)


def order(order_id: int, reference: str, lines: int = 1, status: str = "ORDER") -> dict:
    return {
        "id": order_id,
        "order_reference": reference,
        "status": status,
        "currency_code": "GBP",
        "retailer": {"id": 245, "name": "John Lewis"},
        "subtotal": "30.90",
        "tax": "6.18",
        "total": "37.08",
        "delivery_service_code": "standard",
        "items": [
            {
                "part_number": f"TEE100BLK{size}",
                "line_reference": f"{order_id}{n}",
                "quantity": 1,
                "unit_cost_price": "30.90",
                "subtotal": "30.90",
                "tax": "6.18",
                "tax_rate": "20.00",
                "total": "37.08",
            }
            for n, size in enumerate(["S", "M", "L"][:lines])
        ],
    }


@pytest.fixture
def virtualstock(sandbox, control):
    vs = control("virtualstock")
    client = VirtualstockClient(base_url=vs.url, username="supplier", password="sandbox", retry=FAST_RETRY, page_size=2)
    return client, vs


def test_it_reads_every_page_of_new_orders_with_exact_amounts(virtualstock):
    client, vs = virtualstock
    vs.seed(orders=[order(100 + n, f"JL{n}") for n in range(5)] + [order(200, "OLD", status="DISPATCH")])
    orders = list(client.orders(status="ORDER"))
    assert [o.reference for o in orders] == ["JL0", "JL1", "JL2", "JL3", "JL4"]
    assert orders[0].id == 100
    assert (orders[0].total, orders[0].lines[0].tax) == (Decimal("37.08"), Decimal("6.18"))
    assert vs.operations() == ["token", "orders_list", "orders_list", "orders_list"]


def test_wrong_credentials_are_an_auth_error_without_the_password(sandbox, control):
    vs = control("virtualstock")
    client = VirtualstockClient(base_url=vs.url, username="supplier", password="wrong-password", retry=FAST_RETRY)
    with pytest.raises(AuthError) as error:
        list(client.orders())
    assert "No active account" in str(error.value)
    assert "wrong-password" not in repr(error.value.exchange.as_dict())


def test_the_access_token_is_refreshed_before_it_expires_and_sign_in_repeats_when_refresh_dies(sandbox, control):
    vs = control("virtualstock")
    vs.seed(config={"access_lifetime": 1, "refresh_lifetime": 2})
    client = VirtualstockClient(
        base_url=vs.url, username="supplier", password="sandbox", access_lifetime=1, refresh_lifetime=2
    )
    client.carriers()
    time.sleep(1.0)
    client.carriers()
    time.sleep(1.1)
    client.carriers()
    assert vs.operations() == ["token", "carriers", "token_refresh", "carriers", "token", "carriers"]


def test_a_token_revoked_early_is_replaced_once(virtualstock):
    client, vs = virtualstock
    client.carriers()
    requests.post(f"{vs.url}/_sandbox/reset", timeout=5)  # forgets every token, as a key rotation would
    assert [carrier.slug for carrier in client.carriers()][:1] == ["dhl"]
    assert vs.operations() == ["carriers", "token_refresh", "token", "carriers"]


def test_throttling_is_waited_out_using_the_seconds_virtualstock_names(virtualstock):
    client, vs = virtualstock
    vs.faults(rate_limit={"limit": 2, "window": 1})
    started = time.monotonic()
    for _ in range(2):
        client.carriers()
    elapsed = time.monotonic() - started
    statuses = [call["status"] for call in vs.calls()]
    assert 429 in statuses
    assert statuses[-1] == 200
    assert elapsed >= 0.9  # it waited as told rather than hammering


def test_a_long_throttle_is_raised_for_the_scheduler_to_come_back_later(virtualstock):
    client, vs = virtualstock
    client.session.retry = RetryPolicy(attempts=3, base_delay=0.01, max_retry_after=0.5)
    vs.faults(rate_limit={"limit": 1, "window": 30})
    with pytest.raises(RateLimited) as error:
        client.carriers()  # the token call takes the only place in the window
    assert error.value.retry_after >= 28
    assert error.value.transient


def test_a_server_error_then_success_is_retried(virtualstock):
    client, vs = virtualstock
    vs.seed(orders=[order(100, "JL1")])
    client.carriers()  # signed in
    vs.faults(fail_first=2, error_status=502)
    assert [o.reference for o in client.orders()] == ["JL1"]
    assert [c["status"] for c in vs.calls()][-3:] == [502, 502, 200]


def test_a_timeout_is_a_transient_error_after_the_retries(sandbox, control):
    vs = control("virtualstock")
    client = VirtualstockClient(
        base_url=vs.url,
        username="supplier",
        password="sandbox",
        timeouts=Timeouts(connect=1, read=0.3),
        retry=RetryPolicy(attempts=2, base_delay=0.01),
    )
    client.carriers()
    vs.faults(timeout_rate=1.0, timeout_seconds=1.0)
    with pytest.raises(TransientError, match="no answer within 0.3s"):
        client.carriers()
    assert vs.operations().count("carriers") == 3  # one before, two tries


def test_a_dispatch_that_timed_out_is_not_sent_again_blindly(sandbox, control):
    vs = control("virtualstock")
    vs.seed(orders=[order(100, "JL1", status="ORDER_ACK")])
    client = VirtualstockClient(
        base_url=vs.url,
        username="supplier",
        password="sandbox",
        timeouts=Timeouts(connect=1, read=0.3),
        retry=FAST_RETRY,
    )
    client.carriers()
    vs.faults(timeout_rate=1.0, timeout_seconds=0.6, fail_operations=["dispatch"])
    line = DispatchLine("TEE100BLKS", "1000", 1, "TRACK1", "dpd", date(2026, 11, 26))
    with pytest.raises(TransientError):
        client.dispatch(100, [line])
    assert vs.operations().count("dispatch") == 1


def test_a_malformed_answer_is_a_clear_transient_error(virtualstock):
    client, vs = virtualstock
    client.session.retry = RetryPolicy(attempts=1)
    client.carriers()
    vs.faults(malformed_rate=1.0)
    with pytest.raises(TransientError, match="not JSON"):
        list(client.orders())


def test_acknowledge_then_dispatch_with_a_carrier_slug(virtualstock):
    client, vs = virtualstock
    vs.seed(orders=[order(100, "JL1", lines=2)])
    client.acknowledge(100, [LineQuantity("TEE100BLKS", "1000", 1), LineQuantity("TEE100BLKM", "1001", 1)])
    assert client.order(100).status == "ORDER_ACK"
    client.dispatch(100, [DispatchLine("TEE100BLKS", "1000", 1, "JD0001", "dpd", date(2026, 11, 26))])
    shipped = client.order(100)
    assert [line.status for line in shipped.lines] == ["DISPATCH", "ORDER_ACK"]
    dispatch = vs.state()["orders"]["100"]["items"][0]["dispatches"][0]
    assert (dispatch["carrier"], dispatch["tracking_number"]) == ("dpd", "JD0001")


def test_an_unknown_carrier_slug_is_a_data_error_naming_it(virtualstock):
    client, vs = virtualstock
    vs.seed(orders=[order(100, "JL1", status="ORDER_ACK")])
    with pytest.raises(DataError) as error:
        client.dispatch(100, [DispatchLine("TEE100BLKS", "1000", 1, "T1", "hermes", date(2026, 11, 26))])
    assert error.value.details == ["Item 1: carrier 'hermes' is not a carrier slug on Virtualstock"]
    assert not error.value.transient


def test_stock_is_set_per_product_and_an_unknown_product_is_a_data_error(virtualstock):
    client, vs = virtualstock
    vs.seed(products=[{"id": 617172, "part_number": "TEE100BLKS"}, {"id": 617173, "part_number": "TEE100BLKM"}])
    client.set_stock(617172, 7)
    assert {p.part_number: p.free_stock for p in client.products()} == {"TEE100BLKS": 7, "TEE100BLKM": 0}
    assert [p.id for p in client.products(part_number="TEE100BLKM")] == [617173]
    with pytest.raises(DataError, match="Product not found"):
        client.set_stock(999, 1)


def test_generated_demo_data_carries_orders_products_and_unknown_skus(virtualstock):
    client, vs = virtualstock
    summary = vs.seed(generate={"seed": 7, "products": 10, "virtualstock_orders": 8, "unmapped_share": 0.5})
    assert summary["seeded"]["orders"] == 8
    orders = list(client.orders())
    assert len(orders) == 8
    assert any(line.part_number.startswith("UNKNOWN-") for o in orders for line in o.lines)
    again = vs.seed(generate={"seed": 7, "products": 10, "virtualstock_orders": 8, "unmapped_share": 0.5})
    assert again == summary


def test_demo_mode_brings_new_retailer_orders(sandbox, virtualstock):
    import random

    client, vs = virtualstock
    vs.seed(generate={"seed": 3, "products": 4, "virtualstock_orders": 0})
    simulator = sandbox.simulator("virtualstock")
    rng = random.Random(1)
    for _ in range(20):
        simulator.tick(rng)
    new = list(client.orders())
    assert new, "twenty ticks bring at least one order"
    assert all(line.part_number in {p.part_number for p in client.products()} for o in new for line in o.lines)


def test_products_are_listed_up_to_1000_a_page_when_asked(virtualstock):
    client, vs = virtualstock
    vs.seed(products=[{"id": 617170 + n, "part_number": f"TEE100BLK{n}"} for n in range(5)])
    assert len(list(client.products())) == 5
    assert vs.operations().count("products_list") == 3  # the client's pages of 2
    assert [p.id for p in client.products(page_size=1000)] == [617170 + n for n in range(5)]
    assert vs.operations().count("products_list") == 4
