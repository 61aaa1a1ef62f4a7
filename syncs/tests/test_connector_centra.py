"""The Centra connector against the Centra simulator, over HTTP."""

import hashlib
import hmac
import time
from decimal import Decimal
from urllib.parse import urlencode

import pytest

from syncs.connectors.centra import (
    CentraClient,
    ExternalOrder,
    OrderNumberTaken,
    ShipmentToCreate,
    StockLevel,
    verify_webhook,
)
from syncs.connectors.errors import AuthError, DataError, RateLimited, TransientError, WebhookRejected
from syncs.connectors.http import RetryPolicy, Timeouts

FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
TEE = {
    "name": "Organic Cotton Tee",
    "productNumber": "TEE100",
    "prices": {"2": "29.00", "1": "349.00"},
    "variants": [
        {
            "name": "Black",
            "variantNumber": "BLK",
            "sizes": [
                {"sizeNumber": "S", "name": "S", "EAN": "7300000000017", "stock": {"1": 10}},
                {"sizeNumber": "M", "name": "M", "EAN": "7300000000024", "stock": {"1": 4}},
            ],
        }
    ],
}


def web_order(number: int, *, status: str = "CONFIRMED", captured: bool = True, quantity: int = 1) -> dict:
    return {
        "number": number,
        "status": status,
        "marketId": 2,
        "shipping": "4.95",
        "captured": captured,
        "customer": {"email": f"c{number}@example.com", "first_name": "Alva", "country": "DE"},
        "lines": [{"sku": "TEE100BLKS", "quantity": quantity, "unitPrice": "29.00", "discount": "2.90"}],
    }


@pytest.fixture
def centra(sandbox, control):
    simulator = control("centra")
    simulator.seed(products=[TEE])
    client = CentraClient(
        base_url=simulator.url,
        token="sandbox-centra",
        order_api_url=f"{simulator.url}/api/order",
        order_api_key="sandbox-centra-orders",
        retry=FAST_RETRY,
        page_size=2,
    )
    return client, simulator


def test_it_reads_every_page_of_orders_with_exact_money(centra):
    client, simulator = centra
    simulator.seed(orders=[web_order(1000 + n) for n in range(5)])
    orders = list(client.orders(where={"status": ["CONFIRMED"]}))
    assert [o.number for o in orders] == [1000, 1001, 1002, 1003, 1004]
    order = orders[0]
    assert (order.currency, order.grand_total, order.shipping) == ("EUR", Decimal("31.05"), Decimal("4.95"))
    line = order.lines[0]
    assert (line.sku, line.unit_original_price, line.unit_price) == ("TEE100BLKS", Decimal("29.00"), Decimal("26.10"))
    assert line.line_value_excluding_tax + (line.line_value - line.line_value_excluding_tax) == line.line_value
    assert order.line_values - order.discounts + order.shipping == order.grand_total
    assert simulator.operations() == ["orders", "orders", "orders"]


def test_a_bad_token_is_an_auth_error_with_the_token_redacted(sandbox, control):
    simulator = control("centra")
    client = CentraClient(base_url=simulator.url, token="not-the-token-123", retry=FAST_RETRY)
    with pytest.raises(AuthError) as error:
        client.warehouses()
    assert "403" in str(error.value)
    assert "not-the-token-123" not in repr(error.value.exchange.as_dict())


def test_a_429_is_waited_out_until_the_timestamp_centra_names(centra):
    client, simulator = centra
    simulator.faults(rate_limit={"limit": 1, "window": 1})
    client.warehouses()
    started = time.monotonic()
    client.warehouses()
    statuses = [call["status"] for call in simulator.calls()]
    assert statuses == [200, 429, 200]
    assert time.monotonic() - started >= 0.5


def test_a_429_far_in_the_future_is_raised_with_the_seconds_to_wait(centra):
    client, simulator = centra
    client.session.retry = RetryPolicy(attempts=3, base_delay=0.01, max_retry_after=2)
    simulator.faults(rate_limit={"limit": 1, "window": 60})
    client.warehouses()
    with pytest.raises(RateLimited) as error:
        client.warehouses()
    assert 55 <= error.value.retry_after <= 62
    assert error.value.exchange.response_headers["Retry-After"].isdigit()


def test_a_query_is_retried_after_a_server_error(centra):
    client, simulator = centra
    simulator.faults(fail_first=2, error_status=503)
    assert [w["name"] for w in client.warehouses()] == ["Main warehouse", "Retail store"]
    assert [call["status"] for call in simulator.calls()] == [503, 503, 200]


def test_a_shipment_is_not_created_twice_when_the_first_answer_was_a_500(centra):
    client, simulator = centra
    simulator.seed(orders=[web_order(1000)])
    line_id = client.order(1000).lines[0].id
    simulator.faults(fail_first=1, error_status=500)
    with pytest.raises(TransientError):
        client.create_shipment(order_number=1000, lines=[(line_id, 1)])
    assert simulator.operations().count("createShipment") == 1


def test_a_timeout_is_a_transient_error(sandbox, control):
    simulator = control("centra")
    client = CentraClient(
        base_url=simulator.url,
        token="sandbox-centra",
        timeouts=Timeouts(connect=1, read=0.3),
        retry=RetryPolicy(attempts=2, base_delay=0.01),
    )
    simulator.faults(timeout_rate=1.0, timeout_seconds=0.8)
    with pytest.raises(TransientError, match="no answer within 0.3s"):
        client.warehouses()


def test_a_malformed_answer_is_a_transient_error(centra):
    client, simulator = centra
    client.session.retry = RetryPolicy(attempts=1)
    simulator.faults(malformed_rate=1.0)
    with pytest.raises(TransientError, match="not JSON"):
        client.markets()


def test_a_field_centra_does_not_have_is_refused_like_centra_would(centra):
    client, _ = centra
    with pytest.raises(DataError, match="Cannot query field 'currencyCode'"):
        client.execute("query { orders { number currencyCode } }", operation="orders")


def test_set_stock_sends_many_sizes_in_one_mutation_and_user_errors_change_nothing(centra):
    client, simulator = centra
    sizes = {size.sku: size for size in client.sizes()}
    variant = sizes["TEE100BLKS"].variant_id
    result = client.set_stock(
        warehouse_id=1, description="sync", levels=[StockLevel(variant, "S", 7), StockLevel(variant, "M", 0)]
    )
    assert result.warnings == []
    assert {s.sku: s.physical for s in client.sizes()} == {"TEE100BLKS": 7, "TEE100BLKM": 0}
    with pytest.raises(DataError) as error:
        client.set_stock(
            warehouse_id=1, description="sync", levels=[StockLevel(variant, "S", 3), StockLevel(variant, "XXL", 1)]
        )
    assert error.value.details == [
        f"Size XXL not found on variant {variant} (at input.productVariants.0.sizeStockLevels.1)"
    ]
    assert {s.sku: s.physical for s in client.sizes()}["TEE100BLKS"] == 7
    assert simulator.operations().count("setStock") == 2


def test_a_shipment_whose_capture_fails_comes_back_with_a_warning(centra):
    client, simulator = centra
    simulator.seed(orders=[web_order(1000, captured=False, quantity=2)])
    order = client.order(1000)
    assert not order.is_captured
    shipment, warnings = client.create_shipment(order_number=1000, lines=[(order.lines[0].id, 1)])
    assert not shipment.is_captured
    assert warnings == ["Capture failed: the payment provider has not settled the capture request (at input.capture)"]
    done, _ = client.complete_shipment(
        shipment_id=shipment.id, carrier="DHL", service="Express", tracking_number="JD014600003"
    )
    assert (done.is_shipped, done.carrier, done.tracking_number) == (True, "DHL", "JD014600003")
    assert client.order(1000).status == "PROCESSING"  # one of two units still to ship


def test_shipments_of_several_orders_are_created_already_sent_in_one_request(centra):
    client, simulator = centra
    simulator.seed(orders=[web_order(1000), web_order(1001, quantity=2), web_order(1002, status="CANCELLED")])
    lines = {number: client.order(number).lines[0].id for number in (1000, 1001, 1002)}
    wanted = [
        ShipmentToCreate(1000, [(lines[1000], 1)], "DHL", "Express", "T1000"),
        ShipmentToCreate(1001, [(lines[1001], 1)], "UPS", "", "T1001"),
        ShipmentToCreate(1002, [(lines[1002], 1)], "DHL", "Express", "T1002"),
    ]
    calls_before = len(simulator.calls())
    first, second, refused = client.create_sent_shipments(wanted)
    assert simulator.operations()[calls_before:] == ["createShipment"]
    shipment, warnings = first
    assert (shipment.is_shipped, shipment.carrier, shipment.service, shipment.tracking_number) == (
        True,
        "DHL",
        "Express",
        "T1000",
    )
    assert warnings == [] and second[0].tracking_number == "T1001"
    assert isinstance(refused, DataError) and "CANCELLED" in str(refused)
    assert client.order(1000).status == "SHIPPED"
    assert client.order(1001).status == "PROCESSING"  # one of two units sent
    assert client.order(1002).shipments == []


def test_each_aliased_mutation_takes_a_place_in_centras_mutation_buckets(sandbox, centra, monkeypatch):
    client, simulator = centra
    monkeypatch.setattr(sandbox.app.simulators["centra"], "enforce_rate_limit", True)
    simulator.seed(orders=[web_order(1000 + n) for n in range(3)])
    wanted = [
        ShipmentToCreate(number, [(client.order(number).lines[0].id, 1)], "DHL", "", f"T{number}")
        for number in (1000, 1001, 1002)
    ]
    client.create_sent_shipments(wanted)
    used = {(r.type, r.interval): r.used for r in client.rate_limits()}
    assert used[("MUTATION_COUNT", "TEN_SECONDS")] == 3
    assert used[("REQUEST_COUNT", "TEN_SECONDS")] == 5  # three order reads, the mutations, this read


def test_more_shipments_than_the_mutation_bucket_holds_are_sent_in_several_requests(centra):
    client, simulator = centra
    client.mutations_per_request = 2
    simulator.seed(orders=[web_order(1000 + n) for n in range(3)])
    wanted = [
        ShipmentToCreate(number, [(client.order(number).lines[0].id, 1)], "DHL", "", f"T{number}")
        for number in (1000, 1001, 1002)
    ]
    calls_before = len(simulator.calls())
    answers = client.create_sent_shipments(wanted)
    assert [shipment.tracking_number for shipment, _ in answers] == ["T1000", "T1001", "T1002"]
    assert simulator.operations()[calls_before:] == ["createShipment", "createShipment"]


def test_a_partial_return_is_completed_with_an_exact_refund(centra):
    client, simulator = centra
    simulator.seed(orders=[web_order(1000, quantity=2)])
    order = client.order(1000)
    shipment, _ = client.create_shipment(order_number=1000, lines=[(order.lines[0].id, 2)])
    client.complete_shipment(shipment_id=shipment.id, carrier="DHL", service="", tracking_number="T1")
    assert client.order(1000).status == "SHIPPED"
    return_id = client.create_return(shipment_id=shipment.id, lines=[(shipment.lines[0].id, 1)], release_to_stock=True)
    answer = client.complete_return_with_refund(return_id)
    assert answer["status"] == "ok" and answer["return"]["refunded"] is True
    refunded = [p for p in client.order(1000).payments if p.entry_type == "REFUND"]
    assert [p.value for p in refunded] == [Decimal("26.10")]


def test_an_external_order_is_inserted_once_under_its_reserved_number(centra):
    client, simulator = centra
    order = ExternalOrder(
        number=500001,
        email="buyer@example.com",
        country="DE",
        market_id=2,
        first_name="Noah",
        last_name="Berg",
        address="Hauptstraße 1",
        city="Berlin",
        zipcode="10115",
        phone="+49 1",
        shipping_option="standard",
        shipping_value=Decimal("4.95"),
        lines=[("TEE100BLKM", 2, Decimal("25.00"), Decimal("29.00"))],
        reference="MP-1-00001",
    )
    assert client.create_external_order(order) == 500001
    with pytest.raises(OrderNumberTaken):
        client.create_external_order(order)
    created = client.order(500001)
    assert (created.status, created.grand_total, created.lines[0].quantity) == ("CONFIRMED", Decimal("54.95"), 2)
    assert len(simulator.state()["orders"]) == 1


def test_an_external_order_with_an_unknown_sku_is_a_data_error(centra):
    client, _ = centra
    order = ExternalOrder(
        number=500002,
        email="b@example.com",
        country="DE",
        market_id=2,
        first_name="",
        last_name="",
        address="",
        city="",
        zipcode="",
        phone="",
        shipping_option="standard",
        shipping_value=Decimal("0"),
        lines=[("NOPE", 1, Decimal("1.00"), Decimal("1.00"))],
        reference="MP-2",
    )
    with pytest.raises(DataError, match="Product could not be added"):
        client.create_external_order(order)


def test_events_queue_until_confirmed(centra):
    client, simulator = centra
    client.listen_for(["Order", "Shipment"])
    simulator.seed(orders=[web_order(1000, status="PENDING")])
    client.confirm_order(1000)
    events = client.events()
    assert [(e.object_type, e.change_type, e.object_reference) for e in events] == [
        ("Order", "CREATED", 1000),
        ("Order", "UPDATED", 1000),
    ]
    assert client.events() == events  # unconfirmed events come back
    client.confirm_events([e.id for e in events])
    assert client.events() == []


def test_rate_limit_headroom_is_readable(centra):
    client, _ = centra
    limits = {(r.type, r.interval): r for r in client.rate_limits()}
    assert limits[("MUTATION_COUNT", "ONE_HOUR")].quota == 1000


# --- webhooks -----------------------------------------------------------------------------------------------------

SECRET = "whsec-test"
BODY = urlencode({"payload": '{"events": [{"type": "order", "action": "create", "date": "2026-11-26", "id": 1000}]}'})


def signed(body: str, timestamp: int, secret: str = SECRET) -> dict:
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Centra-Signature": f"t={timestamp},v1={digest}"}


def test_centras_documented_signature_example_verifies():
    body = b"payload=%7B%22x%22%3A%22test%22%7D"
    headers = {"X-Centra-Signature": "t=12345678,v1=0b9cd84f5d583e5e1aadfb9f160aa8080b51d5b85ff85808d6b75bdac356c549"}
    with pytest.raises(WebhookRejected, match="no list of events"):  # the signature is right; the body is a toy
        verify_webhook(secret="test123", body=body, headers=headers, now=12345678)


def test_a_signed_webhook_gives_its_events():
    now = int(time.time())
    events = verify_webhook(secret=SECRET, body=BODY.encode(), headers=signed(BODY, now))
    assert events == [{"type": "order", "action": "create", "date": "2026-11-26", "id": 1000}]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (lambda now: {}, "no X-Centra-Signature header"),
        (lambda now: signed(BODY, now, secret="wrong"), "does not match"),
        (lambda now: signed(BODY, now - 3600), "outside the allowed window"),
        (lambda now: {"X-Centra-Signature": "v1=abc"}, "no timestamp"),
    ],
)
def test_a_webhook_that_fails_verification_is_refused(headers, reason):
    # Signed as the test runs, not as the module is collected: a long suite would age the signature past the window.
    with pytest.raises(WebhookRejected, match=reason):
        verify_webhook(secret=SECRET, body=BODY.encode(), headers=headers(int(time.time())))


def test_a_tampered_body_is_refused():
    now = int(time.time())
    headers = signed(BODY, now)
    with pytest.raises(WebhookRejected, match="does not match"):
        verify_webhook(secret=SECRET, body=BODY.replace("1000", "1001").encode(), headers=headers)


def test_the_simulator_signs_its_webhooks_as_centra_does(sandbox, control):
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((body, dict(self.headers)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    centra = sandbox.simulator("centra")
    before = (centra.webhook_url, centra.webhook_secret)
    try:
        centra.webhook_url, centra.webhook_secret = f"http://127.0.0.1:{server.server_port}/webhooks/centra/", SECRET
        control("centra").seed(products=[TEE], orders=[web_order(1000)])
        sandbox.app.outbox.join()
    finally:
        centra.webhook_url, centra.webhook_secret = before
        server.shutdown()
    body, headers = received[0]
    events = verify_webhook(secret=SECRET, body=body, headers=headers)
    assert events[0]["type"] == "order" and events[0]["id"] == 1000


def test_the_hourly_mutation_budget_is_spread_over_the_hour():
    """A rush may not spend the hour's 1,000 mutations in its first minutes: at most 10 go in any 36 s."""
    client = CentraClient(base_url="http://127.0.0.1:9", token="t", mutations_per_10s=100, mutations_per_hour=1000)
    now = [1000.0]
    client.mutation_limiter._clock = lambda: now[0]
    for _ in range(10):
        assert client.mutation_limiter.acquire() == 0
    assert client.mutation_limiter.wait_time() == pytest.approx(36.0)
    now[0] += 36.0
    assert client.mutation_limiter.wait_time() == 0


def test_sizes_are_listed_with_one_warehouses_stock_up_to_200_products_a_page(centra):
    client, simulator = centra
    simulator.seed(
        products=[
            {**TEE, "productNumber": f"TEE{n}", "variants": [{**TEE["variants"][0], "variantNumber": "BLK"}]}
            for n in range(101, 104)
        ]
    )
    variant = next(size.variant_id for size in client.sizes() if size.sku == "TEE100BLKS")
    client.set_stock(warehouse_id=2, description="store", levels=[StockLevel(variant, "S", 3)])
    before = len(simulator.operations())
    in_main = {size.sku: size.physical for size in client.sizes(warehouse_id=1, page_size=200)}
    in_store = {size.sku: size.physical for size in client.sizes(warehouse_id=2, page_size=500)}
    everywhere = {size.sku: size.physical for size in client.sizes()}
    assert (in_main["TEE100BLKS"], in_store["TEE100BLKS"], everywhere["TEE100BLKS"]) == (10, 3, 13)
    assert (in_store["TEE100BLKM"], len(in_main), len(everywhere)) == (0, 8, 8)
    assert simulator.operations()[before:] == ["sizes", "sizes", "sizes", "sizes", "sizes"]  # 1 + 1 + 3 pages of 2
