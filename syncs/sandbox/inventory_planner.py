"""Inventory Planner API v1 simulator."""

from syncs.sandbox.core import Simulator


class InventoryPlannerSimulator(Simulator):
    name = "inventory-planner"

    def seed(self, body: dict) -> dict:
        return {}
