"""Contract tests: a few read-only calls against a REAL marketplace account speaking the generic seller API v1.

Skipped unless MARKETPLACE_CONTRACT_BASE_URL (ending in /api/v1) and MARKETPLACE_CONTRACT_API_KEY are set. They
only read (carriers, the first page of new orders, the first offers), so they are safe against production.
"""

import itertools
import os
from decimal import Decimal

import pytest

from syncs.connectors.http import RetryPolicy
from syncs.connectors.marketplace import GenericMarketplaceClient

BASE_URL = os.environ.get("MARKETPLACE_CONTRACT_BASE_URL", "")
API_KEY = os.environ.get("MARKETPLACE_CONTRACT_API_KEY", "")

pytestmark = pytest.mark.skipif(
    not (BASE_URL and API_KEY),
    reason="set MARKETPLACE_CONTRACT_BASE_URL and MARKETPLACE_CONTRACT_API_KEY to run against a real marketplace",
)


@pytest.fixture
def client() -> GenericMarketplaceClient:
    return GenericMarketplaceClient(
        base_url=BASE_URL, api_key=API_KEY, rate_limit=(2, 1.0), retry=RetryPolicy(attempts=2), page_size=5
    )


def test_carriers_have_codes_and_names(client):
    carriers = client.carriers()
    assert carriers
    assert all(carrier.code and carrier.name for carrier in carriers)


def test_the_first_page_of_new_orders_parses_with_exact_money(client):
    orders, cursor = client.new_orders()
    assert cursor is None or isinstance(cursor, str)
    for order in orders:
        assert order.status == "NEW"
        assert all(isinstance(line.unit_price, Decimal) and line.quantity > 0 for line in order.lines)


def test_the_first_offers_parse(client):
    for offer in itertools.islice(client.offers(), 10):
        assert offer.sku and isinstance(offer.price, Decimal) and offer.quantity >= 0
