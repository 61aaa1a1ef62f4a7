"""The exception queue's API: the list with the page's filters and cursor pages, the detail with its playbook and
timeline, the actions and bulk actions with their permissions, token and session auth, and the OpenAPI schema."""

import json
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from exceptions.kinds import KINDS
from exceptions.models import ExceptionEvent, Status, SyncException
from exceptions.services import exception_resolve, failure_record
from mappings.services import MissingMapping
from syncs.connectors.errors import DataError, Exchange

pytestmark = pytest.mark.django_db
Action = ExceptionEvent.Action

LIST = reverse("exceptions_api:exception-list")
BULK = reverse("exceptions_api:exception-bulk")


def detail_url(exception: SyncException) -> str:
    return reverse("exceptions_api:exception-detail", args=[exception.pk])


def action_url(exception: SyncException, name: str) -> str:
    return reverse(f"exceptions_api:exception-{name}", args=[exception.pk])


def refused_order(
    reference: str, *, kind_code: str = "totals_mismatch", value: str = "100.00", refs: tuple[str, ...] = ()
) -> SyncException:
    """An order the target refused, recorded as the flows record it."""
    error = DataError(
        "The total does not match the lines.",
        system="fulfil",
        operation="sale.create",
        exchange=Exchange(
            "POST",
            "https://fulfil.example/api/v2/model/sale.sale",
            request_body=json.dumps({"reference": reference, "total_amount": value}),
            status=422,
            response_body=json.dumps({"error": "total mismatch"}),
        ),
    )
    return failure_record(
        flow="order_import",
        object_type="order",
        object_ref=f"virtualstock:{reference}",
        error=error,
        title=f"{KINDS[kind_code].label}: {reference}",
        kind_code=kind_code,
        value=Decimal(value),
        currency="GBP",
        refs=[reference, *refs],
    )


def finance_exception(reference: str = "JL-1001", value: str = "100.00") -> SyncException:
    return refused_order(reference, kind_code="totals_mismatch", value=value)


def ecommerce_exception(reference: str = "JL-2001") -> SyncException:
    return refused_order(reference, kind_code="validation_failed")


def api_client_for(user) -> APIClient:
    """An API client authenticating as ``user`` with a token, as a script would."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def events_of(exception: SyncException) -> list[str]:
    return list(exception.events.values_list("action", flat=True))


# --- the list -----------------------------------------------------------------------------------------------------


def test_the_list_filters_by_team_like_the_page(erin):
    finance = finance_exception("JL-1001", value="120.5")
    ecommerce_exception("JL-2001")

    response = api_client_for(erin).get(LIST, {"team": "finance"})

    assert response.status_code == 200
    body = response.json()
    assert [row["id"] for row in body["results"]] == [finance.pk]
    assert body["count"] == 1
    assert body["count_capped"] is False
    assert body["next"] is None
    row = body["results"][0]
    assert row["kind"] == "totals_mismatch"
    assert row["kind_label"] == "Totals do not add up"
    assert row["team"] == "finance"
    assert row["team_label"] == "Finance"
    assert row["status"] == "open"
    assert row["value"] == "120.500"  # money as an exact decimal string, never a float
    assert row["currency"] == "GBP"
    assert parse_datetime(row["first_seen"]) == SyncException.objects.get(pk=finance.pk).first_seen


def test_the_list_finds_an_exception_by_any_of_its_references(erin):
    wanted = refused_order("JL-1001", refs=("TRACK-778",))
    finance_exception("JL-1002")

    response = api_client_for(erin).get(LIST, {"q": "track-778"})

    assert [row["id"] for row in response.json()["results"]] == [wanted.pk]


def test_the_list_shows_only_active_exceptions_unless_asked(fred):
    closed = finance_exception("JL-1001")
    exception_resolve(exception=closed, actor=fred, note="Posted by hand.")
    active = finance_exception("JL-1002")
    client = api_client_for(fred)

    assert [row["id"] for row in client.get(LIST).json()["results"]] == [active.pk]
    assert [row["id"] for row in client.get(LIST, {"status": "resolved"}).json()["results"]] == [closed.pk]


def test_the_list_pages_by_cursor_in_impact_order_until_next_is_null(erin):
    values = ["10.00", "500.00", "30.00", "250.00", "70.00"]
    exceptions = {value: finance_exception(f"JL-{index}", value=value) for index, value in enumerate(values)}
    client = api_client_for(erin)

    seen, url, pages = [], LIST + "?page_size=2&team=finance", 0
    while url:
        body = client.get(url).json()
        assert body["count"] == 5
        seen += [row["id"] for row in body["results"]]
        url, pages = body["next"], pages + 1
        if url:  # the next page keeps the filters and the page size
            assert parse_qs(urlsplit(url).query)["team"] == ["finance"]

    assert pages == 3
    by_impact = sorted(values, key=Decimal, reverse=True)
    assert seen == [exceptions[value].pk for value in by_impact]


def test_the_list_sorts_by_age_when_asked(erin):
    first = finance_exception("JL-1", value="1.00")
    second = finance_exception("JL-2", value="900.00")

    body = api_client_for(erin).get(LIST, {"sort": "age"}).json()

    assert [row["id"] for row in body["results"]] == [first.pk, second.pk]


def test_each_row_says_whether_the_user_may_act_on_it(fred):
    finance = finance_exception()
    ecommerce = ecommerce_exception()

    rows = {row["id"]: row["can_act"] for row in api_client_for(fred).get(LIST).json()["results"]}

    assert rows == {finance.pk: True, ecommerce.pk: False}


def test_the_list_costs_the_same_few_queries_for_a_full_page(erin, django_assert_max_num_queries):
    for index in range(30):
        finance_exception(f"JL-{index}")
    client = api_client_for(erin)

    with django_assert_max_num_queries(6):
        response = client.get(LIST)

    assert len(response.json()["results"]) == 30


# --- the detail ---------------------------------------------------------------------------------------------------


def test_the_detail_has_the_playbook_payload_response_and_timeline(fred):
    exception = finance_exception("JL-1001", value="99.95")
    client = api_client_for(fred)
    client.post(action_url(exception, "retry"))

    response = client.get(detail_url(exception))

    assert response.status_code == 200
    body = response.json()
    playbook = KINDS["totals_mismatch"]
    assert body["playbook"] == {
        "cause": playbook.cause,
        "impact": playbook.impact,
        "steps": list(playbook.steps),
        "transient": False,
    }
    assert json.loads(body["payload"]["request_body"]) == {"reference": "JL-1001", "total_amount": "99.95"}
    assert body["response"]["status"] == 422
    assert "virtualstock:jl-1001" in body["refs"] and "jl-1001" in body["refs"]
    assert [event["action"] for event in body["events"]] == ["recorded", "retry_requested"]
    assert body["events"][1]["actor"] == {"id": fred.pk, "username": "fred"}
    assert body["events"][1]["action_label"] == "Retry requested"
    assert body["missing_mapping"] is None


def test_the_detail_of_an_unmapped_kind_names_the_missing_mapping(erin):
    exception = failure_record(
        flow="order_import",
        object_type="order",
        object_ref="virtualstock:JL-3001",
        error=MissingMapping(kind="sku", system="virtualstock", key={"code": "VS-123"}),
        title="Unknown SKU: VS-123",
    )

    body = api_client_for(erin).get(detail_url(exception)).json()

    assert body["kind"] == "unmapped_sku"
    assert body["missing_mapping"] == {"kind": "sku", "system": "virtualstock", "key": {"code": "VS-123"}}


def test_a_missing_exception_is_a_404(erin):
    response = api_client_for(erin).get(reverse("exceptions_api:exception-detail", args=[987654]))

    assert response.status_code == 404
    assert response.json() == {"detail": "No such exception."}


# --- authentication -----------------------------------------------------------------------------------------------


def test_a_token_authenticates(cora):
    finance_exception()

    response = api_client_for(cora).get(LIST)

    assert response.status_code == 200
    assert response.json()["count"] == 1


@pytest.mark.parametrize("method, name", [("get", "list"), ("get", "detail"), ("post", "retry"), ("post", "bulk")])
def test_no_credentials_is_a_401_in_json_not_a_redirect_to_the_login_page(fred, method, name):
    exception = finance_exception()
    url = {"list": LIST, "bulk": BULK}.get(name) or (
        detail_url(exception) if name == "detail" else action_url(exception, name)
    )

    response = getattr(APIClient(), method)(url, {}, format="json") if method == "post" else APIClient().get(url)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert "detail" in response.json()
    assert SyncException.objects.get(pk=exception.pk).status == Status.OPEN


def test_a_wrong_token_is_a_401(fred):
    exception = finance_exception()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-key")

    assert client.get(LIST).status_code == 401
    assert client.post(action_url(exception, "retry")).status_code == 401
    assert SyncException.objects.get(pk=exception.pk).status == Status.OPEN


def test_a_signed_in_browser_reads_and_acts_with_its_csrf_token(fred):
    exception = finance_exception()
    client = APIClient(enforce_csrf_checks=True)
    client.get(reverse("login"))  # the sign-in form sets the CSRF cookie
    client.force_login(fred)
    assert client.get(LIST).status_code == 200

    without_token = client.post(action_url(exception, "retry"))
    assert without_token.status_code == 403
    assert "CSRF" in without_token.json()["detail"]
    assert SyncException.objects.get(pk=exception.pk).status == Status.OPEN

    with_token = client.post(action_url(exception, "retry"), HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value)
    assert with_token.status_code == 200
    assert with_token.json()["status"] == "retrying"


# --- acting on one ------------------------------------------------------------------------------------------------


def test_cora_cannot_retry_a_finance_exception(cora):
    exception = finance_exception()

    response = api_client_for(cora).post(action_url(exception, "retry"))

    assert response.status_code == 403
    assert response.json() == {"detail": "The Finance team owns this exception."}
    exception.refresh_from_db()
    assert exception.status == Status.OPEN
    assert events_of(exception) == [Action.RECORDED]


def test_fred_retries_a_finance_exception(fred):
    exception = finance_exception()

    response = api_client_for(fred).post(action_url(exception, "retry"))

    assert response.status_code == 200
    assert response.json()["status"] == "retrying"
    exception.refresh_from_db()
    assert exception.status == Status.RETRYING
    event = exception.events.last()
    assert (event.action, event.actor) == (Action.RETRY_REQUESTED, fred)


def test_retrying_a_resolved_exception_is_a_400_with_the_reason(fred):
    exception = finance_exception()
    exception_resolve(exception=exception, actor=fred, note="Posted by hand.")

    response = api_client_for(fred).post(action_url(exception, "retry"))

    assert response.status_code == 400
    assert response.json() == {"detail": "This exception is resolved; there is nothing to retry."}
    assert SyncException.objects.get(pk=exception.pk).status == Status.RESOLVED


@pytest.mark.parametrize("name", ["resolve", "ignore"])
@pytest.mark.parametrize("body", [{}, {"note": ""}, {"note": "   "}])
def test_resolve_and_ignore_without_a_note_are_refused_and_change_nothing(fred, name, body):
    exception = finance_exception()

    response = api_client_for(fred).post(action_url(exception, name), body, format="json")

    assert response.status_code == 400
    assert "note" in response.json()
    exception.refresh_from_db()
    assert exception.status == Status.OPEN
    assert events_of(exception) == [Action.RECORDED]


@pytest.mark.parametrize("name, status", [("resolve", Status.RESOLVED), ("ignore", Status.IGNORED)])
def test_fred_resolves_or_ignores_with_a_note(fred, name, status):
    exception = finance_exception()

    response = api_client_for(fred).post(action_url(exception, name), {"note": "Credit note CN-7 posted."}, "json")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == status
    assert body["resolution_note"] == "Credit note CN-7 posted."
    assert body["resolved_by"] == {"id": fred.pk, "username": "fred"}
    assert body["events"][-1]["action"] == name.replace("ignore", "ignored").replace("resolve", "resolved")


@pytest.mark.parametrize("name", ["resolve", "ignore"])
def test_cora_cannot_close_a_finance_exception(cora, name):
    exception = finance_exception()

    response = api_client_for(cora).post(action_url(exception, name), {"note": "Not mine."}, format="json")

    assert response.status_code == 403
    assert SyncException.objects.get(pk=exception.pk).status == Status.OPEN


def test_fred_hands_an_exception_to_ecommerce_and_to_erin(fred, erin):
    exception = finance_exception()

    response = api_client_for(fred).post(
        action_url(exception, "assign"), {"team": "ecommerce", "assignee": erin.pk}, format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["team"], body["team_label"]) == ("ecommerce", "Ecommerce")
    assert body["assignee"] == {"id": erin.pk, "username": "erin"}
    assert body["events"][-1]["action"] == "assigned"


def test_assigning_needs_a_team_or_a_person_that_exists(fred):
    exception = finance_exception()
    client = api_client_for(fred)

    assert client.post(action_url(exception, "assign"), {}, format="json").status_code == 400
    assert client.post(action_url(exception, "assign"), {"team": "marketing"}, format="json").status_code == 400
    assert client.post(action_url(exception, "assign"), {"assignee": 987654}, format="json").status_code == 400
    assert events_of(exception) == [Action.RECORDED]


def test_cora_cannot_assign_a_finance_exception(cora):
    exception = finance_exception()

    response = api_client_for(cora).post(action_url(exception, "assign"), {"team": "customer_service"}, "json")

    assert response.status_code == 403
    assert SyncException.objects.get(pk=exception.pk).team == "finance"


@pytest.mark.parametrize("name", ["retry", "resolve", "ignore", "assign"])
def test_acting_on_a_missing_exception_is_a_404(ada, name):
    response = api_client_for(ada).post(
        reverse(f"exceptions_api:exception-{name}", args=[987654]), {"note": "x"}, format="json"
    )

    assert response.status_code == 404


@pytest.mark.parametrize("name", ["retry", "resolve", "ignore", "assign"])
def test_a_get_on_an_action_is_a_405(ada, name):
    exception = finance_exception()

    response = api_client_for(ada).get(action_url(exception, name))

    assert response.status_code == 405
    assert events_of(exception) == [Action.RECORDED]


# --- in bulk ------------------------------------------------------------------------------------------------------


def test_bulk_retry_by_filters_acts_only_on_the_users_team(fred):
    finance = [finance_exception(f"JL-1{index}") for index in range(3)]
    ecommerce = [ecommerce_exception(f"JL-2{index}") for index in range(2)]

    response = api_client_for(fred).post(BULK, {"action": "retry", "filters": {"status": "open"}}, format="json")

    assert response.status_code == 200
    assert response.json() == {"action": "retry", "matched": 5, "acted_on": 3}
    statuses = dict(SyncException.objects.values_list("pk", "status"))
    assert {statuses[exception.pk] for exception in finance} == {Status.RETRYING}
    assert {statuses[exception.pk] for exception in ecommerce} == {Status.OPEN}


def test_bulk_retry_by_filters_narrows_to_the_filters(ada):
    finance = [finance_exception(f"JL-1{index}") for index in range(3)]
    ecommerce = ecommerce_exception("JL-2001")

    response = api_client_for(ada).post(BULK, {"action": "retry", "filters": {"team": "finance"}}, format="json")

    assert response.json() == {"action": "retry", "matched": 3, "acted_on": 3}
    assert set(SyncException.objects.filter(status=Status.RETRYING).values_list("pk", flat=True)) == {
        exception.pk for exception in finance
    }
    assert SyncException.objects.get(pk=ecommerce.pk).status == Status.OPEN


def test_an_integration_admin_acts_on_every_team_in_bulk(ada):
    chosen = [finance_exception("JL-1001"), ecommerce_exception("JL-2001")]
    untouched = finance_exception("JL-1002")

    response = api_client_for(ada).post(
        BULK, {"action": "ignore", "ids": [exception.pk for exception in chosen], "note": "Test orders."}, "json"
    )

    assert response.json() == {"action": "ignore", "matched": 2, "acted_on": 2}
    assert set(SyncException.objects.filter(status=Status.IGNORED).values_list("pk", flat=True)) == {
        exception.pk for exception in chosen
    }
    assert SyncException.objects.get(pk=untouched.pk).status == Status.OPEN


def test_bulk_resolve_by_ids_reports_what_it_could_not_touch(erin):
    mine = ecommerce_exception("JL-2001")
    not_mine = finance_exception("JL-1001")

    response = api_client_for(erin).post(
        BULK, {"action": "resolve", "ids": [mine.pk, not_mine.pk], "note": "Fixed in Centra."}, format="json"
    )

    assert response.json() == {"action": "resolve", "matched": 2, "acted_on": 1}
    assert SyncException.objects.get(pk=mine.pk).status == Status.RESOLVED
    assert SyncException.objects.get(pk=not_mine.pk).status == Status.OPEN


@pytest.mark.parametrize("name", ["resolve", "ignore"])
def test_bulk_resolve_and_ignore_without_a_note_are_refused_and_change_nothing(ada, name):
    exception = finance_exception()

    response = api_client_for(ada).post(BULK, {"action": name, "ids": [exception.pk], "note": " "}, format="json")

    assert response.status_code == 400
    assert "note" in response.json()
    assert events_of(exception) == [Action.RECORDED]


@pytest.mark.parametrize(
    "body",
    [
        {"action": "retry"},  # neither ids nor filters
        {"action": "retry", "ids": [1], "filters": {}},  # both
        {"action": "retry", "ids": []},
        {"action": "delete", "ids": [1]},
        {"action": "retry", "filters": {"team": "marketing"}},
    ],
)
def test_bulk_refuses_an_unclear_request(ada, body):
    exception = finance_exception()

    response = api_client_for(ada).post(BULK, body, format="json")

    assert response.status_code == 400
    assert events_of(exception) == [Action.RECORDED]


def test_a_get_on_bulk_is_a_405(ada):
    assert api_client_for(ada).get(BULK).status_code == 405


# --- the schema ---------------------------------------------------------------------------------------------------


def test_the_schema_lists_the_exceptions_paths(erin):
    response = api_client_for(erin).get(reverse("api:schema"), {"format": "json"})

    assert response.status_code == 200
    paths = json.loads(response.content)["paths"]
    assert {
        "/api/exceptions/",
        "/api/exceptions/{id}/",
        "/api/exceptions/{id}/retry/",
        "/api/exceptions/{id}/resolve/",
        "/api/exceptions/{id}/ignore/",
        "/api/exceptions/{id}/assign/",
        "/api/exceptions/bulk/",
    } <= set(paths)
    assert "requestBody" in paths["/api/exceptions/{id}/resolve/"]["post"]


def test_the_schema_needs_credentials(db):
    assert APIClient().get(reverse("api:schema")).status_code == 401


def test_the_docs_page_shows_the_schema_to_people_signed_in_and_sends_others_to_sign_in(erin, client_for):
    page = client_for(erin).get(reverse("api:docs"), HTTP_ACCEPT="text/html")
    assert page.status_code == 200
    assert "/api/exceptions/{id}/retry/" in page.content.decode()
    assert "cdn" not in page.content.decode().lower()

    anonymous = APIClient().get(reverse("api:docs"))
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith(reverse("login"))


def test_the_schema_generates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
