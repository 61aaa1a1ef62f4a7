"""Credentials never leave the settings: with a known value for every credential, every flow is driven into
failures against the sandbox (refused credentials, then server errors), the console's pages are rendered, and
neither the pages, the logs nor any row in the database holds a credential, raw or encoded."""

import base64
import json
import logging
from urllib.parse import quote, quote_plus

import pytest
import requests
from django.db import connection
from django.urls import reverse

from syncs import connections
from syncs.flows import FLOWS
from syncs.sandbox import SANDBOX_PATHS
from syncs.sandbox.core import SandboxApp
from syncs.sandbox.server import RunningSandbox, build_simulators
from syncs.tasks import run

pytestmark = pytest.mark.django_db

# Each holds characters that URL-encoding, JSON and base64 write differently, so every form can be looked for.
SECRETS = {
    ("centra", "token"): "ctok+Centra/Token=7f3a91",
    ("centra", "order_api_key"): "cord+Order/Key=2b8c44",
    ("centra", "webhook_secret"): "cwhk+Hook/Secret=9d1e07",
    ("fulfil", "api_key"): "ffkey+Fulfil/Key=5a6b3c",
    ("fulfil", "webhook_secret"): base64.b64encode(b"fulfil-webhook-key-4e5f").decode(),
    ("virtualstock", "password"): "vspw+Pass/Word=8c7d6e",
    ("inventory_planner", "api_key"): "ipkey+Planner/Key=1a2b3c",
    ("marketplace", "api_key"): "mpkey+Market/Key=6f5e4d",
    ("marketplace", "webhook_secret"): "mpwhk+Market/Hook=3c2b1a",
}
OTHER_SECRETS = {
    "IP_FEED_PASSWORD": "feedpw+Feed/Pass=7a8b9c",
    "METRICS_TOKEN": "metrics+Token/Value=0d1e2f",
}


def forms_of(secret: str, username: str = "") -> set[str]:
    """The ways a credential can be written down: as it is, URL-encoded, JSON-escaped, base64 (alone and as HTTP
    basic auth)."""
    forms = {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        base64.b64encode(secret.encode()).decode(),
    }
    if username:
        forms.add(base64.b64encode(f"{username}:{secret}".encode()).decode())
    return forms


@pytest.fixture
def known_secrets(settings):
    """Every credential set to a known value, and a sandbox of its own that accepts them; yields every form of
    every credential."""
    configured = {
        system: {**conf, **{name: value for (owner, name), value in SECRETS.items() if owner == system}}
        for system, conf in settings.CONNECTIONS.items()
    }
    sandbox = RunningSandbox(SandboxApp(build_simulators(configured))).start()
    settings.SANDBOX_URL = sandbox.url
    base_paths = {"fulfil": "/api/v2", "inventory_planner": "/api/v1", "marketplace": "/api/v1"}
    for system, path in SANDBOX_PATHS.items():
        configured[system]["base_url"] = f"{sandbox.url}/{path}{base_paths.get(system, '')}"
    configured["centra"]["order_api_url"] = f"{sandbox.url}/centra/api/order"
    settings.CONNECTIONS = configured
    for name, value in OTHER_SECRETS.items():
        setattr(settings, name, value)
    connections.clients_forget()
    forms = set()
    for (system, _), value in SECRETS.items():
        forms |= forms_of(value, configured[system].get("username", ""))
    for value in OTHER_SECRETS.values():
        forms |= forms_of(value)
    sandbox.forms = forms
    try:
        yield sandbox
    finally:
        connections.clients_forget()
        sandbox.stop()


def control(sandbox, system: str, action: str, **body) -> None:
    response = requests.post(f"{sandbox.url}/{SANDBOX_PATHS[system]}/_sandbox/{action}", json=body, timeout=30)
    response.raise_for_status()


def every_row_as_text() -> str:
    """Every row of every table, as JSON text."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        tables = [name for (name,) in cursor.fetchall()]
        texts = []
        for table in tables:
            cursor.execute(f"SELECT coalesce(string_agg(row_to_json(t)::text, E'\\n'), '') FROM \"{table}\" t")
            texts.append(cursor.fetchone()[0])
    return "\n".join(texts)


def run_as_a_worker_would(flow: str) -> None:
    """Run a flow; one that fails as a whole is recorded failed and its error logged, as the worker would."""
    try:
        run(flow, "manual")
    except Exception:
        logging.getLogger("django_q").exception("Task %s failed", flow)


def record_failure(system: str, call) -> None:
    """Make one call that the system refuses and keep the failure in the queue, as a flow would."""
    from exceptions.services import failure_record
    from syncs.connectors.errors import ConnectorError

    try:
        call()
    except ConnectorError as error:
        failure_record(
            flow="secrets_check", object_type="call", object_ref=system, error=error, title=f"{system} refused"
        )
    else:
        raise AssertionError(f"{system} did not refuse the call")


def leaks(text: str, forms: set[str]) -> list[str]:
    return sorted(form for form in forms if form in text)


def test_no_credential_is_shown_logged_or_stored_when_every_flow_fails(known_secrets, client_for, caplog, settings):
    from django.contrib.auth import get_user_model

    from exceptions.models import SyncException
    from syncs.models import SyncRun

    sandbox = known_secrets
    settings.EXCEPTION_AUTO_RETRIES = 0
    caplog.set_level(logging.DEBUG)
    for system in SANDBOX_PATHS:
        control(sandbox, system, "seed", generate={"seed": 11, "products": 6, "orders": 12})
    for flow in sorted(FLOWS):  # working: the demo data's own problems (unmapped SKUs, carriers…)
        run_as_a_worker_would(flow)
    for system in SANDBOX_PATHS:  # every system refusing a share of calls as invalid
        control(sandbox, system, "faults", error_rate=0.5, error_status=422)
    for flow in sorted(FLOWS):
        run_as_a_worker_would(flow)
    for system in SANDBOX_PATHS:  # a refused write, its request and response kept with the exception
        control(sandbox, system, "faults", error_rate=1.0, error_status=422)
    record_failure("fulfil", lambda: connections.fulfil().create("sale.sale", [{"reference": "WEB-1000"}]))
    record_failure("virtualstock", lambda: connections.virtualstock().acknowledge(1, []))
    record_failure("centra", lambda: connections.centra().order(1000))
    record_failure("marketplace", lambda: connections.marketplace().acknowledge("MP-1"))
    record_failure("inventory_planner", lambda: connections.inventory_planner().update_variant("v-1", lead_time=3))
    for system in SANDBOX_PATHS:  # and failing outright
        control(sandbox, system, "faults", error_rate=1.0, error_status=500)
    for flow in sorted(FLOWS):
        run_as_a_worker_would(flow)
    for system in SANDBOX_PATHS:  # and refusing the credentials
        control(sandbox, system, "faults")
    for simulator in sandbox.app.simulators.values():
        for name in ("token", "order_api_key", "api_key", "password"):
            if hasattr(simulator, name):
                setattr(simulator, name, "rotated-elsewhere")
    for flow in sorted(FLOWS):
        run_as_a_worker_would(flow)
    assert SyncRun.objects.exists()
    assert SyncException.objects.filter(flow="secrets_check").exclude(response={}).count() == 5

    root = get_user_model().objects.create_superuser("root", password="a-long-root-password")
    client = client_for(root)
    pages = [
        reverse("dashboard"),
        reverse("exceptions:queue"),
        reverse("exceptions:playbooks"),
        reverse("runs:list"),
        reverse("stock:pairs"),
        reverse("reconciliation:overview"),
        reverse("mappings"),
        reverse("metrics"),
        "/admin/",
        "/admin/exceptions/syncexception/",
        "/admin/django_q/failure/",
        "/admin/django_q/success/",
        reverse("exceptions_api:exception-list"),
    ]
    for exception in SyncException.objects.all():
        pages += [
            reverse("exceptions:detail", args=[exception.pk]),
            reverse("exceptions_api:exception-detail", args=[exception.pk]),
            f"/admin/exceptions/syncexception/{exception.pk}/change/",
        ]
    for sync_run in SyncRun.objects.all():
        pages.append(reverse("runs:detail", args=[sync_run.pk]))
    rendered = []
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, (page, response.status_code)
        rendered.append(response.content.decode())

    forms = sandbox.forms
    assert leaks("\n".join(rendered), forms) == []
    assert leaks("\n".join(record.getMessage() for record in caplog.records), forms) == []
    assert leaks(caplog.text, forms) == []
    assert leaks(every_row_as_text(), forms) == []


CREDENTIAL_VARIABLES = {
    "CENTRA_API_TOKEN": ("centra", "token"),
    "CENTRA_ORDER_API_KEY": ("centra", "order_api_key"),
    "CENTRA_WEBHOOK_SECRET": ("centra", "webhook_secret"),
    "FULFIL_API_KEY": ("fulfil", "api_key"),
    "FULFIL_WEBHOOK_SECRET": ("fulfil", "webhook_secret"),
    "VIRTUALSTOCK_PASSWORD": ("virtualstock", "password"),
    "INVENTORY_PLANNER_API_KEY": ("inventory_planner", "api_key"),
    "MARKETPLACE_API_KEY": ("marketplace", "api_key"),
    "MARKETPLACE_WEBHOOK_SECRET": ("marketplace", "webhook_secret"),
}


def test_every_connector_credential_is_read_from_a_file_named_by_its_FILE_variable(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    environment = {key: value for key, value in os.environ.items() if key not in CREDENTIAL_VARIABLES}
    for variable in CREDENTIAL_VARIABLES:
        path = tmp_path / variable.lower()
        path.write_text(f"from-file-{variable.lower()}\n")
        environment[f"{variable}_FILE"] = str(path)
        environment[variable] = "from-the-environment-itself"  # the file wins
    script = (
        "import json, django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'console.settings.test'; django.setup(); "
        "from django.conf import settings; print(json.dumps(settings.CONNECTIONS))"
    )
    output = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    configured = json.loads(output.strip().splitlines()[-1])
    for variable, (system, name) in CREDENTIAL_VARIABLES.items():
        assert configured[system][name] == f"from-file-{variable.lower()}", variable
