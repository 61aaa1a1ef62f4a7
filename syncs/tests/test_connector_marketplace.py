"""The generic marketplace connector against the marketplace simulator, over HTTP."""

import queue
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from syncs.connectors.errors import AuthError, DataError, RateLimited, TransientError, WebhookRejected
from syncs.connectors.http import RetryPolicy, Timeouts
from syncs.connectors.marketplace import (
    GenericMarketplaceClient,
    MarketplaceAdapter,
    PriceUpdate,
    ReturnLine,
    ShipmentLine,
    StockUpdate,
    verify_webhook,
)

FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
API_KEY = "sandbox-marketplace"
WEBHOOK_SECRET = "sandbox-marketplace-webhooks"
READING = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def order(order_id: str, lines: int = 1, status: str = "NEW", updated_at: str = "2026-11-01T09:00:00+00:00") -> dict:
    return {
        "id": order_id,
        "status": status,
        "created_at": "2026-11-01T09:00:00+00:00",
        "updated_at": updated_at,
        "currency": "EUR",
        "shipping_method": "STANDARD",
        "shipping_price": "4.95",
        "customer": {"first_name": "Alva", "last_name": "Lind", "country": "DE"},
        "lines": [
            {
                "id": f"{order_id}-{n + 1}",
                "seller_sku": f"TEE100BLK{size}",
                "quantity": 2,
                "unit_price": "29.90",
                "tax_rate": "19",
            }
            for n, size in enumerate(["S", "M", "L"][:lines])
        ],
    }


def offers(*skus: str) -> list[dict]:
    return [{"sku": sku, "title": f"Tee {sku}", "price": "29.00", "quantity": 0} for sku in skus]


@pytest.fixture
def marketplace(sandbox, control):
    market = control("marketplace")
    client = GenericMarketplaceClient(base_url=f"{market.url}/api/v1", api_key=API_KEY, retry=FAST_RETRY, page_size=2)
    return client, market


def test_the_client_is_a_marketplace_adapter(marketplace):
    client, _ = marketplace
    assert isinstance(client, MarketplaceAdapter)


def test_it_reads_every_page_of_new_orders_with_exact_amounts(marketplace):
    client, market = marketplace
    market.seed(orders=[order(f"MP-{n}") for n in range(5)] + [order("MP-OLD", status="ACCEPTED")])
    orders = list(client.all_new_orders())
    assert [o.order_id for o in orders] == ["MP-0", "MP-1", "MP-2", "MP-3", "MP-4"]
    first = orders[0]
    assert (first.lines[0].unit_price, first.shipping_price, first.total_price) == (
        Decimal("29.90"),
        Decimal("4.95"),
        Decimal("64.75"),
    )
    assert first.lines[0].sku == "TEE100BLKS"
    assert market.operations() == ["orders_list", "orders_list", "orders_list"]


def test_new_orders_hands_back_the_cursor_and_none_on_the_last_page(marketplace):
    client, market = marketplace
    market.seed(orders=[order(f"MP-{n}") for n in range(3)])
    page, cursor = client.new_orders()
    assert [o.order_id for o in page] == ["MP-0", "MP-1"]
    assert cursor
    page, cursor = client.new_orders(cursor)
    assert ([o.order_id for o in page], cursor) == (["MP-2"], None)


def test_a_cursor_the_marketplace_did_not_issue_is_a_data_error(marketplace):
    client, market = marketplace
    market.seed(offers=offers("A1", "A2", "A3", "A4", "A5"))
    offer_cursor = requests.get(
        f"{market.url}/api/v1/offers?limit=1", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5
    ).json()["next_cursor"]
    for cursor in ("not-a-cursor", offer_cursor):
        with pytest.raises(DataError) as error:
            client.new_orders(cursor)
        assert error.value.codes == ["INVALID_CURSOR"]


def test_orders_updated_since_reads_only_later_changes(marketplace):
    client, market = marketplace
    market.seed(
        orders=[
            order("MP-A", updated_at="2026-11-01T09:00:00+00:00"),
            order("MP-B", status="SHIPPED", updated_at="2026-11-03T09:00:00+00:00"),
            order("MP-C", updated_at="2026-11-04T09:00:00+00:00"),
        ]
    )
    since = datetime(2026, 11, 2, tzinfo=UTC)
    assert [o.order_id for o in client.orders_updated_since(since)] == ["MP-B", "MP-C"]


def test_wrong_api_key_is_an_auth_error_without_the_key(sandbox, control):
    market = control("marketplace")
    client = GenericMarketplaceClient(base_url=f"{market.url}/api/v1", api_key="wrong-key-123", retry=FAST_RETRY)
    with pytest.raises(AuthError) as error:
        client.carriers()
    assert "INVALID_API_KEY" in str(error.value)
    assert "wrong-key-123" not in repr(error.value.exchange.as_dict())


def test_throttling_is_waited_out_using_retry_after(marketplace):
    client, market = marketplace
    market.faults(rate_limit={"limit": 2, "window": 1})
    started = time.monotonic()
    for _ in range(3):
        client.carriers()
    statuses = [call["status"] for call in market.calls()]
    assert 429 in statuses
    assert statuses[-1] == 200
    assert time.monotonic() - started >= 0.9  # it waited as told rather than hammering


def test_a_long_throttle_is_raised_for_the_scheduler_to_come_back_later(marketplace):
    client, market = marketplace
    client.session.retry = RetryPolicy(attempts=3, base_delay=0.01, max_retry_after=0.5)
    market.faults(rate_limit={"limit": 1, "window": 30})
    client.carriers()
    with pytest.raises(RateLimited) as error:
        client.carriers()
    assert error.value.retry_after >= 28
    assert "RATE_LIMITED" in str(error.value)


def test_a_server_error_then_success_is_retried(marketplace):
    client, market = marketplace
    market.seed(orders=[order("MP-1")])
    market.faults(fail_first=2, error_status=503)
    assert [o.order_id for o in client.all_new_orders()] == ["MP-1"]
    assert [c["status"] for c in market.calls()] == [503, 503, 200]


def test_a_timeout_is_a_transient_error_after_the_retries(sandbox, control):
    market = control("marketplace")
    client = GenericMarketplaceClient(
        base_url=f"{market.url}/api/v1",
        api_key=API_KEY,
        timeouts=Timeouts(connect=1, read=0.3),
        retry=RetryPolicy(attempts=2, base_delay=0.01),
    )
    market.faults(timeout_rate=1.0, timeout_seconds=1.0)
    with pytest.raises(TransientError, match="no answer within 0.3s"):
        client.carriers()
    assert market.operations() == ["carriers_list", "carriers_list"]


def test_a_return_that_timed_out_is_not_sent_again_blindly(sandbox, control):
    market = control("marketplace")
    market.seed(orders=[order("MP-1", status="SHIPPED")])
    requests.post(f"{market.url}/_sandbox/calls/clear", timeout=5)
    client = GenericMarketplaceClient(
        base_url=f"{market.url}/api/v1", api_key=API_KEY, timeouts=Timeouts(connect=1, read=0.3), retry=FAST_RETRY
    )
    market.faults(timeout_rate=1.0, timeout_seconds=0.6, fail_operations=["return_create"])
    with pytest.raises(TransientError):
        client.report_return("MP-1", [ReturnLine("MP-1-1", 1)], reason="SIZE_TOO_SMALL")
    assert market.operations().count("return_create") == 1


def test_a_malformed_answer_is_a_clear_transient_error(marketplace):
    client, market = marketplace
    client.session.retry = RetryPolicy(attempts=1)
    market.faults(malformed_rate=1.0)
    with pytest.raises(TransientError, match="not JSON"):
        client.new_orders()


def test_acknowledging_twice_is_harmless_and_the_order_leaves_the_new_list(marketplace):
    client, market = marketplace
    market.seed(orders=[order("MP-1"), order("MP-2")])
    first = client.acknowledge("MP-1")
    again = client.acknowledge("MP-1")
    assert (first.status, first.acknowledged, again.status) == ("ACCEPTED", True, "ACCEPTED")
    assert first.raw["acknowledged_at"] == again.raw["acknowledged_at"]
    assert [o.order_id for o in client.all_new_orders()] == ["MP-2"]


def test_an_unknown_order_is_a_data_error(marketplace):
    client, _ = marketplace
    with pytest.raises(DataError) as error:
        client.order("MP-NOPE")
    assert error.value.codes == ["NOT_FOUND"]


def test_shipping_with_an_unknown_carrier_code_is_a_data_error_naming_it(marketplace):
    client, market = marketplace
    market.seed(orders=[order("MP-1", status="ACCEPTED")])
    with pytest.raises(DataError) as error:
        client.ship("MP-1", [ShipmentLine("MP-1-1", 1)], "DHL", "JD0001")
    assert error.value.codes == ["UNKNOWN_CARRIER"]
    assert error.value.details == [
        "UNKNOWN_CARRIER: Unknown carrier code 'DHL': use a code from GET /api/v1/carriers. (carrier_code)"
    ]
    assert not error.value.transient


def test_every_validation_problem_comes_back_in_the_details(marketplace):
    client, market = marketplace
    market.seed(orders=[order("MP-1", status="ACCEPTED")])
    with pytest.raises(DataError) as error:
        client.ship("MP-1", [ShipmentLine("MP-1-9", 1), ShipmentLine("MP-1-1", 5)], "DHL_PAKET", "")
    assert error.value.codes == ["REQUIRED", "UNKNOWN_LINE", "QUANTITY_EXCEEDS_OPEN"]


def test_shipping_before_acknowledging_is_refused(marketplace):
    client, market = marketplace
    market.seed(orders=[order("MP-1")])
    with pytest.raises(DataError) as error:
        client.ship("MP-1", [ShipmentLine("MP-1-1", 1)], "DHL_PAKET", "JD0001")
    assert error.value.codes == ["ORDER_NOT_ACKNOWLEDGED"]


def test_partial_shipments_then_the_rest_and_a_resent_shipment_is_not_doubled(marketplace):
    client, market = marketplace
    market.seed(orders=[order("MP-1", lines=2)])
    client.acknowledge("MP-1")
    assert "DHL_PAKET" in [carrier.code for carrier in client.carriers()]
    first = client.ship("MP-1", [ShipmentLine("MP-1-1", 2)], "DHL_PAKET", "JD0001")
    assert client.ship("MP-1", [ShipmentLine("MP-1-1", 2)], "DHL_PAKET", "JD0001") == first
    partly = client.order("MP-1")
    assert partly.status == "PARTIALLY_SHIPPED"
    assert [(line.status, line.open_quantity) for line in partly.lines] == [("SHIPPED", 0), ("ACCEPTED", 2)]
    client.ship("MP-1", [ShipmentLine("MP-1-2", 2)], "UPS_STANDARD", "1Z999")
    shipped = client.order("MP-1")
    assert shipped.status == "SHIPPED"
    assert [s["tracking_number"] for s in shipped.raw["shipments"]] == ["JD0001", "1Z999"]


def test_a_line_is_cancelled_with_a_reason_and_cancelling_again_is_harmless(marketplace):
    client, market = marketplace
    market.seed(orders=[order("MP-1", lines=2)])
    client.cancel_line("MP-1", "MP-1-1", reason="OUT_OF_STOCK", quantity=1)
    client.cancel_line("MP-1", "MP-1-1", reason="OUT_OF_STOCK")
    client.cancel_line("MP-1", "MP-1-1", reason="OUT_OF_STOCK")
    line = client.order("MP-1").lines[0]
    assert (line.status, line.cancelled_quantity) == ("CANCELLED", 2)
    client.cancel_line("MP-1", "MP-1-2", reason="PRICE_ERROR")
    assert client.order("MP-1").status == "CANCELLED"


def test_a_reason_code_the_marketplace_does_not_know_is_a_data_error(marketplace):
    client, market = marketplace
    market.seed(orders=[order("MP-1")])
    response = requests.post(
        f"{market.url}/api/v1/orders/MP-1/lines/MP-1-1/cancel",
        json={"reason_code": "BORED"},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "INVALID_REASON_CODE"
    with pytest.raises(ValueError):
        client.cancel_line("MP-1", "MP-1-1", reason="BORED")


def test_a_return_is_reported_for_shipped_units_only(marketplace):
    client, market = marketplace
    market.seed(orders=[order("MP-1")])
    client.acknowledge("MP-1")
    client.ship("MP-1", [ShipmentLine("MP-1-1", 1)], "DPD_CLASSIC", "DPD1")
    assert client.report_return("MP-1", [ReturnLine("MP-1-1", 1)], reason="SIZE_TOO_SMALL").startswith("RET-")
    assert client.order("MP-1").lines[0].returned_quantity == 1
    with pytest.raises(DataError) as error:
        client.report_return("MP-1", [ReturnLine("MP-1-1", 1)], reason="DEFECTIVE")
    assert error.value.codes == ["QUANTITY_EXCEEDS_OPEN"]


def test_stock_updates_report_partial_success_per_sku(marketplace):
    client, market = marketplace
    market.seed(offers=offers("TEE100BLKS", "TEE100BLKM"))
    client.update_stock([StockUpdate("TEE100BLKM", 9, READING)])
    results = client.update_stock(
        [
            StockUpdate("TEE100BLKS", 5, READING),
            StockUpdate("UNKNOWN-1", 3, READING),
            StockUpdate("TEE100BLKM", 2, READING - timedelta(minutes=5)),  # older than the 9 already there
        ]
    )
    assert [(r.sku, r.status, r.quantity, r.error_code) for r in results] == [
        ("TEE100BLKS", "UPDATED", 5, None),
        ("UNKNOWN-1", "REJECTED", None, "UNKNOWN_SKU"),
        ("TEE100BLKM", "STALE", 9, None),
    ]
    assert {o.sku: o.quantity for o in client.offers()} == {"TEE100BLKM": 9, "TEE100BLKS": 5}


def test_stock_is_split_into_batches_of_the_api_maximum(marketplace):
    client, market = marketplace
    skus = [f"SKU{n:04d}" for n in range(1001)]
    market.seed(offers=offers(*skus))
    results = client.update_stock(StockUpdate(sku, 1, READING) for sku in skus)
    assert len(results) == 1001
    assert not any(result.rejected for result in results)
    assert market.operations() == ["stock_update"] * 3
    too_many = [{"sku": sku, "quantity": 1, "updated_at": READING.isoformat()} for sku in skus[:501]]
    response = requests.put(
        f"{market.url}/api/v1/stock",
        json={"items": too_many},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=5,
    )
    assert (response.status_code, response.json()["errors"][0]["code"]) == (400, "BATCH_TOO_LARGE")


def test_prices_go_as_decimal_strings_and_a_wrong_currency_is_rejected_per_sku(marketplace):
    client, market = marketplace
    market.seed(offers=offers("TEE100BLKS", "TEE100BLKM"))
    results = client.update_prices(
        [PriceUpdate("TEE100BLKS", Decimal("24.50"), "EUR"), PriceUpdate("TEE100BLKM", Decimal("21.00"), "GBP")]
    )
    assert [(r.status, r.error_code) for r in results] == [("UPDATED", None), ("REJECTED", "CURRENCY_MISMATCH")]
    assert {o.sku: o.price for o in client.offers()} == {"TEE100BLKM": Decimal("29.00"), "TEE100BLKS": Decimal("24.50")}
    with pytest.raises(ValueError):
        client.update_prices([PriceUpdate("TEE100BLKS", 24.5, "EUR")])


def test_offers_are_read_page_by_page_with_marketplace_side_edits(marketplace):
    client, market = marketplace
    market.seed(offers=offers("A1", "A2", "A3", "A4", "A5"))
    requests.post(
        f"{market.url}/_sandbox/offer-edit", json={"sku": "A3", "title": "Renamed by the marketplace"}, timeout=5
    )
    read = list(client.offers())
    assert [offer.sku for offer in read] == ["A1", "A2", "A3", "A4", "A5"]
    assert read[2].title == "Renamed by the marketplace"
    assert market.operations() == ["offers_list", "offers_list"]  # 4 a page


def test_generated_demo_data_carries_orders_offers_and_unknown_skus(marketplace):
    client, market = marketplace
    options = {"seed": 7, "products": 10, "marketplace_orders": 10, "unmapped_share": 0.5}
    summary = market.seed(generate=options)
    state = market.state()
    assert summary["seeded"]["orders"] == 10
    orders = list(client.all_new_orders())
    assert len(orders) == 10
    assert any(line.sku.startswith("UNKNOWN-") for o in orders for line in o.lines)
    assert market.seed(generate=options) == summary
    assert market.state() == state


def test_the_demo_tick_brings_orders_and_customer_cancellations(sandbox, marketplace):
    client, market = marketplace
    market.seed(generate={"seed": 3, "products": 5, "marketplace_orders": 2})
    simulator = sandbox.simulator("marketplace")
    rng = random.Random(5)
    for _ in range(40):
        simulator.tick(rng)
    state = market.state()
    assert any(order_id.startswith("MP-LIVE-") for order_id in state["orders"])
    cancellations = [c for o in state["orders"].values() for line in o["lines"] for c in line.get("cancellations", [])]
    assert cancellations and all(c["initiated_by"] == "customer" for c in cancellations)


# --- webhooks -----------------------------------------------------------------------------------------------------


@pytest.fixture
def received(sandbox):
    """A receiver the marketplace simulator sends its webhooks to; yields a queue of (body, headers)."""
    inbox: queue.Queue = queue.Queue()

    def app(environ, start_response):
        request = Request(environ)
        inbox.put((request.get_data(), dict(request.headers)))
        return Response("ok")(environ, start_response)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    simulator = sandbox.simulator("marketplace")
    simulator.webhook_url = f"http://127.0.0.1:{server.server_port}/webhooks/marketplace/"
    simulator.webhook_secret = WEBHOOK_SECRET
    yield inbox
    simulator.webhook_url = None
    server.shutdown()


def test_a_new_order_is_announced_by_a_signed_webhook(received, marketplace):
    _, market = marketplace
    market.seed(offers=offers("TEE100BLKS"))
    requests.post(f"{market.url}/_sandbox/orders", json=order("MP-9"), timeout=5).raise_for_status()
    body, headers = received.get(timeout=5)
    event = verify_webhook(secret=WEBHOOK_SECRET, body=body, headers=headers)
    assert (event["type"], event["data"]["order"]["id"]) == ("order.created", "MP-9")


def test_a_customer_cancellation_is_announced_by_a_signed_webhook(received, marketplace):
    _, market = marketplace
    market.seed(orders=[order("MP-1")])
    requests.post(
        f"{market.url}/_sandbox/customer-cancel", json={"order_id": "MP-1", "line_id": "MP-1-1"}, timeout=5
    ).raise_for_status()
    body, headers = received.get(timeout=5)
    event = verify_webhook(secret=WEBHOOK_SECRET, body=body, headers=headers)
    assert event["type"] == "order.cancelled"
    assert event["data"]["lines"] == [{"line_id": "MP-1-1", "quantity": 2, "reason_code": "CUSTOMER_REQUEST"}]


def test_a_webhook_with_a_wrong_secret_a_changed_body_or_no_signature_is_rejected(received, marketplace):
    _, market = marketplace
    market.seed(offers=offers("TEE100BLKS"))
    requests.post(f"{market.url}/_sandbox/orders", json=order("MP-9"), timeout=5).raise_for_status()
    body, headers = received.get(timeout=5)
    with pytest.raises(WebhookRejected, match="does not match"):
        verify_webhook(secret="another-secret", body=body, headers=headers)
    with pytest.raises(WebhookRejected, match="does not match"):
        verify_webhook(secret=WEBHOOK_SECRET, body=body.replace(b"MP-9", b"MP-8"), headers=headers)
    with pytest.raises(WebhookRejected, match="no X-Marketplace-Signature"):
        verify_webhook(secret=WEBHOOK_SECRET, body=body, headers={"Content-Type": "application/json"})
    with pytest.raises(WebhookRejected, match="not of the form"):
        verify_webhook(secret=WEBHOOK_SECRET, body=body, headers={"X-Marketplace-Signature": "sha256=abc"})


def test_a_webhook_replayed_after_the_tolerance_is_rejected(received, marketplace):
    _, market = marketplace
    market.seed(offers=offers("TEE100BLKS"))
    requests.post(f"{market.url}/_sandbox/orders", json=order("MP-9"), timeout=5).raise_for_status()
    body, headers = received.get(timeout=5)
    signed_at = int(headers["X-Marketplace-Signature"].split(",")[0].removeprefix("t="))
    assert verify_webhook(secret=WEBHOOK_SECRET, body=body, headers=headers, now=signed_at + 299)
    with pytest.raises(WebhookRejected, match="expired or replayed"):
        verify_webhook(secret=WEBHOOK_SECRET, body=body, headers=headers, now=signed_at + 301)


def test_offers_can_be_listed_up_to_500_a_page(marketplace):
    client, market = marketplace
    market.seed(offers=offers("A1", "A2", "A3", "A4", "A5"))
    assert [offer.sku for offer in client.offers(page_size=500)] == ["A1", "A2", "A3", "A4", "A5"]
    assert [offer.sku for offer in client.offers(page_size=5000)] == ["A1", "A2", "A3", "A4", "A5"]  # at most 500
    assert market.operations() == ["offers_list", "offers_list"]
