"""Shared fixtures: named people, one per role, as on a brand's team."""

import contextlib

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

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
def worker_cluster(transactional_db, tmp_path):
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
    }
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
