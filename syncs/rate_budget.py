"""Rate limits shared by every worker on every machine.

Each connector paces its own calls with a ``RateLimiter`` (syncs.connectors.http): enough for one process. A brand
running several django-q2 clusters would otherwise spend its integration's budget several times over (Centra allows
1,000 mutations an hour per integration, not per worker) and meet 429s. ``SharedRateLimiter`` keeps the recent
calls of each bucket in one database row, locked while a call takes its place, so every process sees every other's
calls. While a bucket has plenty of room, a worker takes a few places at once for its next fraction of a second
(recorded at the end of that time, so no window ever undercounts), which keeps the row from becoming a lock every
call waits on. ``connections`` gives each client shared limiters when ``RATE_LIMITS_SHARED`` is on (the default).

A call made while the caller is inside a database transaction cannot lock the shared row without holding it until
that transaction ends (and so stalling every other worker): it is paced by the process's own limiter instead.
"""

import time
from collections import deque

from django.db import IntegrityError, connection, transaction

from syncs.connectors.http import RateLimiter
from syncs.models import RateBudget

LEASE_MAX = 25  # places one worker takes ahead at most


class SharedRateLimiter(RateLimiter):
    """A ``RateLimiter`` whose calls are counted across processes, in the ``RateBudget`` row named ``key``."""

    def __init__(self, key: str, windows, *, sleep=time.sleep) -> None:
        super().__init__(windows, clock=time.time, sleep=sleep)  # wall-clock: comparable across machines
        self.key = key
        # Places taken ahead, to be used within ``lease_seconds`` (a tenth of the shortest window, at most 1 s).
        self.lease_seconds = min(1.0, min((seconds for _, seconds in self.windows), default=10.0) / 10)
        self._leased, self._lease_until = 0, 0.0

    def _from_lease(self) -> bool:
        with self._lock:
            if self._leased > 0 and self._clock() < self._lease_until:
                self._leased -= 1
                return True
            self._leased = 0
            return False

    def wait_time(self) -> float:
        if connection.in_atomic_block:
            return super().wait_time()
        with self._lock:
            if self._leased > 0 and self._clock() < self._lease_until:
                return 0.0
        budget = RateBudget.objects.filter(key=self.key).values_list("calls", flat=True).first() or []
        with self._lock:
            self._calls = deque(budget)
            return self._wait_time(self._clock())

    def acquire(self) -> float:
        if connection.in_atomic_block:
            return super().acquire()
        if self._from_lease():
            return 0.0
        waited = 0.0
        while True:
            wait = self._take_place()
            if wait <= 0:
                return waited
            self._sleep(wait)
            waited += wait

    def _take_place(self) -> float:
        """Take a place for a call now if every window has room (else return the seconds to wait). While every
        window has plenty of room, take a few places at once (at most a quarter of the room left, LEASE_MAX) for
        the calls of the next ``lease_seconds``, so a busy worker does not lock the row for every call. Places
        taken ahead are recorded at the end of their lease: later than any call made with them, so every window
        still counts each call for at least as long as it should."""
        with transaction.atomic():
            budget = self._locked_budget()
            with self._lock:
                self._calls = deque(sorted(budget.calls))
                now = self._clock()
                wait = self._wait_time(now)  # drops calls older than the longest window
                if wait > 0:
                    return wait
                room = min(
                    limit - sum(1 for at in self._calls if now - at < seconds) for limit, seconds in self.windows
                )
                places = max(1, min(LEASE_MAX, room // 4))
                at = now + self.lease_seconds if places > 1 else now
                self._calls.extend([at] * places)
                self._leased, self._lease_until = places - 1, at
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
