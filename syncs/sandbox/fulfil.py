"""Fulfil REST API v2 simulator."""

from syncs.sandbox.core import Simulator


class FulfilSimulator(Simulator):
    name = "fulfil"

    def seed(self, body: dict) -> dict:
        return {}
