"""Order to cash at 10,000 orders, on PostgreSQL, against the sandbox: import → export → shipment → return.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/switchyard_bench_orders .venv/bin/python bench/orders.py

The brand sells on Centra (web orders), through Virtualstock (John Lewis) and on a marketplace (Zalando); Fulfil
is its ERP and stock master. Every system is played by the sandbox in this process (RunningSandbox, no latency),
seeded directly through the simulators. The connectors' rate limits are raised so that the run measures
Switchyard, not the pacing; RATE_LIMITS_SHARED keeps its default (on: the limiters' bookkeeping is a database row
per bucket, as in production). Each flow runs as the scheduler runs it (run_flow, so its cursor is kept):

1. order import: the retailer's and the marketplace's new orders → Centra, acknowledged at the source;
2. order export: every Centra order (web and imported) → a confirmed Fulfil sale, which Fulfil processes into a
   customer shipment; the warehouse then ships them all (in the simulator, untimed);
3. shipment sync: Fulfil's done shipments → Centra shipments → Virtualstock dispatches / marketplace shipments;
4. returns: customers send back part of their orders (in Centra, untimed); a run credits them in Fulfil; the
   warehouse receives and inspects the goods (in the simulator, untimed); a second run puts the stock back (a
   stock push per return follows).

Each phase is timed over the runs it needs to clear its backlog (the import needs several: see the README), and
once more with nothing new to do (what a scheduled run costs when it only reads its overlap again). The bench is
bounded: a phase still going after --phase-seconds (120 s: a flow at the goal clears 10,000 orders in 100 s) is
stopped between two orders, its rate taken on what it got through, and the next phases work on what reached them.
Measured per phase: orders a second against the goal, the processor time of this thread (Switchyard's Python), of
the sandbox's request threads and of this connection's PostgreSQL backend, the time waiting for queries and
taking places with the rate limiters, the database queries per order (an execute_wrapper counts them), the HTTP
calls per order (the simulators' call logs) and how many orders an hour those calls allow at the published rate
limits, the time in the garbage collector, the resident memory at its peak; then the phases again on a fresh small
world under tracemalloc. Last, a check of the end state: whatever went through a flow went through exactly once
and exactly (in Centra once and acknowledged, one Fulfil sale at Centra's total, one shipment reported once, one
credit of exactly Centra's refund), and, when no phase was stopped, every order went all the way.

The simulators find records by scanning them all on every call, and Fulfil's copies its whole state before every
write (both fine for tests, hours at this size): the bench gives the look-ups the flows use an index and makes the
write transaction cheap, after running a small world through every flow with each indexed answer checked against
the simulator's own. Not part of the test suite.
"""

import argparse
import cProfile
import gc
import io
import os
import pstats
import random
import subprocess
import sys
import time
import tracemalloc
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace

from measuring import CollectorTime, PeakRss, connections_to_sandbox, timed_sandbox
from postgres_django import ROOT, django_on_postgres

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/switchyard_bench_orders"
GOAL = 100.0  # orders a second, per flow
RAISED = 10**9  # a rate limit no run comes near
LIMITERS = {"seconds": 0.0, "calls": 0}  # the connectors' rate limiters: time spent taking a place, places taken
# Centra's mutations as Centra counts them: each root field of a mutation document (aliased ones in one request too).
CENTRA_MUTATIONS_SENT: Counter = Counter()
PUBLISHED: dict = {}  # the connections' settings before the bench raised their limits
MAX_RUNS = 30  # a phase that has not cleared its backlog after this many runs is reported as such
MEMORY_PHASE_SECONDS = 20  # each phase of the traced batch at most (tracing makes Python about 4× slower)
EUR_PRICES = ["19.95", "24.90", "29.99", "39.00", "49.90", "59.90", "79.00", "99.00"]
GBP_PRICES = ["17.50", "21.00", "25.99", "34.00", "42.00", "52.50", "69.00", "85.00"]
FIRST_NAMES = ["Alva", "Noah", "Maja", "Liam", "Elsa", "Hugo", "Freja", "Oscar", "Ines", "Leo", "Nora", "Otto"]
LAST_NAMES = ["Lind", "Berg", "Holm", "Smith", "Müller", "García", "Rossi", "Dubois", "Novak", "Jones"]
# Fulfil's carriers (the simulator labels each shipment with one, and its first service) as each target codes them.
CARRIER_CODES = {
    "virtualstock": {"DHL": "dhl", "UPS": "ups", "PostNord": "postnord", "DPD": "dpd"},
    "marketplace": {"DHL": "DHL_PAKET", "UPS": "UPS_STANDARD", "PostNord": "POSTNORD_MYPACK", "DPD": "DPD_CLASSIC"},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=10_000, help="orders in the backlog, all sources together")
    parser.add_argument("--web", type=float, default=0.5, help="share of Centra web orders (to export)")
    parser.add_argument("--virtualstock", type=float, default=0.3, help="share of John Lewis orders (to import)")
    parser.add_argument("--returned", type=float, default=0.25, help="share of shipped orders sent back")
    parser.add_argument("--products", type=int, default=200, help="Centra products (each one colour)")
    parser.add_argument("--sizes", type=int, default=5, help="sizes per product")
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument(
        "--phase-seconds",
        type=float,
        default=120,
        help="stop a phase's run between two orders once it has taken this long (a flow meeting the goal clears "
        "10,000 orders in 100 s); the rate is measured on what it got through",
    )
    parser.add_argument("--profile", choices=PHASES, action="append", default=[], help="cProfile of that phase")
    parser.add_argument(
        "--profile-clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall: where the time goes, waits included; cpu: where this thread's processor time goes",
    )
    parser.add_argument("--memory-orders", type=int, default=500, help="orders in the tracemalloc world")
    parser.add_argument("--no-memory-pass", action="store_true", help="skip the tracemalloc batch")
    parser.add_argument(
        "--check-index",
        action="store_true",
        help="check every indexed sandbox answer against the simulator's own during the whole run (slow: small "
        "sizes only)",
    )
    args = parser.parse_args()
    if not 0 <= args.web + args.virtualstock <= 1:
        parser.error("--web and --virtualstock are shares of the orders: together at most 1")

    url = django_on_postgres(DEFAULT_URL)
    from django.conf import settings

    print(f"Switchyard at {_revision()}; database {url.rpartition('@')[2]}; load {_load()}")
    print(
        f"{args.orders:,} orders ({args.web:.0%} Centra web, {args.virtualstock:.0%} John Lewis, "
        f"{1 - args.web - args.virtualstock:.0%} marketplace), {args.returned:.0%} of them returned; "
        f"{args.products * args.sizes:,} SKUs; seed {args.seed}; RATE_LIMITS_SHARED={settings.RATE_LIMITS_SHARED}"
    )
    started = time.perf_counter()
    sandbox = sandbox_start()
    indexes = SandboxIndexes(sandbox.app.simulators)

    # The indexes answer as the simulators do: a small world goes through every flow with each answer checked.
    check_world = World(random.Random(args.seed + 1), products=12, sizes=3)
    database_prepare(check_world)
    check_world.seed(sandbox, orders=40, web=args.web, virtualstock=args.virtualstock)
    indexes.install(check=True)
    checked = Pipeline(sandbox, check_world, seconds=None, quiet=True).run(returned=0.5)
    problems = verify(sandbox, check_world, checked)
    if problems:
        raise SystemExit(f"the small world did not go through the flows right: {problems}")
    indexes.uninstall()
    print(f"index answers checked on a small world ({indexes.checks:,} look-ups compared with the simulators')")

    world = World(random.Random(args.seed), products=args.products, sizes=args.sizes)
    database_prepare(world)
    world.seed(sandbox, orders=args.orders, web=args.web, virtualstock=args.virtualstock)
    indexes.install(check=args.check_index)
    # The sandbox's objects share this process: frozen, Python's garbage collector stops walking them on every full
    # collection (a Switchyard process has none of them). What it still spends is printed per phase.
    gc.collect()
    gc.freeze()
    print(f"ready in {time.perf_counter() - started:.0f} s (sandbox seeded, mappings loaded, indexes checked)")

    pipeline = Pipeline(sandbox, world, seconds=args.phase_seconds, profile=set(args.profile))
    pipeline.cpu_profile = args.profile_clock == "cpu"
    results = pipeline.run(returned=args.returned)
    problems = verify(sandbox, world, results)

    memory = []
    if not args.no_memory_pass:
        # A fresh world of its own: after the big one, each flow would first read that one's overlap again.
        print(f"tracemalloc: a fresh world of {args.memory_orders:,} orders through every phase …", flush=True)
        indexes.uninstall()
        traced_world = World(random.Random(args.seed + 2), products=args.products, sizes=args.sizes)
        database_prepare(traced_world)
        traced_world.seed(sandbox, orders=args.memory_orders, web=args.web, virtualstock=args.virtualstock)
        indexes.install(check=args.check_index)
        memory = Pipeline(sandbox, traced_world, seconds=MEMORY_PHASE_SECONDS, traced=True, quiet=True).run(
            returned=args.returned, idle=False
        )
    report(results, memory, problems, indexes, args, sandbox_call_peak(sandbox) if memory else 0.0)
    print(f"load average at the end {_load()} (2 processors: other work on the machine slows the wall times)")
    sandbox.stop()
    return 0 if not problems else 1


def _load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def _revision() -> str:
    """The commit measured, and how many tracked files the working tree changes (others edit it meanwhile)."""

    def git(*arguments: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *arguments], capture_output=True, text=True).stdout

    try:
        head, changed = (
            git("rev-parse", "--short", "HEAD").strip(),
            len(git("status", "--porcelain", "-uno").splitlines()),
        )
    except OSError:
        return "an unknown revision"
    return head + (f" with {changed} files changed in the working tree" if changed else "")


# --- the sandbox ------------------------------------------------------------------------------------------------


def sandbox_start():
    """The sandbox on 127.0.0.1 in this process, its processor time counted per request and per system;
    Switchyard's connections pointed at it with rate limits no run reaches."""
    from django.conf import settings

    from syncs import connections
    from syncs.connectors.http import RateLimiter
    from syncs.rate_budget import SharedRateLimiter

    sandbox = timed_sandbox(settings.CONNECTIONS)
    sandbox.start()
    url = sandbox.url
    conf = settings.CONNECTIONS
    PUBLISHED.update({system: dict(values) for system, values in conf.items()})
    connections_to_sandbox(settings, url, RAISED)
    settings.STOCK_MASTER = "fulfil"
    settings.SKU_SAME_AS_CENTRA = ["fulfil", "inventory_planner"]
    # The flows' own settings keep their defaults (export CONFIRMED/PROCESSING/SHIPPED orders once captured, from
    # the beginning; capture on shipment): the bench's web orders are captured.
    # A limiter keeps the moment of every call in its longest window (an hour for Centra's mutations) and, shared,
    # rewrites them in its database row when it takes places: unpaced, that would be every call of the last hour.
    # The raised limits get a one-second window (the shortest published one, Fulfil's), so the bookkeeping stays
    # the size it has at the published limits and places are taken ahead as they would be there.
    windows = [(RAISED, 1.0)]
    base = SharedRateLimiter if settings.RATE_LIMITS_SHARED else RateLimiter

    class TimedLimiter(base):
        """Adds up the time taking a place costs: with shared limits, a locked database row per call."""

        def acquire(self) -> float:
            started = time.perf_counter()
            try:
                return super().acquire()
            finally:
                LIMITERS["seconds"] += time.perf_counter() - started
                LIMITERS["calls"] += 1

    def limiter(key: str):
        return TimedLimiter(key, windows) if base is SharedRateLimiter else TimedLimiter(windows)

    for client in (connections.centra(), connections.fulfil(), connections.virtualstock(), connections.marketplace()):
        client.session.rate_limiter = limiter(f"{client.session.system}:requests")
    connections.centra().mutation_limiter = limiter("centra:mutations")
    return sandbox


class IndexMismatch(AssertionError):
    """An indexed answer differs from the simulator's own: the bench's index is wrong."""


class SandboxIndexes:
    """Indexed versions of the simulators' look-ups the order flows make, answering exactly as they do, and a
    cheap write transaction for Fulfil.

    Fulfil: searches whose domain pins a field to a value (``=`` / ``in``, alone, in an AND or an OR) look in an
    index of that field, then filter with the simulator's own domain code; a sale's lines, shipments, returns and
    totals, a shipment's moves and sales, a product's open moves, by index. Its write transaction deep-copies every
    record it holds so that a refused call changes nothing: here a refused write is counted (and reported) instead.
    Centra: an order by number, and the order a line belongs to, by index. With ``check`` every indexed answer is
    compared with the simulator's own (and the original transaction kept)."""

    def __init__(self, simulators) -> None:
        self.sims = simulators
        self.check = False
        self.checks = 0
        self.refused = 0
        self._fulfil: FulfilIndex | None = None
        self._centra_originals: dict = {}

    def install(self, *, check: bool) -> None:
        from syncs.sandbox.centra import resolvers

        self.check = check
        self._fulfil = FulfilIndex(self.sims["fulfil"], self)
        self._fulfil.install()
        centra = self.sims["centra"]
        self._centra_originals = {
            "_order_of_line": resolvers._order_of_line,
            "_filter_orders": resolvers._filter_orders,
        }
        by_line: dict[int, dict] = {}

        def order_of_line(info, line):
            orders = centra.state["orders"]
            order = by_line.get(line["id"])
            if order is None or line not in order["lines"]:
                for candidate in reversed(orders.values()):  # newest first: a line just asked for is in a new order
                    for each in candidate["lines"]:
                        by_line.setdefault(each["id"], candidate)
                    if line in candidate["lines"]:
                        order = candidate
                        break
                else:
                    order = None
            if order is None or order is not orders.get(str(order["number"])):
                order = self._centra_originals["_order_of_line"](info, line)
            return self._checked(order, lambda: self._centra_originals["_order_of_line"](info, line))

        def filter_orders(sim, where, sort):
            original = self._centra_originals["_filter_orders"]
            asked = {key for key, value in (where or {}).items() if value is not None}
            if asked != {"number"} or not isinstance(where["number"], list):
                return original(sim, where, sort)
            if len(where["number"]) > 1 and (sort or ["number_ASC"])[0] != "number_ASC":
                return original(sim, where, sort)
            rows = [sim.state["orders"][str(n)] for n in sorted(set(where["number"])) if str(n) in sim.state["orders"]]
            rows = [order for order in rows if order["number"] in where["number"]]
            return self._checked(rows, lambda: original(sim, where, sort))

        resolvers._order_of_line = order_of_line
        resolvers._filter_orders = filter_orders
        self._graphql_install()

    def _graphql_install(self) -> None:
        """Centra's documents parsed and validated once each: graphql-core does both on every call (three parses
        and a validation in the simulator, ~9 ms, against ~0.5 ms to execute an order's query). The same document
        gives the same tree and the same validation errors; execution is the simulator's, unchanged."""
        from functools import lru_cache

        from graphql import ExecutionResult, GraphQLError, OperationType, execute_sync, validate
        from graphql import parse as parse_document

        from syncs.sandbox.centra import simulator

        self._graphql_originals = {"parse": simulator.parse, "graphql_sync": simulator.graphql_sync}
        parsed = lru_cache(maxsize=512)(parse_document)

        @lru_cache(maxsize=512)
        def validation_errors(schema, source: str) -> tuple:
            return tuple(validate(schema, parsed(source)))

        def graphql_sync(schema, source, root_value=None, context_value=None, variable_values=None, **options):
            try:
                document = parsed(source)
            except GraphQLError as error:
                return ExecutionResult(data=None, errors=[error])
            errors = validation_errors(schema, source)
            for definition in document.definitions:
                if getattr(definition, "operation", None) == OperationType.MUTATION:
                    CENTRA_MUTATIONS_SENT.update(field.name.value for field in definition.selection_set.selections)
            if self.check:
                self.checks += 1
                if [e.formatted for e in errors] != [e.formatted for e in validate(schema, parse_document(source))]:
                    raise IndexMismatch(f"cached validation differs for {source[:200]}")
            if errors:
                return ExecutionResult(data=None, errors=list(errors))
            return execute_sync(schema, document, root_value, context_value, variable_values, **options)

        simulator.parse = parsed
        simulator.graphql_sync = graphql_sync

    def uninstall(self) -> None:
        from syncs.sandbox.centra import resolvers

        if self._fulfil is not None:
            self._fulfil.uninstall()
            self._fulfil = None
        for name, original in self._centra_originals.items():
            setattr(resolvers, name, original)
        self._centra_originals = {}
        from syncs.sandbox.centra import simulator

        for name, original in getattr(self, "_graphql_originals", {}).items():
            setattr(simulator, name, original)
        self._graphql_originals = {}

    def _checked(self, answer, original: Callable[[], object]):
        if self.check:
            expected = original()
            self.checks += 1
            if answer != expected:
                raise IndexMismatch(f"indexed {answer!r:.300} ≠ simulator's {expected!r:.300}")
        return answer


class FulfilIndex:
    """The Fulfil simulator's records by the value of a few fields, kept current as records are inserted and
    written; an entry whose record has gone or changed is skipped when read. Only fields the simulator sets when
    it inserts or writes a record are indexed (not ``state``, which its workflow sets in place)."""

    FIELDS = {
        "sale.sale": ("reference", "channel_identifier", "origin"),
        "sale.line": ("sale",),
        "stock.move": ("shipment", "origin", "product"),
        "party.party": ("name",),
        "party.contact_mechanism": ("party", "value"),
        "party.address": ("party",),
        "product.product": ("code",),
    }
    METHODS = (
        "_insert",
        "_write",
        "_split_shipments",
        "_matching",
        "_value",
        "_sale_value",
        "_shipment_moves",
        "_quantities",
        "_assigned",
        "_rows",
        "_sale_sale_quote",
        "_sale_sale_process",
        "_transaction",
    )

    def __init__(self, sim, owner: SandboxIndexes) -> None:
        self.sim, self.owner = sim, owner
        self.by: dict[tuple[str, str], dict] = {}
        self.original: dict[str, Callable] = {}
        self.scope: int | None = None  # the sale whose lines _rows("sale.line") answers, inside its workflow

    def install(self) -> None:
        sim = self.sim
        for name in self.METHODS:
            self.original[name] = getattr(sim, name)
        with sim.lock:
            self._rebuild()
        for name in self.METHODS:
            if name == "_transaction" and self.owner.check:
                continue
            setattr(sim, name, getattr(self, name))

    def uninstall(self) -> None:
        for name in self.METHODS:
            self.sim.__dict__.pop(name, None)

    # --- the index ----------------------------------------------------------------------------------------------

    def _rebuild(self, models=None) -> None:
        for model, fields in self.FIELDS.items():
            if models and model not in models:
                continue
            for name in fields:
                self.by[(model, name)] = defaultdict(set)
            for row in self.sim.state["records"][model].values():
                self._add(model, row)

    def _add(self, model: str, row: dict) -> None:
        for name in self.FIELDS.get(model, ()):
            self.by[(model, name)][_key(row.get(name))].add(row["id"])

    def ids(self, model: str, name: str, value) -> list[int]:
        """Ids of ``model``'s records whose ``name`` equals ``value`` (as the simulator compares in Python),
        oldest first."""
        rows = self.sim.state["records"][model]
        found = []
        for record_id in self.by[(model, name)].get(_key(value), ()):
            row = rows.get(str(record_id))
            if row is not None and row.get(name) == value:
                found.append(record_id)
        return sorted(found)

    def rows(self, model: str, name: str, value) -> list[dict]:
        records = self.sim.state["records"][model]
        return [records[str(record_id)] for record_id in self.ids(model, name, value)]

    def _candidates(self, model: str, domain) -> set[int] | None:
        """Ids that include every record the domain can match, or None when the index cannot say."""
        from syncs.sandbox.fulfil import _is_clause

        if not isinstance(domain, list) or not domain:
            return None
        if _is_clause(domain):
            name, operator, expected = domain[0], str(domain[1]).lower(), domain[2]
            if operator not in ("=", "in") or (operator == "in" and not isinstance(expected, list)):
                return None
            values = [expected] if operator == "=" else expected
            if name == "id":
                return {value for value in values if isinstance(value, int) and not isinstance(value, bool)}
            index = self.by.get((model, name))
            if index is None:
                return None
            found: set[int] = set()
            for value in values:
                found |= index.get(_key(value), set())
            return found
        mode, parts = "AND", domain
        if isinstance(domain[0], str) and domain[0].upper() in ("AND", "OR"):
            mode, parts = domain[0].upper(), domain[1:]
        sets = [self._candidates(model, part) for part in parts]
        if mode == "OR":
            return None if not sets or any(found is None for found in sets) else set().union(*sets)
        known = [found for found in sets if found is not None]
        return min(known, key=len) if known else None

    def _checked(self, answer, original: Callable[[], object]):
        return self.owner._checked(answer, original)

    # --- keeping it current -------------------------------------------------------------------------------------

    def _insert(self, model: str, values: dict) -> int:
        record_id = self.original["_insert"](model, values)
        if model in self.FIELDS:
            self._add(model, self.sim.state["records"][model][str(record_id)])
        return record_id

    def _write(self, model: str, ids: list[int], values: dict) -> None:
        try:
            self.original["_write"](model, ids, values)
        finally:
            if model in self.FIELDS:
                for record_id in ids:
                    row = self.sim._record(model, record_id)
                    if row is not None:
                        self._add(model, row)

    def _split_shipments(self, sale: dict) -> None:
        self.original["_split_shipments"](sale)
        self._rebuild({"stock.move"})

    # --- look-ups -----------------------------------------------------------------------------------------------

    def _matching(self, model: str, domain, context: dict) -> list[dict]:
        ids = self._candidates(model, domain)
        if ids is None:
            return self.original["_matching"](model, domain, context)
        from syncs.sandbox.fulfil import MODELS, _mentions

        sim, records = self.sim, self.sim.state["records"][model]
        rows = [records[str(i)] for i in sorted(ids) if str(i) in records]
        rows = [row for row in rows if sim._matches(model, row, domain, context)]
        if "active" in MODELS[model][1] and not _mentions(domain, "active"):
            rows = [row for row in rows if row.get("active", True)]
        return self._checked(
            rows,
            lambda: sorted(self.original["_matching"](model, domain, context), key=lambda row: row["id"]),
        )

    def _value(self, model: str, row: dict, name: str, context: dict):
        sim = self.sim
        if name in row and name not in sim._computed_fields(model) and name != "rec_name":
            return row[name]
        field = sim._schema(model).get(name)
        answer = _UNKNOWN
        if field is not None and field.kind == "o2m" and (field.target, field.inverse) in self.by:
            answer = self.ids(field.target, field.inverse, row["id"])
        elif model in ("stock.shipment.out", "stock.shipment.out.return") and name in ("moves", "sales"):
            moves = self.rows("stock.move", "shipment", f"{model},{row['id']}")
            if name == "moves":
                answer = [move["id"] for move in moves]
            else:
                answer = sorted({sim._line_sale(move["origin"]) for move in moves} - {None})
        elif model == "sale.line" and name == "moves":
            answer = self.ids("stock.move", "origin", f"sale.line,{row['id']}")
        elif model == "party.party" and name in ("email", "phone"):
            kind = {"email": ("email",), "phone": ("phone", "mobile")}[name]
            mechanisms = self.rows("party.contact_mechanism", "party", row["id"])
            answer = next((r["value"] for r in mechanisms if r["type"] in kind), None)
        if answer is _UNKNOWN:
            return self.original["_value"](model, row, name, context)
        return self._checked(answer, lambda: self.original["_value"](model, row, name, context))

    def _sale_value(self, sale: dict, name: str):
        from syncs.sandbox.fulfil import _line_amount

        sim = self.sim
        lines = self.rows("sale.line", "sale", sale["id"])
        if name == "lines":
            answer = [line["id"] for line in lines]
        elif name in ("shipments", "shipment_returns"):
            model = "stock.shipment.out" if name == "shipments" else "stock.shipment.out.return"
            answer = sorted(
                {
                    int(move["shipment"].partition(",")[2])
                    for line in lines
                    for move in self.rows("stock.move", "origin", f"sale.line,{line['id']}")
                    if (move["shipment"] or "").startswith(model + ",")
                }
            )
        elif name == "has_return":
            answer = bool(self.ids("sale.sale", "origin", f"sale.sale,{sale['id']}"))
        else:
            untaxed = sum((_line_amount(line) for line in lines), Decimal("0.00"))
            tax = sum((sim._line_tax(line) for line in lines), Decimal("0.00"))
            answer = {"untaxed_amount": untaxed, "tax_amount": tax, "total_amount": untaxed + tax}[name]
        return self._checked(answer, lambda: self.original["_sale_value"](sale, name))

    def _shipment_moves(self, model: str, shipment: dict) -> list[dict]:
        answer = self.rows("stock.move", "shipment", f"{model},{shipment['id']}")
        return self._checked(answer, lambda: self.original["_shipment_moves"](model, shipment))

    def _product_moves(self, product_id: int) -> list[dict]:
        return self.rows("stock.move", "product", product_id)

    def _quantities(self, product_id: int, context: dict) -> dict[str, int]:
        from syncs.sandbox.fulfil import OPEN_MOVE_STATES

        sim = self.sim
        warehouses = sim._warehouses_in(context)
        stock = sim.state["stock"].get(str(product_id), {})
        on_hand = sum(stock.get(str(w), 0) for w in warehouses)
        storages = {sim._record("stock.location", w)["storage_location"] for w in warehouses}
        committed = sum(
            int(m["quantity"])
            for m in self._product_moves(product_id)
            if m["state"] in OPEN_MOVE_STATES and m["from_location"] in storages
        )
        answer = {"quantity_on_hand": on_hand, "quantity_available": on_hand - committed}
        return self._checked(answer, lambda: self.original["_quantities"](product_id, context))

    def _assigned(self, product_id: int, warehouse_id: int) -> int:
        storage = self.sim._record("stock.location", warehouse_id)["storage_location"]
        answer = sum(
            int(m["quantity"])
            for m in self._product_moves(product_id)
            if m["state"] == "assigned" and m["from_location"] == storage
        )
        return self._checked(answer, lambda: self.original["_assigned"](product_id, warehouse_id))

    def _rows(self, model: str) -> list[dict]:
        # Inside a sale's quote or process, the simulator reads every sale line and keeps the sale's own: it is
        # given the sale's own.
        if model == "sale.line" and self.scope is not None:
            return self.rows("sale.line", "sale", self.scope)
        return self.original["_rows"](model)

    @contextmanager
    def _sale_scope(self, sale: dict):
        outer, self.scope = self.scope, sale["id"]
        try:
            yield
        finally:
            self.scope = outer

    def _sale_sale_quote(self, sale: dict) -> None:
        with self._sale_scope(sale):
            self.original["_sale_sale_quote"](sale)

    def _sale_sale_process(self, sale: dict) -> None:
        with self._sale_scope(sale):
            self.original["_sale_sale_process"](sale)

    @contextmanager
    def _transaction(self):
        sim = self.sim
        sim._pending_webhooks = []
        try:
            yield
        except BaseException:
            self.owner.refused += 1  # the simulator would have rolled its state back: reported, never silent
            sim._pending_webhooks = []
            raise
        pending, sim._pending_webhooks = sim._pending_webhooks, []
        for webhook in pending:
            sim.emit_webhook(webhook)


_UNKNOWN = object()


def _key(value):
    from syncs.sandbox.fulfil import _comparable

    value = _comparable(value)
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


# --- the world --------------------------------------------------------------------------------------------------


@dataclass
class World:
    """What the bench put in the sandbox, to drive it and to check the end state against."""

    rng: random.Random
    products: int
    sizes: int
    skus: list[str] = field(default_factory=list)
    eur: dict[str, str] = field(default_factory=dict)
    gbp: dict[str, str] = field(default_factory=dict)
    web_numbers: list[int] = field(default_factory=list)
    virtualstock_ids: list[int] = field(default_factory=list)
    marketplace_ids: list[str] = field(default_factory=list)
    through: set[int] = field(default_factory=set)  # Centra order numbers a pipeline has taken all the way
    seeded_catalogue: bool = False

    def __post_init__(self) -> None:
        for p in range(self.products):
            eur, gbp = self.rng.randrange(len(EUR_PRICES)), self.rng.randrange(len(GBP_PRICES))
            for s in range(self.sizes):
                sku = f"P{p:04d}BLK{s}"
                self.skus.append(sku)
                self.eur[sku], self.gbp[sku] = EUR_PRICES[eur], GBP_PRICES[gbp]

    @property
    def total(self) -> int:
        return len(self.web_numbers) + len(self.virtualstock_ids) + len(self.marketplace_ids)

    def seed(self, sandbox, *, orders: int, web: float, virtualstock: float) -> None:
        """Seed the simulators directly (in process). The first time: the catalogue everywhere — Centra's
        products, Fulfil's variants with stock, Virtualstock's products and the marketplace's offers under their
        own codes. Each time: ``orders`` new orders, Centra web orders (captured), John Lewis orders waiting at
        Virtualstock, marketplace orders waiting to be acknowledged."""
        sims = sandbox.app.simulators
        if not self.seeded_catalogue:
            for simulator in sims.values():
                simulator.reset()
            self._seed_catalogue(sims)
            self.seeded_catalogue = True
        web_count, vs_count = round(orders * web), round(orders * virtualstock)
        kinds = ["web"] * web_count + ["virtualstock"] * vs_count + ["marketplace"] * (orders - web_count - vs_count)
        self.rng.shuffle(kinds)
        centra, vs, market = sims["centra"], sims["virtualstock"], sims["marketplace"]
        customers = [self._customer(n) for n in range(max(1, orders // 2))]
        with centra.lock, vs.lock, market.lock:
            for kind in kinds:
                customer = self.rng.choice(customers)
                lines = [(sku, self.rng.choice((1, 1, 1, 2))) for sku in self.rng.sample(self.skus, self._lines())]
                if kind == "web":
                    self._web_order(centra, customer, lines)
                elif kind == "virtualstock":
                    self._virtualstock_order(vs, customer, lines)
                else:
                    self._marketplace_order(market, customer, lines)

    def _lines(self) -> int:
        return self.rng.choice((1, 1, 1, 2, 2, 3))

    def _customer(self, n: int) -> dict:
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        country = self.rng.choice(["DE", "DE", "SE", "GB", "FR", "NL"])
        return {
            "email": f"{first.lower()}.{n}@example.com",
            "first_name": first,
            "last_name": last,
            "address1": f"{self.rng.randint(1, 120)} Market Street",
            "city": {"DE": "Berlin", "SE": "Stockholm", "GB": "London", "FR": "Paris", "NL": "Amsterdam"}[country],
            "zipcode": f"{self.rng.randint(10000, 99999)}",
            "country": country,
            "phone": f"+49 30 {self.rng.randint(100000, 999999)}",
        }

    def _seed_catalogue(self, sims) -> None:
        fulfil = sims["fulfil"]
        with fulfil.lock:
            warehouse = fulfil._warehouse_by_code("MAIN")
            for sku in self.skus:
                product_id = fulfil._insert(
                    "product.product", {"code": sku, "name": sku, "list_price": Decimal(self.eur[sku])}
                )
                fulfil.state["stock"][str(product_id)] = {str(warehouse): 1_000_000}
        products = {}
        for sku in self.skus:
            number, size = sku[:5], sku[8:]
            products.setdefault(number, {"size_numbers": [], "sku": sku})["size_numbers"].append(size)
        with sims["centra"].lock:
            for number, product in products.items():
                sims["centra"]._add_product(
                    {
                        "name": f"Style {number}",
                        "productNumber": number,
                        "prices": {"2": self.eur[product["sku"]], "3": self.gbp[product["sku"]]},
                        "variants": [
                            {
                                "name": "Black",
                                "variantNumber": "BLK",
                                "sizes": [
                                    {"sizeNumber": size, "name": size, "stock": {"1": 1_000_000}}
                                    for size in product["size_numbers"]
                                ],
                            }
                        ],
                    }
                )
        with sims["virtualstock"].lock:
            for n, sku in enumerate(self.skus):
                sims["virtualstock"]._add_product({"id": 700_000 + n, "part_number": f"JL-{sku}"})
        with sims["marketplace"].lock:
            for sku in self.skus:
                sims["marketplace"]._add_offer({"sku": f"ZL-{sku}", "title": sku, "price": self.eur[sku]})

    def _web_order(self, centra, customer: dict, lines: list[tuple[str, int]]) -> None:
        number = 1000 + len(self.web_numbers)
        market = self.rng.choice((2, 2, 3))
        prices = self.eur if market == 2 else self.gbp
        centra._create_order(
            {
                "number": number,
                "storeId": 1,
                "marketId": market,
                "customer": customer,
                "shipping": "4.95",
                "shippingOption": "Standard",
                "captured": True,
                "lines": [
                    {
                        "sku": sku,
                        "quantity": quantity,
                        "unitPrice": prices[sku],
                        "discount": "3.00" if self.rng.random() < 0.2 else "0",
                        "taxPercent": "19" if market == 2 else "20",
                    }
                    for sku, quantity in lines
                ],
            },
            status="CONFIRMED",
        )
        self.web_numbers.append(number)

    def _virtualstock_order(self, vs, customer: dict, lines: list[tuple[str, int]]) -> None:
        order_id = 52_000_000 + len(self.virtualstock_ids)
        items = []
        for n, (sku, quantity) in enumerate(lines, 1):
            total = Decimal(self.gbp[sku]) * quantity
            subtotal = (total / Decimal("1.2")).quantize(Decimal("0.01"))
            items.append(
                {
                    "part_number": f"JL-{sku}",
                    "line_reference": f"{order_id}{n}",
                    "quantity": quantity,
                    "name": sku,
                    "unit_cost_price": str((subtotal / quantity).quantize(Decimal("0.01"))),
                    "subtotal": str(subtotal),
                    "tax": str(total - subtotal),
                    "tax_rate": "20.00",
                    "total": str(total),
                }
            )
        vs._add_order(
            {
                "id": order_id,
                "order_reference": f"JL{order_id}",
                "status": "ORDER",
                "order_date": "2026-12-01T09:00:00",
                "retailer": {"id": 245, "name": "John Lewis"},
                "currency_code": "GBP",
                "items": items,
                "subtotal": str(sum(Decimal(item["subtotal"]) for item in items)),
                "tax": str(sum(Decimal(item["tax"]) for item in items)),
                "total": str(sum(Decimal(item["total"]) for item in items)),
                "delivery_service_code": "standard",
                "shipping_address": {
                    "full_name": f"{customer['first_name']} {customer['last_name']}",
                    "line_1": customer["address1"],
                    "city": customer["city"],
                    "postal_code": customer["zipcode"],
                    "country": "GB",
                    "email": customer["email"],
                },
            }
        )
        self.virtualstock_ids.append(order_id)

    def _marketplace_order(self, market, customer: dict, lines: list[tuple[str, int]]) -> None:
        order_id = f"MP-{len(self.marketplace_ids):06d}"
        market._add_order(
            {
                "id": order_id,
                "status": "NEW",
                "currency": "EUR",
                "account": "Zalando",
                "shipping_method": "STANDARD",
                "customer": {**customer, "country": "DE"},
                "lines": [
                    {
                        "id": f"{order_id}-{n}",
                        "seller_sku": f"ZL-{sku}",
                        "quantity": quantity,
                        "unit_price": self.eur[sku],
                        "tax_rate": "19",
                    }
                    for n, (sku, quantity) in enumerate(lines, 1)
                ],
                "shipping_price": "4.95",
            }
        )
        self.marketplace_ids.append(order_id)


def database_prepare(world: World) -> None:
    """A clean start: no links, runs, exceptions, stock states, queued tasks or mappings; then the brand's set-up —
    channels (centra, john-lewis on Virtualstock, zalando on the marketplace), SKU mappings for both (JL-…, ZL-…),
    their shipping methods and carriers, and the Centra markets' Fulfil channel and warehouse."""
    from django.apps import apps
    from django.db import connection

    from mappings.models import CarrierMapping, Channel, MarketMapping, ShippingMethodMapping, SkuMapping

    tables = [
        model._meta.db_table
        for label in ("syncs", "exceptions", "mappings", "django_q")
        for model in apps.get_app_config(label).get_models()
    ]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    Channel.objects.create(code="centra", name="Centra", system="centra")
    Channel.objects.create(code="john-lewis", name="John Lewis", system="virtualstock", centra_market_id=3)
    Channel.objects.create(code="zalando", name="Zalando", system="marketplace", centra_market_id=2)
    SkuMapping.objects.bulk_create(
        [
            SkuMapping(system=system, centra_sku=sku, external_code=f"{prefix}{sku}")
            for system, prefix in (("virtualstock", "JL-"), ("marketplace", "ZL-"))
            for sku in world.skus
        ],
        batch_size=5000,
    )
    ShippingMethodMapping.objects.create(
        system="virtualstock", source_method="standard", centra_shipping_option="standard"
    )
    ShippingMethodMapping.objects.create(
        system="marketplace", source_method="STANDARD", centra_shipping_option="standard"
    )
    CarrierMapping.objects.bulk_create(
        [
            CarrierMapping(system=system, centra_carrier=carrier, centra_service="", target_code=code)
            for system, codes in CARRIER_CODES.items()
            for carrier, code in codes.items()
        ]
    )
    # Fulfil's reference data is fixed (its empty state): its "centra" sale channel and MAIN warehouse.
    from syncs.sandbox.fulfil import FulfilSimulator

    fulfil = FulfilSimulator()
    channel = next(row["id"] for row in fulfil._rows("sale.channel") if row["code"] == "centra")
    warehouse = fulfil._warehouse_by_code("MAIN")
    for market, currency, label in ((2, "EUR", "Retail Europe"), (3, "GBP", "Retail UK")):
        MarketMapping.objects.create(
            centra_store_id=1,
            centra_market_id=market,
            label=label,
            currency=currency,
            fulfil_channel_id=channel,
            fulfil_warehouse_id=warehouse,
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


# --- the outside world moving on (untimed) -------------------------------------------------------------------------


def warehouse_ships(sandbox, rng: random.Random) -> int:
    """Fulfil's warehouse picks, packs, labels (a carrier and tracking number) and sends every waiting customer
    shipment, as the simulator's demo ticks do a few at a time. Returns how many."""
    fulfil = sandbox.app.simulators["fulfil"]
    with fulfil.lock:
        waiting = [row for row in fulfil._rows("stock.shipment.out") if row["state"] == "waiting"]
        for shipment in waiting:
            fulfil._stock_shipment_out_assign(shipment)
            fulfil._stock_shipment_out_pack(shipment)
            fulfil._add_tracking(shipment, rng)
            fulfil._stock_shipment_out_done(shipment)
            shipment["write_date"] = datetime.now(UTC)
        fulfil._pending_webhooks = []
    return len(waiting)


def customers_return(sandbox, rng: random.Random, share: float, numbers: list[int]) -> int:
    """Customers send back ``share`` of the shipped orders among ``numbers`` (Centra order numbers): half of them
    one unit of one line, half everything; a third of the returns keep a return cost. Registered in Centra as its
    Integration API's createReturn does. Returns how many."""
    from syncs.sandbox.centra import resolvers

    centra = sandbox.app.simulators["centra"]
    info = SimpleNamespace(root_value=centra)
    made = 0
    with centra.lock:
        shipped = [centra.state["orders"][str(n)] for n in numbers]
        shipped = [order for order in shipped if order["status"] == "SHIPPED" and order["shipmentIds"]]
        for order in rng.sample(shipped, round(len(shipped) * share)):
            shipment = centra.state["shipments"][str(order["shipmentIds"][0])]
            if rng.random() < 0.5:
                lines = [{"shipmentLine": {"id": shipment["lines"][0]["id"]}, "quantity": 1}]
            else:
                lines = [
                    {"shipmentLine": {"id": line["id"]}, "quantity": line["quantity"]} for line in shipment["lines"]
                ]
            values = {"shipment": {"id": shipment["id"]}, "lines": lines, "returnStockActionPolicy": {}}
            if rng.random() < 1 / 3:
                values["returnCost"] = {"value": 2.5, "currencyIsoCode": order["currency"]}
            payload = resolvers.m_create_return(None, info, values)
            if payload["userErrors"]:
                raise SystemExit(f"Centra refused a return: {payload['userErrors']}")
            made += 1
    return made


def warehouse_takes_back(sandbox) -> int:
    """Fulfil's warehouse receives every returned parcel, inspects it and shelves the goods. Returns how many."""
    fulfil = sandbox.app.simulators["fulfil"]
    with fulfil.lock:
        drafts = [row for row in fulfil._rows("stock.shipment.out.return") if row["state"] == "draft"]
        for shipment in drafts:
            fulfil._stock_shipment_out_return_receive(shipment)
            fulfil._stock_shipment_out_return_done(shipment)
            shipment["write_date"] = datetime.now(UTC)
        fulfil._pending_webhooks = []
    return len(drafts)


# --- the phases -------------------------------------------------------------------------------------------------


PHASES = ("import", "export", "shipment", "return-credit", "return-stock")


@dataclass
class Phase:
    name: str
    runs: int
    done: int  # orders (shipments, returns) the phase was there for and got through
    expected: int
    wall: float
    own_cpu: float  # this thread's processor time: Switchyard's Python
    sandbox: dict[str, float]
    database_cpu: float | None  # this connection's PostgreSQL backend
    queries: int
    query_seconds: float
    calls: dict[str, int]
    operations: dict[str, Counter]
    rss_start: int
    rss_peak: int
    collector: float
    limiter_seconds: float = 0.0
    limiter_calls: int = 0
    summaries: list = field(default_factory=list)
    done_key: str = ""
    idle: bool = False
    profile: str = ""
    traced_peak: float | None = None  # MB above the start, tracemalloc
    centra_mutations: int | None = None  # mutations Centra counted (several may share a request)

    @property
    def stopped(self) -> bool:
        return any(summary.get("stopped") for summary in self.summaries)

    @property
    def per_second(self) -> float:
        return self.done / self.wall if self.wall else 0.0

    @property
    def sandbox_cpu(self) -> float:
        return self.sandbox.get("(server)", 0.0)


class Pipeline:
    """The four flows one after another over the world's backlog, the outside world moving on in between."""

    def __init__(
        self, sandbox, world: World, *, seconds: float | None, profile=(), traced: bool = False, quiet: bool = False
    ) -> None:
        self.sandbox, self.world, self.seconds = sandbox, world, seconds
        self.profile, self.traced, self.quiet = set(profile), traced, quiet
        self.cpu_profile = False
        self.phases: list[Phase] = []

    def run(self, *, returned: float, idle: bool = True) -> list[Phase]:
        from syncs.flows.order_export import FLOW as EXPORT
        from syncs.flows.order_export import order_export_run
        from syncs.flows.order_import import FLOW as IMPORT
        from syncs.flows.order_import import order_import_run
        from syncs.flows.return_sync import FLOW as RETURNS
        from syncs.flows.return_sync import return_sync_run
        from syncs.flows.shipment_sync import FLOW as SHIPMENTS
        from syncs.flows.shipment_sync import shipment_sync_run

        world, rng = self.world, self.world.rng
        orders = self.sandbox.app.simulators["centra"].state["orders"]
        imported_before = sum(1 for order in orders.values() if order["number"] >= 900_000)
        to_import = len(world.virtualstock_ids) + len(world.marketplace_ids) - imported_before
        self.phase("import", IMPORT, order_import_run, "imported", to_import, idle=idle)
        numbers = [int(number) for number in orders if int(number) not in world.through]
        self.phase("export", EXPORT, order_export_run, "exported", len(numbers), idle=idle)
        shipped = self.outside("warehouse ships", lambda: warehouse_ships(self.sandbox, rng))
        self.phase("shipment", SHIPMENTS, shipment_sync_run, "shipped", shipped, idle=idle)
        returns = self.outside("customers return", lambda: customers_return(self.sandbox, rng, returned, numbers))
        self.phase("return-credit", RETURNS, return_sync_run, "credited", returns)
        self.outside("warehouse takes returns back", lambda: warehouse_takes_back(self.sandbox))
        self.phase("return-stock", RETURNS, return_sync_run, "stocked_in", returns, idle=idle)
        world.through |= set(numbers)
        return self.phases

    def outside(self, what: str, action: Callable[[], int]) -> int:
        started = time.perf_counter()
        count = action()
        if not self.quiet:
            print(f"  ({what}: {count:,} in {time.perf_counter() - started:.1f} s, untimed)", flush=True)
        return count

    def phase(self, name: str, flow: str, action, done_key: str, expected: int, *, idle: bool = False) -> None:
        """Run ``flow`` until it has got through ``expected`` objects (or a run gets through none, or the phase's
        time is up), timed as one phase; then, with ``idle``, once more with nothing new to do."""
        result = self.measure(name, lambda: self.runs(flow, action, done_key, expected), expected, self.profile)
        result.done_key = done_key
        self.phases.append(result)
        if idle and not result.stopped:  # after a stopped phase a further run would carry on with its work
            again = self.measure(f"{name} (idle)", lambda: self.runs(flow, action, done_key, 0, most=1), 0, set())
            again.idle, again.done_key = True, done_key
            self.phases.append(again)

    def runs(self, flow: str, action, done_key: str, expected: int, most: int = MAX_RUNS) -> tuple[int, int, list]:
        """Runs of ``flow`` as the scheduler makes them (run_flow); past the phase's seconds, the run going is
        stopped between two objects (its counter raises) and reported as stopped with what it got through."""
        from syncs.runs import run_flow

        deadline = time.monotonic() + self.seconds if self.seconds else None
        done, summaries = 0, []
        while len(summaries) < most:
            tally = Tally()

            def counted(counter, tally=tally):
                return action(counter=DeadlineCounter(counter, tally, deadline))

            try:
                summary = dict(run_flow(flow=flow, action=counted, trigger="bench").summary)
            except PhaseOver:
                summary = {"examined": tally.examined, "failed": tally.failed, done_key: tally.succeeded, "stopped": 1}
            summaries.append(summary)
            progress = summary.get(done_key, 0)
            done += progress
            if summary.get("stopped") or done >= expected or progress == 0:
                break
        return len(summaries), done, summaries

    def measure(self, name: str, runs, expected: int, profile: set[str]) -> Phase:
        from django.db import connection

        sims = self.sandbox.app.simulators
        for simulator in sims.values():
            with simulator.lock:
                simulator.calls = []
        self.sandbox.app.seconds.clear()
        LIMITERS.update(seconds=0.0, calls=0)
        CENTRA_MUTATIONS_SENT.clear()
        # What the phases before left (the flows' objects, the sandbox's new records) is frozen too: a Switchyard
        # worker does not carry the previous runs' objects, nor the outside systems' records.
        gc.collect()
        gc.freeze()
        if not self.quiet:
            print(f"{name} …", flush=True)
        queries = QueryCount()
        profiler = (
            (cProfile.Profile(time.thread_time) if self.cpu_profile else cProfile.Profile())
            if name in profile
            else None
        )
        backend = _backend_pid()
        database_before = _process_cpu(backend)
        if self.traced:
            tracemalloc.start()
            traced_start, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
        with PeakRss() as rss, CollectorTime() as collector, connection.execute_wrapper(queries):
            started, own = time.perf_counter(), time.thread_time()
            if profiler:
                profiler.enable()
            count, done, summaries = runs()
            if profiler:
                profiler.disable()
            own, wall = time.thread_time() - own, time.perf_counter() - started
        traced_peak = None
        if self.traced:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            traced_peak = (peak - traced_start) / 2**20
        database_after = _process_cpu(backend) if _backend_pid() == backend else None
        text = ""
        if profiler:
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("cumulative").print_stats(30)
            # Switchyard's own functions (flows, links, mappings, the exception queue, connectors, rate budget).
            stats.sort_stats("cumulative").print_stats(r"/(syncs|mappings|exceptions)/(?!sandbox/)", 45)
            stats.sort_stats("tottime").print_stats(25)
            text = out.getvalue()
        operations = {
            system: Counter(call.operation for call in sim.calls) for system, sim in sims.items() if sim.calls
        }
        calls = {system: sum(counted.values()) for system, counted in operations.items()}
        result = Phase(
            name=name,
            runs=count,
            done=done,
            expected=expected,
            wall=wall,
            own_cpu=own,
            sandbox=dict(self.sandbox.app.seconds),
            database_cpu=None
            if database_before is None or database_after is None
            else database_after - database_before,
            queries=queries.queries,
            query_seconds=queries.seconds,
            calls=calls,
            operations=operations,
            rss_start=rss.start,
            rss_peak=rss.peak,
            collector=collector.seconds,
            limiter_seconds=LIMITERS["seconds"],
            limiter_calls=LIMITERS["calls"],
            summaries=summaries,
            profile=text,
            traced_peak=traced_peak,
            centra_mutations=sum(CENTRA_MUTATIONS_SENT.values()),  # counted by the indexes' GraphQL execution
        )
        if not self.quiet:
            failed = sum(summary.get("failed", 0) for summary in summaries)
            examined = sum(summary.get("examined", 0) for summary in summaries)
            print(
                f"    {wall:.1f} s, {count} run(s): examined {examined:,}, got through {done:,} of {expected:,}, "
                f"failed {failed:,}" + (f"; {result.per_second:,.0f}/s" if expected else ""),
                flush=True,
            )
        return result


class PhaseOver(Exception):
    """The phase's time is up: the run going stops between two objects."""


@dataclass
class Tally:
    examined: int = 0
    succeeded: int = 0
    failed: int = 0


class DeadlineCounter:
    """The run's own counter, counting along for the bench; past the deadline it raises PhaseOver. Every flow
    counts an object once it is done with it, outside the handling of that object's failures."""

    def __init__(self, counter, tally: Tally, deadline: float | None) -> None:
        self.counter, self.tally, self.deadline = counter, tally, deadline

    def add(self, **counts: int) -> None:
        self.counter.add(**counts)
        for name, value in counts.items():
            setattr(self.tally, name, getattr(self.tally, name) + value)
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise PhaseOver

    def flush(self) -> None:
        self.counter.flush()


# --- measuring --------------------------------------------------------------------------------------------------


class QueryCount:
    """Counts the queries this thread's connection runs, and the seconds it waits for them."""

    def __init__(self) -> None:
        self.queries, self.seconds = 0, 0.0

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.queries += 1
            self.seconds += time.perf_counter() - started


def _backend_pid() -> int | None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _process_cpu(pid: int | None) -> float | None:
    """Seconds of processor time process ``pid`` has used (PostgreSQL on this machine), or None."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


CENTRA_MUTATIONS = {
    "setStock",
    "changeStock",
    "confirmOrder",
    "updateDirectToConsumerOrder",
    "cancelDirectToConsumerOrder",
    "createShipment",
    "completeShipment",
    "createReturn",
    "completeReturn",
    "setEventListeners",
    "confirmEvents",
}


def paced_bound(phase: Phase) -> tuple[float, str] | None:
    """The most orders a second the phase's calls allow at the published rate limits (the settings' defaults:
    Centra 60 requests and 100 mutations a 10 s, 1,000 mutations an hour; Fulfil 10 a second; Virtualstock 250 a
    minute; marketplace 20 a second), and the budget that binds; None for no orders."""
    if not phase.done or not PUBLISHED:
        return None
    centra, seconds = PUBLISHED["centra"], {}
    operations = phase.operations
    graphql = sum(count for op, count in operations.get("centra", {}).items() if not op.startswith("rest_"))
    mutations = sum(count for op, count in operations.get("centra", {}).items() if op in CENTRA_MUTATIONS)
    if phase.centra_mutations is not None:
        mutations = phase.centra_mutations
    seconds["Centra requests"] = graphql / (centra["requests_per_10s"] / 10)
    seconds["Centra mutations"] = max(
        mutations / (centra["mutations_per_10s"] / 10), mutations / (centra["mutations_per_hour"] / 3600)
    )
    seconds["Fulfil"] = phase.calls.get("fulfil", 0) / PUBLISHED["fulfil"]["requests_per_second"]
    seconds["Virtualstock"] = phase.calls.get("virtualstock", 0) / (
        PUBLISHED["virtualstock"]["requests_per_minute"] / 60
    )
    seconds["marketplace"] = phase.calls.get("marketplace", 0) / PUBLISHED["marketplace"]["requests_per_second"]
    budget, longest = max(seconds.items(), key=lambda item: item[1])
    return (phase.done / longest if longest else float("inf")), budget


# --- the end state ----------------------------------------------------------------------------------------------


def verify(sandbox, world: World, phases: list[Phase]) -> list[str]:
    """What is wrong with the end state. Whatever went through a flow went through once and exactly: an imported
    order is in Centra once and acknowledged at its source (and only then), a Centra order is one Fulfil sale at
    Centra's total, a shipment is one Centra shipment and one report to the order's source, a return is one credit
    of exactly Centra's refund, stocked back once; no exception was raised. When no phase was stopped, every order
    went all the way. Empty when all is right."""
    from exceptions.models import SyncException
    from syncs.models import Link

    sims = sandbox.app.simulators
    centra_sim, fulfil = sims["centra"], sims["fulfil"]
    centra, vs, market = centra_sim.state, sims["virtualstock"].state, sims["marketplace"].state
    complete = not any(phase.stopped for phase in phases)
    problems: list[str] = []

    # Import: each source order in Centra at most once, and acknowledged at its source exactly when it is.
    imported = Counter(
        order["extraAttributes"].get("switchyard_reference")
        for order in centra["orders"].values()
        if order["number"] >= 900_000
    )
    acknowledged = {f"John Lewis JL{i}" for i in world.virtualstock_ids if vs["orders"][str(i)]["status"] != "ORDER"}
    acknowledged |= {f"Zalando {i}" for i in world.marketplace_ids if market["orders"][i]["acknowledged_at"]}
    sources = {f"John Lewis JL{i}" for i in world.virtualstock_ids} | {f"Zalando {i}" for i in world.marketplace_ids}
    if any(count > 1 for count in imported.values()) or set(imported) - sources:
        problems.append(f"Centra: {sum(count > 1 for count in imported.values())} imported orders doubled")
    if set(imported) != acknowledged:
        problems.append(f"{len(set(imported) ^ acknowledged)} orders acknowledged at the source ≠ in Centra")
    if complete and set(imported) != sources:
        problems.append(f"Centra: {len(sources - set(imported))} orders not imported")

    # Export: each Centra order at most one sale, at Centra's grand total to the cent.
    numbers = {order["number"]: order for order in centra["orders"].values()}
    with fulfil.lock:
        sales = [row for row in fulfil._rows("sale.sale") if not row.get("origin")]
        credits = [row for row in fulfil._rows("sale.sale") if (row.get("origin") or "").startswith("sale.sale,")]
        totals = {row["id"]: fulfil._sale_value(row, "total_amount") for row in sales + credits}
        shipments_done = [row for row in fulfil._rows("stock.shipment.out") if row["state"] == "done"]
    by_reference = Counter(row["reference"] for row in sales)
    strangers = [ref for ref in by_reference if not ref.isdigit() or int(ref) not in numbers]
    if strangers or any(count > 1 for count in by_reference.values()):
        problems.append(f"Fulfil: {sum(c > 1 for c in by_reference.values())} sales doubled, {len(strangers)} strange")
    wrong_total = [
        row["reference"]
        for row in sales
        if row["reference"] not in strangers
        and totals[row["id"]] != centra_sim._grand_total(numbers[int(row["reference"])])
    ]
    if wrong_total:
        problems.append(f"Fulfil: {len(wrong_total)} sales off Centra's total, e.g. {wrong_total[:3]}")
    if complete and set(by_reference) != {str(n) for n in numbers}:
        problems.append(f"Fulfil: {len(numbers) - len(by_reference)} Centra orders without a sale")

    # Shipments: each done Fulfil shipment one Centra shipment, completed; reported once to the order's source.
    shipment_counts = Counter(shipment["orderNumber"] for shipment in centra["shipments"].values())
    if any(count > 1 for count in shipment_counts.values()):
        problems.append(f"Centra: {sum(c > 1 for c in shipment_counts.values())} orders shipped more than once")
    shipped = {n for n, order in numbers.items() if order["status"] == "SHIPPED"}
    if shipped != set(shipment_counts):
        problems.append(f"Centra: {len(shipped ^ set(shipment_counts))} orders with a shipment not SHIPPED or back")
    if complete and len(shipment_counts) != len(shipments_done):
        problems.append(f"Centra: {len(shipment_counts)} orders shipped for {len(shipments_done)} Fulfil shipments")
    sent = {order["extraAttributes"].get("switchyard_reference") for n, order in numbers.items() if n in shipped}
    for i in world.virtualstock_ids:
        dispatches = [len(item.get("dispatches", [])) for item in vs["orders"][str(i)]["items"]]
        if dispatches != [int(f"John Lewis JL{i}" in sent)] * len(dispatches):
            problems.append(f"Virtualstock: order {i} dispatched {dispatches} times, line by line")
            break
    for i in world.marketplace_ids:
        if len(market["orders"][i]["shipments"]) != int(f"Zalando {i}" in sent):
            problems.append(f"marketplace: order {i} shipped {len(market['orders'][i]['shipments'])} times")
            break

    # Returns: each credited at most once, exactly what Centra refunds; each marketplace return reported once.
    refunds = {
        f"centra-return-{record['id']}": -centra_sim._return_total(record).quantize(Decimal("0.01"))
        for record in centra["returns"].values()
    }
    credited = Counter(row["reference"] for row in credits)
    if any(count > 1 for count in credited.values()) or set(credited) - set(refunds):
        problems.append(f"Fulfil: {sum(c > 1 for c in credited.values())} credits doubled")
    off = [row["reference"] for row in credits if totals[row["id"]] != refunds.get(row["reference"])]
    if off:
        problems.append(f"Fulfil: {len(off)} credits not exactly what Centra refunds, e.g. {off[:3]}")
    return_links = Link.objects.filter(kind=Link.Kind.RETURN)
    reported = Counter(
        centra["orders"][str(record["orderNumber"])]["extraAttributes"].get("switchyard_reference", "")
        for record in centra["returns"].values()
        if return_links.filter(source_ref=str(record["id"]), detail__has_key="marketplace_reported_at").exists()
    )
    wrong = [i for i in world.marketplace_ids if len(market["orders"][i]["returns"]) != reported[f"Zalando {i}"]]
    if wrong:
        problems.append(f"marketplace: {len(wrong)} orders whose returns were not reported exactly once")
    stocked = return_links.filter(detail__has_key="stock_pushed_at").count()
    if complete and (len(credited) != len(refunds) or stocked != len(refunds)):
        problems.append(f"{len(credited)} credits, {stocked} stocked back, for {len(refunds)} Centra returns")
    exceptions = Counter(SyncException.objects.values_list("flow", flat=True))
    if exceptions:
        problems.append(f"exceptions raised: {dict(exceptions)}")
    return problems


# --- reporting --------------------------------------------------------------------------------------------------


def sandbox_call_peak(sandbox) -> float:
    """The traced peak (MB) of a few calls to the sandbox that do next to nothing: werkzeug's server drains each
    connection it closes with a 10 MB read, a transient every traced phase includes and Switchyard has no part in."""
    import requests

    session, peak = requests.Session(), 0.0
    url = f"{sandbox.url}/fulfil/api/v2/model/res.user/get_preferences"
    session.put(url, json=[], timeout=10)
    tracemalloc.start()
    for _ in range(5):
        tracemalloc.reset_peak()
        session.put(url, json=[], timeout=10)
        time.sleep(0.05)  # the server's drain runs after its answer
        peak = max(peak, tracemalloc.get_traced_memory()[1] / 2**20)
    tracemalloc.stop()
    return peak


def report(
    phases: list[Phase], memory: list[Phase], problems: list[str], indexes: SandboxIndexes, args, baseline: float
) -> None:
    mb = 2**20
    print()
    print(
        f"{'phase':<21} {'runs':>4} {'orders':>7} {'wall s':>7} {'orders/s':>8} {'goal':>6}  │ {'Switchyard':>10} "
        f"{'sandbox':>7} {'PostgreSQL':>10} │ {'DB wait':>7} {'limiter':>7} {'in gc':>5}"
    )
    print(
        f"{'':<21} {'':>4} {'':>7} {'':>7} {'':>8} {'':>6}  │ {'CPU s':>10} {'CPU s':>7} {'CPU s':>10} │ {'s':>7} {'s':>7} {'s':>5}"
    )
    for phase in phases:
        rate = "-" if phase.idle else f"{phase.per_second:,.0f}"
        verdict = "" if phase.idle else "ok" if phase.per_second > GOAL else "MISSED"
        database = f"{phase.database_cpu:.1f}" if phase.database_cpu is not None else "?"
        print(
            f"{phase.name:<21} {phase.runs:>4} {phase.done:>7,} {phase.wall:>7.1f} {rate:>8} {verdict:>6}  │ "
            f"{phase.own_cpu:>10.1f} {phase.sandbox_cpu:>7.1f} {database:>10} │ {phase.query_seconds:>7.1f} "
            f"{phase.limiter_seconds:>7.1f} {phase.collector:>5.1f}"
        )
    print(
        f"goal: over {GOAL:g} orders a second per flow. CPU: this thread's (Switchyard's Python, waiting excluded), "
        "the sandbox's request threads', this connection's PostgreSQL backend's. DB wait: this thread's time in "
        "query calls. limiter: its time taking a place with the connectors' rate limiters (RATE_LIMITS_SHARED: a "
        "locked database row per HTTP call; its queries are in DB wait too). (idle): one more run with nothing new. "
        "PostgreSQL ?: the connection was reopened during the phase (django-q's ORM broker closes it once older than "
        "CONN_MAX_AGE when a task is queued)."
    )
    for phase in (p for p in phases if not p.idle and p.done < p.expected):
        why = f"stopped after {args.phase_seconds:g} s" if phase.stopped else f"in {phase.runs} runs"
        print(f"  {phase.name}: got through {phase.done:,} of {phase.expected:,} ({why})")
    print()
    print(f"{'phase':<21} {'queries':>8} {'HTTP calls':>10}  {'RSS start → peak':>16}   HTTP calls by system")
    print(f"{'':<21} {'/order':>8} {'/order':>10}  {'MB':>16}")
    for phase in phases:
        per = 1 if phase.idle else max(phase.done, 1)
        unit = "" if phase.idle else "/o"
        by_system = ", ".join(f"{system} {count / per:,.1f}{unit}" for system, count in sorted(phase.calls.items()))
        print(
            f"{phase.name:<21} {phase.queries / per:>8,.1f} {sum(phase.calls.values()) / per:>10,.1f}  "
            f"{phase.rss_start / mb:>6.0f} → {phase.rss_peak / mb:>6.0f}   {by_system}"
        )
    print("(idle rows: totals for the run, not per order)")
    print()
    print("at the published rate limits (the calls above, paced; each budget on its own, the slowest binds):")
    for phase in phases:
        bound = paced_bound(phase)
        if bound is not None:
            rate, budget = bound
            print(f"  {phase.name:<21} at most {rate:>8.2f} orders/s = {rate * 3600:>9,.0f} an hour   ({budget})")
    print()
    print("runs (examined / got through / failed, per run; stopped: the phase's time was up):")
    for phase in phases:
        runs = [
            f"{s.get('examined', 0):,}/{s.get(phase.done_key, 0):,}/{s.get('failed', 0):,}"
            + (" stopped" if s.get("stopped") else "")
            for s in phase.summaries
        ]
        print(f"  {phase.name:<21} " + ", ".join(runs))
    print()
    print("processor time of each simulator answering (s; the rest of the sandbox's is HTTP):")
    for phase in phases:
        seconds = ", ".join(
            f"{system} {value:.1f}" for system, value in sorted(phase.sandbox.items()) if system != "(server)"
        )
        print(f"  {phase.name:<21} {seconds}")
    if memory:
        print()
        print(
            f"Python allocations at their peak above the start of each phase (tracemalloc; a fresh world of "
            f"{args.memory_orders:,} orders, each phase stopped after {MEMORY_PHASE_SECONDS} s). Traced, the "
            f"in-process sandbox counts too: a call that does nothing peaks at {baseline:.1f} MB (werkzeug's server "
            "drains each connection with a 10 MB read), and the records it keeps of what it is sent stay:"
        )
        print(f"  {'phase':<22} {'peak MB':>8} {'less a call':>11}")
        for phase in memory:
            print(
                f"  {phase.name:<22} {phase.traced_peak:>8.1f} {phase.traced_peak - baseline:>11.1f}   "
                f"({phase.wall:.1f} s traced, {phase.done:,} of {phase.expected:,} through)"
            )
    import resource

    print(f"  process maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB (the sandbox included)")
    print()
    if indexes.refused:
        print(
            f"WARNING: Fulfil refused {indexes.refused} writes, which the bench's cheap transaction did not roll back"
        )
    if problems:
        print("end state: WRONG")
    elif any(phase.stopped for phase in phases):
        print(
            "end state: what went through each flow went through once and exactly (in Centra once and acknowledged, "
            "one Fulfil sale at Centra's total, one shipment reported once, one exact credit), no exception; phases "
            "were stopped, so not every order went all the way"
        )
    else:
        print(
            "end state: every order once in Centra and Fulfil at Centra's total, every shipment synced once and "
            "reported once, every return credited exactly and stocked back, no exception"
        )
    for problem in problems:
        print(f"  {problem}")
    for phase in phases:
        if phase.profile:
            print()
            print(f"--- profile of {phase.name} (this thread; the sandbox answers on its own threads) ---")
            print(phase.profile)


if __name__ == "__main__":
    sys.exit(main())
