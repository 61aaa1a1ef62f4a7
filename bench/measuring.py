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


def timed_sandbox(connections: dict):
    """The sandbox served on 127.0.0.1 in this process (not started), adding up into ``sandbox.app.seconds`` the
    processor time each system spends answering (by its path's first part) and, under "(server)", each request's
    thread's whole time, HTTP parsing and writing included (waiting for the client's bytes is not the sandbox's)."""
    from collections import defaultdict

    from syncs.sandbox.core import SandboxApp
    from syncs.sandbox.server import RunningSandbox, build_simulators

    class TimedSandboxApp(SandboxApp):
        def __init__(self, simulators) -> None:
            super().__init__(simulators)
            self.seconds: dict[str, float] = defaultdict(float)
            self.lock = threading.Lock()

        def __call__(self, environ, start_response):
            started = time.thread_time()
            try:
                return super().__call__(environ, start_response)
            finally:
                system = environ.get("PATH_INFO", "/").strip("/").partition("/")[0]
                with self.lock:
                    self.seconds[system] += time.thread_time() - started

    sandbox = RunningSandbox(TimedSandboxApp(build_simulators(connections)))
    app = sandbox.app

    class TimedHandler(sandbox.server.RequestHandlerClass):
        def handle_one_request(self) -> None:
            started = time.thread_time()
            try:
                super().handle_one_request()
            finally:
                with app.lock:
                    app.seconds["(server)"] += time.thread_time() - started

    sandbox.server.RequestHandlerClass = TimedHandler
    return sandbox


def connections_to_sandbox(settings, url: str, raised: int) -> None:
    """Point every connection at the sandbox served at ``url`` with rate limits no run reaches (the bench measures
    Switchyard, not the pacing), and forget the clients built before."""
    from syncs import connections

    conf = settings.CONNECTIONS
    settings.CONNECTIONS = {
        "centra": {
            **conf["centra"],
            "base_url": f"{url}/centra",
            "order_api_url": f"{url}/centra/api/order",
            "requests_per_10s": raised,
            "mutations_per_10s": raised,
            "mutations_per_hour": raised,
        },
        "fulfil": {**conf["fulfil"], "base_url": f"{url}/fulfil/api/v2", "requests_per_second": raised},
        "virtualstock": {**conf["virtualstock"], "base_url": f"{url}/virtualstock", "requests_per_minute": raised},
        "inventory_planner": {**conf["inventory_planner"], "base_url": f"{url}/inventory-planner/api/v1"},
        "marketplace": {**conf["marketplace"], "base_url": f"{url}/marketplace/api/v1", "requests_per_second": raised},
    }
    settings.SANDBOX_URL = url
    connections.clients_forget()
