"""Serve every simulator from one process: /centra/, /fulfil/, /virtualstock/, /inventory-planner/, /marketplace/."""

import logging
import threading

from werkzeug.serving import make_server

from syncs.sandbox.core import SandboxApp, Simulator


def build_simulators(connections: dict | None = None) -> dict[str, Simulator]:
    """One simulator per system. ``connections`` (settings.CONNECTIONS) sets the credentials each accepts, so
    the console's configured credentials work against the sandbox; without it, the sandbox defaults."""
    from syncs.sandbox.centra import CentraSimulator
    from syncs.sandbox.fulfil import FulfilSimulator
    from syncs.sandbox.inventory_planner import InventoryPlannerSimulator
    from syncs.sandbox.marketplace import MarketplaceSimulator
    from syncs.sandbox.virtualstock import VirtualstockSimulator

    if connections is None:
        simulators = [
            CentraSimulator(),
            FulfilSimulator(),
            VirtualstockSimulator(),
            InventoryPlannerSimulator(),
            MarketplaceSimulator(),
        ]
    else:
        centra, fulfil = connections["centra"], connections["fulfil"]
        virtualstock, planner = connections["virtualstock"], connections["inventory_planner"]
        marketplace = connections["marketplace"]
        simulators = [
            CentraSimulator(token=centra["token"], order_api_key=centra["order_api_key"]),
            FulfilSimulator(api_key=fulfil["api_key"], webhook_secret=fulfil["webhook_secret"]),
            VirtualstockSimulator(username=virtualstock["username"], password=virtualstock["password"]),
            InventoryPlannerSimulator(api_key=planner["api_key"], account=planner["account"]),
            MarketplaceSimulator(api_key=marketplace["api_key"], webhook_secret=marketplace["webhook_secret"]),
        ]
    return {simulator.name: simulator for simulator in simulators}


class RunningSandbox:
    """A sandbox served on 127.0.0.1 from a background thread (tests, benchmarks, the demo command)."""

    def __init__(self, app: SandboxApp, port: int = 0, *, log_requests: bool = False) -> None:
        if not log_requests:
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.app = app
        self.server = make_server("127.0.0.1", port, app, threaded=True)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="sandbox", daemon=True)

    def start(self) -> "RunningSandbox":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def simulator(self, name: str) -> Simulator:
        return self.app.simulators[name]
