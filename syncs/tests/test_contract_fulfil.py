"""Contract tests: a few read-only connector calls against the REAL Fulfil, to catch the simulator drifting from it.

They run only when FULFIL_CONTRACT_BASE_URL (``https://<subdomain>.fulfil.io/api/v2``) and FULFIL_CONTRACT_API_KEY
are set, and never write anything.
"""

import itertools
import os
from datetime import UTC, datetime, timedelta

import pytest

from syncs.connectors.errors import AuthError
from syncs.connectors.fulfil import FulfilClient
from syncs.connectors.http import RetryPolicy

BASE_URL = os.environ.get("FULFIL_CONTRACT_BASE_URL", "")
API_KEY = os.environ.get("FULFIL_CONTRACT_API_KEY", "")

pytestmark = pytest.mark.skipif(
    not (BASE_URL and API_KEY),
    reason="set FULFIL_CONTRACT_BASE_URL and FULFIL_CONTRACT_API_KEY to run the contract tests against real Fulfil",
)


@pytest.fixture
def client() -> FulfilClient:
    return FulfilClient(base_url=BASE_URL, api_key=API_KEY, rate_limit=(2, 1.0), retry=RetryPolicy(attempts=3))


def test_products_are_listed_with_codes_and_stock_as_whole_numbers(client):
    assert client.search_count("product.product", []) >= 0
    first = next(iter(client.search_read("product.product", [["code", "!=", None]], ["code"], page_size=5)), None)
    if first is None:
        pytest.skip("the account has no products with a code")
    product = client.products_by_code([first["code"]])[first["code"]]
    assert isinstance(product.quantity_on_hand, int) and isinstance(product.quantity_available, int)


def test_warehouses_have_ids_and_codes(client):
    warehouses = client.warehouses()
    assert warehouses and all(isinstance(warehouse.id, int) for warehouse in warehouses)
    some = client.products_by_code([], warehouse_ids=[warehouses[0].id])
    assert some == {}


def test_an_unknown_reference_finds_no_sale(client):
    assert client.sale_by_reference("switchyard-contract-no-such-order") is None


def test_sales_are_read_by_their_ids_in_one_call(client):
    rows = list(itertools.islice(client.search_read("sale.sale", [], ["id"], page_size=3), 3))
    if not rows:
        pytest.skip("the account has no sales")
    ids = [row["id"] for row in rows]
    found = client.sales(ids)
    assert sorted(found) == sorted(ids)
    assert all(isinstance(sale.return_shipment_ids, tuple) for sale in found.values())


def test_recent_shipments_are_read_with_their_moves(client):
    since = datetime.now(UTC) - timedelta(days=3)
    for shipment in itertools.islice(client.shipments_since(since), 2):
        assert shipment.state == "done"
        assert all(isinstance(move.quantity, int) for move in shipment.moves)


def test_a_wrong_key_is_an_auth_error():
    wrong = FulfilClient(base_url=BASE_URL, api_key="switchyard-wrong-key", retry=RetryPolicy(attempts=1))
    with pytest.raises(AuthError):
        wrong.search_count("product.product", [])
