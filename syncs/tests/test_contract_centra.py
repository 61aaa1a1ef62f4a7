"""Contract tests: read-only calls against a REAL Centra (a QA environment is ideal).

Skipped unless CENTRA_CONTRACT_BASE_URL (the host, without /graphql) and CENTRA_CONTRACT_TOKEN are set. They only
read — warehouses, markets, rate limits, a page of orders and products — so they are safe against production.
"""

import itertools
import os
from decimal import Decimal

import pytest

from syncs.connectors.centra import CentraClient
from syncs.connectors.http import RetryPolicy

BASE_URL = os.environ.get("CENTRA_CONTRACT_BASE_URL", "")
TOKEN = os.environ.get("CENTRA_CONTRACT_TOKEN", "")

pytestmark = pytest.mark.skipif(
    not (BASE_URL and TOKEN), reason="set CENTRA_CONTRACT_BASE_URL and CENTRA_CONTRACT_TOKEN to run against Centra"
)


@pytest.fixture
def client() -> CentraClient:
    return CentraClient(base_url=BASE_URL, token=TOKEN, requests_per_10s=5, retry=RetryPolicy(attempts=2), page_size=5)


def test_warehouses_markets_and_stores_are_listed(client):
    assert all(warehouse["id"] and warehouse["name"] for warehouse in client.warehouses())
    assert all(market["id"] for market in client.markets())
    assert {store["type"] for store in client.stores()} <= {"DIRECT_TO_CONSUMER", "WHOLESALE"}


def test_rate_limit_buckets_are_readable(client):
    kinds = {(limit.type, limit.interval) for limit in client.rate_limits()}
    assert ("MUTATION_COUNT", "ONE_HOUR") in kinds


def test_orders_parse_with_exact_money(client):
    for order in itertools.islice(client.orders(sort="number_DESC"), 5):
        assert isinstance(order.grand_total, Decimal) and order.grand_total >= 0
        assert order.currency and all(isinstance(line.unit_price, Decimal) for line in order.lines)


def test_sizes_carry_skus_and_stock(client):
    for size in itertools.islice(client.sizes(), 20):
        assert size.sku and size.physical >= 0


def test_a_shipment_can_be_created_already_sent_as_the_batched_shipment_sync_does(client):
    # Read-only: the schema, not a shipment. create_sent_shipments relies on these inputs of createShipment.
    data = client.execute(
        'query { __type(name: "ShipmentCreateInput") { inputFields { name } } }', operation="introspection"
    )
    fields = {field["name"] for field in data["__type"]["inputFields"]}
    assert {"order", "lines", "capture", "shippedAt", "shipmentInfo", "sendEmail"} <= fields
