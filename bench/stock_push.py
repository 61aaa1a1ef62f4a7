"""How fast the stock push is at 100,000 SKUs × 3 channels, on PostgreSQL, against the sandbox.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/switchyard_bench_stock .venv/bin/python bench/stock_push.py

Fulfil is the stock master; Centra (10,000 products × 10 sizes), Virtualstock (john-lewis) and the marketplace
(zalando) are the channels, all served by the sandbox in this process (RunningSandbox, no latency). The connectors'
rate limits are raised so the run measures Switchyard, not the pacing; the calls made are counted from the
sandbox's own call logs and compared with the fewest the APIs allow, and both call sequences are replayed through
the connectors' RateLimiter on a simulated clock at the published limits, to say how long they would take there.

Measured: (a) the initial push, everything new; (b) a full reconcile (full=True) in steady state; (c) incremental
pushes of 1,000 SKUs changed at the master (three, judged on the median) — wall time, the sandbox's processor time
(wall minus that is Switchyard's share), time in the garbage collector, calls, peak memory. Then (b) and (c) again
under tracemalloc, for the memory Switchyard's own Python objects take at their peak.

The sandbox's simulators find records by scanning every one of them on each call (fine for tests, minutes at
100,000): the bench gives the few look-ups the stock push uses an index, with the same answers (checked against
the unindexed simulator before the run), so that the time measured is Switchyard's. Not part of the test suite.
"""

import argparse
import bisect
import cProfile
import gc
import io
import math
import pstats
import random
import sys
import time
import tracemalloc
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import islice

from measuring import CollectorTime, PeakRss, connections_to_sandbox, timed_sandbox
from postgres_django import django_on_postgres

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/switchyard_bench_stock"
GOALS = {"full": 60.0, "incremental": 2.0}
MEMORY_GOAL_MB = 300
TRACE_LIMIT = 60.0  # seconds: a slower run is not repeated under tracemalloc
RAISED = 10**9  # a rate limit no run comes near
CHANNELS = (
    ("centra", "centra", "Centra"),
    ("john-lewis", "virtualstock", "John Lewis"),
    ("zalando", "marketplace", "Zalando"),
)
# What each system's API allows per call: Centra setStock 200 sizes, productSizes 200 SKUs, products 200 products;
# Fulfil 500 records; Virtualstock 1,000 products a page and one product per stock call; marketplace 500 either way.
WRITES = {"centra": {"setStock"}, "virtualstock": {"product_stock"}, "marketplace": {"stock_update"}}
AUTH = {"token", "token_refresh"}  # Virtualstock's access token lasts 5 minutes: not a read of stock


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=10_000, help="Centra products (each one variant)")
    parser.add_argument("--sizes", type=int, default=10, help="sizes per product: SKUs = products × sizes")
    parser.add_argument("--changed", type=int, default=1_000, help="SKUs changed for the incremental push")
    parser.add_argument("--incremental-runs", type=int, default=3, help="incremental pushes, judged on the median")
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--profile", choices=["initial", "full", "incremental"], action="append", default=[])
    parser.add_argument("--no-memory-pass", action="store_true", help="skip the tracemalloc repeat of (b) and (c)")
    args = parser.parse_args()

    django_on_postgres(DEFAULT_URL)
    rng = random.Random(args.seed)
    skus = [f"P{p:05d}BLK{s:02d}" for p in range(args.products) for s in range(args.sizes)]
    print(f"{len(skus):,} SKUs ({args.products:,} products × {args.sizes} sizes) × 3 channels, seed {args.seed}")

    started = time.perf_counter()
    sandbox, published = sandbox_start()
    PUBLISHED.update(published)
    world = world_seed(sandbox, args.products, args.sizes, skus, rng)
    database_prepare(skus)
    indexes = SandboxIndexes(sandbox.app.simulators)
    indexes.check(skus, rng)
    indexes.install()
    # The sandbox's millions of objects share this process: frozen, Python's garbage collector stops walking them
    # on every full collection (a Switchyard process has none of them). What it still spends is printed per run.
    gc.collect()
    gc.freeze()
    print(f"ready in {time.perf_counter() - started:.0f} s (sandbox seeded, mappings loaded, index answers checked)")

    from syncs.flows import stock_push
    from syncs.flows.stock_push import stock_push_run

    print(f"engine: {stock_push.__file__}")

    n = len(skus)
    results = []
    results.append(
        measure(
            "(a) initial push",
            lambda: stock_push_run(),
            sandbox,
            minimum=minimum_calls(
                master_read=n, changed=n, listing=True, full=False, virtualstock_ids_known=False, products=args.products
            ),
            profile="initial" in args.profile,
        )
    )
    # The initial push made every stock state: PostgreSQL's autovacuum would now gather statistics for the new
    # rows (the bench's server may run without it), so the planner does not choose its plans blind.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE syncs_stockstate")
    results.append(
        measure(
            "(b) full reconcile",
            lambda: stock_push_run(full=True),
            sandbox,
            minimum=minimum_calls(
                master_read=n, changed=0, listing=True, full=True, virtualstock_ids_known=True, products=args.products
            ),
            profile="full" in args.profile,
        )
    )
    # The incremental push is short enough to be at the mercy of a vacuum or another process: it is run a few
    # times, each with 1,000 SKUs changed afresh, and judged on the median.
    checked = []
    for number in range(1, args.incremental_runs + 1):
        changed = world.change(rng.sample(skus, args.changed), rng)
        checked += changed
        results.append(
            measure(
                f"(c) incremental {args.changed:,} #{number}",
                lambda changed=changed: stock_push_run(skus=changed),
                sandbox,
                minimum=minimum_calls(
                    master_read=len(changed),
                    changed=len(changed),
                    listing=False,
                    full=False,
                    virtualstock_ids_known=True,
                    products=args.products,
                ),
                profile="incremental" in args.profile and number == 1,
            )
        )
    check = world.check_channels(sandbox, checked + rng.sample(skus, 200))

    # Tracing makes a run about 4× slower: a run that took more than a minute untraced is not repeated traced.
    memory = {}
    if not args.no_memory_pass:
        full, incremental = results[1], results[2]
        name = f"(c) incremental {args.changed:,}"
        memory[full.name] = traced(lambda: stock_push_run(full=True)) if full.wall < TRACE_LIMIT else None
        again = world.change(rng.sample(skus, args.changed), rng)
        memory[name] = traced(lambda: stock_push_run(skus=again)) if incremental.wall < TRACE_LIMIT else None

    report(results, memory, published, check)
    sandbox.stop()
    return 0


# --- the sandbox ------------------------------------------------------------------------------------------------


def sandbox_start():
    """The sandbox on 127.0.0.1 in this process, timed per system; Switchyard's connections pointed at it with
    rate limits no run reaches. Returns it and the published limits the settings held."""
    from django.conf import settings

    from syncs import connections
    from syncs.connectors.http import RateLimiter

    published = {system: dict(conf) for system, conf in settings.CONNECTIONS.items()}
    sandbox = timed_sandbox(settings.CONNECTIONS)
    sandbox.start()
    url = sandbox.url
    connections_to_sandbox(settings, url, RAISED)
    settings.STOCK_MASTER = "fulfil"
    # A run stops writing when its time budget is spent and leaves the rest for the next run: the bench times the
    # whole job, so the budget is out of reach too (what is left undone is printed as "pending").
    settings.STOCK_PUSH_MAX_SECONDS = 24 * 3600
    # A RateLimiter keeps the moment of every call in its longest window (a minute, an hour) and scans them on each
    # call: at the published limits that is at most a few hundred, unpaced it would be every call of the last hour.
    # The raised limits get a short window as well, so that bookkeeping stays the size it has in production.
    for client in (connections.centra(), connections.fulfil(), connections.virtualstock(), connections.marketplace()):
        client.session.rate_limiter = RateLimiter([(RAISED, 0.1)])
    connections.centra().mutation_limiter = RateLimiter([(RAISED, 0.1)])
    return sandbox, published


@dataclass
class World:
    """The stock world as the sandbox holds it: each SKU's Fulfil product id and quantity on hand."""

    fulfil: object
    product_ids: dict[str, int]
    on_hand: dict[str, int]
    warehouse: int

    def change(self, skus: list[str], rng: random.Random) -> list[str]:
        """Change these SKUs' stock at the master, as sales and receipts would: mostly down (some to zero), some
        up; every one different from before. Returns them."""
        with self.fulfil.lock:
            for sku in skus:
                old = self.on_hand[sku]
                new = old - rng.randint(1, old) if old and rng.random() < 0.7 else old + rng.randint(1, 20)
                self.on_hand[sku] = new
                self.fulfil.state["stock"][str(self.product_ids[sku])][str(self.warehouse)] = new
        return list(skus)

    def check_channels(self, sandbox, skus: list[str]) -> str:
        """Whether every channel shows what it may sell of ``skus`` (a sample: on hand, less zalando's buffer)."""
        sims = sandbox.app.simulators
        centra, virtualstock, market = sims["centra"].state, sims["virtualstock"].state, sims["marketplace"].state
        size_ids = {size["SKU"]: size["id"] for size in centra["sizes"].values()}
        by_part = {p["part_number"]: p for p in virtualstock["products"].values()}
        wrong = []
        for sku in skus:
            level = centra["stock"][f"{size_ids[sku]}:1"]
            shown = {
                "centra": level["physical"] - level["allocated"],
                "john-lewis": by_part[f"JL-{sku}"]["data"]["supplier_free_stock"],
                "zalando": market["offers"][f"ZL-{sku}"]["quantity"],
            }
            wanted = {
                "centra": self.on_hand[sku],
                "john-lewis": self.on_hand[sku],
                "zalando": max(0, self.on_hand[sku] - 2),
            }
            if shown != wanted:
                wrong.append(f"{sku}: shows {shown}, should {wanted}")
        return (
            f"all {len(skus)} sampled SKUs right on every channel" if not wrong else f"{len(wrong)} WRONG: {wrong[:3]}"
        )


def world_seed(sandbox, products: int, sizes: int, skus: list[str], rng: random.Random) -> World:
    """Seed the simulators directly (in process): Fulfil's variants with stock, Centra's products → variant →
    sizes at zero in warehouse 1, Virtualstock's products and the marketplace's offers under their own codes."""
    sims = sandbox.app.simulators
    for simulator in sims.values():
        simulator.reset()
    fulfil = sims["fulfil"]
    on_hand = {sku: 0 if rng.random() < 0.15 else rng.randint(1, 40) for sku in skus}
    product_ids = {}
    with fulfil.lock:
        warehouse = fulfil._warehouse_ids()[0]
        # Fulfil's own seed looks each code up among all products (quadratic at this size): its insert is the
        # seeding primitive it uses underneath.
        for sku in skus:
            product_ids[sku] = fulfil._insert(
                "product.product", {"code": sku, "name": sku, "list_price": 29, "cost_price": 9}
            )
            fulfil.state["stock"][str(product_ids[sku])] = {str(warehouse): on_hand[sku]}
    with sims["centra"].lock:
        sims["centra"].seed(
            {
                "products": [
                    {
                        "name": f"Style {p:05d}",
                        "productNumber": f"P{p:05d}",
                        "prices": {"2": "29.00"},
                        "variants": [
                            {
                                "name": "Black",
                                "variantNumber": "BLK",
                                "sizes": [
                                    {"sizeNumber": f"{s:02d}", "name": f"{s:02d}", "stock": {"1": 0}}
                                    for s in range(sizes)
                                ],
                            }
                        ],
                    }
                    for p in range(products)
                ]
            }
        )
    with sims["virtualstock"].lock:
        sims["virtualstock"].seed(
            {"products": [{"id": 700_000 + n, "part_number": f"JL-{sku}"} for n, sku in enumerate(skus)]}
        )
    with sims["marketplace"].lock:
        sims["marketplace"].seed({"offers": [{"sku": f"ZL-{sku}", "title": sku, "price": "29.00"} for sku in skus]})
    return World(fulfil, product_ids, on_hand, warehouse)


def database_prepare(skus: list[str]) -> None:
    """A clean start: no stock states, no stock exceptions; the three channels (zalando keeps 2 units back);
    SKU mappings for Virtualstock (JL-…) and the marketplace (ZL-…), loaded once and reused."""
    from django.db import connection

    from exceptions.models import SyncException
    from mappings.models import Bundle, Channel, SkuMapping, StockBuffer
    from syncs.flows.stock_push import FLOW
    from syncs.models import StockState

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {StockState._meta.db_table}")
    SyncException.objects.filter(flow=FLOW).delete()
    Bundle.objects.all().delete()
    Channel.objects.all().delete()
    for code, system, name in CHANNELS:
        Channel.objects.create(code=code, name=name, system=system)
    StockBuffer.objects.create(channel=Channel.objects.get(code="zalando"), buffer=2)
    prefixes = {"virtualstock": "JL-", "marketplace": "ZL-"}
    wanted = {(system, sku, f"{prefix}{sku}") for system, prefix in prefixes.items() for sku in skus}
    have = set(SkuMapping.objects.values_list("system", "centra_sku", "external_code"))
    if have != wanted:
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {SkuMapping._meta.db_table}, {SkuMapping.history.model._meta.db_table}")
        SkuMapping.objects.bulk_create(
            [SkuMapping(system=system, centra_sku=sku, external_code=code) for system, sku, code in sorted(wanted)],
            batch_size=5000,
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


class SandboxIndexes:
    """Indexed versions of the four look-ups the stock push makes, answering exactly as the simulators do:
    Fulfil's product search (all goods, or codes in a list), Centra's productSizes by SKU, Virtualstock's product
    listing and the marketplace's offers listing. The simulators scan and sort every record on each call."""

    def __init__(self, simulators) -> None:
        self.sims = simulators
        self.installed = False

    def install(self) -> None:
        from syncs.sandbox.centra import resolvers

        fulfil, virtualstock, market = self.sims["fulfil"], self.sims["virtualstock"], self.sims["marketplace"]
        self._original_sizes = resolvers.RESOLVERS["Query.productSizes"]
        fulfil._search = self._fulfil_search(fulfil)
        virtualstock.products_list = self._virtualstock_products(virtualstock)
        market.offers_list = self._market_offers(market)
        resolvers.RESOLVERS["Query.productSizes"] = self._centra_sizes(self._original_sizes)
        self.installed = True

    def uninstall(self) -> None:
        from syncs.sandbox.centra import resolvers

        for name, attribute in (
            ("fulfil", "_search"),
            ("virtualstock", "products_list"),
            ("marketplace", "offers_list"),
        ):
            self.sims[name].__dict__.pop(attribute, None)
        resolvers.RESOLVERS["Query.productSizes"] = self._original_sizes
        self.installed = False

    def check(self, skus: list[str], rng: random.Random) -> None:
        """The indexed answers equal the simulators' own, through Switchyard's connectors. Raises if not."""
        from syncs import connections

        sample = rng.sample(skus, 7) + ["NO-SUCH-SKU"]

        def answers():
            return (
                connections.fulfil().products_by_code(sample),
                list(islice(connections.fulfil().products(), 1000, 1010)),
                connections.centra().sizes_by_sku(sample, warehouse_id=1),
                [list(connections.virtualstock().products(part_number=f"JL-{sku}")) for sku in sample],
                list(islice(connections.virtualstock().products(), 150, 160)),
                list(islice(connections.marketplace().offers(), 450, 700)),
            )

        plain = answers()
        self.install()
        indexed = answers()
        self.uninstall()
        if plain != indexed:
            raise SystemExit("the indexed sandbox answers differently from the simulators: fix the bench")

    @staticmethod
    def _fulfil_search(sim):
        from syncs.sandbox.fulfil import _is_clause

        original = sim._search
        cache = {"size": -1}

        def refresh():
            rows = sim.state["records"]["product.product"]
            if cache["size"] != len(rows):
                live = [row for row in rows.values() if row.get("active", True)]
                cache["by_code"] = {row["code"]: row["id"] for row in live}
                cache["goods"] = sorted(row["id"] for row in live if row["type"] == "goods")
                cache["size"] = len(rows)

        def search(model, domain, offset, limit, order, context):
            plain_order = not order or [list(item) for item in order] == [["id", "ASC"]]
            cap = int(sim.state["config"]["max_page_size"])
            simple = (
                model == "product.product"
                and plain_order
                and isinstance(domain, list)
                and len(domain) == 1
                and _is_clause(domain[0])
                and (limit is None or int(limit) <= cap)
            )
            if not simple:
                return original(model, domain, offset, limit, order, context)
            name, operator, value = domain[0][0], str(domain[0][1]).lower(), domain[0][2]
            refresh()
            if (name, operator, value) == ("type", "=", "goods"):
                ids = cache["goods"]
            elif (name, operator) == ("code", "in") and isinstance(value, list):
                ids = sorted({cache["by_code"][code] for code in value if code in cache["by_code"]})
            else:
                return original(model, domain, offset, limit, order, context)
            limit = cap if limit is None else max(0, int(limit))
            offset = max(0, int(offset or 0))
            return ids[offset : offset + limit]

        return search

    @staticmethod
    def _centra_sizes(original):
        from syncs.sandbox.centra.resolvers import _page

        cache = {"size": -1}

        def product_sizes(source, info, where=None, limit=20, page=1):
            asked = {key for key, value in (where or {}).items() if value}
            if asked != {"SKU"}:
                return original(source, info, where=where, limit=limit, page=page)
            sizes = info.root_value.state["sizes"]
            if cache["size"] != len(sizes):
                cache["by_sku"] = {size["SKU"]: size for size in sizes.values()}
                cache["size"] = len(sizes)
            rows = sorted(
                {
                    cache["by_sku"][sku]["id"]: cache["by_sku"][sku] for sku in where["SKU"] if sku in cache["by_sku"]
                }.items()
            )
            return _page([size for _, size in rows], limit, page)

        return product_sizes

    @staticmethod
    def _virtualstock_products(sim):
        cache = {"size": -1}

        def products_list(request):
            with sim.lock:
                products = sim.state["products"]
                if cache["size"] != len(products):
                    cache["rows"] = sorted(products.values(), key=lambda product: product["id"])
                    cache["by_part"] = defaultdict(list)
                    for product in cache["rows"]:
                        cache["by_part"][product["part_number"]].append(product)
                    cache["size"] = len(products)
                rows = cache["rows"]
                if part_number := request.args.get("part_number"):
                    rows = cache["by_part"].get(part_number, [])
                return sim._page(request, "/api/v4/products/", rows, lambda p: sim._product_json(request, p))

        return products_list

    @staticmethod
    def _market_offers(sim):
        import copy

        from syncs.sandbox.core import json_response
        from syncs.sandbox.marketplace import OFFER_PAGE, _decode_cursor, _encode_cursor, _limit

        cache = {"size": -1}

        def offers_list(request):
            with sim.lock:
                offers = sim.state["offers"]
                cursor = _decode_cursor(request.args["cursor"], "offers") if request.args.get("cursor") else None
                limit = _limit(request, cursor, OFFER_PAGE)
                sku = cursor.get("sku") if cursor else request.args.get("sku")
                after = cursor["after"] if cursor else ""
                if cache["size"] != len(offers):
                    cache["keys"] = sorted(offers)
                    cache["size"] = len(offers)
                if sku is None:
                    start = bisect.bisect_right(cache["keys"], after)
                    keys = cache["keys"][start : start + limit + 1]
                else:
                    keys = [sku] if sku in offers and sku > after else []
                rows = [offers[key] for key in keys]
                page, more = rows[:limit], len(rows) > limit
                next_cursor = (
                    _encode_cursor({"kind": "offers", "after": page[-1]["sku"], "sku": sku, "limit": limit})
                    if more
                    else None
                )
                return json_response({"offers": copy.deepcopy(page), "next_cursor": next_cursor})

        return offers_list


# --- measuring --------------------------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    wall: float
    sandbox: dict[str, float]
    calls: dict[str, Counter]
    minimum: dict[str, dict[str, int]]
    rss_start: int
    rss_peak: int
    summary: object
    profile: str = ""
    collector: float = 0.0  # seconds in Python's garbage collector
    paced: dict[str, tuple[float, float]] = field(default_factory=dict)


def measure(name, run, sandbox, *, minimum, profile: bool) -> Result:
    """Run once, timed; the calls each simulator received, its time answering, the process's peak memory."""
    sims = sandbox.app.simulators
    for simulator in sims.values():
        with simulator.lock:
            simulator.calls = []
    sandbox.app.seconds.clear()
    profiler = cProfile.Profile() if profile else None
    print(f"{name} …", flush=True)
    with PeakRss() as rss, CollectorTime() as collector:
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        summary = run()
        if profiler:
            profiler.disable()
        wall = time.perf_counter() - started
    calls = {system: Counter(call.operation for call in sims[system].calls) for system in ("fulfil", *WRITES)}
    text = ""
    if profiler:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(35)
        stats.sort_stats("tottime").print_stats(25)
        text = out.getvalue()
    result = Result(name, wall, dict(sandbox.app.seconds), calls, minimum, rss.start, rss.peak, summary, text)
    result.collector = collector.seconds
    result.paced = {
        system: (
            paced_seconds(system, _sequence(sims[system].calls)),
            paced_seconds(system, _minimum_sequence(system, minimum)),
        )
        for system in calls
    }
    print(
        f"    {wall:.1f} s; changed {summary.changed:,}, pushed {summary.pushed:,}, "
        f"pending {getattr(summary, 'pending', 0):,}, exceptions {summary.exceptions}"
    )
    return result


def traced(run) -> tuple[float, float]:
    """Peak growth of Python's allocations during ``run`` (MB), and its wall time under tracing (s)."""
    tracemalloc.start()
    start, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    started = time.perf_counter()
    run()
    wall = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return (peak - start) / 2**20, wall


def _sequence(calls) -> list[str]:
    return [call.operation for call in calls if call.operation not in AUTH]


def minimum_calls(
    *, master_read: int, changed: int, listing: bool, full: bool, virtualstock_ids_known: bool, products: int
) -> dict:
    """The fewest calls the APIs allow for the run, {system: {"reads", "writes"}}.

    Fulfil: 500 records a search_read; a listing of everything pages by offset with no total, so it ends with a
    short (or empty) page: n // 500 + 1. Centra: 200 sizes a setStock; each changed size's variant and allocation
    read 200 SKUs a productSizes query, or every size of 200 products a products query (paged by number, so again
    n // 200 + 1), whichever is fewer; a full read takes the products query. Virtualstock: one product a stock
    call; a listing page holds 1,000 products and says whether there is a next (the ids are learnt once).
    Marketplace: 500 SKUs a stock call, 500 offers a page with a cursor to the next. ``listing``: the run read the
    whole catalogue at the master, not a list of SKUs."""
    by_product_pages = products // 200 + 1
    centra_reads = by_product_pages if full else min(math.ceil(changed / 200), by_product_pages)
    return {
        "fulfil": {"reads": master_read // 500 + 1 if listing else math.ceil(master_read / 500), "writes": 0},
        "centra": {"reads": centra_reads, "writes": math.ceil(changed / 200)},
        "virtualstock": {
            "reads": math.ceil(master_read / 1000) if full or not virtualstock_ids_known else 0,
            "writes": changed,
        },
        "marketplace": {"reads": math.ceil(master_read / 500) if full else 0, "writes": math.ceil(changed / 500)},
    }


def _minimum_sequence(system: str, minimum: dict) -> list[str]:
    write = next(iter(WRITES.get(system, {"-"})))
    return ["read"] * minimum[system]["reads"] + [write] * minimum[system]["writes"]


PUBLISHED: dict = {}


def paced_seconds(system: str, operations: list[str]) -> float:
    """How long ``operations`` take when paced by the connectors' own RateLimiter at the published limits (the
    settings' defaults: Centra 60 requests and 100 mutations a 10 s, 1,000 mutations an hour; Fulfil 10 a second;
    Virtualstock 250 a minute; marketplace 20 a second), on a simulated clock, with no time for the calls."""
    from syncs.connectors.http import RateLimiter

    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    def limiter(windows):
        return RateLimiter(windows, clock=lambda: clock[0], sleep=sleep)

    conf = PUBLISHED[system]
    if system == "centra":
        from syncs.connectors.centra import CentraClient

        # The client's own windows at the published limits (its hourly mutations spread over the hour included).
        client = CentraClient(
            base_url="http://127.0.0.1:9",
            token="-",
            requests_per_10s=conf["requests_per_10s"],
            mutations_per_10s=conf["mutations_per_10s"],
            mutations_per_hour=conf["mutations_per_hour"],
        )
        requests = limiter(client.session.rate_limiter.windows)
        mutations = limiter(client.mutation_limiter.windows)
        for operation in operations:
            if operation in WRITES["centra"]:
                mutations.acquire()
            requests.acquire()
        return clock[0]
    windows = {
        "fulfil": [(conf.get("requests_per_second", 10), 1)],
        "virtualstock": [(conf.get("requests_per_minute", 250), 60)],
        "marketplace": [(conf.get("requests_per_second", 20), 1)],
    }[system]
    paced = limiter(windows)
    for _ in operations:
        paced.acquire()
    return clock[0]


# --- reporting --------------------------------------------------------------------------------------------------


def report(results: list[Result], memory: dict, published: dict, check: str) -> None:
    mb = 2**20
    print()
    print(
        f"{'run':<25} {'wall s':>7} {'sandbox CPU s':>13} {'Switchyard s':>12} {'goal':>6}  "
        f"{'RSS start → peak MB':>19}  {'pushed':>7}  {'in gc s':>7}"
    )
    for result in results:
        in_sandbox = result.sandbox.get("(server)", 0.0)
        goal = next((g for key, g in GOALS.items() if key in result.name), None)
        verdict = "" if goal is None else ("ok" if result.wall < goal else "MISSED")
        print(
            f"{result.name:<25} {result.wall:>7.1f} {in_sandbox:>13.1f} {result.wall - in_sandbox:>12.1f} "
            f"{(f'<{goal:g}' if goal else '-'):>6}  {result.rss_start / mb:>8.0f} → {result.rss_peak / mb:>6.0f}  "
            f"{result.summary.pushed:>7,}  {result.collector:>7.1f}  {verdict}"
        )
    incremental = [r for r in results if "incremental" in r.name]
    if incremental:
        walls = sorted(r.wall for r in incremental)
        own = sorted(r.wall - r.sandbox.get("(server)", 0.0) for r in incremental)
        median, own_median = walls[len(walls) // 2], own[len(own) // 2]
        print(
            f"incremental, median of {len(walls)}: {median:.1f} s wall, {own_median:.1f} s Switchyard's "
            f"(goal < {GOALS['incremental']:g} s: {'ok' if median < GOALS['incremental'] else 'MISSED'})"
        )
    print()
    print("processor time of the sandbox's server threads (HTTP included), and of each simulator answering (s):")
    for result in results:
        parts = ", ".join(f"{system} {seconds:.1f}" for system, seconds in sorted(result.sandbox.items()))
        print(f"  {result.name}: {parts}")
    print()
    print(
        f"{'run':<25} {'system':<13} {'reads made/min':>15} {'writes made/min':>17} {'engine counted':>14}   "
        "at the published limits: made → min"
    )
    for result in results[:3]:
        engine = {code: outcome.get("api_calls", 0) for code, outcome in result.summary.channels.items()}
        engine_by_system = {system: engine.get(code, "-") for code, system, _ in CHANNELS}
        for system, counted in result.calls.items():
            writes = sum(count for op, count in counted.items() if op in WRITES.get(system, ()))
            reads = sum(count for op, count in counted.items() if op not in AUTH) - writes
            minimum = result.minimum[system]
            made_paced, min_paced = result.paced[system]
            flag = "" if (reads, writes) == (minimum["reads"], minimum["writes"]) else "  ≠ min"
            print(
                f"{result.name:<25} {system:<13} {reads:>7,} / {minimum['reads']:<6,} "
                f"{writes:>7,} / {minimum['writes']:<8,} {str(engine_by_system.get(system, '-')):>14}   "
                f"{_duration(made_paced):>9} → {_duration(min_paced):<9}{flag}"
            )
        total_made = sum(made for made, _ in result.paced.values())
        total_min = sum(least for _, least in result.paced.values())
        print(f"{'':<25} {'one after another':<57}   {_duration(total_made):>9} → {_duration(total_min):<9}")
    print("operations:")
    for result in results[:3]:
        print(f"  {result.name}: " + "; ".join(f"{system} {dict(ops)}" for system, ops in result.calls.items()))
    if memory:
        print()
        print("Python allocations at their peak above the start of the run (tracemalloc, the run repeated; slower):")
        for name, traced_run in memory.items():
            if traced_run is None:
                print(f"  {name:<25} skipped: the untraced run took over {TRACE_LIMIT:.0f} s (see RSS above)")
                continue
            peak_mb, wall = traced_run
            verdict = "ok" if peak_mb < MEMORY_GOAL_MB else "MISSED"
            print(f"  {name:<25} {peak_mb:>7.1f} MB  {verdict} (goal < {MEMORY_GOAL_MB} MB; {wall:.1f} s traced)")
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  process maxrss {maxrss:.0f} MB (the sandbox's 400,000 objects included)")
    print()
    print(f"channels after the incremental pushes: {check}")
    for result in results:
        if result.profile:
            print()
            print(f"--- profile of {result.name} (this thread; the sandbox answers on its own) ---")
            print(result.profile)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


if __name__ == "__main__":
    sys.exit(main())
