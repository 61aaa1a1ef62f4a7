"""The exception pages: the queue (filters, sorting, keyset pages, htmx), bulk actions with their confirmation, one
exception with its actions, and the create-the-missing-mapping form."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ

from exceptions.models import ExceptionEvent, Status, SyncException
from exceptions.services import exception_resolve, failure_record
from exceptions.views import object_links
from mappings.models import CarrierMapping
from mappings.services import MissingMapping
from syncs.connectors.errors import DataError, Exchange

pytestmark = pytest.mark.django_db

QUEUE = "/exceptions/"


def record(error, ref: str, *, kind_code: str | None = None, value: str | None = None, **extra) -> SyncException:
    return failure_record(
        flow="order_import",
        object_type="order",
        object_ref=ref,
        error=error,
        title=f"Order {ref} could not be imported",
        kind_code=kind_code,
        value=Decimal(value) if value else None,
        currency="EUR" if value else "",
        **extra,
    )


def totals_mismatch(ref: str = "virtualstock:JL-100", value: str = "250.00", **extra) -> SyncException:
    """A finance exception: the order's amounts do not add up."""
    error = DataError("Line 1: 10.01 EUR for 3 units is not a whole unit price", system="virtualstock", operation="x")
    return record(error, ref, kind_code="totals_mismatch", value=value, **extra)


def unmapped_sku(ref: str = "virtualstock:JL-200", code: str = "VS-RED-M", value: str = "80.00") -> SyncException:
    """An ecommerce exception: an order names a part number no SKU mapping knows."""
    return record(MissingMapping(kind="sku", system="virtualstock", key={"code": code}), ref, value=value)


def unmapped_carrier(ref: str = "shipment:77") -> SyncException:
    """An operations exception: a shipment's carrier has no Virtualstock code."""
    error = MissingMapping(kind="carrier", system="virtualstock", key={"carrier": "DHL", "service": "Express"})
    return failure_record(
        flow="order_import", object_type="shipment", object_ref=ref, error=error, title=f"Shipment {ref} waits"
    )


def rows(response) -> list[str]:
    return [row.object_ref for row in response.context["rows"]]


# --- the queue ----------------------------------------------------------------------------------------------------


def test_the_queue_lists_active_exceptions_with_the_costliest_first(erin, client_for):
    unmapped_sku(value="80.00")
    totals_mismatch(value="250.00")
    totals_mismatch(ref="virtualstock:JL-101", value="900.00")
    response = client_for(erin).get(QUEUE)
    assert response.status_code == 200
    assert rows(response) == ["virtualstock:JL-101", "virtualstock:JL-100", "virtualstock:JL-200"]
    page = response.content.decode()
    assert "Totals do not add up" in page and "900.00 EUR" in page and "Finance" in page
    assert "<strong>3</strong> matching exceptions" in page


def test_the_queue_sorts_by_age_when_asked(erin, client_for):
    old = totals_mismatch(ref="virtualstock:OLD")
    unmapped_sku()
    SyncException.objects.filter(pk=old.pk).update(first_seen=timezone.now() - timedelta(days=3))
    response = client_for(erin).get(QUEUE, {"sort": "age"})
    assert rows(response) == ["virtualstock:OLD", "virtualstock:JL-200"]
    assert "3 d" in response.content.decode()


def test_the_queue_filters_by_status(erin, fred, client_for):
    fixed = totals_mismatch()
    unmapped_sku()
    exception_resolve(exception=fixed, actor=fred, note="Posted by hand as SO-1")
    client = client_for(erin)
    assert rows(client.get(QUEUE)) == ["virtualstock:JL-200"]
    assert rows(client.get(QUEUE, {"status": "resolved"})) == ["virtualstock:JL-100"]
    assert set(rows(client.get(QUEUE, {"status": "all"}))) == {"virtualstock:JL-100", "virtualstock:JL-200"}


def test_the_queue_filters_by_team_and_kind(erin, client_for):
    totals_mismatch()
    unmapped_sku()
    unmapped_carrier()
    client = client_for(erin)
    assert rows(client.get(QUEUE, {"team": "finance"})) == ["virtualstock:JL-100"]
    assert rows(client.get(QUEUE, {"kind": "unmapped_carrier"})) == ["shipment:77"]
    assert rows(client.get(QUEUE, {"team": "finance", "kind": "unmapped_carrier"})) == []


def test_the_queue_filters_by_age_bucket(erin, client_for):
    old = totals_mismatch(ref="virtualstock:OLD")
    unmapped_sku()
    SyncException.objects.filter(pk=old.pk).update(first_seen=timezone.now() - timedelta(days=10))
    client = client_for(erin)
    assert rows(client.get(QUEUE, {"age": "older"})) == ["virtualstock:OLD"]
    assert rows(client.get(QUEUE, {"age": "1h"})) == ["virtualstock:JL-200"]


def test_the_search_matches_an_order_number_exactly_ignoring_case(erin, client_for):
    totals_mismatch(ref="virtualstock:JL-100", refs=["JL-100", "Z123TRACK"])
    unmapped_sku(ref="virtualstock:JL-1000")
    client = client_for(erin)
    assert rows(client.get(QUEUE, {"q": "jl-100"})) == ["virtualstock:JL-100"]
    assert rows(client.get(QUEUE, {"q": "z123track"})) == ["virtualstock:JL-100"]
    assert rows(client.get(QUEUE, {"q": "JL-10"})) == []


def test_the_next_page_link_carries_the_cursor_and_the_filters(erin, client_for):
    for n in range(55):
        totals_mismatch(ref=f"virtualstock:P{n:02}", value=str(100 + n))
    unmapped_sku()
    client = client_for(erin)
    first = client.get(QUEUE, {"team": "finance"})
    assert len(rows(first)) == 50
    next_url = first.context["next_url"]
    assert "team=finance" in next_url and "cursor=" in next_url
    second = client.get(QUEUE + next_url)
    assert len(rows(second)) == 5
    assert set(rows(first)).isdisjoint(rows(second))
    assert "virtualstock:JL-200" not in rows(second)
    assert second.context["next_url"] is None


def test_an_htmx_request_gets_only_the_table(erin, client_for):
    totals_mismatch()
    response = client_for(erin).get(QUEUE, {"team": "finance"}, HTTP_HX_REQUEST="true")
    templates = [template.name for template in response.templates]
    assert "exceptions/_table.html" in templates and "exceptions/queue.html" not in templates
    assert b"<html" not in response.content and b"virtualstock:JL-100" in response.content


def test_the_full_page_has_a_filter_form_that_submits_with_htmx(erin, client_for):
    page = client_for(erin).get(QUEUE).content.decode()
    assert 'hx-get="/exceptions/"' in page and 'hx-push-url="true"' in page and 'id="queue-table"' in page


def test_the_queue_page_takes_a_fixed_number_of_queries(erin, client_for, django_assert_max_num_queries):
    for n in range(60):
        totals_mismatch(ref=f"virtualstock:Q{n}")
    client = client_for(erin)
    client.get(QUEUE)
    with django_assert_max_num_queries(8):
        client.get(QUEUE)


# --- who may see and do what --------------------------------------------------------------------------------------

POST_ONLY = ["retry", "resolve", "ignore", "assign", "mapping"]


def test_anonymous_people_are_sent_to_sign_in_from_every_page(client):
    exception = totals_mismatch()
    urls = [QUEUE, "/exceptions/playbooks/", "/exceptions/bulk/", f"/exceptions/{exception.pk}/"]
    urls += [f"/exceptions/{exception.pk}/{action}/" for action in POST_ONLY]
    for url in urls:
        for method in (client.get, client.post):
            response = method(url)
            assert response.status_code == 302, url
            assert response["Location"].startswith("/login/"), url
    assert SyncException.objects.get().status == Status.OPEN


def test_the_wrong_method_is_refused(erin, client_for):
    exception = totals_mismatch()
    client = client_for(erin)
    for action in POST_ONLY:
        assert client.get(f"/exceptions/{exception.pk}/{action}/").status_code == 405
    assert client.get("/exceptions/bulk/").status_code == 405
    for url in (QUEUE, "/exceptions/playbooks/", f"/exceptions/{exception.pk}/"):
        assert client.post(url).status_code == 405


def test_an_unknown_exception_is_not_found(erin, client_for):
    client = client_for(erin)
    assert client.get("/exceptions/999999/").status_code == 404
    assert client.post("/exceptions/999999/retry/").status_code == 404


def test_customer_service_sees_a_finance_exception_but_cannot_act_on_it(
    cora, client_for, django_capture_on_commit_callbacks
):
    exception = totals_mismatch()
    events = exception.events.count()
    client = client_for(cora)
    page = client.get(reverse("exceptions:detail", args=[exception.pk])).content.decode()
    assert "Totals do not add up" in page
    assert "The Finance team owns this exception" in page
    for action in ("retry", "resolve", "ignore", "assign"):
        assert f'action="/exceptions/{exception.pk}/{action}/"' not in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("exceptions:retry", args=[exception.pk]))
    assert response.status_code == 403
    for action in ("resolve", "ignore"):
        assert client.post(f"/exceptions/{exception.pk}/{action}/", {"note": "not mine"}).status_code == 403
    assert client.post(f"/exceptions/{exception.pk}/assign/", {"team": "customer_service"}).status_code == 403
    exception.refresh_from_db()
    assert (exception.status, exception.team, exception.events.count()) == (Status.OPEN, "finance", events)
    assert OrmQ.objects.count() == 0


def test_finance_retries_its_own_exception(fred, client_for, django_capture_on_commit_callbacks):
    exception = totals_mismatch()
    client = client_for(fred)
    page = client.get(f"/exceptions/{exception.pk}/").content.decode()
    assert f'action="/exceptions/{exception.pk}/retry/"' in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/exceptions/{exception.pk}/retry/")
    assert response.status_code == 302 and response["Location"] == f"/exceptions/{exception.pk}/"
    exception.refresh_from_db()
    assert exception.status == Status.RETRYING
    event = exception.events.last()
    assert (event.action, event.actor) == (ExceptionEvent.Action.RETRY_REQUESTED, fred)
    assert OrmQ.objects.count() == 1


def test_retrying_a_resolved_exception_says_why_not(fred, client_for):
    exception = totals_mismatch()
    exception_resolve(exception=exception, actor=fred, note="Posted by hand")
    response = client_for(fred).post(f"/exceptions/{exception.pk}/retry/")
    assert response.status_code == 200
    assert "nothing to retry" in response.content.decode()


@pytest.mark.parametrize("action", ["resolve", "ignore"])
def test_resolve_and_ignore_without_a_note_show_the_error_and_change_nothing(action, fred, client_for):
    exception = totals_mismatch()
    events = exception.events.count()
    response = client_for(fred).post(f"/exceptions/{exception.pk}/{action}/", {"note": "   "})
    assert response.status_code == 200
    assert "Say in a note how it was fixed, or why it is ignored." in response.content.decode()
    exception.refresh_from_db()
    assert (exception.status, exception.events.count()) == (Status.OPEN, events)


def test_resolving_with_a_note_closes_it_and_names_who(fred, client_for):
    exception = totals_mismatch()
    response = client_for(fred).post(f"/exceptions/{exception.pk}/resolve/", {"note": "Posted by hand as SO-9"})
    assert response.status_code == 302
    exception.refresh_from_db()
    assert (exception.status, exception.resolved_by, exception.resolution_note) == (
        Status.RESOLVED,
        fred,
        "Posted by hand as SO-9",
    )
    page = client_for(fred).get(f"/exceptions/{exception.pk}/").content.decode()
    assert "Posted by hand as SO-9" in page and "by fred" in page


def test_ignoring_with_a_note_sets_it_aside(fred, client_for):
    exception = totals_mismatch()
    client_for(fred).post(f"/exceptions/{exception.pk}/ignore/", {"note": "Test order"})
    exception.refresh_from_db()
    assert (exception.status, exception.resolution_note) == (Status.IGNORED, "Test order")


def test_assigning_hands_it_to_a_team_and_a_person(fred, olga, client_for):
    exception = totals_mismatch()
    response = client_for(fred).post(f"/exceptions/{exception.pk}/assign/", {"team": "operations", "assignee": olga.pk})
    assert response.status_code == 302
    exception.refresh_from_db()
    assert (exception.team, exception.assignee) == ("operations", olga)
    assert exception.events.last().action == ExceptionEvent.Action.ASSIGNED


# --- the exception page -------------------------------------------------------------------------------------------


def test_the_exception_page_explains_it_in_plain_english(cora, client_for):
    exception = totals_mismatch(payload={"order": {"reference": "JL-100", "note": "<script>alert(1)</script>"}})
    page = client_for(cora).get(f"/exceptions/{exception.pk}/").content.decode()
    for text in (
        "Totals do not add up",  # the kind
        "virtualstock:JL-100",  # the object
        "250.00 EUR",  # the value
        "Business impact",  # the playbook
        "Correct the order in the source system",  # a playbook step
        "Recorded",  # the timeline
        "&quot;reference&quot;: &quot;JL-100&quot;",  # the payload as indented JSON, escaped
        "&lt;script&gt;alert(1)&lt;/script&gt;",
    ):
        assert text in page, text
    assert "<script>alert(1)" not in page


def test_the_request_and_error_response_are_shown_as_readable_json(cora, client_for):
    exchange = Exchange(
        "POST",
        "https://example.test/graphql",
        request_body='{"query":"mutation"}',
        status=422,
        response_body='{"errors":[{"message":"x"}]}',
    )
    error = DataError("refused", system="centra", operation="create order", exchange=exchange)
    exception = record(error, "virtualstock:JL-300")
    page = client_for(cora).get(f"/exceptions/{exception.pk}/").content.decode()
    assert "&quot;status&quot;: 422" in page
    assert "&quot;message&quot;: &quot;x&quot;" in page  # the body, decoded and indented with the rest
    assert "&quot;query&quot;: &quot;mutation&quot;" in page  # the request body too


def test_links_point_only_where_a_base_url_is_known(settings):
    exception = totals_mismatch(context={"fulfil_sale_id": 42})
    exception.system = "fulfil"
    settings.CONNECTIONS = {
        "centra": {"base_url": "https://brand.centra.com"},
        "fulfil": {"base_url": "https://brand.fulfil.io/api/v2"},
        "virtualstock": {"base_url": ""},
    }
    links = {link.label: link.url for link in object_links(exception)}
    assert links == {
        "Centra backend": "https://brand.centra.com/ams/",
        "Fulfil sale 42": "https://brand.fulfil.io/client/#/model/sale.sale/42",
    }
    settings.CONNECTIONS = {"centra": {"base_url": ""}}
    assert object_links(exception) == []


def test_a_sandbox_connection_links_to_the_simulators_state(settings):
    exception = unmapped_sku()
    settings.SANDBOX_URL = "http://127.0.0.1:8100"
    settings.CONNECTIONS = {
        "centra": {"base_url": "http://127.0.0.1:8100/centra"},
        "virtualstock": {"base_url": "http://127.0.0.1:8100/virtualstock"},
    }
    assert [link.url for link in object_links(exception)] == [
        "http://127.0.0.1:8100/virtualstock/_sandbox/state",
        "http://127.0.0.1:8100/centra/_sandbox/state",
    ]


# --- bulk ---------------------------------------------------------------------------------------------------------


def test_the_bulk_confirmation_says_how_many_and_how_many_are_yours(fred, client_for):
    totals_mismatch(ref="virtualstock:A")
    totals_mismatch(ref="virtualstock:B")
    unmapped_sku()
    response = client_for(fred).post("/exceptions/bulk/", {"action": "retry", "all_matching": "1", "status": "active"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "You selected <strong>3</strong> exceptions" in page
    assert "You may retry <strong>2</strong> of them" in page and "owned by Finance" in page
    assert not SyncException.objects.filter(status=Status.RETRYING).exists()


def test_the_bulk_confirmation_counts_only_the_ticked_ones(ada, client_for):
    first, second = totals_mismatch(ref="virtualstock:A"), unmapped_sku()
    totals_mismatch(ref="virtualstock:C")
    response = client_for(ada).post("/exceptions/bulk/", {"action": "ignore", "ids": [first.pk, second.pk]})
    page = response.content.decode()
    assert "You selected <strong>2</strong> exceptions" in page and "You may ignore <strong>2</strong>" in page


def test_a_bulk_action_with_nothing_ticked_goes_back_to_the_queue(fred, client_for):
    response = client_for(fred).post("/exceptions/bulk/", {"action": "retry", "team": "finance"})
    assert response.status_code == 302 and response["Location"] == "/exceptions/?status=active&team=finance"
    assert "Tick the exceptions" in str(list(get_messages(response.wsgi_request))[0])


def test_a_bulk_resolve_without_a_note_changes_nothing(fred, client_for):
    exception = totals_mismatch()
    response = client_for(fred).post(
        "/exceptions/bulk/", {"action": "resolve", "ids": [exception.pk], "confirmed": "1", "note": ""}
    )
    assert response.status_code == 200
    assert "Say in a note" in response.content.decode()
    assert SyncException.objects.get().status == Status.OPEN


def test_a_bulk_ignore_with_a_note_closes_only_the_users_own(fred, client_for):
    mine, theirs = totals_mismatch(), unmapped_sku()
    response = client_for(fred).post(
        "/exceptions/bulk/",
        {"action": "ignore", "ids": [mine.pk, theirs.pk], "confirmed": "1", "note": "Test orders"},
    )
    assert response.status_code == 302
    assert str(list(get_messages(response.wsgi_request))[0]) == "Ignored 1 exception."
    assert dict(SyncException.objects.values_list("pk", "status")) == {mine.pk: "ignored", theirs.pk: "open"}


def test_bulk_retry_of_ten_thousand_exceptions_is_a_bounded_request(
    fred, client_for, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    now = timezone.now()
    SyncException.objects.bulk_create(
        [
            SyncException(
                flow="order_import",
                kind="totals_mismatch",
                object_type="order",
                object_ref=f"virtualstock:B{n}",
                title=f"Order B{n}: amounts do not carry over exactly",
                team="finance",
                priority=100,
                first_seen=now,
                last_seen=now,
            )
            for n in range(10_000)
        ],
        batch_size=2000,
    )
    client = client_for(fred)
    filters = {"status": "active", "team": "finance"}
    confirmation = client.post("/exceptions/bulk/", {"action": "retry", "all_matching": "1", **filters})
    assert "You selected <strong>10,000</strong> exceptions" in confirmation.content.decode()
    with django_assert_max_num_queries(80), django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/exceptions/bulk/", {"action": "retry", "all_matching": "1", "confirmed": "1", **filters}
        )
    assert response.status_code == 302 and response["Location"] == "/exceptions/?status=active&team=finance"
    assert str(list(get_messages(response.wsgi_request))[0]) == "Retrying 10,000 exceptions."
    assert SyncException.objects.filter(status=Status.RETRYING).count() == 10_000
    assert ExceptionEvent.objects.filter(action="retry_requested", actor=fred).count() == 10_000
    assert OrmQ.objects.count() == 20  # the service enqueues the ids in chunks of 500


# --- the missing mapping ------------------------------------------------------------------------------------------


def test_the_mapping_form_is_prefilled_from_the_exception(ada, client_for):
    exception = unmapped_carrier()
    page = client_for(ada).get(f"/exceptions/{exception.pk}/").content.decode()
    assert "<h2>Create the missing mapping</h2>" in page
    assert 'name="mapping-centra_carrier" value="DHL"' in page
    assert 'name="mapping-centra_service" value="Express"' in page
    assert '<option value="virtualstock" selected>' in page


def test_the_mapping_form_is_hidden_from_people_who_may_not_add_mappings(olga, client_for):
    exception = unmapped_carrier()
    client = client_for(olga)
    page = client.get(f"/exceptions/{exception.pk}/").content.decode()
    assert "<h2>Create the missing mapping</h2>" not in page
    assert f'action="/exceptions/{exception.pk}/retry/"' in page  # operations owns it: she may act, not map
    response = client.post(f"/exceptions/{exception.pk}/mapping/", {"mapping-target_code": "dhl-express"})
    assert response.status_code == 403
    assert not CarrierMapping.objects.exists()


def test_an_exception_not_waiting_on_a_mapping_has_no_mapping_form(ada, client_for):
    exception = totals_mismatch()
    client = client_for(ada)
    assert "<h2>Create the missing mapping</h2>" not in client.get(f"/exceptions/{exception.pk}/").content.decode()
    assert client.post(f"/exceptions/{exception.pk}/mapping/", {}).status_code == 404


def test_creating_the_missing_mapping_frees_the_exception(ada, client_for, django_capture_on_commit_callbacks):
    exception = unmapped_carrier()
    other = unmapped_carrier(ref="shipment:78")
    client = client_for(ada)
    form = {
        "mapping-system": "virtualstock",
        "mapping-centra_carrier": "DHL",
        "mapping-centra_service": "Express",
        "mapping-target_code": "dhl-express",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/exceptions/{exception.pk}/mapping/", form)
    assert response.status_code == 302
    assert str(list(get_messages(response.wsgi_request))[0]) == (
        "Mapping created; 2 waiting exceptions are being retried."
    )
    mapping = CarrierMapping.objects.get()
    assert (mapping.target_code, mapping.history.get().history_user) == ("dhl-express", ada)
    for freed in (exception, other):
        event = freed.events.last()
        assert event.action == ExceptionEvent.Action.FREED_BY_MAPPING
        assert "(by ada)" in event.note
    page = client.get(f"/exceptions/{exception.pk}/").content.decode()
    assert "Freed by a mapping change" in page


def test_an_invalid_mapping_is_shown_with_its_errors_and_nothing_is_created(ada, client_for):
    exception = unmapped_carrier()
    form = {"mapping-system": "virtualstock", "mapping-centra_carrier": "DHL", "mapping-target_code": ""}
    response = client_for(ada).post(f"/exceptions/{exception.pk}/mapping/", form)
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert not CarrierMapping.objects.exists()
    assert exception.events.last().action == ExceptionEvent.Action.RECORDED
