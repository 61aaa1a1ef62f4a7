"""Rate limits shared by every worker on every machine.

Each connector paces its own calls with a ``RateLimiter`` (syncs.connectors.http): enough for one process. A brand
running several django-q2 clusters would otherwise spend its integration's budget several times over (Centra allows
1,000 mutations an hour per integration, not per worker) and meet 429s. ``SharedRateLimiter`` keeps the recent
calls of each bucket in one database row, locked while a call takes its place, so every process sees every other's
calls. ``connections`` gives each client shared limiters when ``RATE_LIMITS_SHARED`` is on (the default).

A call made while the caller is inside a database transaction cannot lock the shared row without holding it until
that transaction ends (and so stalling every other worker): it is paced by the process's own limiter instead.
"""

import time
from collections import deque

from django.db import IntegrityError, connection, transaction

from syncs.connectors.http import RateLimiter
from syncs.models import RateBudget


class SharedRateLimiter(RateLimiter):
    """A ``RateLimiter`` whose calls are counted across processes, in the ``RateBudget`` row named ``key``."""

    def __init__(self, key: str, windows, *, sleep=time.sleep) -> None:
        super().__init__(windows, clock=time.time, sleep=sleep)  # wall-clock: comparable across machines
        self.key = key

    def wait_time(self) -> float:
        if connection.in_atomic_block:
            return super().wait_time()
        budget = RateBudget.objects.filter(key=self.key).values_list("calls", flat=True).first() or []
        with self._lock:
            self._calls = deque(budget)
            return self._wait_time(self._clock())

    def acquire(self) -> float:
        if connection.in_atomic_block:
            return super().acquire()
        waited = 0.0
        while True:
            wait = self._take_place()
            if wait <= 0:
                return waited
            self._sleep(wait)
            waited += wait

    def _take_place(self) -> float:
        """Record a call now if every window has room; else the seconds to wait."""
        with transaction.atomic():
            budget = self._locked_budget()
            with self._lock:
                self._calls = deque(budget.calls)
                now = self._clock()
                wait = self._wait_time(now)  # drops calls older than the longest window
                if wait > 0:
                    return wait
                self._calls.append(now)
                budget.calls = list(self._calls)
            budget.save(update_fields=["calls", "updated_at"])
            return 0.0

    def _locked_budget(self) -> RateBudget:
        budget = RateBudget.objects.select_for_update().filter(key=self.key).first()
        if budget is not None:
            return budget
        try:
            with transaction.atomic():
                RateBudget.objects.create(key=self.key)
        except IntegrityError:
            pass  # another worker made it first
        return RateBudget.objects.select_for_update().get(key=self.key)


def shared_like(key: str, limiter: RateLimiter | None) -> RateLimiter | None:
    """A shared limiter with the same windows as ``limiter`` (None stays None)."""
    return SharedRateLimiter(key, limiter.windows) if limiter is not None else None
