"""Shared fixtures: named people, one per role, as on a brand's team."""

import contextlib

import pytest
import requests
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from syncs.sandbox.core import SandboxApp
from syncs.sandbox.server import RunningSandbox, build_simulators

PASSWORD = "a-long-test-password"


def make_person(username: str, role: str | None) -> object:
    user = get_user_model().objects.create_user(username=username, password=PASSWORD, is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def ada(db):
    """Ada runs the integrations: integration_admin."""
    return make_person("ada", "integration_admin")


@pytest.fixture
def erin(db):
    """Erin runs the web shop: ecommerce."""
    return make_person("erin", "ecommerce")


@pytest.fixture
def fred(db):
    """Fred closes the books: finance."""
    return make_person("fred", "finance")


@pytest.fixture
def cora(db):
    """Cora answers customers: customer_service."""
    return make_person("cora", "customer_service")


@pytest.fixture
def olga(db):
    """Olga runs the warehouse side: operations."""
    return make_person("olga", "operations")


@pytest.fixture
def client_for():
    """A browser signed in as the given person."""

    def sign_in(user) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return sign_in


@pytest.fixture
def worker_cluster(transactional_db, tmp_path, request):
    """A real django-q2 cluster (`manage.py qcluster`) working against the test database, stopped afterwards.

    Its output goes to ``process.log_path``."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from django.db import connection

    database = connection.settings_dict
    url = "postgres://{user}{password}@{host}:{port}/{name}".format(
        user=database["USER"] or "postgres",
        password=f":{database['PASSWORD']}" if database["PASSWORD"] else "",
        host=database["HOST"] or "127.0.0.1",
        port=database["PORT"] or 5432,
        name=database["NAME"],
    )
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "console.settings.test",
        "TEST_DATABASE_URL": url,
        "Q_POLL": "0.2",
        "Q_WORKERS": "2",
        "EXCEPTION_RETRY_BASE_SECONDS": "0",
    }
    if "connected" in request.fixturenames:
        environment["SANDBOX_URL"] = request.getfixturevalue("connected").url
    log_path = tmp_path / "qcluster.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=Path(__file__).resolve().parent,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    process.log_path = log_path
    try:
        yield process
    finally:
        # The cluster's sentinel stops its own workers on SIGTERM; anything left after that is killed.
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        connection.close()


# --- The sandbox, served over real HTTP on 127.0.0.1 -----------------------------------------------------------


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


@pytest.fixture
def connected(sandbox, settings):
    """Switchyard's connections pointed at the test sandbox (the settings and every cached client)."""
    from syncs import connections

    settings.SANDBOX_URL = sandbox.url
    settings.CONNECTIONS = {
        "centra": {
            **settings.CONNECTIONS["centra"],
            "base_url": f"{sandbox.url}/centra",
            "order_api_url": f"{sandbox.url}/centra/api/order",
        },
        "fulfil": {**settings.CONNECTIONS["fulfil"], "base_url": f"{sandbox.url}/fulfil/api/v2"},
        "virtualstock": {**settings.CONNECTIONS["virtualstock"], "base_url": f"{sandbox.url}/virtualstock"},
        "inventory_planner": {
            **settings.CONNECTIONS["inventory_planner"],
            "base_url": f"{sandbox.url}/inventory-planner/api/v1",
        },
        "marketplace": {**settings.CONNECTIONS["marketplace"], "base_url": f"{sandbox.url}/marketplace/api/v1"},
    }
    connections.clients_forget()
    yield sandbox
    connections.clients_forget()


@pytest.fixture
def run_going_elsewhere(db):
    """Call with a flow's name: from another database connection, hold what a worker running that flow holds (a
    share of its run lock, syncs.runs), so ``flow_running`` sees a live run, until the test ends."""
    import psycopg
    from django.db import connection

    from syncs.runs import run_lock_key

    held = []

    def hold(flow: str) -> None:
        database = connection.settings_dict
        other = psycopg.connect(
            host=database["HOST"] or "127.0.0.1",
            port=database["PORT"] or 5432,
            user=database["USER"] or "postgres",
            password=database["PASSWORD"] or None,
            dbname=database["NAME"],
            autocommit=True,
        )
        other.execute("SELECT pg_advisory_lock_shared(%s)", [run_lock_key(flow)])
        held.append(other)

    yield hold
    for other in held:
        other.close()
