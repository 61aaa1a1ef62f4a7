"""Team digests: e-mail to the team's members and a Slack-compatible webhook, only when something is new."""

import json
import logging
import threading
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core import mail
from django.utils import timezone
from django_q.models import Schedule

from exceptions.digests import digest_chat_payload, digest_for_team, digest_text
from exceptions.models import DigestState, Status
from exceptions.services import exception_resolve, failure_record
from syncs.connectors.chat import post_chat_message
from syncs.connectors.errors import DataError, TransientError
from syncs.notifications import NOT_DUE, NOTHING_NEW, send_team_digests

SECRET_PATH = "/services/T0SWITCH/B0YARD/s3cr3t-hook-token"


class Receiver:
    """A local chat webhook on 127.0.0.1 that keeps what it is sent and answers with ``status``."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(json.loads(body))
                answer = b"ok" if receiver.status == 200 else b"rollup_error"
                self.send_response(receiver.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}{SECRET_PATH}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook(settings):
    """The ecommerce team's chat webhook, received locally."""
    receiver = Receiver()
    settings.EXCEPTION_DIGEST_WEBHOOKS = {"ecommerce": receiver.url, "finance": "", "operations": ""}
    yield receiver
    receiver.stop()


@pytest.fixture
def every_run(settings):
    """No waiting between digests, so each run is due."""
    settings.EXCEPTION_DIGEST_MINUTES = 0


@pytest.fixture
def team_members(erin, fred):
    erin.email, fred.email = "erin@brand.example", "fred@brand.example"
    erin.save()
    fred.save()
    # A member without an address, and a former member, get nothing.
    get_user_model().objects.create_user(username="noaddress").groups.add(Group.objects.get(name="ecommerce"))
    get_user_model().objects.create_user(username="gone", email="gone@brand.example", is_active=False).groups.add(
        Group.objects.get(name="ecommerce")
    )
    return erin, fred


def refused(order: str, value: str = "100.00") -> object:
    """An ecommerce exception: the target refused the order as invalid."""
    return failure_record(
        flow="order_import",
        object_type="order",
        object_ref=order,
        error=DataError("request refused (400): bad postcode", system="centra", operation="create order"),
        title=f"Order {order} refused by Centra",
        value=Decimal(value),
        currency="GBP",
    )


def totals_mismatch(order: str) -> object:
    """A finance exception."""
    return failure_record(
        flow="order_import",
        object_type="order",
        object_ref=order,
        error=DataError("totals do not add up", system="virtualstock", operation="read order"),
        title=f"Order {order}: totals do not add up",
        kind_code="totals_mismatch",
        value=Decimal("55.00"),
        currency="EUR",
    )


def test_a_digest_goes_to_the_team_members_and_its_webhook_with_the_new_exceptions(team_members, webhook, every_run):
    cheap, costly = refused("VS-1", "20.00"), refused("VS-2", "900.00")

    outcomes = send_team_digests()

    assert outcomes["ecommerce"] == "sent to 1 person and the webhook"
    [message] = [m for m in mail.outbox if "erin@brand.example" in m.to]
    assert message.to == ["erin@brand.example"]
    assert message.from_email == "switchyard@localhost"
    assert "2 new exceptions for Ecommerce" in message.subject
    assert "2 × Refused as invalid" in message.body
    # The most costly first, each with its link.
    assert message.body.index("VS-2") < message.body.index("VS-1")
    assert f"/exceptions/{costly.pk}/" in message.body and f"/exceptions/{cheap.pk}/" in message.body
    assert "GBP 900.00" in message.body
    [payload] = webhook.received
    assert "2 new exceptions for Ecommerce" in payload["text"]
    assert payload["blocks"][0]["text"]["type"] == "mrkdwn"
    assert f"/exceptions/{costly.pk}/" in json.dumps(payload)
    assert DigestState.objects.get(team="ecommerce").last_sent_at is not None


def test_a_second_run_with_nothing_new_sends_nothing(team_members, webhook, every_run):
    refused("VS-1")
    send_team_digests()
    mail.outbox.clear()
    webhook.received.clear()
    sent_at = DigestState.objects.get(team="ecommerce").last_sent_at

    outcomes = send_team_digests()

    assert outcomes["ecommerce"] == NOTHING_NEW
    assert mail.outbox == [] and webhook.received == []
    assert DigestState.objects.get(team="ecommerce").last_sent_at == sent_at


def test_the_next_digest_tells_only_what_is_new_and_counts_what_is_still_open(team_members, webhook, every_run):
    refused("VS-1")
    send_team_digests()
    mail.outbox.clear()
    refused("VS-3")

    send_team_digests()

    [message] = mail.outbox
    assert "1 new exception for Ecommerce" in message.subject
    assert "VS-3" in message.body and "VS-1" not in message.body
    assert "2 still open" in message.body


def test_a_digest_is_not_sent_before_its_interval_has_passed(team_members, settings):
    settings.EXCEPTION_DIGEST_MINUTES = 60
    refused("VS-1")
    send_team_digests()
    mail.outbox.clear()
    refused("VS-2")

    assert send_team_digests(now=timezone.now() + timedelta(minutes=30))["ecommerce"] == NOT_DUE
    assert mail.outbox == []
    assert send_team_digests(now=timezone.now() + timedelta(minutes=61))["ecommerce"].startswith("sent")
    assert "VS-2" in mail.outbox[0].body


def test_a_team_with_nothing_never_gets_a_digest(team_members, webhook, every_run):
    refused("VS-1")

    outcomes = send_team_digests()

    assert outcomes["finance"] == NOTHING_NEW
    assert not [m for m in mail.outbox if "fred@brand.example" in m.to]
    assert not DigestState.objects.filter(team="finance").exists()


def test_another_teams_exceptions_are_not_in_a_digest(team_members, webhook, every_run):
    refused("VS-1")
    totals_mismatch("VS-9")

    send_team_digests()

    ecommerce = next(m for m in mail.outbox if m.to == ["erin@brand.example"])
    finance = next(m for m in mail.outbox if m.to == ["fred@brand.example"])
    assert "VS-1" in ecommerce.body and "VS-9" not in ecommerce.body
    assert "VS-9" in finance.body and "VS-1" not in finance.body
    assert "VS-9" not in json.dumps(webhook.received)


def test_resolved_and_still_retrying_exceptions_are_not_announced_as_new(team_members, every_run, ada):
    exception_resolve(exception=refused("VS-1"), actor=ada, note="Fixed the postcode in Centra.")
    retrying = failure_record(
        flow="order_import",
        object_type="order",
        object_ref="VS-2",
        error=TransientError("the system failed (503)", system="centra", operation="create order"),
        title="Centra unavailable",
    )
    assert retrying.status == Status.RETRYING

    assert send_team_digests()["ecommerce"] == NOTHING_NEW
    assert send_team_digests()["operations"] == NOTHING_NEW


def test_a_failing_webhook_still_sends_the_email_and_records_the_failure(team_members, webhook, every_run, caplog):
    webhook.status = 500
    refused("VS-1")
    totals_mismatch("VS-9")

    with caplog.at_level(logging.WARNING, logger="switchyard.notifications"):
        outcomes = send_team_digests()

    assert outcomes["ecommerce"].startswith("sent to 1 person; webhook failed: chat post message")
    assert "500" in outcomes["ecommerce"]
    assert outcomes["finance"] == "sent to 1 person"  # the other team is not held up
    assert {tuple(m.to) for m in mail.outbox} == {("erin@brand.example",), ("fred@brand.example",)}
    assert len(webhook.received) == 1  # a POST that may have been processed is not repeated
    assert "webhook failed" in caplog.text
    # The digest went out by e-mail: it is not sent again.
    assert send_team_digests()["ecommerce"] == NOTHING_NEW


def test_the_webhook_url_never_appears_in_the_error(team_members, webhook, every_run, caplog):
    webhook.status = 500
    refused("VS-1")

    # At INFO, the level the console logs at. (urllib3 logs request paths at DEBUG, whatever we redact.)
    with caplog.at_level(logging.INFO):
        outcome = send_team_digests()["ecommerce"]

    assert "webhook failed" in outcome
    for text in (outcome, caplog.text):
        assert webhook.url not in text
        assert "s3cr3t-hook-token" not in text


def test_an_unreachable_webhook_raises_an_error_without_its_url():
    server = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_port
    server.server_close()  # nothing listens there now
    url = f"http://127.0.0.1:{port}{SECRET_PATH}"
    with pytest.raises(TransientError) as raised:
        post_chat_message(url=url, payload={"text": "hello"})
    assert url not in str(raised.value) and "s3cr3t-hook-token" not in str(raised.value)
    assert "s3cr3t-hook-token" not in json.dumps(raised.value.exchange.as_dict())


def test_a_refused_message_is_a_data_error_without_the_url(webhook):
    webhook.status = 400
    with pytest.raises(DataError) as raised:
        post_chat_message(url=webhook.url, payload={"text": "hello"})
    assert "s3cr3t-hook-token" not in str(raised.value)
    assert "s3cr3t-hook-token" not in json.dumps(raised.value.exchange.as_dict())


def test_the_chat_message_escapes_slack_control_characters_and_links_when_given_a_base_url(db):
    exception = failure_record(
        flow="order_import",
        object_type="order",
        object_ref="A<B>&C",
        error=DataError("refused", system="centra", operation="create order"),
        title="Order <A&B> refused",
    )
    digest = digest_for_team(team="ecommerce", since=None)

    payload = digest_chat_payload(digest, base_url="https://switchyard.brand.example/")

    item = payload["blocks"][1]["text"]["text"]
    assert "&lt;A&amp;B&gt;" in item and "<A&B>" not in item
    assert item.startswith(f"<https://switchyard.brand.example/exceptions/{exception.pk}/|")
    assert f"https://switchyard.brand.example/exceptions/{exception.pk}/" in digest_text(
        digest, base_url="https://switchyard.brand.example"
    )


def test_there_is_no_digest_when_nothing_is_new(db):
    assert digest_for_team(team="ecommerce", since=None) is None
    refused("VS-1")
    assert digest_for_team(team="ecommerce", since=timezone.now()) is None


def test_a_reopened_exception_is_new_again(db, ada):
    exception_resolve(exception=refused("VS-1"), actor=ada, note="Fixed.")
    since = timezone.now()
    refused("VS-1")  # it fails again

    digest = digest_for_team(team="ecommerce", since=since)

    assert digest is not None and digest.new_count == 1 and digest.top[0].object_ref == "VS-1"


def test_the_digests_are_scheduled_every_five_minutes(db):
    schedule = Schedule.objects.get(func="syncs.tasks.send_digests")
    assert schedule.schedule_type == Schedule.MINUTES and schedule.minutes == 5 and schedule.repeats == -1
