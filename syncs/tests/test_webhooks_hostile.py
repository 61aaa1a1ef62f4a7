"""The webhook endpoints under hostile input: garbage, forged, replayed, huge and strangely encoded deliveries are
answered with a 4xx, never a 5xx, and leave nothing behind (no webhook row, link, exception, run or task); a
correctly signed delivery is kept, or refused with a 4xx when its body cannot be kept."""

import base64
import hashlib
import hmac
import json
import time
from urllib.parse import urlencode

import pytest
from django.test import TestCase
from django.urls import reverse
from django_q.models import OrmQ
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exceptions.models import ExceptionEvent, SyncException
from syncs.models import InboundWebhook, Link, LinkRef, SyncRun

pytestmark = pytest.mark.django_db

CENTRA_SECRET = "centra-hostile-secret"
MARKETPLACE_SECRET = "marketplace-hostile-secret"
FULFIL_KEY = b"fulfil-hostile-key"
SIGNATURE_HEADERS = {
    "centra": "X-Centra-Signature",
    "fulfil": "X-Fulfil-Hmac-SHA256",
    "marketplace": "X-Marketplace-Signature",
}
SYSTEMS = sorted(SIGNATURE_HEADERS)
# Every example shares one test's database: what a refused delivery must not write is checked after each.
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def secrets(settings):
    settings.CONNECTIONS = {
        **settings.CONNECTIONS,
        "centra": {**settings.CONNECTIONS["centra"], "webhook_secret": CENTRA_SECRET},
        "fulfil": {**settings.CONNECTIONS["fulfil"], "webhook_secret": base64.b64encode(FULFIL_KEY).decode()},
        "marketplace": {**settings.CONNECTIONS["marketplace"], "webhook_secret": MARKETPLACE_SECRET},
    }


def signed(system: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The signature header a sender holding the right secret puts on ``body``."""
    if system == "fulfil":
        digest = base64.b64encode(hmac.new(FULFIL_KEY, body, hashlib.sha256).digest()).decode()
        return {SIGNATURE_HEADERS[system]: digest}
    secret = CENTRA_SECRET if system == "centra" else MARKETPLACE_SECRET
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {SIGNATURE_HEADERS[system]: f"t={timestamp},v1={digest}"}


def deliver(client, system: str, body: bytes, headers: dict[str, str], **extra):
    """POST a delivery as a sender would; a server error comes back as a 500 response rather than raised."""
    client.raise_request_exception = False
    with TestCase.captureOnCommitCallbacks() as queued:
        response = client.post(
            reverse("webhook", args=[system]), data=body, content_type="application/json", headers=headers, **extra
        )
    response.queued = queued
    return response


def assert_refused_and_nothing_written(response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    assert response.queued == []
    assert not InboundWebhook.objects.exists()
    assert not Link.objects.exists() and not LinkRef.objects.exists()
    assert not SyncException.objects.exists() and not ExceptionEvent.objects.exists()
    assert not SyncRun.objects.exists()
    assert not OrmQ.objects.exists()


def centra_body(payload: str) -> bytes:
    return urlencode({"payload": payload}).encode()


# --- strategies ---------------------------------------------------------------------------------------------------

# What HTTP carries in a header: Latin-1 text (a WSGI server decodes header bytes as Latin-1).
header_text = st.text(st.characters(max_codepoint=0xFF, exclude_characters="\r\n"), max_size=200)
hex_digest = st.text("0123456789abcdef", min_size=0, max_size=80)
forged_signature = st.one_of(
    header_text,
    st.builds(lambda t, v: f"t={t},v1={v}", st.integers(-(10**30), 10**30), hex_digest),
    st.builds(lambda t, v: f"t={t},v1={v}", st.text(max_size=30), header_text),
    st.builds(lambda t: f"t={int(time.time())},v1={t}", st.text(max_size=70)),
    st.builds(lambda digits: f"t={'9' * digits},v1=00", st.integers(10, 6000)),
    st.just(f"t={'²' * 10},v1=00"),
    st.binary(max_size=64).map(lambda raw: base64.b64encode(raw).decode()),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**40), 10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
fulfil_typed = st.fixed_dictionaries(
    {"__class__": st.sampled_from(["Decimal", "date", "datetime", "other"])},
    optional={
        "decimal": json_values,
        "iso_string": json_values,
        "year": json_values,
        "month": json_values,
        "day": json_values,
    },
)


def as_json(value) -> str:
    return json.dumps(value, allow_nan=True)


def signed_body(system: str):
    """Bodies a sender holding the secret might sign: well-formed or not, of each system's shape or not."""
    text = json_values.map(as_json) | st.text(max_size=200)
    if system == "centra":
        events = st.lists(json_values | st.dictionaries(st.text(max_size=10), json_values, max_size=4), max_size=4)
        payload = text | st.builds(lambda e: as_json({"events": e}), events)
        return payload.map(centra_body) | st.binary(max_size=200)
    if system == "fulfil":
        typed = st.lists(fulfil_typed | json_values, max_size=4).map(as_json)
        return (text | typed).map(str.encode) | st.binary(max_size=200)
    event = st.builds(
        lambda kind, rest: as_json({**rest, "type": kind}), json_values, st.dictionaries(st.text(), json_values)
    )
    return (text | event).map(str.encode) | st.binary(max_size=200)


# --- forged, garbage and unsigned deliveries ----------------------------------------------------------------------


@pytest.mark.parametrize("system", SYSTEMS)
@FUZZ
@given(body=st.binary(max_size=2000), signature=st.none() | forged_signature)
def test_a_forged_or_unsigned_delivery_is_refused_and_nothing_is_written(client, system, body, signature):
    headers = {} if signature is None else {SIGNATURE_HEADERS[system]: signature}
    response = deliver(client, system, body, headers)
    assert response.status_code == 401
    assert_refused_and_nothing_written(response)


@pytest.mark.parametrize("system", SYSTEMS)
@FUZZ
@given(body=st.binary(max_size=500), other=st.binary(max_size=500))
def test_a_signature_for_another_body_is_refused(client, system, body, other):
    if body == other:
        return
    response = deliver(client, system, body, signed(system, other))
    assert response.status_code == 401
    assert_refused_and_nothing_written(response)


@pytest.mark.parametrize("system", SYSTEMS)
def test_a_signature_made_with_another_secret_is_refused(client, system, settings):
    body = b'{"type": "order.created", "id": "evt-1"}'
    headers = signed(system, body)
    other = {"centra": "another", "marketplace": "another", "fulfil": base64.b64encode(b"another").decode()}
    settings.CONNECTIONS = {
        **settings.CONNECTIONS,
        system: {**settings.CONNECTIONS[system], "webhook_secret": other[system]},
    }
    assert_refused_and_nothing_written(deliver(client, system, body, headers))


# --- correctly signed deliveries with hostile bodies ----------------------------------------------------------------


@pytest.mark.parametrize("system", SYSTEMS)
@FUZZ
@given(data=st.data())
def test_a_signed_delivery_of_any_body_is_kept_or_refused_never_a_server_error(client, system, data):
    body = data.draw(signed_body(system))
    response = deliver(client, system, body, signed(system, body))
    if response.status_code == 202:
        stored = InboundWebhook.objects.get(pk=response.json()["id"])
        assert stored.system == system
        assert len(response.queued) == 1  # handed to a worker once the request commits
        InboundWebhook.objects.all().delete()
    else:
        assert_refused_and_nothing_written(response)


# Values a JSON reader accepts but PostgreSQL cannot keep, or a reader cannot take at all, as JSON text.
HOSTILE_VALUES = {
    "NaN": b"NaN",
    "Infinity": b"-Infinity",
    "a NUL character": b'"order\\u0000"',
    "a NUL character in a key": b'{"a\\u0000b": 1}',
    "a lone surrogate": b'"\\ud800"',
    "invalid UTF-8": b'"\xff\xfe"',
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "nesting just within the reader's reach": b"[" * 900 + b"]" * 900,
    "nesting deeper than any event": b"[" * 65 + b"]" * 65,
    "a number of five thousand digits": b"9" * 5000,
    "a long exponent": b"1e999999999",
}

# Centra's form decoding replaces invalid UTF-8; Fulfil reads a long exponent as a Decimal, which is kept as text.
READABLE_BY_SOME = {"invalid UTF-8", "a long exponent"}


def body_with(system: str, value: bytes) -> bytes:
    """A delivery of ``system``'s shape holding ``value``."""
    if system == "centra":
        return b"payload=" + urlencode({"": b'{"events": [{"type": "order", "value": ' + value + b"}]}"})[1:].encode()
    if system == "fulfil":
        return b'[{"product_code": "TEE", "value": ' + value + b"}]"
    return b'{"type": "order.created", "value": ' + value + b"}"


@pytest.mark.parametrize("system", SYSTEMS)
@pytest.mark.parametrize("hostile", list(HOSTILE_VALUES))
def test_a_signed_body_the_database_cannot_keep_is_refused_not_a_server_error(client, system, hostile):
    body = body_with(system, HOSTILE_VALUES[hostile])
    response = deliver(client, system, body, signed(system, body))
    if hostile in READABLE_BY_SOME and response.status_code == 202:
        assert InboundWebhook.objects.count() == 1
        return
    assert_refused_and_nothing_written(response)


@pytest.mark.parametrize("system", ["fulfil", "marketplace"])
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32", "utf-8-sig", "latin-1"])
def test_a_signed_body_in_another_encoding_is_kept_or_refused_never_a_server_error(client, system, encoding):
    body = body_with(system, b'"caf\xc3\xa9 \xf0\x9f\x91\x95"').decode().encode(encoding, errors="replace")
    response = deliver(client, system, body, signed(system, body))
    if response.status_code != 202:
        assert_refused_and_nothing_written(response)


def test_a_fulfil_typed_value_that_is_no_number_or_date_is_refused(client):
    for typed in (
        {"__class__": "Decimal", "decimal": "twelve"},
        {"__class__": "Decimal", "decimal": [1]},
        {"__class__": "date", "year": 10**20, "month": 1, "day": 1},
        {"__class__": "date", "iso_string": "2025-13-45"},
        {"__class__": "datetime", "iso_string": 5},
    ):
        body = json.dumps([{"id": 1, "amount": typed}]).encode()
        assert_refused_and_nothing_written(deliver(client, "fulfil", body, signed("fulfil", body)))


def test_centra_events_that_are_not_objects_are_refused(client):
    body = centra_body(json.dumps({"events": ["order", 1000, None]}))
    response = deliver(client, "centra", body, signed("centra", body))
    assert "no list of events" in response.json()["error"]
    assert_refused_and_nothing_written(response)


# --- replays --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("system", ["centra", "marketplace"])
@pytest.mark.parametrize("age", [310, 86400, -310, -(10**12)])
def test_a_delivery_signed_too_long_ago_or_in_the_future_is_refused(client, system, age):
    body = centra_body(json.dumps({"events": [{"type": "order", "id": 1}]})) if system == "centra" else b'{"type": "x"}'
    response = deliver(client, system, body, signed(system, body, timestamp=int(time.time()) - age))
    assert_refused_and_nothing_written(response)


@pytest.mark.parametrize("system", SYSTEMS)
def test_a_delivery_replayed_while_fresh_is_kept_once_and_handed_over_once(client, system):
    payload = {"events": [{"type": "order", "id": 1}]} if system == "centra" else {"type": "order.created", "id": 1}
    body = centra_body(json.dumps(payload)) if system == "centra" else json.dumps(payload).encode()
    headers = signed(system, body)
    first = deliver(client, system, body, headers)
    replays = [deliver(client, system, body, headers) for _ in range(3)]
    assert first.status_code == 202 and len(first.queued) == 1
    assert [(replay.status_code, replay.json()["duplicate"]) for replay in replays] == [(202, True)] * 3
    assert InboundWebhook.objects.count() == 1
    # Not handed to a worker again while the first hand-over stands (a row still "received" is handed over again
    # only because its worker may never have had it: covered by test_webhooks).
    InboundWebhook.objects.update(status=InboundWebhook.Status.PROCESSED)
    assert deliver(client, system, body, headers).queued == []


# --- size and framing -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("system", SYSTEMS)
def test_a_body_over_the_limit_is_refused_even_when_signed(client, system, settings):
    settings.WEBHOOK_MAX_BYTES = 10_000
    body = b'{"type": "order.created", "pad": "' + b"x" * 20_000 + b'"}'
    response = deliver(client, system, body, signed(system, body))
    assert response.status_code == 413
    assert_refused_and_nothing_written(response)


@pytest.mark.parametrize("declared", ["²", "-1", "1e3", "", " 12", "٣"])
def test_a_content_length_that_is_not_a_number_is_refused(client, declared):
    body = b'{"type": "order.created"}'
    response = deliver(client, "marketplace", body, signed("marketplace", body), CONTENT_LENGTH=declared)
    assert response.status_code in (401, 413)
    assert_refused_and_nothing_written(response)


def test_a_body_cut_short_by_its_content_length_no_longer_matches_its_signature(client):
    body = b'{"type": "order.created", "id": "evt-1"}'
    response = deliver(client, "marketplace", body, signed("marketplace", body), CONTENT_LENGTH="5")
    assert_refused_and_nothing_written(response)
