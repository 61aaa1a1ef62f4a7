"""Centra simulator: the Integration API (GraphQL) and the REST Order API."""

from syncs.sandbox.centra.simulator import CentraSimulator

__all__ = ["CentraSimulator"]
