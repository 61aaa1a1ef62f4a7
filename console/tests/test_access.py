"""Every URL refuses anonymous users; signed-in staff see the pages their role allows."""

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.resolvers import RegexPattern

pytestmark = pytest.mark.django_db

# URLs that must answer without a login, and why.
PUBLIC = {
    "/login/",  # where people sign in
    "/admin/login/",  # the admin's own sign-in page
}
# Answer without a login, 200 when healthy and 503 when not (this test records no worker heartbeat).
HEALTH_CHECKS = {"/healthz"}  # load balancers; says which checks pass and nothing more (console/tests/test_metrics.py)


def sample_path(pattern) -> str:
    """A concrete path for one URL pattern, with sample values in place of its parameters."""
    text = str(pattern)
    if isinstance(pattern, RegexPattern):
        text = text.removeprefix("^").removesuffix("$").removesuffix("\\Z")
        text = re.sub(r"\(\?P<app_label>[^)]*\)", "mappings", text)
        return re.sub(r"\((?:\?P<\w+>)?[^)]*\)", "1", text)
    return re.sub(r"<(?:\w+:)?\w+>", "1", text)


def every_url(resolver=None, prefix="") -> list[str]:
    """Every route in the URL map, with sample values in place of its parameters."""
    urls = []
    for entry in (resolver or get_resolver()).url_patterns:
        path = prefix + sample_path(entry.pattern)
        if isinstance(entry, URLResolver):
            urls.extend(every_url(entry, path))
        elif isinstance(entry, URLPattern):
            urls.append("/" + path)
    return sorted(set(urls))


def test_the_url_walk_finds_the_console_and_the_admin():
    urls = every_url()
    assert {"/", "/mappings/", "/admin/mappings/carriermapping/", "/admin/mappings/carriermapping/1/change/"} <= set(
        urls
    )


@pytest.mark.parametrize("url", every_url())
def test_every_url_refuses_anonymous_users(client, url):
    if url in PUBLIC:
        assert client.get(url).status_code == 200
        return
    if url in HEALTH_CHECKS:
        assert client.get(url).status_code in (200, 503)
        assert client.post(url).status_code == 405
        return
    for method in (client.get, client.post):
        response = method(url)
        assert response.status_code in (301, 302, 401, 403, 404, 405), (url, response.status_code)
        if response.status_code in (301, 302):
            assert "login" in response["Location"], (url, response["Location"])


@pytest.mark.parametrize("person", ["ada", "erin", "fred", "cora", "olga"])
def test_every_role_sees_the_dashboard_and_the_mappings(person, request, client_for):
    client = client_for(request.getfixturevalue(person))
    assert client.get(reverse("dashboard")).status_code == 200
    assert client.get(reverse("mappings")).status_code == 200


def test_the_mappings_page_offers_changes_only_to_those_who_may_make_them(ada, fred, client_for):
    import_url = reverse("admin:mappings_carriermapping_import")
    assert import_url in client_for(ada).get(reverse("mappings")).content.decode()
    page = client_for(fred).get(reverse("mappings")).content.decode()
    assert import_url not in page
    assert reverse("admin:mappings_carriermapping_export") in page


def test_signing_in_leads_to_the_dashboard(ada, client):
    from conftest import PASSWORD

    response = client.post(reverse("login"), {"username": "ada", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard")
    assert client.get(reverse("dashboard")).status_code == 200


def test_a_wrong_password_is_refused_with_a_message(ada, client):
    response = client.post(reverse("login"), {"username": "ada", "password": "wrong"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_signing_out_takes_a_post(ada, client_for):
    client = client_for(ada)
    assert client.get(reverse("logout")).status_code == 405
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("dashboard")).status_code == 302


def test_the_dashboard_shows_each_connection_but_never_a_credential(ada, client_for, settings):
    settings.CONNECTIONS = {
        **settings.CONNECTIONS,
        "fulfil": {
            **settings.CONNECTIONS["fulfil"],
            "base_url": "https://brand.fulfil.io/api/v2",
            "api_key": "live-key-9f8e7d6c5b4a",
        },
    }
    page = client_for(ada).get(reverse("dashboard")).content.decode()
    assert "brand.fulfil.io" in page and "live" in page
    assert "live-key-9f8e7d6c5b4a" not in page
    assert settings.CONNECTIONS["centra"]["token"] not in page


# --- every URL, every role ------------------------------------------------------------------------------------------
# Everyone signed in reads every page. What a role may change is said once here, per URL, from the rules the code
# follows (console.roles, the roles' model permissions, console.flow_starts, the queue's team ownership): a person
# outside it who posts there is refused with a 403 and nothing is written. A URL that accepts a POST and is not
# listed fails the walk, so a new action cannot arrive without deciding who may take it.

PEOPLE = ["ada", "erin", "fred", "cora", "olga"]
ROLE_OF = {
    "ada": "integration_admin",
    "erin": "ecommerce",
    "fred": "finance",
    "cora": "customer_service",
    "olga": "operations",
}
EVERYONE = frozenset(ROLE_OF.values())
# Not behind the sign-in, each with its own credential (tested in syncs/tests/test_webhooks*.py, test_feeds.py and
# console/tests/test_metrics.py), or the sign-in itself.
OWN_CREDENTIALS = {"login", "logout", "webhook", "metrics", "healthz", "feeds:planner_products"}
OWN_CREDENTIALS |= {"feeds:planner_sales_orders", "admin:login", "admin:logout"}
OWNERS = frozenset({"integration_admin", "finance"})  # of the finance exception the walk acts on
# url name -> (the roles that may POST there, the exception or row it acts on, the form it posts)
WRITERS = {
    "exceptions:retry": (OWNERS, "finance", {}),
    "exceptions:resolve": (OWNERS, "finance", {"note": "Fixed at the source."}),
    "exceptions:ignore": (OWNERS, "finance", {"note": "Not worth fixing."}),
    "exceptions:assign": (OWNERS, "finance", {"team": "operations"}),
    "exceptions:reassert": (frozenset({"integration_admin", "ecommerce"}), "drift", {}),
    "exceptions:create_mapping": (frozenset({"integration_admin"}), "carrier", {"target_code": "DHL-X"}),
    "exceptions_api:exception-retry": (OWNERS, "finance", {}),
    "exceptions_api:exception-resolve": (OWNERS, "finance", {"note": "Fixed at the source."}),
    "exceptions_api:exception-ignore": (OWNERS, "finance", {"note": "Not worth fixing."}),
    "exceptions_api:exception-assign": (OWNERS, "finance", {"team": "operations"}),
    "reconciliation:run": (frozenset({"integration_admin", "finance"}), None, {"since": "2026-01-01"}),
    "reconciliation:sign_off": (frozenset({"integration_admin", "finance"}), "day", {"note": "Checked."}),
    "reconciliation:reopen": (frozenset({"integration_admin", "finance"}), "day", {}),
    "runs:start": (frozenset({"integration_admin", "operations"}), None, {"flow": "stock_push"}),
    "stock:buffer": (frozenset({"integration_admin", "ecommerce"}), None, {"buffer": "3"}),
}
# Refused to anyone when asked without their query (which flow to start; which field to complete).
ASKED_WITHOUT_PARAMETERS = {"runs:start", "admin:autocomplete"}
# Everyone may post; the action is taken only on the exceptions the person's team owns (tested below).
BULK = {"exceptions:bulk", "exceptions_api:exception-bulk"}


@pytest.fixture
def world(db):
    """One of everything the URLs name: exceptions owned by different teams, a run, a reconciled day, an order."""
    from datetime import date

    from django.utils import timezone
    from django_q.models import Task
    from rest_framework.authtoken.models import Token

    from exceptions.services import failure_record
    from mappings.models import Channel
    from mappings.services import MissingMapping
    from syncs.connectors.errors import DataError
    from syncs.models import Link, OrderReconciliation, SyncRun

    def record(error, ref, kind_code=None, **extra):
        return failure_record(
            flow="order_import",
            object_type="order",
            object_ref=ref,
            error=error,
            title=ref,
            kind_code=kind_code,
            **extra,
        )

    money = DataError("10.01 EUR for 3 units is not a whole unit price", system="virtualstock", operation="x")
    drift = DataError("the title differs on the marketplace", system="marketplace", operation="x")
    carrier = MissingMapping(kind="carrier", system="virtualstock", key={"carrier": "DHL", "service": "Express"})
    admin_user = get_user_model().objects.create_superuser("root", password="a-long-root-password")
    for success in (True, False):  # a task that ran, and one that failed: the admin's Success and Failure pages
        Task.objects.create(
            id=f"task-{success}", name=f"task-{success}", func="syncs.tasks.run", started=timezone.now(),
            stopped=timezone.now(), success=success,
        )  # fmt: skip
    return {
        "finance": record(money, "virtualstock:JL-1", kind_code="totals_mismatch"),
        "drift": record(drift, "marketplace:TEE", kind_code="attribute_drift", context={"differences": []}),
        "carrier": record(carrier, "shipment:77"),
        "run": SyncRun.objects.create(flow="stock_push"),
        "day": OrderReconciliation.objects.create(
            day=date(2026, 1, 5), market_id=1, currency="EUR", checked_at=timezone.now()
        ),
        "link": Link.objects.create(kind="order", source_system="centra", source_ref="1000"),
        "channel": Channel.objects.first(),
        "token": Token.objects.create(user=admin_user),
    }


def get_user_model():
    from django.contrib.auth import get_user_model as model

    return model()


def concrete(url: str, world: dict) -> tuple[str, str, object]:
    """The URL with the ids of rows that exist in place of the walk's samples; its name; the admin it belongs to."""
    from django.urls import resolve

    match = resolve(url)
    name = match.view_name
    kwargs = dict(match.kwargs)
    model_admin = getattr(match.func, "model_admin", None) or admin_of(name)
    if match.url_name is None or match.args or match.route.startswith("admin/r/"):
        return url, name, model_admin
    if model_admin is not None and "object_id" in kwargs:
        row = model_admin.model._default_manager.order_by("pk").first()
        if row is not None:
            kwargs["object_id"] = str(row.pk)
    elif name in WRITERS and WRITERS[name][1]:
        kwargs["pk"] = world[WRITERS[name][1]].pk
    elif "pk" in kwargs:
        sample = {"exceptions": "finance", "exceptions_api": "finance", "runs": "run", "orders": "link"}
        kwargs["pk"] = world[sample.get(name.partition(":")[0], "day")].pk
    if name == "stock:buffer":
        kwargs["channel_code"] = world["channel"].code if world["channel"] else "web"
    return reverse(name, kwargs=kwargs), name, model_admin


def admin_of(name: str):
    """The ModelAdmin an admin URL name belongs to (admin:<app>_<model>_<view>), or None."""
    from django.contrib import admin

    for model, model_admin in admin.site._registry.items():
        if name.startswith(f"admin:{model._meta.app_label}_{model._meta.model_name}_"):
            return model_admin
    return None


ADMIN_ACTIONS = [
    ("_password_change", "change"),
    ("_process_import", "change"),
    ("_import", "change"),
    ("_export", "view"),
    ("_add", "add"),
    ("_delete", "delete"),
]


def admin_permission(name: str, model_admin) -> str | None:
    """The model permission an admin URL needs at the least (view for reading), None for pages any staff opens."""
    if model_admin is None:
        return None
    opts = model_admin.model._meta
    action = next((needs for suffix, needs in ADMIN_ACTIONS if name.endswith(suffix)), "view")
    return f"{opts.app_label}.{action}_{opts.model_name}"


def fingerprint() -> tuple:
    """What a refused request must leave as it was: every table's row count, the state of each exception and
    reconciled day, and the stock buffers."""
    from django.apps import apps
    from django.db import connection

    from exceptions.models import SyncException
    from mappings.models import StockBuffer
    from syncs.models import OrderReconciliation

    tables = sorted({model._meta.db_table for model in apps.get_models() if model._meta.label != "sessions.Session"})
    with connection.cursor() as cursor:  # one round trip for every table's count
        cursor.execute("SELECT " + ", ".join(f'(SELECT count(*) FROM "{table}")' for table in tables))
        counts = tuple(zip(tables, cursor.fetchone(), strict=True))
    exceptions = tuple(SyncException.objects.order_by("pk").values_list("status", "team", "assignee", "attempts"))
    days = tuple(OrderReconciliation.objects.order_by("pk").values_list("signed_off_at", "sign_off_history"))
    buffers = tuple(StockBuffer.objects.order_by("pk").values_list("buffer", "max_quantity", "zero_at_or_below"))
    return counts, exceptions, days, buffers


def refusal(client, response) -> int:
    """The status a request ends with, following the admin's redirect from an object's URL to its change page."""
    if response.status_code == 302:
        if response["Location"] == reverse("admin:index"):
            return 404  # the admin's answer for an object that does not exist
        return client.get(response["Location"]).status_code
    return response.status_code


def walked_urls() -> list[str]:
    from django.urls import resolve

    return [url for url in every_url() if resolve(url).view_name not in OWN_CREDENTIALS | {"healthz"}]


@pytest.mark.parametrize("person", PEOPLE)
def test_every_url_refuses_what_a_role_may_not_do_and_writes_nothing(person, request, client_for, world):
    from django.test import TestCase

    user = request.getfixturevalue(person)
    role = ROLE_OF[person]
    client = client_for(user)
    client.raise_request_exception = False
    unlisted = []
    for url in walked_urls():
        path, name, model_admin = concrete(url, world)
        needs = admin_permission(name, model_admin)
        if needs and not user.has_perm(needs):
            before = fingerprint()
            with TestCase.captureOnCommitCallbacks() as queued:
                answers = [refusal(client, client.get(path)), refusal(client, client.post(path, {"_save": "1"}))]
            assert set(answers) <= {403, 404, 405}, (person, path, answers)
            assert (fingerprint(), queued) == (before, []), (person, path)
            continue
        page = client.get(path)
        assert page.status_code < 500, (person, path, page.status_code)
        assert page.status_code != 403 or needs or name in ASKED_WITHOUT_PARAMETERS, (person, path)  # everyone reads
        if name in WRITERS and role not in WRITERS[name][0]:
            before = fingerprint()
            with TestCase.captureOnCommitCallbacks() as queued:
                if name.startswith("exceptions_api:"):
                    response = client.post(path, WRITERS[name][2], content_type="application/json")
                else:
                    response = client.post(path, WRITERS[name][2])
            assert response.status_code == 403, (person, path, response.status_code)
            assert (fingerprint(), queued) == (before, []), (person, path)
        elif name not in WRITERS and name not in BULK and not name.startswith("admin:"):
            with TestCase.captureOnCommitCallbacks():
                if client.post(path).status_code not in (403, 404, 405):
                    unlisted.append(path)
    assert unlisted == [], "these URLs take a POST but WRITERS does not say who may: " + ", ".join(unlisted)


@pytest.mark.parametrize("person", ["erin", "cora", "olga"])
def test_a_bulk_action_by_another_team_changes_none_of_its_exceptions(person, request, client_for, world):
    from django.test import TestCase

    client = client_for(request.getfixturevalue(person))
    finance = world["finance"]
    before = fingerprint()
    with TestCase.captureOnCommitCallbacks() as queued:
        client.post(
            reverse("exceptions:bulk"), {"action": "retry", "ids": [finance.pk], "confirmed": "1", "team": "finance"}
        )
        client.post(
            reverse("exceptions:bulk"),
            {"action": "ignore", "all_matching": "1", "confirmed": "1", "note": "Not ours.", "team": "finance"},
        )
        client.post(
            reverse("exceptions_api:exception-bulk"),
            {"action": "resolve", "ids": [finance.pk], "note": "Not ours."},
            content_type="application/json",
        )
        client.post(
            reverse("admin:exceptions_syncexception_changelist"),
            {"action": "retry_selected", "_selected_action": [finance.pk]},
        )
    assert (fingerprint(), queued) == (before, [])


@pytest.mark.parametrize("person", ["fred", "cora", "olga"])
def test_a_sku_reconciliation_is_started_only_by_ecommerce_or_an_integration_admin(person, request, client_for):
    from django.test import TestCase

    client = client_for(request.getfixturevalue(person))
    with TestCase.captureOnCommitCallbacks() as queued:
        response = client.post(reverse("reconciliation:run"), {"what": "skus"})
    assert (response.status_code, queued) == (403, [])
