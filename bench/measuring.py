"""Shared by the benchmarks: what a measured stretch of code cost in garbage collection and resident memory."""

import gc
import os
import threading
import time


class CollectorTime:
    """Seconds Python's garbage collector spends while in use."""

    def __enter__(self) -> "CollectorTime":
        self.seconds, self._started = 0.0, None
        gc.callbacks.append(self._callback)
        return self

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            self.seconds += time.perf_counter() - self._started

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self._callback)


class PeakRss:
    """The process's resident memory, sampled every 10 ms on a thread while in use: at the start and the peak."""

    def __enter__(self) -> "PeakRss":
        self.start = self.peak = resident_memory()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, resident_memory())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, resident_memory())


def resident_memory() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
