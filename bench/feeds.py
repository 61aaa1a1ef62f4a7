"""The Inventory Planner feeds at 100,000 lines: streamed in bounded memory, against the sandbox.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/switchyard_bench_feeds .venv/bin/python bench/feeds.py

Centra, served by the sandbox in this process (RunningSandbox, no latency), is seeded directly through its
simulator: 10,000 products × 10 sizes (100,000 SKUs) with prices and stock, and 50,000 orders of 2 lines placed
over the last year, a share of them with a unit cancelled or returned. The connectors' rate limits are raised, so
the run measures Switchyard, not the pacing. Each feed is fetched as Inventory Planner fetches it — GET with basic
auth, through Django's whole middleware stack (test Client), the body read chunk by chunk and thrown away — and
measured: rows, CSV size, wall time, the processor time of the sandbox's server threads (wall minus that is
Switchyard's share), the process's resident memory (peak over the start), and, in a second run under tracemalloc,
the peak of Python's allocations over the start. The sales feed is also fetched for its last ~10% of orders
(``?since=``): a peak that does not grow with the feed is what "bounded" means.

The Centra simulator looks orders up by scanning them all (each order line's money finds its order by scanning
every order; each page filters every order again): fine for tests, hours at this size. The bench gives those two
look-ups an index, with the same answers (checked through Switchyard's connector before the run), so the time
measured is Switchyard's. Not part of the test suite.
"""

import argparse
import base64
import gc
import random
import sys
import threading
import time
import tracemalloc
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice

from postgres_django import django_on_postgres

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/switchyard_bench_feeds"
RAISED = 10**9  # a rate limit no run comes near
USERNAME, PASSWORD = "inventory-planner", "bench-feed-password"
MEMORY_GOAL_MB = 100


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=10_000, help="Centra products (each one variant)")
    parser.add_argument("--sizes", type=int, default=10, help="sizes per product: SKUs = products × sizes")
    parser.add_argument("--orders", type=int, default=50_000, help="Centra orders, 2 lines each, over a year")
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--no-memory-pass", action="store_true", help="skip the tracemalloc repeats")
    args = parser.parse_args()

    django_on_postgres(DEFAULT_URL)
    rng = random.Random(args.seed)
    started = time.perf_counter()
    sandbox = sandbox_start()
    seeded = centra_seed(sandbox, args.products, args.sizes, args.orders, rng)
    indexes = OrderIndexes(sandbox.app.simulators["centra"])
    indexes.check()
    indexes.install()
    # The sandbox's objects share this process: frozen, the garbage collector stops walking them on every full
    # collection (a Switchyard process has none of them).
    gc.collect()
    gc.freeze()
    print(
        f"{seeded.skus:,} SKUs ({args.products:,} products × {args.sizes} sizes), {args.orders:,} orders with "
        f"{seeded.lines:,} lines ({seeded.cancelled:,} with a unit cancelled, {seeded.returned:,} with one returned); "
        f"ready in {time.perf_counter() - started:.0f} s (seeded, index answers checked)"
    )

    from django.urls import reverse

    recent = (datetime.now(UTC) - timedelta(days=36)).date().isoformat()
    feeds = [
        ("products", reverse("feeds:planner_products"), {}),
        ("sales orders, last 365 days", reverse("feeds:planner_sales_orders"), {}),
        (f"sales orders, since {recent}", reverse("feeds:planner_sales_orders"), {"since": recent}),
    ]
    results = [fetch(name, url, params, sandbox, traced=False) for name, url, params in feeds]
    if not args.no_memory_pass:
        for result, (_, url, params) in zip(results, feeds, strict=True):
            again = fetch(result.name, url, params, sandbox, traced=True)
            result.traced_peak_mb, result.traced_wall = again.traced_peak_mb, again.wall
    report(results)
    sandbox.stop()
    return 0


# --- the sandbox ------------------------------------------------------------------------------------------------


def sandbox_start():
    """The sandbox on 127.0.0.1 in this process, its server threads' processor time counted; Switchyard's Centra
    connection pointed at it with rate limits no run reaches, and the feeds switched on."""
    from django.conf import settings

    from syncs import connections
    from syncs.connectors.http import RateLimiter
    from syncs.sandbox.core import SandboxApp
    from syncs.sandbox.server import RunningSandbox, build_simulators

    sandbox = RunningSandbox(SandboxApp(build_simulators(settings.CONNECTIONS)))
    sandbox.cpu_seconds = 0.0
    lock = threading.Lock()

    class TimedHandler(sandbox.server.RequestHandlerClass):
        """Adds up the processor time each request's thread spends, HTTP parsing and writing included."""

        def handle(self) -> None:
            started = time.thread_time()
            try:
                super().handle()
            finally:
                with lock:
                    sandbox.cpu_seconds += time.thread_time() - started

    sandbox.server.RequestHandlerClass = TimedHandler
    sandbox.start()
    conf = settings.CONNECTIONS["centra"]
    settings.CONNECTIONS = {
        **settings.CONNECTIONS,
        "centra": {
            **conf,
            "base_url": f"{sandbox.url}/centra",
            "order_api_url": f"{sandbox.url}/centra/api/order",
            "requests_per_10s": RAISED,
        },
    }
    settings.SANDBOX_URL = sandbox.url
    settings.RATE_LIMITS_SHARED = False
    settings.IP_FEED_USERNAME, settings.IP_FEED_PASSWORD = USERNAME, PASSWORD
    settings.IP_FEED_CENTRA_PRICELIST_ID = 2
    settings.IP_FEED_CENTRA_WAREHOUSE_ID = None
    settings.IP_FEED_SALES_DAYS = 365
    connections.centra.cache_clear()
    # A RateLimiter keeps the moment of every call in its window and scans them on each call: the raised limit gets
    # a short window, so that bookkeeping stays the size it has at the published limits.
    connections.centra().session.rate_limiter = RateLimiter([(RAISED, 0.1)])
    return sandbox


@dataclass
class Seeded:
    skus: int
    lines: int
    cancelled: int
    returned: int


def centra_seed(sandbox, products: int, sizes: int, orders: int, rng: random.Random) -> Seeded:
    """Seed Centra directly (in process): products → one variant → sizes with stock in two warehouses, priced in
    every pricelist; orders of two lines placed over the last 365 days, every 10th line with a unit cancelled and
    every 15th with a unit returned, as Centra's order lines record them."""
    centra = sandbox.app.simulators["centra"]
    centra.reset()
    with centra.lock:
        centra.seed(
            {
                "products": [
                    {
                        "name": f"Style {p:05d}",
                        "productNumber": f"P{p:05d}",
                        "createdAt": "2026-01-05T09:00:00+00:00",
                        "prices": {"1": "349", "2": "29.00", "3": "25.00", "4": "32.00"},
                        "variants": [
                            {
                                "name": "Black",
                                "variantNumber": "BLK",
                                "sizes": [
                                    {
                                        "sizeNumber": f"{s:02d}",
                                        "name": f"{s:02d}",
                                        "EAN": f"{7300000000000 + p * 100 + s}",
                                        "stock": {"1": rng.randint(0, 40), "2": rng.randint(0, 4)},
                                    }
                                    for s in range(sizes)
                                ],
                            }
                        ],
                    }
                    for p in range(products)
                ]
            }
        )
        by_sku = {size["SKU"]: size for size in centra.state["sizes"].values()}
        skus = list(by_sku)
        # The simulator finds a SKU by scanning every size: seeding uses the same answer from an index.
        centra._size_by_sku = by_sku.get
        now = datetime.now(UTC)
        for n in range(orders):
            centra._create_order(
                {
                    "number": 100_000 + n,
                    "marketId": 2,
                    "createdAt": (now - timedelta(days=364.5 * (orders - n) / orders)).isoformat(),
                    "shipping": "4.95",
                    "customer": {"email": f"shopper{n}@example.com", "country": "DE"},
                    "lines": [
                        {"sku": sku, "quantity": 2, "unitPrice": "29.00", "discount": rng.choice(["0", "0", "2.90"])}
                        for sku in rng.sample(skus, 2)
                    ],
                },
                status="CONFIRMED",
            )
        del centra.__dict__["_size_by_sku"]
        lines = [line for order in centra.state["orders"].values() for line in order["lines"]]
        for number, line in enumerate(lines):
            if number % 10 == 3:
                line["quantity"] -= 1
                line["cancelledQuantity"] += 1
            if number % 15 == 7:
                line["returnedQuantity"] += 1
    return Seeded(
        skus=len(skus),
        lines=len(lines),
        cancelled=sum(1 for n in range(len(lines)) if n % 10 == 3),
        returned=sum(1 for n in range(len(lines)) if n % 15 == 7),
    )


class OrderIndexes:
    """Indexed versions of the two order look-ups the Centra simulator makes by scanning: which order a line
    belongs to (for each line's money), and the orders a filter selects (for every page). Same answers."""

    def __init__(self, centra) -> None:
        self.centra = centra

    def install(self) -> None:
        from syncs.sandbox.centra import resolvers

        self._original_order_of_line = resolvers._order_of_line
        self._original_orders = resolvers.RESOLVERS["Query.orders"]
        owner = {id(line): order for order in self.centra.state["orders"].values() for line in order["lines"]}
        selected: dict[str, list] = {}

        def order_of_line(info, line):
            return owner.get(id(line)) or self._original_order_of_line(info, line)

        def orders(source, info, where=None, sort=None, limit=20, page=1):
            key = repr((where, sort))
            if key not in selected:  # the state does not change while the bench reads it
                selected[key] = resolvers._filter_orders(info.root_value, where, sort)
            return resolvers._page(selected[key], limit, page)

        resolvers._order_of_line = order_of_line
        resolvers.RESOLVERS["Query.orders"] = orders

    def uninstall(self) -> None:
        from syncs.sandbox.centra import resolvers

        resolvers._order_of_line = self._original_order_of_line
        resolvers.RESOLVERS["Query.orders"] = self._original_orders

    def check(self) -> None:
        """The indexed answers equal the simulator's own, through Switchyard's connector. Raises if not."""
        from syncs import connections

        since = (datetime.now(UTC) - timedelta(days=365)).isoformat()

        def answers():
            return list(islice(connections.centra().orders(where={"createdAt": {"from": since}}), 250))

        plain = answers()
        self.install()
        indexed = answers()
        self.uninstall()
        if plain != indexed:
            raise SystemExit("the indexed sandbox answers differently from the simulator: fix the bench")


# --- measuring --------------------------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    status: int
    rows: int
    megabytes: float
    wall: float
    sandbox_cpu: float
    rss_start_mb: float
    rss_peak_mb: float
    traced_peak_mb: float | None = None
    traced_wall: float | None = None


def fetch(name: str, url: str, params: dict, sandbox, *, traced: bool) -> Result:
    """GET the feed as Inventory Planner would and read it to the end, keeping nothing but counts."""
    from django.test import Client

    client = Client(HTTP_HOST="localhost")  # a host the settings allow
    auth = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    gc.collect()
    rss_start = rss_mb()
    peak_rss_reset()
    cpu_before = sandbox.cpu_seconds
    if traced:
        tracemalloc.start()
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
    started = time.perf_counter()
    response = client.get(url, params, HTTP_AUTHORIZATION=f"Basic {auth}")
    size = lines = 0
    for chunk in response.streaming_content if response.streaming else [response.content]:
        size += len(chunk)
        lines += chunk.count(b"\n")
    response.close()
    wall = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"{name}: {response.status_code} {response.content[:200]!r}")
    traced_peak = None
    if traced:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        traced_peak = (peak - start) / 2**20
    return Result(
        name=name,
        status=response.status_code,
        rows=max(0, lines - 1),  # less the header
        megabytes=size / 2**20,
        wall=wall,
        sandbox_cpu=sandbox.cpu_seconds - cpu_before,
        rss_start_mb=rss_start,
        rss_peak_mb=rss_peak_mb(),
        traced_peak_mb=traced_peak,
        traced_wall=wall if traced else None,
    )


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    return _status_mb("VmRSS")


def rss_peak_mb() -> float:
    return _status_mb("VmHWM")


def peak_rss_reset() -> None:
    """Start the process's peak resident memory (VmHWM) afresh, where Linux allows it."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        pass


def report(results: list[Result]) -> None:
    print()
    print(
        f"{'feed':34} {'status':>6} {'rows':>9} {'CSV MB':>7} {'wall s':>7} {'rows/s':>8} {'sandbox s':>9} "
        f"{'switchyard s':>12} {'RSS start':>9} {'RSS peak':>8} {'+RSS MB':>7} {'traced peak MB':>14}"
    )
    for r in results:
        traced = f"{r.traced_peak_mb:.1f}" if r.traced_peak_mb is not None else "—"
        print(
            f"{r.name:34} {r.status:>6} {r.rows:>9,} {r.megabytes:>7.1f} {r.wall:>7.1f} {r.rows / r.wall:>8,.0f} "
            f"{r.sandbox_cpu:>9.1f} {max(0.0, r.wall - r.sandbox_cpu):>12.1f} {r.rss_start_mb:>9.0f} "
            f"{r.rss_peak_mb:>8.0f} {r.rss_peak_mb - r.rss_start_mb:>7.1f} {traced:>14}"
        )
    print()
    print(
        "RSS start/peak: the whole process (the seeded sandbox included), peak reset before each fetch; +RSS is the\n"
        "growth while streaming. Traced peak: Python's allocations at their highest over the start, in a second run\n"
        "under tracemalloc (the sandbox's own per-page work included: it answers in this process)."
    )
    traced = [r.traced_peak_mb for r in results if r.traced_peak_mb is not None]
    if traced:
        worst = max(traced)
        verdict = "within" if worst < MEMORY_GOAL_MB else "OVER"
        print(f"largest traced peak {worst:.1f} MB: {verdict} the {MEMORY_GOAL_MB} MB goal, whatever the feed's size")


if __name__ == "__main__":
    sys.exit(main())
