"""A deterministic fashion brand: the same seed gives the same catalogue, stock and orders in every simulator,
so Centra, Fulfil, Virtualstock, Inventory Planner and the marketplace describe one coherent business."""

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

GARMENTS = [
    ("TEE", "Organic Cotton Tee", "Tops", Decimal("29.00"), ["XS", "S", "M", "L", "XL"]),
    ("SHIRT", "Oxford Shirt", "Shirts", Decimal("79.00"), ["S", "M", "L", "XL"]),
    ("KNIT", "Merino Crew Knit", "Knitwear", Decimal("119.00"), ["S", "M", "L"]),
    ("JEAN", "Straight Leg Jeans", "Denim", Decimal("99.00"), ["28", "30", "32", "34", "36"]),
    ("DRESS", "Linen Midi Dress", "Dresses", Decimal("149.00"), ["34", "36", "38", "40", "42"]),
    ("COAT", "Wool Overcoat", "Outerwear", Decimal("329.00"), ["S", "M", "L"]),
    ("SNEAK", "Leather Sneaker", "Shoes", Decimal("139.00"), ["38", "39", "40", "41", "42", "43", "44"]),
    ("CAP", "Canvas Cap", "Accessories", Decimal("25.00"), ["OS"]),
    ("SOCK", "Rib Socks", "Accessories", Decimal("12.00"), ["36-40", "41-46"]),
    ("BAG", "Canvas Tote", "Accessories", Decimal("45.00"), ["OS"]),
]
COLOURS = [("BLK", "Black"), ("WHT", "White"), ("NVY", "Navy"), ("OLV", "Olive"), ("SND", "Sand"), ("RST", "Rust")]

# Centra markets with their currency, pricelist rate against EUR, country and tax rate.
MARKETS = [
    {"id": 1, "name": "Sweden", "currency": "SEK", "rate": Decimal("11.5"), "country": "SE", "tax": Decimal("25")},
    {"id": 2, "name": "Europe", "currency": "EUR", "rate": Decimal("1"), "country": "DE", "tax": Decimal("19")},
    {
        "id": 3,
        "name": "United Kingdom",
        "currency": "GBP",
        "rate": Decimal("0.86"),
        "country": "GB",
        "tax": Decimal("20"),
    },
    {
        "id": 4,
        "name": "United States",
        "currency": "USD",
        "rate": Decimal("1.08"),
        "country": "US",
        "tax": Decimal("0"),
    },
]
STORES = [
    {"id": 1, "name": "Retail", "type": "DIRECT_TO_CONSUMER"},
    {"id": 2, "name": "Wholesale", "type": "WHOLESALE"},
]
WAREHOUSES = [{"id": 1, "name": "Main warehouse", "code": "MAIN"}, {"id": 2, "name": "Retail store", "code": "STORE"}]
CARRIERS = [("DHL", "Express"), ("DHL", "Parcel"), ("UPS", "Standard"), ("PostNord", "MyPack"), ("DPD", "Classic")]
STOCK_STATUSES = ["reserved", "quarantined", "qc"]
FIRST_NAMES = ["Alva", "Noah", "Maja", "Liam", "Elsa", "Hugo", "Freja", "Oscar", "Ines", "Leo", "Nora", "Otto"]
LAST_NAMES = ["Lind", "Berg", "Holm", "Smith", "Müller", "García", "Rossi", "Dubois", "Novak", "Jones"]
CITIES = {"SE": "Stockholm", "DE": "Berlin", "GB": "London", "US": "New York", "FR": "Paris", "NL": "Amsterdam"}
BASE_TIME = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def ean13(number: int) -> str:
    """A valid EAN-13 from a 12-digit body."""
    body = f"{number:012d}"[-12:]
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def money(amount: Decimal, places: int = 2) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


@dataclass
class Size:
    sku: str
    size_number: str
    ean: str
    # Physical stock per warehouse id, and quantities in statuses that cannot be sold.
    on_hand: dict[int, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    cost_price: Decimal = Decimal(0)


@dataclass
class Variant:
    variant_number: str
    name: str
    sizes: list[Size]


@dataclass
class Product:
    product_number: str
    name: str
    category: str
    price_eur: Decimal
    variants: list[Variant]
    created_at: datetime
    image: str

    def price_in(self, market: dict) -> Decimal:
        return money(self.price_eur * market["rate"], 0 if market["currency"] == "SEK" else 2)


@dataclass
class Bundle:
    sku: str
    name: str
    components: list[tuple[str, int, Decimal]]  # (sku, quantity, share %)
    price_eur: Decimal


@dataclass
class OrderLine:
    line_id: int
    sku: str
    name: str
    quantity: int
    unit_price: Decimal
    discount: Decimal
    tax_percent: Decimal


@dataclass
class Order:
    number: int
    market: dict
    store_id: int
    status: str
    created_at: datetime
    customer: dict
    lines: list[OrderLine]
    shipping: Decimal
    shipping_method: str
    captured: bool

    @property
    def currency(self) -> str:
        return self.market["currency"]


@dataclass
class World:
    products: list[Product]
    bundles: list[Bundle]
    orders: list[Order]  # web orders placed in Centra
    marketplace_orders: list[dict]  # orders placed on the marketplace (marketplace shape)
    virtualstock_orders: list[dict]  # orders relayed by Virtualstock retailers (Virtualstock shape)

    def sizes(self):
        for product in self.products:
            for variant in product.variants:
                for size in variant.sizes:
                    yield product, variant, size


def generate(
    seed: int = 42,
    products: int = 60,
    orders: int = 40,
    marketplace_orders: int = 12,
    virtualstock_orders: int = 12,
    unmapped_share: float = 0.1,
) -> World:
    """The brand for ``seed``: ``products`` styles, each in 1-4 colours and its size run, with stock, bundles,
    web orders in every status, and marketplace and Virtualstock orders (some naming SKUs or carriers that no
    mapping knows, as real feeds do)."""
    rng = random.Random(seed)
    catalogue: list[Product] = []
    ean_counter = 730000000000 + seed * 100000
    for index in range(products):
        code, name, category, base_price, sizes = GARMENTS[index % len(GARMENTS)]
        product_number = f"{code}{100 + index}"
        colours = rng.sample(COLOURS, k=rng.randint(1, 4))
        variants = []
        for colour_code, colour_name in colours:
            variant_sizes = []
            for size_number in sizes:
                ean_counter += 1
                size = Size(
                    sku=f"{product_number}{colour_code}{size_number}",
                    size_number=size_number,
                    ean=ean13(ean_counter),
                    on_hand={1: rng.choice([0, 0, 1, 2, 3, 5, 8, 12, 20, 40, 75]), 2: rng.choice([0, 0, 0, 1, 2, 4])},
                    statuses={status: rng.choice([0, 0, 0, 1, 2]) for status in STOCK_STATUSES},
                    cost_price=money(base_price * Decimal("0.38")),
                )
                variant_sizes.append(size)
            variants.append(Variant(colour_code, colour_name, variant_sizes))
        catalogue.append(
            Product(
                product_number=product_number,
                name=f"{name} {index + 1}" if index >= len(GARMENTS) else name,
                category=category,
                price_eur=base_price,
                variants=variants,
                created_at=BASE_TIME - timedelta(days=rng.randint(30, 400)),
                image=f"https://images.example.com/{product_number.lower()}.jpg",
            )
        )

    all_skus = [(product, size) for product in catalogue for variant in product.variants for size in variant.sizes]
    bundles = []
    for index in range(min(3, len(all_skus) // 3)):
        parts = rng.sample(all_skus, k=2)
        bundles.append(
            Bundle(
                sku=f"BUNDLE{index + 1}",
                name=f"Gift set {index + 1}",
                components=[(parts[0][1].sku, 1, Decimal("60")), (parts[1][1].sku, 2, Decimal("40"))],
                price_eur=money((parts[0][0].price_eur + parts[1][0].price_eur * 2) * Decimal("0.85")),
            )
        )

    statuses = ["PENDING", "CONFIRMED", "PROCESSING", "SHIPPED", "ARCHIVED", "CANCELLED"]
    web_orders = []
    line_id = 0
    for index in range(orders):
        market = MARKETS[index % len(MARKETS)]
        picked = rng.sample(all_skus, k=rng.randint(1, 3))
        lines = []
        for product, size in picked:
            line_id += 1
            unit_price = product.price_in(market)
            discount = money(unit_price * Decimal("0.1")) if rng.random() < 0.3 else Decimal("0.00")
            lines.append(
                OrderLine(line_id, size.sku, product.name, rng.randint(1, 2), unit_price, discount, market["tax"])
            )
        web_orders.append(
            Order(
                number=1000 + index,
                market=market,
                store_id=1,
                status=statuses[index % len(statuses)],
                created_at=BASE_TIME + timedelta(hours=index * 3),
                customer=_customer(rng, market["country"]),
                lines=lines,
                shipping=money(Decimal("4.95") * market["rate"]),
                shipping_method=rng.choice(["standard", "express"]),
                captured=rng.random() > 0.15,
            )
        )

    def external_lines(count: int) -> list[tuple[str, Product | None]]:
        chosen = []
        for product, size in rng.sample(all_skus, k=count):
            if rng.random() < unmapped_share:
                chosen.append((f"UNKNOWN-{rng.randint(1000, 9999)}", None))
            else:
                chosen.append((size.sku, product))
        return chosen

    market_orders = []
    for index in range(marketplace_orders):
        lines = external_lines(rng.randint(1, 2))
        market_orders.append(
            {
                "id": f"MP-{seed}-{index + 1:05d}",
                "status": "NEW",
                "created_at": (BASE_TIME + timedelta(hours=index * 5)).isoformat(),
                "currency": "EUR",
                "shipping_method": rng.choice(["STANDARD", "EXPRESS", "NEXT_DAY", "PICKUP_POINT"]),
                "customer": _customer(rng, "DE"),
                "lines": [
                    {
                        "id": f"L{index + 1}-{n + 1}",
                        "seller_sku": sku,
                        "quantity": rng.randint(1, 2),
                        "unit_price": str(product.price_eur if product else Decimal("19.00")),
                        "tax_rate": "19",
                        "status": "NEW",
                    }
                    for n, (sku, product) in enumerate(lines)
                ],
                "shipping_price": "4.95",
            }
        )

    vs_orders = []
    for index in range(virtualstock_orders):
        lines = external_lines(rng.randint(1, 2))
        items = []
        for n, (sku, product) in enumerate(lines):
            price = money((product.price_eur if product else Decimal("20")) * Decimal("0.86"))
            quantity = rng.randint(1, 2)
            tax = money(price * Decimal("0.2")) * quantity  # per unit, so every line splits into whole units
            items.append(
                {
                    "part_number": sku,
                    "retailer_sku_reference": sku,
                    "supplier_sku_reference": sku,
                    "line_reference": f"{7000000 + index * 10 + n}",
                    "quantity": quantity,
                    "name": product.name if product else "Unknown item",
                    "status": "ORDER",
                    "unit_cost_price": str(price),
                    "subtotal": str(money(price * quantity)),
                    "tax": str(tax),
                    "tax_rate": "20.00",
                    "total": str(money(price * quantity) + tax),
                }
            )
        subtotal = sum(Decimal(item["subtotal"]) for item in items)
        tax = sum(Decimal(item["tax"]) for item in items)
        customer = _customer(rng, "GB")
        vs_orders.append(
            {
                "id": 51900000 + index,
                "order_reference": f"JL{seed}{index + 1:06d}",
                "order_date": (BASE_TIME + timedelta(hours=index * 4)).strftime("%Y-%m-%dT%H:%M:%S"),
                "status": "ORDER",
                "retailer": {"id": 245, "name": "John Lewis"},
                "currency_code": "GBP",
                "items": items,
                "subtotal": str(subtotal),
                "tax": str(tax),
                "total": str(subtotal + tax),
                "delivery_service_code": rng.choice(["standard", "express", "nominated-day"]),
                "shipping_address": {
                    "full_name": f"{customer['first_name']} {customer['last_name']}",
                    "line_1": customer["address1"],
                    "line_2": None,
                    "city": customer["city"],
                    "postal_code": customer["zipcode"],
                    "state": "",
                    "country": "GB",
                    "phone": customer["phone"],
                    "email": None,
                },
            }
        )
    return World(catalogue, bundles, web_orders, market_orders, vs_orders)


def _customer(rng: random.Random, country: str) -> dict:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    return {
        "first_name": first,
        "last_name": last,
        "email": f"{first.lower()}.{last.lower()}{rng.randint(1, 999)}@example.com",
        "address1": f"{rng.randint(1, 120)} {rng.choice(['High Street', 'Storgatan', 'Hauptstraße', 'Main St'])}",
        "city": CITIES.get(country, "Berlin"),
        "zipcode": f"{rng.randint(10000, 99999)}",
        "country": country,
        "phone": f"+{rng.randint(30, 49)} {rng.randint(100000000, 999999999)}",
    }
