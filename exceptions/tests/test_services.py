"""The queue's services: recording, deciding retry or exception, acting, permissions, bulk, freeing."""

from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone
from django_q.models import OrmQ

from exceptions.kinds import KINDS
from exceptions.models import ExceptionEvent, Status, SyncException
from exceptions.services import (
    classify,
    exception_assign,
    exception_ignore,
    exception_resolve,
    exception_retry,
    exceptions_bulk_close,
    exceptions_bulk_retry,
    failure_record,
    objects_succeeded,
)
from mappings.models import CarrierMapping
from mappings.services import MissingMapping
from syncs.connectors.errors import AuthError, DataError, Exchange, RateLimited, TransientError

pytestmark = pytest.mark.django_db


def record(error, ref: str = "virtualstock:JL-1", **extra) -> SyncException:
    return failure_record(
        flow="order_import", object_type="order", object_ref=ref, error=error, title=f"Order {ref}", **extra
    )


def unmapped_carrier(ref: str = "shipment:1") -> SyncException:
    return record(
        MissingMapping(kind="carrier", system="virtualstock", key={"carrier": "DHL", "service": "Express"}),
        ref=ref,
        value=Decimal("120.00"),
        currency="EUR",
    )


def test_errors_are_classified_in_one_place():
    assert classify(MissingMapping(kind="tax", system="fulfil", key={})) == ("unmapped_tax", False)
    assert classify(AuthError("no", system="centra", operation="x")) == ("auth_failed", False)
    assert classify(RateLimited("slow", system="centra", operation="x")) == ("api_unavailable", True)
    assert classify(TransientError("down", system="centra", operation="x")) == ("api_unavailable", True)
    assert classify(DataError("bad", system="centra", operation="x")) == ("validation_failed", False)
    assert classify(KeyError("bug")) == ("internal_error", False)
    assert all(kind.cause and kind.impact and kind.steps for kind in KINDS.values())


def test_the_same_failure_of_the_same_item_is_one_exception_with_a_count():
    first = unmapped_carrier()
    again = unmapped_carrier()
    assert again.pk == first.pk
    assert (again.occurrences, again.status, again.kind, again.team) == (
        2,
        Status.OPEN,
        "unmapped_carrier",
        "operations",
    )
    # Polling meets it again and again: counted, but the timeline gains a line only when something changed.
    assert list(again.events.values_list("action", flat=True)) == ["recorded"]
    changed = record(
        MissingMapping(kind="carrier", system="virtualstock", key={"carrier": "DHL", "service": "Pro"}),
        ref="shipment:1",
    )
    assert changed.pk == first.pk and changed.occurrences == 3
    assert list(changed.events.values_list("action", flat=True)) == ["recorded", "occurred_again"]
    assert SyncException.objects.count() == 1


def test_a_data_failure_is_open_at_once_and_keeps_the_systems_messages():
    error = DataError(
        "refused",
        details=["carrier: unknown", "tracking: required"],
        system="virtualstock",
        operation="dispatch",
        exchange=Exchange("POST", "https://vs/dispatch/", '{"items": []}', 400, "Validation error"),
    )
    exception = record(error)
    assert (exception.status, exception.kind, exception.next_retry_at) == (Status.OPEN, "validation_failed", None)
    assert "• carrier: unknown" in exception.message and "• tracking: required" in exception.message
    assert exception.response == {"status": 400, "body": "Validation error"}
    assert exception.payload["url"] == "https://vs/dispatch/"


def test_a_transient_failure_retries_with_backoff_until_attempts_run_out(settings):
    settings.EXCEPTION_AUTO_RETRIES = 3
    error = TransientError("no answer", system="centra", operation="createOrder")
    exception = record(error)
    assert exception.status == Status.RETRYING and exception.next_retry_at > timezone.now()
    record(error)
    exhausted = record(error)
    assert (exhausted.status, exhausted.attempts, exhausted.next_retry_at) == (Status.OPEN, 3, None)
    assert exhausted.events.last().note == "Gave up after 3 automatic attempts."


def test_a_later_success_resolves_it_and_a_new_failure_reopens_it():
    exception = unmapped_carrier()
    assert objects_succeeded(flow="order_import", object_refs=["shipment:1"]) == 1
    exception.refresh_from_db()
    assert exception.status == Status.RESOLVED
    reopened = unmapped_carrier()
    assert (reopened.pk, reopened.status, reopened.events.last().action) == (exception.pk, Status.OPEN, "reopened")


def test_value_ranks_across_currencies():
    kronor = record(DataError("x", system="s", operation="o"), ref="a", value=Decimal("1000"), currency="SEK")
    euros = record(DataError("x", system="s", operation="o"), ref="b", value=Decimal("100"), currency="EUR")
    assert kronor.value_rank == Decimal("87.00") and euros.value_rank == Decimal("100.00")


def test_resolve_and_ignore_demand_a_note(ada):
    exception = unmapped_carrier()
    for close in (exception_resolve, exception_ignore):
        with pytest.raises(ValidationError):
            close(exception=exception, actor=ada, note="  ")
    exception.refresh_from_db()
    assert exception.status == Status.OPEN
    exception_ignore(exception=exception, actor=ada, note="Test order, never shipped.")
    exception.refresh_from_db()
    assert (exception.status, exception.resolved_by, exception.resolution_note) == (
        Status.IGNORED,
        ada,
        "Test order, never shipped.",
    )
    assert exception.events.last().actor == ada


def test_a_team_acts_only_on_its_own_exceptions(cora, fred, olga, ada, django_capture_on_commit_callbacks):
    finance = record(MissingMapping(kind="tax", system="fulfil", key={"tax_class": "x", "country": "SE"}))
    with pytest.raises(PermissionDenied):
        exception_retry(exception=finance, actor=cora)
    with pytest.raises(PermissionDenied):
        exception_resolve(exception=finance, actor=olga, note="not mine")
    finance.refresh_from_db()
    assert finance.status == Status.OPEN and finance.events.count() == 1
    with django_capture_on_commit_callbacks(execute=True):
        exception_retry(exception=finance, actor=fred)
    finance.refresh_from_db()
    assert finance.status == Status.RETRYING
    assert OrmQ.objects.count() == 1
    exception_assign(exception=finance, actor=ada, team="operations", assignee=olga)
    finance.refresh_from_db()
    assert (finance.team, finance.assignee) == ("operations", olga)


def test_bulk_retry_of_ten_thousand_is_a_handful_of_statements(
    ada, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    now = timezone.now()
    SyncException.objects.bulk_create(
        [
            SyncException(
                flow="order_import",
                kind="unmapped_sku",
                object_type="order",
                object_ref=f"o{n}",
                title=f"Order {n}",
                team="ecommerce",
                priority=90,
                first_seen=now,
                last_seen=now,
            )
            for n in range(10_000)
        ],
        batch_size=2000,
    )
    with django_assert_max_num_queries(80), django_capture_on_commit_callbacks(execute=True):
        count = exceptions_bulk_retry(queryset=SyncException.objects.all(), actor=ada)
    assert count == 10_000
    assert SyncException.objects.filter(status=Status.RETRYING).count() == 10_000
    assert ExceptionEvent.objects.filter(action="retry_requested").count() == 10_000
    assert OrmQ.objects.count() == 20  # chunks of 500 ids


def test_bulk_close_acts_only_on_what_the_user_may_touch(erin):
    record(MissingMapping(kind="sku", system="virtualstock", key={"code": "X"}), ref="a")
    record(MissingMapping(kind="tax", system="fulfil", key={"tax_class": "x", "country": "SE"}), ref="b")
    with pytest.raises(ValidationError):
        exceptions_bulk_close(queryset=SyncException.objects.all(), actor=erin, note="", ignore=False)
    assert exceptions_bulk_close(queryset=SyncException.objects.all(), actor=erin, note="fixed", ignore=False) == 1
    assert set(SyncException.objects.values_list("kind", "status")) == {
        ("unmapped_sku", "resolved"),
        ("unmapped_tax", "open"),
    }


def test_a_new_mapping_frees_exactly_the_exceptions_it_answers(ada, django_capture_on_commit_callbacks):
    express = unmapped_carrier("shipment:1")
    other = record(
        MissingMapping(kind="carrier", system="virtualstock", key={"carrier": "UPS", "service": ""}), ref="shipment:2"
    )
    elsewhere = record(
        MissingMapping(kind="carrier", system="marketplace", key={"carrier": "DHL", "service": ""}), ref="shipment:3"
    )
    with django_capture_on_commit_callbacks(execute=True):
        mapping = CarrierMapping(system="virtualstock", centra_carrier="dhl", centra_service="", target_code="dhl")
        mapping._history_user = ada
        mapping.save()
    statuses = dict(SyncException.objects.values_list("pk", "status"))
    assert statuses == {express.pk: Status.RETRYING, other.pk: Status.OPEN, elsewhere.pk: Status.OPEN}
    freed = express.events.get(action="freed_by_mapping")
    assert freed.note == 'Freed by the new carrier mapping "dhl → Virtualstock dhl" (by ada).'
    assert freed.detail["mapping_id"] == mapping.pk
