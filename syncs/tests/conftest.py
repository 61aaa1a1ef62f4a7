"""The sandbox, served over real HTTP on 127.0.0.1 for the duration of a test."""

import pytest
import requests

from syncs.sandbox.core import SandboxApp
from syncs.sandbox.server import RunningSandbox, build_simulators


@pytest.fixture(scope="session")
def sandbox_server():
    running = RunningSandbox(SandboxApp(build_simulators())).start()
    yield running
    running.stop()


@pytest.fixture
def sandbox(sandbox_server):
    """A clean sandbox: every simulator reset before the test."""
    for simulator in sandbox_server.app.simulators.values():
        simulator.reset()
    return sandbox_server


class Control:
    """The control API of one simulator, spoken to over HTTP as a newcomer would with curl."""

    def __init__(self, url: str) -> None:
        self.url = url

    def seed(self, **body) -> dict:
        response = requests.post(f"{self.url}/_sandbox/seed", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def faults(self, **faults) -> dict:
        response = requests.post(f"{self.url}/_sandbox/faults", json=faults, timeout=10)
        response.raise_for_status()
        return response.json()

    def state(self) -> dict:
        return requests.get(f"{self.url}/_sandbox/state", timeout=10).json()

    def calls(self) -> list[dict]:
        return requests.get(f"{self.url}/_sandbox/calls", timeout=10).json()

    def operations(self) -> list[str]:
        return [call["operation"] for call in self.calls()]


@pytest.fixture
def control(sandbox):
    def for_system(name: str) -> Control:
        return Control(f"{sandbox.url}/{name}")

    return for_system
