"""A generic marketplace REST API simulator."""

from syncs.sandbox.core import Simulator


class MarketplaceSimulator(Simulator):
    name = "marketplace"

    def seed(self, body: dict) -> dict:
        return {}
