"""The Fulfil connector against the Fulfil simulator, over HTTP."""

import base64
import queue
import random
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from syncs.connectors.errors import AuthError, DataError, RateLimited, TransientError, WebhookRejected
from syncs.connectors.fulfil import (
    Address,
    CreditDraft,
    CreditLine,
    Customer,
    DraftLine,
    FulfilClient,
    SaleDraft,
    inventory_levels,
    verify_webhook,
)
from syncs.connectors.http import RetryPolicy, Timeouts

FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
SECRET = base64.b64encode(b"sandbox-fulfil-webhooks").decode()
MAIN, STORE = 4, 6  # the simulator's two warehouses
HOME = Address(name="Alva Lind", street="12 Storgatan", city="Stockholm", zip="11122", country_code="SE")


def products(*codes: str, main: int = 10, store: int = 0) -> list[dict]:
    return [
        {
            "code": code,
            "name": "Organic Cotton Tee",
            "variant_name": f"Organic Cotton Tee {code}",
            "list_price": {"__class__": "Decimal", "decimal": "29.00"},
            "warehouse_quantities": [
                {"warehouse_id": MAIN, "quantity_on_hand": main},
                {"warehouse_id": STORE, "quantity_on_hand": store},
            ],
        }
        for code in codes
    ]


def draft(reference: str = "1001", **changes) -> SaleDraft:
    values = {
        "reference": reference,
        "customer": Customer(name="Alva Lind", email="alva@example.com", phone="+46 700000000"),
        "invoice_address": HOME,
        "shipment_address": HOME,
        "currency_code": "SEK",
        "lines": (
            DraftLine("TEE100BLKS", 2, Decimal("249.50"), "Organic Cotton Tee S"),
            DraftLine("TEE100BLKM", 1, Decimal("224.55")),
        ),
        "shipping_amount": Decimal("56.93"),
        "channel_id": 1,
        "warehouse_id": MAIN,
    }
    values.update(changes)
    return SaleDraft(**values)


@pytest.fixture
def fulfil(sandbox, control):
    ff = control("fulfil")
    client = FulfilClient(base_url=f"{ff.url}/api/v2", api_key="sandbox-fulfil", retry=FAST_RETRY, rate_limit=(500, 1))
    return client, ff


def ship(client: FulfilClient, sale_id: int, tracking: str = "JD014600003828392") -> int:
    """What the warehouse does in Fulfil: reserve, pack, label, ship."""
    (shipment_id,) = client.get("sale.sale", sale_id, ["shipments"])["shipments"]
    assert client.call("stock.shipment.out", "assign_try", [shipment_id]) is True
    client.call("stock.shipment.out", "pack", [shipment_id])
    carrier = next(client.search_read("carrier", [["name", "=", "DHL"]], ["name"]))["id"]
    (tracking_id,) = client.create("shipment.tracking", [{"tracking_number": tracking, "carrier": carrier}])
    client.write("stock.shipment.out", [shipment_id], {"tracking_number": tracking_id, "carrier": carrier})
    client.call("stock.shipment.out", "done", [shipment_id])
    return shipment_id


def test_it_reads_every_page(fulfil):
    client, ff = fulfil
    ff.seed(products=products(*[f"SKU{n}" for n in range(5)]))
    rows = list(client.search_read("product.product", [["code", "like", "SKU%"]], ["code"], page_size=2))
    assert [row["code"] for row in rows] == ["SKU0", "SKU1", "SKU2", "SKU3", "SKU4"]
    assert ff.operations() == ["product.product.search_read"] * 3
    assert client.search_count("product.product", [["code", "like", "SKU%"]]) == 5


def test_products_by_code_carry_stock_overall_and_per_warehouse(fulfil):
    client, ff = fulfil
    ff.seed(products=products("TEE100BLKS", "TEE100BLKM", main=7, store=2))
    found = client.products_by_code(["TEE100BLKS", "TEE100BLKM", "NOPE"])
    assert sorted(found) == ["TEE100BLKM", "TEE100BLKS"]
    tee = found["TEE100BLKS"]
    assert (tee.list_price, tee.quantity_on_hand, tee.quantity_available) == (Decimal("29.00"), 9, 9)
    per_warehouse = client.stock_by_warehouse(["TEE100BLKS"], [MAIN, STORE])
    assert per_warehouse[MAIN]["TEE100BLKS"].quantity_on_hand == 7
    assert per_warehouse[STORE]["TEE100BLKS"].quantity_on_hand == 2
    assert [w.code for w in client.warehouses()] == ["MAIN", "STORE"]


def test_a_wrong_api_key_is_an_auth_error_without_the_key(sandbox, control):
    ff = control("fulfil")
    client = FulfilClient(base_url=f"{ff.url}/api/v2", api_key="not-the-key-123", retry=FAST_RETRY)
    with pytest.raises(AuthError) as error:
        client.search_count("product.product", [])
    assert "401" in str(error.value)
    assert "not-the-key-123" not in repr(error.value.exchange.as_dict())
    assert ff.operations() == ["product.product.search_count"]  # not retried


def test_throttling_is_waited_out_as_retry_after_says(fulfil):
    client, ff = fulfil
    ff.faults(rate_limit={"limit": 2, "window": 1})
    started = time.monotonic()
    for _ in range(3):
        client.search_count("product.product", [])
    statuses = [call["status"] for call in ff.calls()]
    assert 429 in statuses
    assert statuses[-1] == 200
    assert time.monotonic() - started >= 0.9


def test_without_retry_after_the_rate_limit_reset_time_is_honoured(fulfil):
    client, ff = fulfil
    client.session.retry = RetryPolicy(attempts=3, base_delay=0.01, max_retry_after=0.5)
    ff.seed(config={"send_retry_after": False})
    ff.faults(rate_limit={"limit": 1, "window": 30})
    client.search_count("product.product", [])
    with pytest.raises(RateLimited) as error:
        client.search_count("product.product", [])
    assert 28 <= error.value.retry_after <= 32  # from X-RateLimit-Reset, an epoch second
    assert "Retry-After" not in error.value.exchange.response_headers
    assert error.value.transient


def test_a_server_error_then_success_is_retried(fulfil):
    client, ff = fulfil
    ff.seed(products=products("TEE100BLKS"))
    ff.faults(fail_first=2, error_status=500)
    assert list(client.products_by_code(["TEE100BLKS"])) == ["TEE100BLKS"]
    assert [call["status"] for call in ff.calls()] == [500, 500, 200]


def test_a_timeout_is_a_transient_error_after_the_retries(sandbox, control):
    ff = control("fulfil")
    client = FulfilClient(
        base_url=f"{ff.url}/api/v2",
        api_key="sandbox-fulfil",
        timeouts=Timeouts(connect=1, read=0.3),
        retry=RetryPolicy(attempts=2, base_delay=0.01),
    )
    ff.faults(timeout_rate=1.0, timeout_seconds=1.0)
    with pytest.raises(TransientError, match="no answer within 0.3s"):
        client.search_count("sale.sale", [])
    assert ff.operations() == ["sale.sale.search_count"] * 2


def test_a_sale_create_that_timed_out_is_not_sent_again(fulfil):
    client, ff = fulfil
    ff.seed(products=products("TEE100BLKS", "TEE100BLKM"))
    client.session.timeouts = Timeouts(connect=1, read=0.3)
    ff.faults(timeout_rate=1.0, timeout_seconds=0.6, fail_operations=["sale.sale.create"])
    with pytest.raises(TransientError):
        client.create_sale(draft())
    assert ff.operations().count("sale.sale.create") == 1
    time.sleep(0.4)  # the hung call completes in the simulator: the sale exists after all
    ff.faults()
    assert client.sale_by_reference("1001") is not None  # which is why flows look up before creating


def test_a_malformed_answer_is_a_clear_transient_error(fulfil):
    client, ff = fulfil
    client.session.retry = RetryPolicy(attempts=1)
    ff.faults(malformed_rate=1.0)
    with pytest.raises(TransientError, match="not JSON"):
        list(client.search_read("product.product", [], ["code"]))


def test_a_user_error_is_a_data_error_with_fulfils_message(fulfil):
    client, ff = fulfil
    party = client.create("party.party", [{"name": "Alva Lind"}])[0]
    line = {"product": 999, "quantity": 1, "unit_price": Decimal("9.99")}
    with pytest.raises(DataError) as error:
        client.create("sale.sale", [{"party": party, "lines": [["create", [line]]]}])
    assert error.value.details == ['The value "999" of field "Product" on "Sale Line" does not exist.']
    assert not error.value.transient
    with pytest.raises(DataError, match='A value is required for field "Product" in "Sale Line"'):
        client.create("sale.sale", [{"party": party, "lines": [["create", [{"quantity": 1, "unit_price": "1"}]]]}])
    assert client.search_count("sale.sale", []) == 0  # refused creates leave nothing behind


def test_a_sale_is_created_with_exact_prices_a_shipping_line_and_the_customer_found_again(fulfil):
    client, ff = fulfil
    ff.seed(products=products("TEE100BLKS", "TEE100BLKM"))
    sale_id = client.create_sale(draft())
    sale = client.sale(sale_id)
    assert (sale.state, sale.reference, sale.channel_identifier, sale.currency_code) == ("draft", "1001", "1001", "SEK")
    assert [(line.type, line.product_code, line.quantity, line.unit_price) for line in sale.lines] == [
        ("line", "TEE100BLKS", 2, Decimal("249.50")),
        ("line", "TEE100BLKM", 1, Decimal("224.55")),
        ("shipping", None, 1, Decimal("56.93")),
    ]
    assert sale.total_amount == Decimal("780.48")
    second = client.create_sale(draft("1002"))
    state = ff.state()["records"]
    assert len(state["party.party"]) == 1 and len(state["party.address"]) == 1
    assert client.sale(second).party_id == sale.party_id


def test_a_new_customer_s_sale_is_created_in_four_calls_when_the_product_ids_are_known(fulfil):
    client, ff = fulfil
    ff.seed(products=products("TEE100BLKS", "TEE100BLKM"))
    ids = {code: product.id for code, product in client.products_by_code(["TEE100BLKS", "TEE100BLKM"]).items()}
    client.create_sale(draft("1000"))  # the client has met the currency and the country
    office = Address(name="Lind AB", street="1 Kungsgatan", city="Stockholm", zip="11143", country_code="SE")
    new_customer = Customer(name="Bo Berg", email="bo@example.com")
    lines = tuple(replace(line, product_id=ids[line.product_code]) for line in draft().lines)
    before = len(ff.calls())
    sale_id = client.create_sale(
        draft("1001", customer=new_customer, invoice_address=office, shipment_address=HOME, lines=lines)
    )
    assert ff.operations()[before:] == [
        "party.contact_mechanism.search_read",
        "party.party.create",
        "party.address.search_read",
        "sale.sale.create",
    ]
    records = ff.state()["records"]
    sale = records["sale.sale"][str(sale_id)]
    invoice, shipment = (
        records["party.address"][str(sale["invoice_address"])],
        records["party.address"][str(sale["shipment_address"])],
    )
    assert (invoice["street"], shipment["street"]) == ("1 Kungsgatan", "12 Storgatan")
    assert invoice["party"] == shipment["party"] == sale["party"]
    assert records["party.party"][str(sale["party"])]["name"] == "Bo Berg"


def test_a_known_customer_s_new_addresses_are_added_to_their_party_in_one_create(fulfil):
    client, ff = fulfil
    ff.seed(products=products("TEE100BLKS", "TEE100BLKM"))
    first = client.sale(client.create_sale(draft("1001")))
    office = Address(name="Lind AB", street="1 Kungsgatan", city="Stockholm", zip="11143", country_code="SE")
    cabin = Address(name="Alva Lind", street="3 Sjövägen", city="Visby", zip="62155", country_code="SE")
    before = len(ff.calls())
    second = client.sale(client.create_sale(draft("1002", invoice_address=office, shipment_address=cabin)))
    assert ff.operations()[before:].count("party.address.create") == 1
    assert "party.party.create" not in ff.operations()[before:]
    records = ff.state()["records"]
    assert second.party_id == first.party_id and len(records["party.party"]) == 1
    assert len(records["party.address"]) == 3
    third = client.create_sale(draft("1003", invoice_address=office, shipment_address=HOME))
    assert len(ff.state()["records"]["party.address"]) == 3  # both found again
    fields = ["invoice_address", "shipment_address"]
    found = client.get("sale.sale", third, fields)
    assert (found["invoice_address"], found["shipment_address"]) == (
        client.get("sale.sale", second.id, fields)["invoice_address"],
        client.get("sale.sale", first.id, fields)["shipment_address"],
    )


def test_a_sale_is_found_by_reference_in_one_call(fulfil):
    client, ff = fulfil
    ff.seed(products=products("TEE100BLKS", "TEE100BLKM"))
    sale_id = client.create_sale(draft("1001"))
    before = len(ff.calls())
    found = client.sale_by_reference("1001")
    assert found.id == sale_id and found.lines == ()
    assert len(ff.calls()) == before + 1
    assert client.sale_by_reference("9999") is None
    assert [line.product_code for line in client.sale_by_reference("1001", with_lines=True).lines][:1] == ["TEE100BLKS"]


def test_unknown_product_codes_are_a_data_error_before_anything_is_created(fulfil):
    client, ff = fulfil
    ff.seed(products=products("TEE100BLKS"))
    with pytest.raises(DataError) as error:
        client.create_sale(draft())
    assert error.value.details == ["unknown product code TEE100BLKM"]
    assert not any(op.endswith(".create") for op in ff.operations())


def test_confirming_processes_the_sale_and_shipped_goods_come_back_with_tracking(fulfil):
    client, ff = fulfil
    ff.seed(products=products("TEE100BLKS", "TEE100BLKM", main=5))
    since = datetime.now(UTC) - timedelta(seconds=1)
    sale_id = client.create_sale(draft())
    assert client.confirm_sale(sale_id) == "processing"
    assert client.confirm_sale(sale_id) == "processing"  # repeating is harmless
    assert client.products_by_code(["TEE100BLKS"])["TEE100BLKS"].quantity_available == 3
    shipment_id = ship(client, sale_id)
    (shipment,) = list(client.shipments_since(since))
    assert (shipment.id, shipment.state, shipment.sale_ids) == (shipment_id, "done", (sale_id,))
    assert (shipment.tracking_number, shipment.carrier) == ("JD014600003828392", "DHL")
    assert sorted((m.product_code, m.quantity) for m in shipment.moves) == [("TEE100BLKM", 1), ("TEE100BLKS", 2)]
    assert all(m.sale_line_id in client.sale(sale_id).line_ids for m in shipment.moves)
    assert client.sale(sale_id).state == "done"
    assert [s.id for s in client.shipments_for_sale(sale_id)] == [shipment_id]
    assert list(client.shipments_since(datetime.now(UTC) + timedelta(minutes=1))) == []
    assert client.products_by_code(["TEE100BLKS"])["TEE100BLKS"].quantity_on_hand == 3


def test_a_sale_is_cancelled_until_it_is_processing(fulfil):
    client, ff = fulfil
    ff.seed(products=products("TEE100BLKS", "TEE100BLKM"), config={"process_on_confirm": False})
    first = client.create_sale(draft("1001"))
    assert client.confirm_sale(first) == "confirmed"
    client.cancel_sale(first)  # back to draft, then cancelled
    assert client.sale(first).state == "cancelled"
    client.cancel_sale(first)
    second = client.create_sale(draft("1002"))
    client.confirm_sale(second)
    client.call("sale.sale", "process", [second])
    with pytest.raises(DataError, match="is processing after cancel"):
        client.cancel_sale(second)


def test_many_credits_are_made_in_one_create_and_confirmed_with_one_call_per_button(fulfil):
    client, ff = fulfil
    ff.seed(products=products("TEE100BLKS", "TEE100BLKM", main=5))
    originals = [client.create_sale(draft(reference)) for reference in ("1001", "1002")]
    for original in originals:
        client.confirm_sale(original)
    drafts = [
        CreditDraft(originals[0], (CreditLine(1, Decimal("249.50"), "TEE100BLKS"),), "R-1001-1"),
        CreditDraft(
            originals[1],
            (CreditLine(1, Decimal("224.55"), "TEE100BLKM"), CreditLine(1, Decimal("-25.00"), shipping=True)),
            "R-1002-1",
        ),
    ]
    requests.post(f"{ff.url}/_sandbox/calls/clear", timeout=10).raise_for_status()
    credit_ids = client.create_credits(drafts)
    confirmed = client.confirm_sales(credit_ids)
    assert ff.operations() == [
        "sale.sale.search_read",  # the originals
        "product.product.search_read",
        "sale.sale.create",
        "sale.sale.quote",
        "sale.sale.confirm",
        "sale.sale.search_read",  # the credits as they stand
    ]
    assert [confirmed[credit_id].state for credit_id in credit_ids] == ["processing", "processing"]
    assert [confirmed[credit_id].origin_sale_id for credit_id in credit_ids] == originals
    assert [confirmed[credit_id].total_amount for credit_id in credit_ids] == [Decimal("-249.50"), Decimal("-199.55")]
    assert all(len(confirmed[credit_id].return_shipment_ids) == 1 for credit_id in credit_ids)
    assert client.confirm_sales(credit_ids) == client.sales(credit_ids)  # repeating is harmless


def test_a_credit_fulfil_cannot_make_stops_the_whole_create(fulfil):
    client, ff = fulfil
    ff.seed(products=products("TEE100BLKS", "TEE100BLKM", main=5))
    original = client.create_sale(draft())
    drafts = [
        CreditDraft(original, (CreditLine(1, Decimal("249.50"), "TEE100BLKS"),), "R-1001-1"),
        CreditDraft(original, (CreditLine(1, Decimal("224.55"), "NOPE"),), "R-1001-2"),
    ]
    with pytest.raises(DataError, match="NOPE"):
        client.create_credits(drafts)
    assert client.sales_by_reference(["R-1001-1", "R-1001-2"]) == {}


def test_a_credit_returns_goods_at_exact_negative_amounts(fulfil):
    client, ff = fulfil
    ff.seed(products=products("TEE100BLKS", "TEE100BLKM", main=5))
    original = client.create_sale(draft("1001"))
    client.confirm_sale(original)
    ship(client, original)
    credit_id = client.create_credit(
        original,
        [CreditLine(1, Decimal("249.50"), "TEE100BLKS"), CreditLine(1, Decimal("56.93"), shipping=True)],
        reference="R-1001-1",
    )
    credit = client.sale_by_reference("R-1001-1", with_lines=True)
    assert (credit.id, credit.origin_sale_id, credit.state) == (credit_id, original, "draft")
    assert credit.total_amount == Decimal("-306.43")
    assert [(line.type, line.quantity) for line in credit.lines] == [("line", -1), ("shipping", -1)]
    assert client.get("sale.sale", original, ["has_return"])["has_return"] is True
    client.confirm_sale(credit_id)
    (return_id,) = client.sale(credit_id).return_shipment_ids
    before = client.products_by_code(["TEE100BLKS"])["TEE100BLKS"].quantity_on_hand
    client.call("stock.shipment.out.return", "receive", [return_id])
    assert client.products_by_code(["TEE100BLKS"])["TEE100BLKS"].quantity_on_hand == before  # not inspected yet
    client.call("stock.shipment.out.return", "done", [return_id])
    assert client.products_by_code(["TEE100BLKS"])["TEE100BLKS"].quantity_on_hand == before + 1


class Receiver:
    """A webhook endpoint on 127.0.0.1 that keeps what it is sent."""

    def __init__(self) -> None:
        received = self.received = queue.Queue()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.put((dict(self.headers), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/webhooks/fulfil/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next(self, event: str):
        while True:
            headers, body = self.received.get(timeout=5)
            if headers.get("X-Fulfil-Event") == event:
                return headers, body


@pytest.fixture
def receiver(sandbox):
    simulator = sandbox.simulator("fulfil")
    endpoint = Receiver()
    # Other tests point every simulator elsewhere (configure_webhooks), so set both here and put them back.
    saved = simulator.webhook_url, simulator.webhook_secret
    simulator.webhook_url, simulator.webhook_secret = endpoint.url, SECRET
    yield endpoint
    simulator.webhook_url, simulator.webhook_secret = saved
    endpoint.server.shutdown()


def test_fulfil_webhooks_verify_and_a_wrong_signature_is_rejected(fulfil, receiver):
    client, ff = fulfil
    ff.seed(products=products("TEE100BLKS", "TEE100BLKM", main=5))
    sale_id = client.create_sale(draft())
    client.confirm_sale(sale_id)
    shipment_id = ship(client, sale_id)

    headers, body = receiver.next("stock.shipment.out.done")
    event = verify_webhook(secret=SECRET, body=body, headers=headers)
    assert event["event"] == "stock.shipment.out.done"
    assert (event["payload"]["id"], event["payload"]["tracking_number"]) == (shipment_id, "JD014600003828392")

    headers, body = receiver.next("product.product.inventory_level_changed")
    levels = inventory_levels(verify_webhook(secret=SECRET, body=body, headers=headers)["payload"])
    assert {(level.product_code, level.warehouse_id, level.quantity_on_hand) for level in levels} >= {
        ("TEE100BLKS", MAIN, 3)
    }

    with pytest.raises(WebhookRejected, match="does not match"):
        verify_webhook(secret=SECRET, body=body + b" ", headers=headers)
    wrong_key = base64.b64encode(b"another-secret").decode()
    with pytest.raises(WebhookRejected, match="does not match"):
        verify_webhook(secret=wrong_key, body=body, headers=headers)
    with pytest.raises(WebhookRejected, match="no X-Fulfil-Hmac-SHA256"):
        verify_webhook(secret=SECRET, body=body, headers={"Content-Type": "application/json"})
    lower = {key.lower(): value for key, value in headers.items()}
    assert verify_webhook(secret=SECRET, body=body, headers=lower)["event"] == "product.product.inventory_level_changed"


def test_generated_demo_data_is_deterministic_and_the_demo_ships_orders(fulfil, sandbox):
    client, ff = fulfil
    summary = ff.seed(generate={"seed": 7, "products": 6, "orders": 24})
    assert summary["seeded"]["products"] > 20 and summary["seeded"]["sales"] > 0
    shipped = [s for s in client.shipments_since(datetime(2000, 1, 1, tzinfo=UTC)) if s.tracking_number]
    assert shipped and all(s.carrier for s in shipped)
    processing = client.search_count("sale.sale", [["state", "=", "processing"]])
    assert processing > 0
    again = ff.seed(generate={"seed": 7, "products": 6, "orders": 24})
    assert again == summary  # variants are matched by code, sales by reference

    simulator = sandbox.simulator("fulfil")  # demo mode, driven as the sandbox command drives it
    rng = random.Random(3)
    for _ in range(12):
        simulator.tick(rng)
    assert client.search_count("stock.shipment.out", [["state", "=", "done"]]) > len(shipped)


def test_typed_values_travel_both_ways(fulfil):
    client, ff = fulfil
    ff.seed(products=[{"code": "PLAIN", "name": "Plain", "list_price": "12.30"}])
    row = client.get("product.product", client.products_by_code(["PLAIN"])["PLAIN"].id, ["list_price", "create_date"])
    assert row["list_price"] == Decimal("12.30")
    assert row["create_date"].tzinfo is not None
    client.write("product.product", [row["id"]], {"list_price": Decimal("12.3050")})
    raw = [call for call in ff.calls() if call["operation"] == "product.product.write"]
    assert raw and client.get("product.product", row["id"], ["list_price"])["list_price"] == Decimal("12.3050")
    with pytest.raises(DataError, match="exceeds the limit"):
        client.write("product.product", [row["id"]], {"list_price": Decimal("1.00001")})


def test_products_by_code_stops_paging_once_every_code_is_found(fulfil):
    client, ff = fulfil
    ff.seed(products=products("TEE100BLKS", "TEE100BLKM", "TEE100BLKL"))
    paged = FulfilClient(base_url=client.session.base_url, api_key="sandbox-fulfil", retry=FAST_RETRY, page_size=2)
    assert sorted(paged.products_by_code(["TEE100BLKS", "TEE100BLKM"])) == ["TEE100BLKM", "TEE100BLKS"]
    assert ff.operations() == ["product.product.search_read"]  # a full page, but nothing left to find
    assert sorted(paged.products_by_code(["TEE100BLKS", "TEE100BLKM", "NOPE"])) == ["TEE100BLKM", "TEE100BLKS"]
    assert ff.operations().count("product.product.search_read") == 3  # a code not found: paged to the end
