"""Centra Integration API (GraphQL) simulator."""

from syncs.sandbox.core import Simulator


class CentraSimulator(Simulator):
    name = "centra"

    def seed(self, body: dict) -> dict:
        return {}
