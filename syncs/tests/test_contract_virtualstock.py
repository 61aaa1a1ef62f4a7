"""Contract tests: read-only calls against the REAL Virtualstock Supplier API (the sandbox environment is ideal).

Skipped unless VIRTUALSTOCK_CONTRACT_BASE_URL (e.g. https://www.sandbox.the-edge.io), VIRTUALSTOCK_CONTRACT_USERNAME
and VIRTUALSTOCK_CONTRACT_PASSWORD are set. They only read: a token, carriers, one page of orders and products.
"""

import itertools
import os

import pytest

from syncs.connectors.http import RetryPolicy
from syncs.connectors.virtualstock import VirtualstockClient

BASE_URL = os.environ.get("VIRTUALSTOCK_CONTRACT_BASE_URL", "")
USERNAME = os.environ.get("VIRTUALSTOCK_CONTRACT_USERNAME", "")
PASSWORD = os.environ.get("VIRTUALSTOCK_CONTRACT_PASSWORD", "")

pytestmark = pytest.mark.skipif(
    not (BASE_URL and USERNAME and PASSWORD),
    reason="set VIRTUALSTOCK_CONTRACT_BASE_URL, _USERNAME and _PASSWORD to run against Virtualstock",
)


@pytest.fixture
def client() -> VirtualstockClient:
    return VirtualstockClient(
        base_url=BASE_URL,
        username=USERNAME,
        password=PASSWORD,
        rate_limit=(30, 60.0),
        retry=RetryPolicy(attempts=2),
        page_size=5,
    )


def test_carriers_are_slugs(client):
    carriers = client.carriers()
    assert carriers and all(carrier.slug == carrier.slug.lower() for carrier in carriers)


def test_new_orders_parse(client):
    for order in itertools.islice(client.orders(status="ORDER"), 5):
        assert order.id and order.reference and all(line.quantity > 0 for line in order.lines)


def test_products_carry_part_numbers(client):
    for product in itertools.islice(client.products(), 5):
        assert product.id and product.part_number
