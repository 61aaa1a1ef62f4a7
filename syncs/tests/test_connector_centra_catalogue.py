"""The Centra connector's catalogue (every size with its product, price and stock) against the Centra simulator,
over HTTP."""

from decimal import Decimal

import pytest

from syncs.connectors.centra import CatalogueSize, CentraClient
from syncs.connectors.errors import AuthError
from syncs.connectors.http import RetryPolicy

TEE = {
    "name": "Organic Cotton Tee",
    "productNumber": "TEE100",
    "createdAt": "2026-03-28T10:00:00+00:00",
    "prices": {"2": "29.00", "1": "349.00"},
    "variants": [
        {
            "name": "Black",
            "variantNumber": "BLK",
            "sizes": [
                {"sizeNumber": "S", "name": "S", "EAN": "7300000000017", "stock": {"1": 10, "2": 3}},
                {"sizeNumber": "M", "name": "M", "stock": {"1": 4}},
            ],
        },
        {"name": "White", "variantNumber": "WHT", "sizes": [{"sizeNumber": "S", "name": "S", "stock": {"2": 1}}]},
    ],
}


@pytest.fixture
def centra(sandbox, control):
    simulator = control("centra")
    client = CentraClient(base_url=simulator.url, token="sandbox-centra", retry=RetryPolicy(attempts=1), page_size=2)
    return client, simulator


def test_every_size_comes_with_its_product_its_price_in_the_pricelist_and_its_stock(centra):
    client, simulator = centra
    simulator.seed(products=[TEE])

    sizes = list(client.catalogue(pricelist_id=2))

    assert [size.sku for size in sizes] == ["TEE100BLKS", "TEE100BLKM", "TEE100WHTS"]
    first = sizes[0]
    assert isinstance(first, CatalogueSize)
    assert (first.product_number, first.product_name, first.product_status, first.is_bundle) == (
        "TEE100",
        "Organic Cotton Tee",
        "ACTIVE",
        False,
    )
    assert (first.variant_name, first.size_name, first.ean) == ("Black", "S", "7300000000017")
    assert (first.price, first.currency) == (Decimal("29.00"), "EUR")
    assert (first.free_to_allocate, first.physical) == (13, 13)  # every warehouse
    assert first.created_at.startswith("2026-03-28T10:00:00")
    assert sizes[1].ean is None


def test_one_warehouses_stock_and_another_pricelist(centra):
    client, simulator = centra
    simulator.seed(products=[TEE])

    sizes = list(client.catalogue(pricelist_id=1, warehouse_id=2))

    assert [(s.sku, s.free_to_allocate, s.price, s.currency) for s in sizes] == [
        ("TEE100BLKS", 3, Decimal("349.00"), "SEK"),
        ("TEE100BLKM", 0, Decimal("349.00"), "SEK"),
        ("TEE100WHTS", 1, Decimal("349.00"), "SEK"),
    ]


def test_a_product_without_a_price_in_the_pricelist_has_none(centra):
    client, simulator = centra
    simulator.seed(products=[{**TEE, "prices": {"1": "349.00"}}])

    assert {(s.price, s.currency) for s in client.catalogue(pricelist_id=2)} == {(None, None)}


def test_products_are_read_a_page_at_a_time_to_the_end(centra):
    client, simulator = centra
    simulator.seed(products=[{**TEE, "productNumber": f"TEE{n}"} for n in range(5)])

    sizes = list(client.catalogue(pricelist_id=2))

    assert len(sizes) == 15
    assert simulator.operations() == ["catalogue"] * 3  # 2 + 2 + 1 products


def test_a_refused_token_is_an_auth_error(centra):
    client, simulator = centra
    simulator.faults(error_rate=1.0, error_status=403)

    with pytest.raises(AuthError):
        list(client.catalogue(pricelist_id=2))
