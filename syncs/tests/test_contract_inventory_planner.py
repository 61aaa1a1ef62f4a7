"""Read-only checks of the Inventory Planner connector against the REAL Inventory Planner API.

Skipped unless INVENTORY_PLANNER_CONTRACT_API_KEY and INVENTORY_PLANNER_CONTRACT_ACCOUNT are set (base URL:
INVENTORY_PLANNER_CONTRACT_BASE_URL, default https://app.inventory-planner.com/api/v1). Nothing is written: these
calls only read variants and purchase orders, a few pages at most.
"""

import itertools
import os
from decimal import Decimal

import pytest

from syncs.connectors.errors import AuthError, DataError
from syncs.connectors.http import RetryPolicy
from syncs.connectors.inventory_planner import InventoryPlannerClient

BASE_URL = os.environ.get("INVENTORY_PLANNER_CONTRACT_BASE_URL", "https://app.inventory-planner.com/api/v1")
API_KEY = os.environ.get("INVENTORY_PLANNER_CONTRACT_API_KEY", "")
ACCOUNT = os.environ.get("INVENTORY_PLANNER_CONTRACT_ACCOUNT", "")

pytestmark = pytest.mark.skipif(
    not (API_KEY and ACCOUNT),
    reason="set INVENTORY_PLANNER_CONTRACT_API_KEY and INVENTORY_PLANNER_CONTRACT_ACCOUNT to check the real API",
)


@pytest.fixture
def client() -> InventoryPlannerClient:
    # Gentle: the real limit is unpublished, so pace well below our sandbox assumption.
    return InventoryPlannerClient(
        base_url=BASE_URL, api_key=API_KEY, account=ACCOUNT, rate_limit=(30, 60.0), retry=RetryPolicy(attempts=3)
    )


def test_variants_page_and_parse(client):
    # Pages of 2, three of them: proves page/limit/meta paging without walking a large catalogue.
    variants = list(itertools.islice(client.variants(page_size=2), 6))
    assert variants, "the account has no variants to check against"
    assert len({v.id for v in variants}) == len(variants)
    for variant in variants:
        assert variant.id and variant.sku
        assert isinstance(variant.in_stock, int)
        assert variant.cost_price is None or isinstance(variant.cost_price, Decimal)


def test_one_variant_by_id_and_by_sku_agree(client):
    first = next(client.variants(page_size=1))
    assert client.variant(first.id).sku == first.sku
    assert client.variants_by_sku([first.sku])[first.sku].id == first.id


def test_a_missing_variant_is_a_data_error(client):
    with pytest.raises(DataError) as error:
        client.variant("switchyard-contract-no-such-variant")
    assert error.value.details[0]


def test_purchase_orders_read_with_an_upper_case_status(client):
    for order in itertools.islice(client.purchase_orders(page_size=2), 4):
        assert order.id
        # Accounts may add their own statuses beside the defaults; ours must at least read back in one spelling.
        assert order.status and order.status == order.status.upper(), order.status


def test_a_wrong_key_is_an_auth_error_without_the_key(client):
    wrong = InventoryPlannerClient(base_url=BASE_URL, api_key="0" * 64, account=ACCOUNT, retry=RetryPolicy(attempts=1))
    with pytest.raises(AuthError) as error:
        wrong.variant("any")
    assert "0" * 64 not in repr(error.value.exchange.as_dict())
