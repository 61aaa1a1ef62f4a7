"""How many units are oversold in a flash sale: Switchyard's event-driven push against a full push every 15 minutes.

    .venv/bin/python bench/oversell.py [--seed 7] [--skus 200] [--hours 4]

A seeded simulation on a simulated clock (no sleeping, no database, no HTTP): 200 SKUs with limited stock (bought
to cover 40–110% of the demand the sale will bring) sold on Centra, John Lewis (Virtualstock) and Zalando (the
marketplace); a flash sale ramps to 40, 15 and 25 orders a minute on them. Every channel sells what it shows and
takes each sale off what it shows. Switchyard has an order within seconds where the channel sends a webhook
(Centra, the marketplace) and at the next 5-minute poll where it does not (Virtualstock); the stock master (Fulfil)
records the sale some time later still (the order exported or imported: a median 45 s for Centra's, 90 s for the
marketplace's, 20–60 s after the poll for Virtualstock's), and only then does its figure drop. A unit is oversold
when a channel sells it while no unsold unit is left anywhere.

The same orders, at the same moments, are played against each strategy, each with its own state:

A  Switchyard's engine as built: an order's units count as sold on every channel from the moment Switchyard sees
   it until the master records it (units in flight, ``syncs.stock.in_flight``), and a push for them starts at once;
   the master's change reaches the engine within seconds (Fulfil's webhook, a task);
   the engine reads the master, computes each channel's available-to-sell with ``syncs.stock.ats.available_to_sell``,
   keeps what differs from what the channel last accepted (``StockState.needs_push``, on unsaved StockState rows),
   and each channel, one push at a time, sends its pending changes riskiest first (``syncs.flows.stock_push._risk``)
   in the fewest calls its API allows, paced by the connectors' own ``RateLimiter`` at the published limits: Centra
   100 mutations a 10 s and 1,000 an hour, 60 requests a 10 s (a setStock of up to 200 sizes after one productSizes
   read); Virtualstock 250 calls a minute, one product a call; the marketplace 20 calls a second, 500 SKUs a call.
B  a full push every 15 minutes: every SKU's available-to-sell, computed the same way, sent to every channel in SKU
   order under the same limits.

And the engine without its two rush guards, so what each is worth can be read beside A: A0 neither (the engine
before them); A1 only the spread of Centra's hourly mutations over the hour (at most 10 in any 36 s, the
connector's own windows) instead of spending them in the first minutes of a rush; A2 only the units in flight.

The channels are modelled, not called: a call takes CALL_SECONDS and the channel then shows the values sent.
"""

import argparse
import heapq
import math
import os
import random
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MINUTE, HOUR = 60.0, 3600.0
CALL_SECONDS = 0.4  # one API call, there and back
WEBHOOK_SECONDS = 3.0  # Fulfil's webhook delivered, kept, and its task picked up by a worker
FULL_PUSH_EVERY = 15 * MINUTE
# Orders a minute per channel: before the sale, and at its peak.
CHANNELS = {
    "centra": {"system": "centra", "base": 1.0, "peak": 40.0},
    "john-lewis": {"system": "virtualstock", "base": 0.3, "peak": 15.0},
    "zalando": {"system": "marketplace", "base": 0.6, "peak": 25.0},
}
SALE_STARTS, PEAK_FROM, PEAK_UNTIL = 30 * MINUTE, 45 * MINUTE, 75 * MINUTE
VIRTUALSTOCK_POLL = 5 * MINUTE  # Virtualstock sends no webhooks: its orders are found by polling


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skus", type=int, default=200)
    parser.add_argument("--hours", type=float, default=4.0)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings.base")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()

    world = world_generate(seed=args.seed, skus=args.skus, hours=args.hours)
    print(
        f"seed {args.seed}: {args.skus} SKUs, {sum(world.stock.values()):,} units in stock, "
        f"{len(world.orders):,} orders for {sum(o.quantity for o in world.orders):,} units over {args.hours:g} h "
        f"({', '.join(f'{c} {n:,}' for c, n in Counter(o.channel for o in world.orders).items())})"
    )
    results = {
        "A  engine as built": Simulation(world, strategy="engine", spread_centra=True, count_in_flight=True).run(),
        "B  full push every 15 min": Simulation(world, strategy="full").run(),
        "A0 without spread/in-flight": Simulation(world, strategy="engine").run(),
        "A1 spread only": Simulation(world, strategy="engine", spread_centra=True).run(),
        "A2 in flight only": Simulation(world, strategy="engine", count_in_flight=True).run(),
    }
    report(results, seed=args.seed)
    return 0


# --- the world: stock and the orders that will arrive ------------------------------------------------------------


@dataclass(frozen=True)
class Order:
    at: float
    channel: str
    sku: str
    quantity: int
    seen_after: float  # seconds from the sale until Switchyard has the order (webhook, or the next poll)
    recorded_after: float  # seconds from the sale until the stock master has it


@dataclass
class World:
    stock: dict[str, int]
    velocity: dict[tuple[str, str], Decimal]  # (channel, sku): units a day, the forecast the risk order uses
    orders: list[Order]
    hours: float


def orders_a_minute(channel: str, at: float) -> float:
    """The flash sale's shape: quiet, a 15-minute ramp to the peak, half an hour at the peak, then decay."""
    base, peak = CHANNELS[channel]["base"], CHANNELS[channel]["peak"]
    if at < SALE_STARTS:
        return base
    if at < PEAK_FROM:
        return base + (peak - base) * (at - SALE_STARTS) / (PEAK_FROM - SALE_STARTS)
    if at < PEAK_UNTIL:
        return peak
    return base + (peak - base) * math.exp(-(at - PEAK_UNTIL) / (20 * MINUTE))


def world_generate(*, seed: int, skus: int, hours: float) -> World:
    rng = random.Random(seed)
    codes = [f"FS{n:03d}BLK{size}" for n in range(skus // 5 + 1) for size in ("XS", "S", "M", "L", "XL")][:skus]
    popularity = {sku: 1 / (rank + 1) ** 0.8 for rank, sku in enumerate(rng.sample(codes, len(codes)))}
    total = sum(popularity.values())
    share = {sku: weight / total for sku, weight in popularity.items()}
    # Orders: a Poisson stream per channel at the sale's rate (thinning), a popular SKU more often.
    orders = []
    ranked = list(share)
    weights = [share[sku] for sku in ranked]
    for channel, conf in CHANNELS.items():
        at, ceiling = 0.0, conf["peak"] / MINUTE
        while True:
            at += rng.expovariate(ceiling)
            if at >= hours * HOUR:
                break
            if rng.random() * ceiling > orders_a_minute(channel, at) / MINUTE:
                continue
            sku = rng.choices(ranked, weights)[0]
            quantity = rng.choices([1, 2, 3], [85, 12, 3])[0]
            orders.append(Order(at, channel, sku, quantity, *_delays(channel, at, rng)))
    orders.sort(key=lambda order: order.at)
    demand = Counter()
    for order in orders:
        demand[order.sku] += order.quantity
    # Limited stock: what was bought for the sale covers 40–110% of what will be asked for.
    stock = {sku: max(1, round(demand[sku] * rng.uniform(0.4, 1.1))) for sku in codes}
    # The forecast: each SKU's share of a normal day's 600 units, split by the channels' usual share.
    usual = {channel: conf["base"] for channel, conf in CHANNELS.items()}
    velocity = {
        (channel, sku): Decimal(str(round(600 * share[sku] * usual[channel] / sum(usual.values()), 3)))
        for channel in CHANNELS
        for sku in codes
    }
    return World(stock, velocity, orders, hours)


def _delays(channel: str, at: float, rng: random.Random) -> tuple[float, float]:
    """(Seconds until Switchyard has a sale made on ``channel`` at ``at``, seconds until the stock master has it.)
    Centra and the marketplace announce orders by webhook; the order then goes to Fulfil (Centra's once confirmed,
    the marketplace's through Centra). Virtualstock's are found by the next poll, then imported."""
    if channel == "centra":
        seen = rng.lognormvariate(math.log(3), 0.5)
        return seen, seen + min(600.0, rng.lognormvariate(math.log(45), 0.6))
    if channel == "zalando":
        seen = rng.lognormvariate(math.log(5), 0.5)
        return seen, seen + min(900.0, rng.lognormvariate(math.log(90), 0.6))
    seen = math.ceil(at / VIRTUALSTOCK_POLL) * VIRTUALSTOCK_POLL - at + rng.uniform(2, 10)
    return seen, seen + rng.uniform(20, 60)


# --- the simulation ----------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    oversold: Counter = field(default_factory=Counter)  # units, by channel
    # Why: Switchyard knew the stock was gone but the channel had not been told yet, or the sale that took the last
    # unit was not yet known to Switchyard (not at the master, nor counted in flight).
    oversold_why: Counter = field(default_factory=Counter)
    sold: Counter = field(default_factory=Counter)
    declined: Counter = field(default_factory=Counter)  # orders the channel could not take: it showed too little
    calls: Counter = field(default_factory=Counter)
    mutations: int = 0
    lag: dict = field(default_factory=dict)  # channel: seconds from a master change until the channel shows it
    left: int = 0  # units never sold
    call_times: dict = field(default_factory=lambda: defaultdict(list))  # (channel, requests|mutations): moments


class Channel:
    """One channel as the simulation sees it: what it shows, what Switchyard last had accepted there, and its
    API's limits through the connectors' own RateLimiter on the simulated clock."""

    def __init__(self, code: str, system: str, clock, *, spread_hourly: bool = False) -> None:
        from syncs.connectors.http import RateLimiter

        self.code, self.system, self.clock = code, system, clock
        self.shows: dict[str, int] = {}
        self.busy_until = 0.0
        self.pending: set[str] = set()  # strategy A: SKUs whose ATS differs from what the channel accepted
        self.queue: list = []  # strategy B: (sku, (value, read at)) still to send from the last full push
        self.wake_at: float | None = None

        def limiter(windows):
            return RateLimiter(windows, clock=clock, sleep=_never_sleeps)

        if system == "centra":
            from syncs.connectors.centra import CentraClient

            self.batch = 200
            self.requests = limiter([(60, 10)])
            # The engine's own windows (CentraClient spreads the hourly 1,000 over the hour: at most 10 in any 36 s,
            # rather than spending them in the first minutes of a rush); without the spread, as before it.
            built = CentraClient(
                base_url="http://127.0.0.1:9", token="-", mutations_per_10s=100, mutations_per_hour=1000
            )
            windows = built.mutation_limiter.windows if spread_hourly else [(100, 10), (1000, 3600)]
            self.mutations = limiter(windows)
        elif system == "virtualstock":
            self.batch = 1
            self.requests, self.mutations = limiter([(250, 60)]), None
        else:
            self.batch = 500
            self.requests, self.mutations = limiter([(20, 1)]), None

    def wait(self) -> float:
        """Seconds until the next write may go: one call, or for Centra a read then a mutation."""
        waits = [self.requests.wait_time()]
        if self.mutations is not None:
            waits.append(self.mutations.wait_time())
        return max(waits)

    def take(self, outcome: Outcome) -> float:
        """Spend the budget of one write; returns how long it takes. (A Centra write is two requests; taking
        0.8 s, one after another, they stay well inside 60 a 10 s.)"""
        now = self.clock()
        if self.mutations is not None:
            self.requests.acquire()  # productSizes: the sizes' variants and allocations
            self.requests.acquire()  # setStock
            self.mutations.acquire()
            outcome.calls[self.code] += 2
            outcome.mutations += 1
            outcome.call_times[(self.code, "requests")] += [now, now]
            outcome.call_times[(self.code, "mutations")].append(now)
            return 2 * CALL_SECONDS
        self.requests.acquire()
        outcome.calls[self.code] += 1
        outcome.call_times[(self.code, "requests")].append(now)
        return CALL_SECONDS


def _never_sleeps(seconds: float) -> None:
    raise AssertionError("the simulation asks wait_time() first; acquire() never has to wait")


class Simulation:
    """One strategy over the world's orders. ``spread_centra`` and ``count_in_flight`` are the engine's two guards
    against a rush (both on in the engine as built; off, to show what each is worth): Centra's hourly mutations
    spread over the hour; units Switchyard has seen sold but the master has not yet recorded taken off what can be
    sold until it has (syncs.stock.in_flight)."""

    def __init__(
        self, world: World, *, strategy: str, spread_centra: bool = False, count_in_flight: bool = False
    ) -> None:
        from syncs.models import StockState

        self.world, self.strategy = world, strategy
        self.count_in_flight = count_in_flight
        self.in_flight: Counter = Counter()  # units sold that Switchyard has seen and the master has not recorded
        self.now = 0.0
        self.events: list = []
        self.sequence = 0
        self.unsold = dict(world.stock)  # units not yet sold anywhere: the truth
        self.master = dict(world.stock)  # what the stock master shows
        self.read_at: dict[tuple[str, str], float] = {}
        self.unreflected: dict[tuple[str, str], float] = {}  # (channel, sku): the first change it does not show
        self.outcome = Outcome()
        self.lags: dict[str, list[float]] = defaultdict(list)
        self.channels = {
            code: Channel(code, conf["system"], lambda: self.now, spread_hourly=spread_centra)
            for code, conf in CHANNELS.items()
        }
        # Switchyard's sync state per SKU × channel: unsaved StockState rows, as the engine keeps them.
        self.states = {
            code: {
                sku: StockState(
                    sku=sku,
                    master_on_hand=qty,
                    ats=qty,
                    pushed_value=qty,
                    velocity=world.velocity[(code, sku)],
                )
                for sku, qty in world.stock.items()
            }
            for code, conf in CHANNELS.items()
        }
        for channel in self.channels.values():
            channel.shows = dict(world.stock)  # in step at the start

    # --- the event loop -----------------------------------------------------------------------------------------

    def at(self, moment: float, action, *arguments) -> None:
        self.sequence += 1
        heapq.heappush(self.events, (moment, self.sequence, action, arguments))

    def run(self) -> Outcome:
        for order in self.world.orders:
            self.at(order.at, self.sell, order)
        if self.strategy == "full":
            moment = FULL_PUSH_EVERY
            while moment < self.world.hours * HOUR:
                self.at(moment, self.full_push)
                moment += FULL_PUSH_EVERY
        while self.events:
            moment, _, action, arguments = heapq.heappop(self.events)
            self.now = moment
            action(*arguments)
        self.outcome.lag = {code: sorted(lags) for code, lags in self.lags.items()}
        self.outcome.left = sum(self.unsold.values())
        return self.outcome

    # --- the world's side ---------------------------------------------------------------------------------------

    def sell(self, order: Order) -> None:
        channel = self.channels[order.channel]
        if channel.shows.get(order.sku, 0) < order.quantity:
            self.outcome.declined[order.channel] += 1
            return
        shown = channel.shows[order.sku]
        channel.shows[order.sku] -= order.quantity
        covered = min(order.quantity, self.unsold[order.sku])
        self.unsold[order.sku] -= covered
        self.outcome.sold[order.channel] += order.quantity
        if order.quantity > covered:
            self.outcome.oversold[order.channel] += order.quantity - covered
            known = self.master[order.sku] - (self.in_flight[order.sku] if self.count_in_flight else 0)
            why = "Switchyard knew, channel not yet told" if max(0, known) < shown else "sale not yet known"
            self.outcome.oversold_why[why] += order.quantity - covered
        if self.count_in_flight:
            self.at(self.now + order.seen_after, self.seen, order)
        self.at(self.now + order.recorded_after, self.record, order)

    def seen(self, order: Order) -> None:
        """Switchyard has the order (proposal): its units are allocated until the master records the sale."""
        self.in_flight[order.sku] += order.quantity
        self.at(self.now + 1.0, self.engine_run, [order.sku])  # the task that imported it asks for a push

    def record(self, order: Order) -> None:
        """The stock master records the sale: its figure drops, and (A) Fulfil's webhook announces it."""
        self.master[order.sku] -= order.quantity  # below zero after an oversell, as Fulfil would show it
        if self.count_in_flight:
            self.in_flight[order.sku] -= order.quantity
        for code in self.channels:
            self.unreflected.setdefault((code, order.sku), self.now)
        if self.strategy == "engine":
            self.at(self.now + WEBHOOK_SECONDS, self.engine_run, [order.sku])

    # --- strategy A: Switchyard's engine --------------------------------------------------------------------------

    def engine_run(self, skus: list[str]) -> None:
        """stock_push_run(skus=…): read the master now, compute ATS per channel, keep what changed."""
        from syncs.stock.ats import Buffer, available_to_sell

        for sku in skus:
            on_hand = self.master[sku]
            statuses = {"allocated": self.in_flight[sku]} if self.count_in_flight else {}
            for code, channel in self.channels.items():
                state = self.states[code][sku]
                state.master_on_hand = on_hand
                state.ats = available_to_sell(
                    on_hand=on_hand, statuses=statuses, subtracted=statuses.keys(), buffer=Buffer()
                )
                self.read_at[(code, sku)] = self.now
                if state.needs_push:
                    channel.pending.add(sku)
                else:  # the channel already shows it (it took the sale off itself): nothing to send
                    channel.pending.discard(sku)
                    self.unreflected.pop((code, sku), None)
        for channel in self.channels.values():
            self.engine_send(channel)

    def engine_send(self, channel: Channel) -> None:
        """Send the riskiest pending changes, as many as one call takes, when the budget and the last call allow."""
        from syncs.flows.stock_push import _risk

        if not channel.pending or self._later(channel, self.engine_send):
            return
        states = self.states[channel.code]
        batch = sorted((states[sku] for sku in channel.pending), key=_risk)[: channel.batch]
        took = channel.take(self.outcome)
        values = {state.sku: (state.ats, self.read_at[(channel.code, state.sku)]) for state in batch}
        channel.pending -= set(values)
        channel.busy_until = self.now + took
        self.at(channel.busy_until, self.landed, channel, values, self.engine_send)

    # --- strategy B: a full push on a schedule --------------------------------------------------------------------

    def full_push(self) -> None:
        from syncs.stock.ats import Buffer, available_to_sell

        for channel in self.channels.values():
            channel.queue = [
                (
                    sku,
                    (
                        available_to_sell(on_hand=self.master[sku], statuses={}, subtracted=(), buffer=Buffer()),
                        self.now,
                    ),
                )
                for sku in sorted(self.master)
            ]
            self.full_send(channel)

    def full_send(self, channel: Channel) -> None:
        if not channel.queue or self._later(channel, self.full_send):
            return
        values = dict(channel.queue[: channel.batch])
        del channel.queue[: channel.batch]
        channel.busy_until = self.now + channel.take(self.outcome)
        self.at(channel.busy_until, self.landed, channel, values, self.full_send)

    # --- shared ---------------------------------------------------------------------------------------------------

    def _later(self, channel: Channel, send) -> bool:
        """True (and a wake-up set) when the channel's last call is still out or its budget is spent."""
        wait = max(channel.busy_until - self.now, channel.wait())
        if wait <= 0:
            return False
        wake = self.now + wait
        if channel.wake_at is None or channel.wake_at <= self.now or wake < channel.wake_at:
            channel.wake_at = wake
            self.at(wake, send, channel)
        return True

    def landed(self, channel: Channel, values: dict[str, tuple[int, float]], send) -> None:
        """The channel took the values (each with the moment the master was read): it shows them from now, and
        Switchyard records them as accepted."""
        for sku, (value, read_at) in values.items():
            channel.shows[sku] = value
            self.states[channel.code][sku].pushed_value = value
            changed = self.unreflected.get((channel.code, sku))
            if changed is not None and read_at >= changed:
                self.lags[channel.code].append(self.now - changed)
                del self.unreflected[(channel.code, sku)]
        send(channel)


# --- reporting ---------------------------------------------------------------------------------------------------


def report(results: dict[str, Outcome], *, seed: int) -> None:
    codes = list(CHANNELS)
    print()
    print(
        f"{'strategy':<26} {'oversold':>8}  {'(' + ' / '.join(codes) + ')':<30} {'sold':>6} {'left':>5} "
        f"{'declined':>8} {'calls':>6} {'Centra mut.':>11} {'in budget':>9}  channel behind master: median/p95 s"
    )
    for name, outcome in results.items():
        by_channel = " / ".join(f"{outcome.oversold[code]:,}" for code in codes)
        lags = "; ".join(
            f"{code} {_median(outcome.lag.get(code, [])):.0f}/{_p95(outcome.lag.get(code, [])):.0f}" for code in codes
        )
        print(
            f"{name:<26} {sum(outcome.oversold.values()):>8,}  {by_channel:<30} {sum(outcome.sold.values()):>6,} "
            f"{outcome.left:>5,} {sum(outcome.declined.values()):>8,} {sum(outcome.calls.values()):>6,} "
            f"{outcome.mutations:>11,} {'yes' if within_budget(outcome) else 'NO':>9}  {lags}"
        )
    print()
    for name, outcome in results.items():
        reasons = ", ".join(f"{why} {units:,}" for why, units in sorted(outcome.oversold_why.items()))
        print(f"{name}: oversold units by cause: {reasons}")
    full = sum(results["B  full push every 15 min"].oversold.values())
    print()
    for name in ("A  engine as built", "A0 without spread/in-flight"):
        units = sum(results[name].oversold.values())
        ratio = units / full if full else float("inf")
        verdict = "met" if ratio <= 0.1 else "MISSED"
        print(
            f"seed {seed}: {name.split()[0]} oversold {units:,} units, B {full:,}: {ratio:.3f} of B (goal ≤ 0.1: {verdict})"
        )


def within_budget(outcome: Outcome) -> bool:
    """An independent check of the pacing: no window of any published limit saw more calls than it allows."""
    limits = {
        "centra": [("requests", 60, 10), ("mutations", 100, 10), ("mutations", 1000, 3600)],
        "john-lewis": [("requests", 250, 60)],
        "zalando": [("requests", 20, 1)],
    }
    for code, windows in limits.items():
        for kind, limit, seconds in windows:
            moments = outcome.call_times[(code, kind)]
            # A call exactly one window after another may go (the limiter's rule); 1 µs for the float arithmetic.
            if any(moments[i + limit] - moments[i] < seconds - 1e-6 for i in range(len(moments) - limit)):
                return False
    return True


def _median(values: list[float]) -> float:
    return values[len(values) // 2] if values else 0.0


def _p95(values: list[float]) -> float:
    return values[min(len(values) - 1, round(0.95 * (len(values) - 1)))] if values else 0.0


if __name__ == "__main__":
    sys.exit(main())
