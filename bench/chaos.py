"""The chaos run: PostgreSQL, Redis and several worker clusters against a misbehaving sandbox, workers killed as
they go, through thousands of orders and stock changes; then a check that nothing was lost, doubled or left wrong.

    .venv/bin/python bench/chaos.py                 # 10,000 orders, 50,000 stock changes, 3 clusters, a kill every 30 s
    .venv/bin/python bench/chaos.py --small         # the CI size: 200 orders, 2,000 stock changes, a kill every 10 s

What it starts, all on 127.0.0.1, each in a process group of its own, all stopped at the end, on Ctrl-C or SIGTERM,
and at --max-seconds whatever the run is doing:
- its own PostgreSQL database (--database-url, created and migrated if missing, emptied at the start) and a Redis
  database of its own (--redis-url, flushed at the start) as django-q2's broker;
- the sandbox as its own process (this script with --serve-sandbox), seeded only through its control API with the
  brand of bench/orders.py (Fulfil the stock master; channels centra, john-lewis on Virtualstock and zalando on the
  marketplace), then faults on every system: 10% 5xx, 5% 429 (``throttle_rate``), 2% calls that hang past the
  connectors' read timeout (and are then carried out: the caller never learns whether its write landed);
- --clusters ``manage.py qcluster`` processes with the same cluster name, each scheduling, and a killer that every
  --kill-every seconds SIGKILLs the busiest worker of a cluster (mid-item, as a rule) or, every fourth time, a
  whole cluster (its scheduler and the tasks it had fetched included), started again at once.

The load is fed over --feed-seconds while the clusters work: web orders placed in Centra, retailer orders waiting at
Virtualstock, marketplace orders waiting to be acknowledged, and stock counts changing at Fulfil. Each is announced
as the system's webhook would announce it, through the same entry points (a Centra order starts the order export, a
marketplace order the import, a Fulfil stock change a stock push for its SKUs); Virtualstock is polled. The
schedules run every minute instead of every few (the chaos database only); the product sync, whose catalogue
checks this world does not feed, is unscheduled. Probe schedules record each firing, to catch a schedule fired
twice by two clusters.

Then the faults are lifted and the killer stops, and the run settles until the end state is right or
--settle-seconds pass: every order exactly once in Centra (an imported one by its source reference) and
acknowledged at its source, exactly one Fulfil sale per Centra order (by reference); every SKU on every channel
showing what the stock push holds as pushed, which is what the engine computes from Fulfil's final stock; every
exception still open not transient and alone on its item. Prints the counts; exits 1 on any loss, duplicate, wrong
stock cell, transient exception left open or schedule fired twice.
"""

import argparse
import contextlib
import importlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import requests
from postgres_django import ROOT, django_on_postgres

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/switchyard_chaos"
DEFAULT_REDIS = "redis://127.0.0.1:6379/7"
RAISED = 1_000_000  # rate limits no run reaches: the run is about faults and kills, not pacing
READ_TIMEOUT = 3.0  # the connectors' read timeout in this run
HANG_SECONDS = 4.0  # a simulated timeout hangs this long before it answers: past the read timeout
FAULTS = {"error_rate": 0.10, "throttle_rate": 0.05, "timeout_rate": 0.02, "timeout_seconds": HANG_SECONDS}
ERROR_STATUSES = {"centra": 500, "fulfil": 502, "virtualstock": 503, "marketplace": 500, "inventory-planner": 504}
PROBES = 6  # probe schedules, each every minute, their first firings spread over the minute
SHARES = {"web": 0.5, "virtualstock": 0.3, "marketplace": 0.2}  # as bench/orders.py


class Overtime(Exception):
    """--max-seconds passed, or the run was asked to stop."""


def main() -> int:
    args = arguments()
    if args.serve_sandbox:
        return sandbox_serve(args.serve_sandbox)
    started = time.monotonic()
    run = ChaosRun(args)

    def stop(signum, frame):
        raise Overtime("asked to stop" if signum != signal.SIGALRM else f"--max-seconds {args.max_seconds} passed")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGALRM, stop)
    signal.alarm(args.max_seconds)
    try:
        problems = run.go()
    except (Overtime, KeyboardInterrupt) as error:
        print(f"\nStopped: {error or 'Ctrl-C'}", flush=True)
        problems = ["the run did not finish"]
    finally:
        # Stopping everything must not be cut short by a second signal: what it stops would outlive the run.
        signal.alarm(0)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        run.shutdown()
    print(f"wall time: {time.monotonic() - started:.0f} s; load average: {' '.join(map(str, os.getloadavg()))}")
    print("RESULT:", "OK" if not problems else f"{len(problems)} PROBLEM(S)")
    for problem in problems:
        print("  -", problem)
    return 1 if problems else 0


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="The CI size (explicit sizes still win).")
    parser.add_argument("--orders", type=int)
    parser.add_argument("--stock-changes", type=int)
    parser.add_argument("--products", type=int, help="Products of 5 sizes each.")
    parser.add_argument("--clusters", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="Workers per cluster.")
    parser.add_argument("--kill-every", type=float)
    parser.add_argument("--feed-seconds", type=float, help="How long the load takes to arrive.")
    parser.add_argument("--settle-seconds", type=float)
    parser.add_argument("--max-seconds", type=int)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database-url", default=os.environ.get("CHAOS_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--redis-url", default=os.environ.get("CHAOS_REDIS_URL", DEFAULT_REDIS))
    parser.add_argument("--keep-logs", action="store_true", help="Print where the clusters' logs are; keep them.")
    parser.add_argument("--serve-sandbox", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    small = {
        "orders": 200,
        "stock_changes": 2000,
        "products": 40,
        "kill_every": 10.0,
        "feed_seconds": 45.0,
        "settle_seconds": 150.0,
    }
    full = {
        "orders": 10_000,
        "stock_changes": 50_000,
        "products": 200,
        "kill_every": 30.0,
        "feed_seconds": 900.0,
        "settle_seconds": 900.0,
    }
    for name, value in (small if args.small else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.max_seconds is None:
        args.max_seconds = int(args.feed_seconds + args.settle_seconds + 180)
    return args


# --- the sandbox, as a process of its own -----------------------------------------------------------------------


def sandbox_serve(port: int) -> int:
    """Serve every simulator on 127.0.0.1:``port`` until SIGTERM, with bench/orders.py's indexes (the simulators
    scan every record on each call, and Fulfil copies its whole state before every write) and a count of what each
    system answered at ``/_chaos/counts``."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings.base")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from orders import SandboxIndexes
    from werkzeug.serving import make_server

    from syncs.sandbox.core import SandboxApp, Simulator, json_response
    from syncs.sandbox.server import build_simulators

    counts: dict[str, Counter] = defaultdict(Counter)
    lock = threading.Lock()
    serve_api = Simulator._serve_api

    def counted(self, request, endpoint, arguments, operation):
        started = time.monotonic()
        response = serve_api(self, request, endpoint, arguments, operation)
        hung = self.faults.timeout_rate and time.monotonic() - started >= self.faults.timeout_seconds
        with lock:
            counts[self.name]["calls"] += 1
            if self.faults.error_rate or self.faults.throttle_rate or self.faults.timeout_rate:
                counts[self.name]["calls under faults"] += 1
            if response.status_code == 429:
                counts[self.name]["429"] += 1
            elif response.status_code >= 500:
                counts[self.name]["5xx"] += 1
            if hung:
                counts[self.name]["hung"] += 1
        return response

    Simulator._serve_api = counted
    app = SandboxApp(build_simulators(settings.CONNECTIONS))
    indexes = SandboxIndexes(app.simulators)
    indexes.install(check=False)

    def chaos_app(environ, start_response):
        if environ.get("PATH_INFO") == "/_chaos/counts":
            with lock:
                body = {name: dict(counter) for name, counter in counts.items()}
            body["fulfil_refused_writes"] = indexes.refused
            return json_response(body)(environ, start_response)
        return app(environ, start_response)

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server("127.0.0.1", port, chaos_app, threaded=True)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the processes ----------------------------------------------------------------------------------------------


class Process:
    """A process started in a group of its own, its output to a log file; stopped with its whole group."""

    def __init__(self, name: str, command: list[str], environment: dict, log_dir: Path) -> None:
        self.name, self.command, self.environment = name, command, environment
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen | None = None

    def start(self) -> "Process":
        with open(self.log_path, "a") as log:
            self.popen = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill(self) -> None:
        """SIGKILL the whole group at once: no goodbyes, no cleanup."""
        self._signal_group(signal.SIGKILL)
        self.popen.wait()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the group, then SIGKILL whatever is left after ``grace`` seconds."""
        if self.popen is None:
            return
        self._signal_group(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=grace)
        self._signal_group(signal.SIGKILL)
        self.popen.wait()

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signum)


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children[int(fields[1])].append(int(entry))
    return children


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except OSError:
        return -1


class Killer(threading.Thread):
    """Every ``every`` seconds: SIGKILL the busiest worker of a cluster picked at random (the cluster's sentinel
    starts a new one) or, every fourth time, the whole cluster, started again at once."""

    def __init__(self, clusters: list[Process], every: float, rng: random.Random) -> None:
        super().__init__(name="killer", daemon=True)
        self.clusters, self.every, self.rng = clusters, every, rng
        self.stopped = threading.Event()
        self.workers_killed = self.clusters_killed = 0

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            cluster = self.rng.choice(self.clusters)
            if (self.workers_killed + self.clusters_killed + 1) % 4 == 0:
                cluster.kill()
                cluster.start()
                self.clusters_killed += 1
                continue
            # qcluster → its sentinel → the workers, monitor and pusher: the busiest of those is a worker at work.
            children = _children()
            candidates = [pid for sentinel in children.get(cluster.pid, []) for pid in children.get(sentinel, [])]
            before = {pid: _cpu_ticks(pid) for pid in candidates}
            if self.stopped.wait(0.5) or not candidates:
                continue
            busiest = max(candidates, key=lambda pid: (_cpu_ticks(pid) - before[pid], self.rng.random()))
            try:
                os.kill(busiest, signal.SIGKILL)
                self.workers_killed += 1
            except ProcessLookupError:
                pass


# --- the run ----------------------------------------------------------------------------------------------------


class Recorder:
    """Stands in for a simulator while bench/orders.py's World writes orders: keeps them, to send through the
    control API."""

    def __init__(self) -> None:
        self.orders: list[dict] = []

    def _create_order(self, order: dict, status: str) -> None:  # Centra's
        self.orders.append({**order, "status": status})

    def _add_order(self, order: dict) -> None:  # Virtualstock's and the marketplace's
        self.orders.append(order)


class ChaosRun:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.log_dir = Path(tempfile.mkdtemp(prefix="switchyard-chaos-"))
        self.sandbox: Process | None = None
        self.clusters: list[Process] = []
        self.killer: Killer | None = None
        self.url = ""
        self.fed = Counter()
        self.master: dict[str, int] = {}

    # --- set-up -------------------------------------------------------------------------------------------------

    def environment(self) -> dict:
        """The environment of every process of the run (clusters, sandbox): this one's and the run's settings."""
        return {**os.environ, **self.settings()}

    def settings(self) -> dict[str, str]:
        """The settings every process of the run shares, this one included."""
        return {
            "DJANGO_SETTINGS_MODULE": "console.settings.base",
            "DATABASE_URL": self.args.database_url,
            "Q_BROKER_URL": self.args.redis_url,
            "Q_CLUSTER_NAME": "switchyard-chaos",
            "Q_WORKERS": str(self.args.workers),
            "SANDBOX_URL": self.url,
            "STOCK_MASTER": "fulfil",
            "CONNECTOR_READ_TIMEOUT": str(READ_TIMEOUT),
            "EXCEPTION_RETRY_BASE_SECONDS": "5",
            "EXCEPTION_RETRY_MAX_SECONDS": "30",
            # A write that hung past the read timeout can still land after a later one: the push reads what it
            # sent back from the channel once the hang is over (production waits 2 minutes; a hang here lasts 4 s)
            # and repairs it. Centra also allocates its own web orders before Fulfil holds them, which moves what
            # Centra shows after the last push of a SKU: the full reconcile's drift repair puts those right, here
            # every 2 minutes (production: STOCK_FULL_RECONCILE_MINUTES, 6 hours).
            "STOCK_VERIFY_AFTER_SECONDS": str(HANG_SECONDS * 3),
            "STOCK_FULL_RECONCILE_MINUTES": "2",
            "LOG_LEVEL": "WARNING",
            "CENTRA_REQUESTS_PER_10S": str(RAISED),
            "CENTRA_MUTATIONS_PER_10S": str(RAISED),
            "CENTRA_MUTATIONS_PER_HOUR": str(RAISED),
            "FULFIL_REQUESTS_PER_SECOND": str(RAISED),
            "VIRTUALSTOCK_REQUESTS_PER_MINUTE": str(RAISED),
            "INVENTORY_PLANNER_REQUESTS_PER_MINUTE": str(RAISED),
            "MARKETPLACE_REQUESTS_PER_SECOND": str(RAISED),
        }

    def go(self) -> list[str]:
        args = self.args
        print(
            f"chaos: {args.orders:,} orders, {args.stock_changes:,} stock changes, {args.products * 5:,} SKUs, "
            f"{args.clusters} clusters × {args.workers} workers, a kill every {args.kill_every:g} s, "
            f"fed over {args.feed_seconds:g} s, settling up to {args.settle_seconds:g} s; logs in {self.log_dir}",
            flush=True,
        )
        self.redis_flush()
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        os.environ.update(self.settings())
        os.environ["BENCH_DATABASE_URL"] = args.database_url
        django_on_postgres(args.database_url)
        self.sandbox = Process(
            "sandbox", [sys.executable, __file__, "--serve-sandbox", str(port)], self.environment(), self.log_dir
        )
        self.sandbox.start()
        self.sandbox_wait()
        from orders import World

        self.world = World(self.rng, args.products, 5)
        self.database_prepare()
        self.catalogue_seed()
        for system, status in ERROR_STATUSES.items():
            self.control(system, "faults", {**FAULTS, "error_status": status})
        self.clusters = [
            Process(f"cluster-{n}", [sys.executable, "manage.py", "qcluster"], self.environment(), self.log_dir).start()
            for n in range(1, args.clusters + 1)
        ]
        self.killer = Killer(self.clusters, args.kill_every, random.Random(args.seed + 1))
        self.killer.start()
        fed_at = time.monotonic()
        self.feed()
        print(f"fed in {time.monotonic() - fed_at:.0f} s: {dict(self.fed)}", flush=True)
        self.killer.stopped.set()
        self.killer.join()
        for system in ERROR_STATUSES:
            self.control(system, "faults", {})
        settle_at = time.monotonic()
        while True:
            report, problems = self.verify()
            waited = time.monotonic() - settle_at
            if not problems or waited > args.settle_seconds:
                break
            print(f"settling ({waited:.0f} s): {problems[0]}{' …' if len(problems) > 1 else ''}", flush=True)
            time.sleep(10)
        print(f"settled in {time.monotonic() - settle_at:.0f} s" if not problems else "did not settle", flush=True)
        self.print_report(report)
        return problems

    def redis_flush(self) -> None:
        import redis

        try:
            redis.Redis.from_url(self.args.redis_url, socket_connect_timeout=3).flushdb()
        except redis.RedisError as error:
            raise SystemExit(f"Redis at {self.args.redis_url} is not reachable: {error}") from None

    def sandbox_wait(self) -> None:
        for _ in range(150):
            try:
                requests.get(f"{self.url}/centra/_sandbox/faults", timeout=1).raise_for_status()
                return
            except requests.RequestException:
                if self.sandbox.popen.poll() is not None:
                    raise SystemExit(f"the sandbox did not start: see {self.sandbox.log_path}") from None
                time.sleep(0.2)
        raise SystemExit("the sandbox did not answer within 30 s")

    def control(self, system: str, call: str, body: dict | None = None):
        url = f"{self.url}/{system}/_sandbox/{call}"
        response = requests.post(url, json=body, timeout=120) if body is not None else requests.get(url, timeout=120)
        response.raise_for_status()
        return response.json()

    def database_prepare(self) -> None:
        """bench/orders.py's clean start and brand (it empties django-q's tables too: the schedules the migrations
        made are put back), then the schedules every minute, the product sync unscheduled, and the probes."""
        from chaos_probe import table_create
        from django.apps import apps as django_apps
        from django.utils import timezone
        from django_q.models import Schedule
        from orders import database_prepare

        kept = [
            row
            for row in Schedule.objects.exclude(schedule_type=Schedule.ONCE).values()
            if not row["name"].startswith("Chaos probe")
        ]
        database_prepare(self.world)
        # The stock status rules the migrations made (emptied with the mappings): reserved stock cannot be sold.
        importlib.import_module("mappings.migrations.0003_default_stock_status_rules").create(django_apps, None)
        now = timezone.now()
        for row in kept:
            row.pop("id"), row.pop("task")
            if row["schedule_type"] == Schedule.MINUTES:
                row.update(minutes=1, next_run=now)
            if row["name"] != "Product sync":
                Schedule.objects.create(**row)
        from datetime import timedelta

        for n in range(PROBES):
            Schedule.objects.create(
                name=f"Chaos probe {n}",
                func="bench.chaos_probe.fired",
                args=repr(f"Chaos probe {n}"),
                intended_date_kwarg="fired_for",
                schedule_type=Schedule.MINUTES,
                minutes=1,
                repeats=-1,
                next_run=now + timedelta(seconds=60 * n / PROBES),
            )
        table_create()

    def catalogue_seed(self) -> None:
        """The world's catalogue everywhere, through the control API: Fulfil's variants with their stock (the
        master), Centra's products, Virtualstock's products and the marketplace's offers under their own codes."""
        world = self.world
        self.master = {sku: self.rng.randint(20, 200) for sku in world.skus}
        self.control(
            "fulfil",
            "seed",
            {
                "products": [
                    {"code": sku, "name": sku, "list_price": world.eur[sku], "quantity_on_hand": self.master[sku]}
                    for sku in world.skus
                ]
            },
        )
        products: dict[str, dict] = {}
        for sku in world.skus:
            number, size = sku[:5], sku[8:]
            products.setdefault(number, {"sizes": [], "sku": sku})["sizes"].append(size)
        self.control(
            "centra",
            "seed",
            {
                "products": [
                    {
                        "name": f"Style {number}",
                        "productNumber": number,
                        "prices": {"2": world.eur[product["sku"]], "3": world.gbp[product["sku"]]},
                        "variants": [
                            {
                                "name": "Black",
                                "variantNumber": "BLK",
                                "sizes": [{"sizeNumber": s, "name": s, "stock": {"1": 0}} for s in product["sizes"]],
                            }
                        ],
                    }
                    for number, product in products.items()
                ]
            },
        )
        self.control(
            "virtualstock",
            "seed",
            {"products": [{"id": 700_000 + n, "part_number": f"JL-{sku}"} for n, sku in enumerate(world.skus)]},
        )
        self.control(
            "marketplace",
            "seed",
            {"offers": [{"sku": f"ZL-{sku}", "title": sku, "price": world.eur[sku]} for sku in world.skus]},
        )

    # --- the load -----------------------------------------------------------------------------------------------

    def feed(self) -> None:
        """Orders and stock changes, spread evenly over --feed-seconds, a batch a second, each batch announced."""
        args, world = self.args, self.world
        kinds = [kind for kind, share in SHARES.items() for _ in range(round(args.orders * share))]
        kinds = (kinds + ["web"] * args.orders)[: args.orders]
        self.rng.shuffle(kinds)
        customers = [world._customer(n) for n in range(max(1, args.orders // 2))]
        started = time.monotonic()
        placed = changed = 0
        while placed < args.orders or changed < args.stock_changes:
            share = min(1.0, (time.monotonic() - started) / args.feed_seconds)
            orders_due = round(args.orders * share) - placed
            changes_due = round(args.stock_changes * share) - changed
            if orders_due:
                self.orders_place(kinds[placed : placed + orders_due], customers)
                placed += orders_due
            if changes_due:
                self.stock_change(changes_due)
                changed += changes_due
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started) % 1.0))

    def orders_place(self, kinds: list[str], customers: list[dict]) -> None:
        from syncs.runs import flow_run_soon

        world = self.world
        recorders = {"web": Recorder(), "virtualstock": Recorder(), "marketplace": Recorder()}
        for kind in kinds:
            customer = self.rng.choice(customers)
            lines = [(sku, self.rng.choice((1, 1, 1, 2))) for sku in self.rng.sample(world.skus, world._lines())]
            if kind == "web":
                world._web_order(recorders[kind], customer, lines)
            elif kind == "virtualstock":
                world._virtualstock_order(recorders[kind], customer, lines)
            else:
                world._marketplace_order(recorders[kind], customer, lines)
        for kind, system, flow in (
            ("web", "centra", "order_export"),
            ("virtualstock", "virtualstock", None),  # polled: Virtualstock sends no webhooks
            ("marketplace", "marketplace", "order_import"),
        ):
            if recorders[kind].orders:
                self.control(system, "seed", {"orders": recorders[kind].orders})
                self.fed[f"{kind} orders"] += len(recorders[kind].orders)
                if flow:
                    flow_run_soon(flow)

    def stock_change(self, count: int) -> None:
        """``count`` stock counts at Fulfil (a SKU may change more than once in a batch: the last count stands),
        announced as Fulfil's inventory webhook would, by a stock push for those SKUs."""
        from syncs.stock.in_flight import stock_push_soon

        changes: dict[str, int] = {}
        for _ in range(count):
            sku = self.rng.choice(self.world.skus)
            changes[sku] = 0 if self.rng.random() < 0.03 else self.rng.randint(20, 200)
        self.master.update(changes)
        self.control("fulfil", "seed", {"products": [{"code": s, "quantity_on_hand": q} for s, q in changes.items()]})
        self.fed["stock changes"] += count
        stock_push_soon(changes)

    # --- the end state ------------------------------------------------------------------------------------------

    def verify(self) -> tuple[dict, list[str]]:
        """The end state's counts, and what is wrong with it (empty when all is right)."""
        from django.db import connection

        from exceptions.kinds import KINDS
        from exceptions.models import ACTIVE, SyncException

        world, problems, report = self.world, [], {}
        centra, vs = self.control("centra", "state"), self.control("virtualstock", "state")
        market, fulfil = self.control("marketplace", "state"), self.control("fulfil", "state")

        # Orders: each source order once in Centra (imported ones by their reference), acknowledged at its source.
        sources = {f"John Lewis JL{i}" for i in world.virtualstock_ids} | {
            f"Zalando {i}" for i in world.marketplace_ids
        }
        imported = Counter(
            (order.get("extraAttributes") or {}).get("switchyard_reference")
            for order in centra["orders"].values()
            if order["number"] >= 900_000
        )
        web = Counter(order["number"] for order in centra["orders"].values() if order["number"] < 900_000)
        acknowledged = {
            f"John Lewis JL{i}" for i in world.virtualstock_ids if vs["orders"][str(i)]["status"] != "ORDER"
        }
        acknowledged |= {f"Zalando {i}" for i in world.marketplace_ids if market["orders"][i]["acknowledged_at"]}
        report["orders"] = {
            "placed": len(world.web_numbers) + len(sources),
            "in Centra": len(web) + len(imported),
            "imported": len(imported),
            "imported twice or more": sum(count > 1 for count in imported.values()),
            "not imported": len(sources - set(imported)),
            "strangers in Centra": len(set(imported) - sources),
            "acknowledged": len(acknowledged),
            "acknowledged, not in Centra": len(acknowledged - set(imported)),
            "in Centra, not acknowledged": len(set(imported) - acknowledged),
        }
        for name in ("imported twice or more", "not imported", "strangers in Centra"):
            if report["orders"][name]:
                problems.append(f"orders {name}: {report['orders'][name]}")
        if set(imported) != acknowledged:
            problems.append(f"{len(set(imported) ^ acknowledged)} orders acknowledged at the source ≠ in Centra")

        # Fulfil: one sale per Centra order, by reference.
        numbers = {str(order["number"]) for order in centra["orders"].values()}
        sales = Counter(row["reference"] for row in fulfil["records"]["sale.sale"].values() if not row.get("origin"))
        report["Fulfil sales"] = {
            "sales": sum(sales.values()),
            "Centra orders with a sale": len(numbers & set(sales)),
            "doubled": sum(count > 1 for count in sales.values()),
            "missing": len(numbers - set(sales)),
            "strangers": len(set(sales) - numbers),
        }
        for name in ("doubled", "missing", "strangers"):
            if report["Fulfil sales"][name]:
                problems.append(f"Fulfil sales {name}: {report['Fulfil sales'][name]}")

        # Stock: what each channel shows = what the push holds as pushed = the ATS of Fulfil's final stock.
        wrong, report["stock cells"] = self.stock_check()
        problems += wrong

        # Exceptions: what is still open is not transient and alone on its item.
        active = list(SyncException.objects.filter(status__in=ACTIVE).values("flow", "kind", "object_ref", "status"))
        by_item = Counter((row["flow"], row["object_ref"]) for row in active)
        transient = [row for row in active if KINDS[row["kind"]].transient]
        report["exceptions"] = {
            "open by kind": dict(Counter(f"{row['flow']}/{row['kind']}" for row in active)),
            "all ever, by kind": dict(
                Counter(f"{f}/{k}" for f, k in SyncException.objects.values_list("flow", "kind"))
            ),
            "transient still open": len(transient),
            "items with more than one open": sum(count > 1 for count in by_item.values()),
        }
        if transient:
            problems.append(f"{len(transient)} transient exceptions still open, e.g. {transient[0]}")
        if report["exceptions"]["items with more than one open"]:
            problems.append(
                f"{report['exceptions']['items with more than one open']} items with several open exceptions"
            )

        # Schedules: no probe fired twice for the same moment.
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*), count(DISTINCT (schedule, fired_for)) FROM chaos_probe_firing")
            firings, distinct = cursor.fetchone()
        report["probe schedules"] = {"firings": firings, "fired twice": firings - distinct}
        if firings != distinct:
            problems.append(f"{firings - distinct} probe schedule firings doubled")
        return report, problems

    def stock_check(self) -> tuple[list[str], dict]:
        from django.conf import settings

        from mappings.models import Channel
        from syncs import connections
        from syncs.connectors import virtualstock
        from syncs.flows.stock_push import MAX_OFFER_PAGE, _subtracted, read_master
        from syncs.models import StockState
        from syncs.stock.ats import available_to_sell
        from syncs.stock.rules import buffer_lookup

        readings = read_master()
        subtracted = _subtracted(readings)
        shown = {
            "centra": {
                s.sku: s.free_to_allocate
                for s in connections.centra().sizes(warehouse_id=settings.STOCK_CENTRA_WAREHOUSE_ID)
            },
            "john-lewis": {
                p.part_number.removeprefix("JL-"): p.free_stock
                for p in connections.virtualstock().products(page_size=virtualstock.MAX_PAGE)
            },
            "zalando": {
                o.sku.removeprefix("ZL-"): o.quantity
                for o in connections.marketplace().offers(page_size=MAX_OFFER_PAGE)
            },
        }
        counts, examples = Counter(), []
        for channel in Channel.objects.exclude(system=settings.STOCK_MASTER):
            buffers = buffer_lookup(channel)
            pushed = dict(StockState.objects.filter(channel=channel).values_list("sku", "pushed_value"))
            for sku, reading in readings.items():
                should = available_to_sell(
                    on_hand=reading.on_hand,
                    statuses=reading.statuses,
                    subtracted=subtracted,
                    buffer=buffers(sku, reading.product_number or ""),
                )
                cell = (shown[channel.code].get(sku), pushed.get(sku), should)
                if cell[0] == cell[1] == cell[2]:
                    counts["right"] += 1
                else:
                    counts["wrong"] += 1
                    examples.append(f"{channel.code} {sku}: shows {cell[0]}, pushed {cell[1]}, should {cell[2]}")
        problems = [f"{counts['wrong']} stock cells wrong, e.g. {examples[:3]}"] if counts["wrong"] else []
        return problems, dict(counts)

    def print_report(self, report: dict) -> None:
        try:
            calls = requests.get(f"{self.url}/_chaos/counts", timeout=30).json()
        except requests.RequestException:
            calls = {}
        from syncs.models import SyncRun

        runs = Counter(SyncRun.objects.values_list("flow", "status"))
        report["sandbox calls"] = calls
        report["kills"] = {
            "workers": self.killer.workers_killed if self.killer else 0,
            "clusters": self.killer.clusters_killed if self.killer else 0,
        }
        report["runs"] = {f"{flow}/{status}": n for (flow, status), n in sorted(runs.items())}
        summaries = SyncRun.objects.filter(flow="stock_push", summary__full=True).values_list("summary", flat=True)
        drift = Counter()
        for summary in summaries:
            for code, outcome in summary.get("channels", {}).items():
                drift[code] += outcome.get("drift", 0)
        report["stock cells found drifted (and repaired) by full reconciles"] = dict(drift)
        print(json.dumps(report, indent=2, default=str))

    def shutdown(self) -> None:
        if self.killer:
            self.killer.stopped.set()
        for process in [*self.clusters, self.sandbox]:
            if process is not None:
                process.stop()
        if self.args.keep_logs:
            print(f"logs kept in {self.log_dir}")
        else:
            for path in self.log_dir.iterdir():
                path.unlink()
            self.log_dir.rmdir()


if __name__ == "__main__":
    sys.exit(main())
