"""The Inventory Planner feeds, fetched as Inventory Planner fetches them: over HTTP with basic auth, from data
the Centra sandbox holds (seeded, then moved on through the Centra connector: cancellations, shipments, returns)."""

import base64
import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from mappings.models import SkuMapping
from syncs import connections
from syncs.connectors.centra import CentraClient
from syncs.feeds import PRODUCT_COLUMNS, SALES_ORDER_COLUMNS, planner_product_rows

pytestmark = pytest.mark.django_db

USERNAME, PASSWORD = "inventory-planner", "a-long-feed-password"
PRODUCTS = reverse("feeds:planner_products")
SALES = reverse("feeds:planner_sales_orders")
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
                {"sizeNumber": "M", "name": "M", "EAN": "7300000000024", "stock": {"1": 4}},
            ],
        }
    ],
}
# A product a careless (or hostile) editor named like a spreadsheet formula, priced only in SEK.
FORMULA = {
    "name": '=HYPERLINK("http://evil.example","click")',
    "productNumber": "@SOCK",
    "createdAt": "2025-12-01T23:30:00-02:00",
    "prices": {"1": "99"},
    "variants": [{"name": "Black", "variantNumber": "BLK", "sizes": [{"sizeNumber": "OS", "stock": {"1": 2}}]}],
}


@pytest.fixture
def feeds(settings, connected):
    settings.IP_FEED_USERNAME = USERNAME
    settings.IP_FEED_PASSWORD = PASSWORD
    settings.IP_FEED_CENTRA_PRICELIST_ID = 2
    settings.IP_FEED_CENTRA_WAREHOUSE_ID = None
    settings.IP_FEED_WAREHOUSE = "Centra EU"
    settings.IP_FEED_VENDOR = "Northwind Apparel"
    settings.IP_FEED_SALES_DAYS = 365
    return connected


def basic(username: str = USERNAME, password: str = PASSWORD) -> dict:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


def fetch(client, url: str, **params):
    response = client.get(url, params, **basic())
    assert response.status_code == 200, response.content
    return response


def rows_of(response) -> tuple[list[str], list[dict]]:
    text = b"".join(response.streaming_content).decode("utf-8")
    reader = csv.DictReader(io.StringIO(text))
    return reader.fieldnames, list(reader)


def ago(days: int) -> str:
    return (timezone.now() - timedelta(days=days)).replace(microsecond=0).isoformat()


def utc_text(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def order(number: int, created: str, lines: list[dict]) -> dict:
    return {
        "number": number,
        "status": "CONFIRMED",
        "marketId": 2,
        "createdAt": created,
        "shipping": "4.95",
        "customer": {"email": f"c{number}@example.com", "country": "DE"},
        "lines": lines,
    }


# --- the products feed --------------------------------------------------------------------------------------------


def test_the_products_feed_has_exactly_inventory_planners_columns_and_a_row_per_size(feeds, control, client):
    control("centra").seed(products=[TEE, FORMULA])

    response = fetch(client, PRODUCTS)

    assert response.streaming is True
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="products.csv"'
    columns, rows = rows_of(response)
    assert tuple(columns) == PRODUCT_COLUMNS
    assert [row["SKU"] for row in rows] == ["TEE100BLKS", "TEE100BLKM", "'@SOCKBLKOS"]


def test_product_rows_carry_centras_title_price_ean_dates_and_stock_free_to_allocate(feeds, control, client):
    control("centra").seed(products=[TEE])
    tee_id = next(iter(control("centra").state()["products"].values()))["id"]

    _, rows = rows_of(fetch(client, PRODUCTS))

    assert rows[0] == {
        "product_id": str(tee_id),
        "title": "Organic Cotton Tee",
        "price": "29.00",
        "SKU": "TEE100BLKS",
        "created_at": "2026-03-28",
        "stock_quantity": "13",  # both warehouses
        "cost_price": "",  # Centra does not hold it
        "barcode": "7300000000017",
        "updated_at": timezone.now().date().isoformat(),
        "managing_stock": "true",
        "vendor": "Northwind Apparel",
    }
    assert (rows[1]["SKU"], rows[1]["stock_quantity"], rows[1]["barcode"]) == ("TEE100BLKM", "4", "7300000000024")


def test_the_stock_of_one_warehouse_and_another_pricelist_are_settings(feeds, control, client, settings):
    control("centra").seed(products=[TEE])
    settings.IP_FEED_CENTRA_WAREHOUSE_ID = 2
    settings.IP_FEED_CENTRA_PRICELIST_ID = 1

    _, rows = rows_of(fetch(client, PRODUCTS))

    assert [(row["SKU"], row["stock_quantity"], row["price"]) for row in rows] == [
        ("TEE100BLKS", "3", "349.00"),
        ("TEE100BLKM", "0", "349.00"),  # never stocked in warehouse 2
    ]


def test_units_sold_and_not_shipped_are_not_in_stock(feeds, control, client):
    control("centra").seed(products=[TEE], orders=[order(1000, ago(1), [{"sku": "TEE100BLKS", "quantity": 3}])])

    _, rows = rows_of(fetch(client, PRODUCTS))

    assert rows[0]["stock_quantity"] == "10"  # 13 on hand, 3 allocated to the order


def test_cells_that_would_start_a_formula_are_escaped_and_a_product_without_a_price_has_none(feeds, control, client):
    control("centra").seed(products=[FORMULA])

    _, rows = rows_of(fetch(client, PRODUCTS))

    assert rows[0]["title"] == '\'=HYPERLINK("http://evil.example","click")'
    assert rows[0]["SKU"] == "'@SOCKBLKOS"
    assert rows[0]["price"] == ""  # priced only in SEK, and the feed carries the EUR pricelist
    assert rows[0]["created_at"] == "2025-12-02"  # in UTC


def test_skus_go_out_as_inventory_planner_knows_them_and_unknown_ones_are_left_out(feeds, control, client, settings):
    control("centra").seed(products=[TEE])
    SkuMapping.objects.create(system="inventory_planner", centra_sku="TEE100BLKS", external_code="IP-TEE-S")
    settings.SKU_SAME_AS_CENTRA = []  # Inventory Planner knows only the SKUs mapped

    _, rows = rows_of(fetch(client, PRODUCTS))

    assert [row["SKU"] for row in rows] == ["IP-TEE-S"]


def test_every_page_of_the_catalogue_is_read_one_page_at_a_time(feeds, control):
    control("centra").seed(products=[{**TEE, "productNumber": f"TEE{n}"} for n in range(5)])
    centra = CentraClient(base_url=f"{feeds.url}/centra", token="sandbox-centra", page_size=2)

    rows = list(planner_product_rows(centra=centra, pricelist_id=2, warehouse_id=None, vendor=""))

    assert len(rows) == 10
    pages = [call for call in control("centra").calls() if call["operation"] == "catalogue"]
    assert len(pages) == 3


# --- the sales orders feed ----------------------------------------------------------------------------------------


@pytest.fixture
def sales(feeds, control):
    """Three recent orders and an old one, moved on as they would be in Centra: one unit of a line cancelled, a
    shipped order with a unit returned, an order cancelled whole."""
    created = {1000: ago(10), 1001: ago(5), 1002: ago(3), 900: ago(400)}
    control("centra").seed(
        products=[TEE],
        orders=[
            order(
                1000,
                created[1000],
                [
                    {"sku": "TEE100BLKS", "quantity": 3, "unitPrice": "29.00", "discount": "2.90", "taxPercent": "19"},
                    {"sku": "TEE100BLKM", "quantity": 1, "unitPrice": "29.00", "taxPercent": "19"},
                ],
            ),
            order(1001, created[1001], [{"sku": "TEE100BLKM", "quantity": 2, "unitPrice": "29.00"}]),
            order(1002, created[1002], [{"sku": "TEE100BLKS", "quantity": 1, "unitPrice": "29.00"}]),
            order(900, created[900], [{"sku": "TEE100BLKS", "quantity": 1, "unitPrice": "29.00"}]),
        ],
    )
    centra = connections.centra()
    first = centra.order(1000).lines[0]
    centra.cancel_lines(1000, [(first.id, 1)])
    shipped = centra.order(1001).lines[0]
    shipment, _ = centra.create_shipment(order_number=1001, lines=[(shipped.id, 2)])
    centra.complete_shipment(shipment_id=shipment.id, carrier="DHL", service="Parcel", tracking_number="JD0001")
    centra.create_return(shipment_id=shipment.id, lines=[(shipment.lines[0].id, 1)], release_to_stock=True)
    whole = centra.order(1002).lines[0]
    centra.cancel_lines(1002, [(whole.id, 1)])
    return {number: centra.order(number) for number in created}


def by_row_id(rows: list[dict]) -> dict[str, dict]:
    return {row["ORDER_ID"]: row for row in rows}


def test_the_sales_feed_has_exactly_inventory_planners_columns_and_a_row_per_order_line(sales, client):
    response = fetch(client, SALES)

    assert response.streaming is True
    assert response["Content-Disposition"] == 'attachment; filename="sales-orders.csv"'
    columns, rows = rows_of(response)
    assert tuple(columns) == SALES_ORDER_COLUMNS
    placed = sales[1000]
    line = placed.lines[1]
    assert by_row_id(rows)[str(line.id)] == {
        "ORDER_ID": str(line.id),
        "ID": "1000",
        "VARIANT_ID": "TEE100BLKM",
        "WAREHOUSE": "Centra EU",
        "CURRENCY": "EUR",
        "QUANTITY": "1",
        "PRICE": "29.00",
        "CREATED_AT": utc_text(placed.created_at),
        "REMOVED": "false",
        "UPDATED_AT": utc_text(placed.updated_at),
        "DISCOUNT": "0.00",
        "TAX": "4.63",  # 29.00 less 29.00 / 1.19 = 24.37
        "TAX_INCLUDED": "true",
        "SHIPPING": "0.00",  # the order's shipping is on its first row
        "CANCELLED": "false",
    }


def test_a_discounted_line_keeps_its_price_and_discount_exact_and_carries_the_orders_shipping(sales, client):
    _, rows = rows_of(fetch(client, SALES))

    line = sales[1000].lines[0]
    row = by_row_id(rows)[str(line.id)]
    assert (row["QUANTITY"], row["PRICE"], row["DISCOUNT"], row["TAX"], row["SHIPPING"]) == (
        "2",  # three ordered, one cancelled
        "29.00",
        "5.80",  # 2 × 2.90
        "8.33",  # 52.20 less 52.20 / 1.19 = 43.87, as Centra has it
        "4.95",
    )
    assert Decimal(row["TAX"]) == line.line_value - line.line_value_excluding_tax


def test_a_cancelled_quantity_is_a_row_of_its_own_marked_cancelled(sales, client):
    _, rows = rows_of(fetch(client, SALES))

    line = sales[1000].lines[0]
    row = by_row_id(rows)[f"{line.id}-cancelled"]
    assert (row["ID"], row["VARIANT_ID"], row["QUANTITY"], row["DISCOUNT"], row["TAX"], row["CANCELLED"]) == (
        "1000",
        "TEE100BLKS",
        "1",
        "2.90",
        "4.17",  # 26.10 less 26.10 / 1.19 = 21.93
        "true",
    )


def test_a_returned_quantity_is_a_row_of_its_own_with_a_negative_quantity(sales, client):
    _, rows = rows_of(fetch(client, SALES))

    line = sales[1001].lines[0]
    assert (line.quantity, line.returned_quantity) == (2, 1)
    sold, returned = by_row_id(rows)[str(line.id)], by_row_id(rows)[f"{line.id}-returned"]
    assert (sold["QUANTITY"], sold["TAX"], sold["SHIPPING"], sold["CANCELLED"]) == ("2", "9.26", "4.95", "false")
    assert (returned["QUANTITY"], returned["PRICE"], returned["TAX"], returned["SHIPPING"], returned["CANCELLED"]) == (
        "-1",  # a number, not escaped as text
        "29.00",
        "-4.63",
        "0.00",
        "false",
    )


def test_an_order_cancelled_whole_is_all_cancelled_rows(sales, client):
    _, rows = rows_of(fetch(client, SALES))

    assert sales[1002].status == "CANCELLED"
    mine = [row for row in rows if row["ID"] == "1002"]
    assert [(row["ORDER_ID"], row["QUANTITY"], row["CANCELLED"]) for row in mine] == [
        (f"{sales[1002].lines[0].id}-cancelled", "1", "true")
    ]


def test_the_window_is_the_last_days_set_or_since_a_date_asked_for(sales, client, settings):
    _, rows = rows_of(fetch(client, SALES))
    assert sorted({row["ID"] for row in rows}) == ["1000", "1001", "1002"]

    old = (timezone.now() - timedelta(days=401)).date().isoformat()
    _, rows = rows_of(fetch(client, SALES, since=old))
    assert sorted({row["ID"] for row in rows}) == ["1000", "1001", "1002", "900"]

    settings.IP_FEED_SALES_DAYS = 7
    _, rows = rows_of(fetch(client, SALES))
    assert sorted({row["ID"] for row in rows}) == ["1001", "1002"]


def test_a_since_that_is_not_a_date_is_refused(feeds, client):
    response = client.get(SALES, {"since": "last tuesday"}, **basic())

    assert response.status_code == 400


# --- access -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [PRODUCTS, SALES])
def test_without_credentials_the_feed_asks_for_them(feeds, client, url):
    response = client.get(url)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith('Basic realm="')


@pytest.mark.parametrize(
    "headers",
    [
        basic(password="not-the-password"),
        basic(username="someone-else"),
        basic(password=""),
        {"HTTP_AUTHORIZATION": "Bearer a-long-feed-password"},
        {"HTTP_AUTHORIZATION": "Basic not-base64!"},
    ],
)
def test_wrong_credentials_are_refused(feeds, client, headers):
    response = client.get(PRODUCTS, **headers)

    assert response.status_code == 401
    assert PASSWORD.encode() not in response.content


def test_a_signed_in_console_user_still_needs_the_feeds_credentials(feeds, ada, client_for):
    assert client_for(ada).get(PRODUCTS).status_code == 401


@pytest.mark.parametrize("url", [PRODUCTS, SALES])
def test_head_answers_the_headers_without_reading_centra(feeds, control, client, url):
    control("centra").seed(products=[TEE])
    before = len(control("centra").calls())

    response = client.head(url, **basic())

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment; filename=")
    assert b"".join(response.streaming_content) == b""
    assert len(control("centra").calls()) == before


@pytest.mark.parametrize("url", [PRODUCTS, SALES])
def test_the_feeds_do_not_exist_while_no_password_is_set(feeds, client, settings, url):
    settings.IP_FEED_PASSWORD = ""

    assert client.get(url, **basic(password="")).status_code == 404
    assert client.head(url).status_code == 404


def test_other_methods_are_not_allowed(feeds, client):
    assert client.post(PRODUCTS, **basic()).status_code == 405


def test_centra_failing_before_the_first_row_is_a_503_not_an_empty_file(feeds, control, client):
    control("centra").faults(error_rate=1.0, error_status=403)

    response = client.get(PRODUCTS, **basic())

    assert response.status_code == 503
    assert response["Retry-After"]
