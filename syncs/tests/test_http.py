"""The shared HTTP layer: Retry-After, pacing, redaction; and, against the sandbox, what a session does per call
(an error's redacted record, the count of calls, the environment's proxies)."""

import email.utils
import threading

import pytest

from syncs.connectors.errors import DataError, Exchange, RateLimited, TransientError
from syncs.connectors.http import ConnectorSession, RateLimiter, Redactor, RetryPolicy, calls_counted, parse_retry_after

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        (str(int(NOW) + 30), 30.0),  # a Unix timestamp, as Centra sends
        (email.utils.formatdate(NOW + 45, usegmt=True), 45.0),  # an HTTP date
        ("2027-01-15T08:00:45Z", 45.0),  # an ISO 8601 timestamp
        (str(int(NOW) - 10), 0.0),  # a moment already past: go now
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_read_in_every_form(value, seconds):
    assert parse_retry_after(value, now=NOW) == seconds


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_limiter_paces_calls_to_every_window():
    clock = Clock()
    limiter = RateLimiter([(3, 10), (5, 3600)], clock=clock, sleep=clock.sleep)
    waits = [limiter.acquire() for _ in range(6)]
    assert waits[:3] == [0, 0, 0]
    assert waits[3] == pytest.approx(10)  # the 10-second window was full
    assert waits[5] == pytest.approx(3600 - 10)  # then the hourly one
    assert limiter.headroom() == pytest.approx(0.4)  # the hour still holds 3 of its 5 calls


def test_headroom_reports_the_tightest_window():
    clock = Clock()
    limiter = RateLimiter([(4, 10), (100, 3600)], clock=clock, sleep=clock.sleep)
    limiter.acquire()
    assert limiter.headroom() == pytest.approx(0.75)


def test_the_redactor_removes_secrets_wherever_they_appear():
    redactor = Redactor(["s3cret-token-value"])
    assert redactor.text("https://x/?key=s3cret-token-value") == "https://x/?key=[redacted]"
    assert redactor.headers({"Authorization": "Bearer abc", "X-Api-Key": "k", "Accept": "json"}) == {
        "Authorization": "[redacted]",
        "X-Api-Key": "[redacted]",
        "Accept": "json",
    }
    body = redactor.body(b'{"username": "u", "password": "p", "refresh": "r", "items": [{"access": "a"}]}')
    assert 'p"' not in body and '"r"' not in body and '"a"' not in body
    assert '"username": "u"' in body


def test_typed_errors_survive_pickling_for_the_task_queue():
    import pickle

    error = RateLimited(
        "slow down",
        retry_after=12.5,
        system="centra",
        operation="setStock",
        exchange=Exchange("POST", "https://x/graphql", status=429),
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.retry_after, copy.system, copy.exchange.status, copy.transient) == (
        RateLimited,
        12.5,
        "centra",
        429,
        True,
    )
    data = pickle.loads(pickle.dumps(DataError("bad", details=["a", "b"], system="fulfil", operation="create")))
    assert (data.details, data.transient, str(data)) == (["a", "b"], False, "fulfil create: bad")


ONE_TRY = RetryPolicy(attempts=1)


def centra_session(sandbox, **options) -> ConnectorSession:
    return ConnectorSession(
        system="centra",
        base_url=f"{sandbox.url}/centra",
        headers={"Authorization": "Bearer sandbox-centra"},
        secrets=["sandbox-centra"],
        retry=ONE_TRY,
        **options,
    )


def ask_for_warehouses(session: ConnectorSession, **options):
    query = {"query": "query warehouses { warehouses { id name } }", "variables": {}}
    return session.request("POST", "/graphql", operation="warehouses", json_body=query, **options)


def test_a_classifier_is_given_no_exchange_and_the_error_it_returns_gets_the_redacted_one(sandbox):
    given = []

    def refuse_everything(response, exchange):
        given.append(exchange)
        return DataError("refused by the connector", system="centra", operation="warehouses")

    with pytest.raises(DataError) as error:
        ask_for_warehouses(centra_session(sandbox), classify=refuse_everything)
    assert given == [None]
    record = error.value.exchange.as_dict()
    assert (record["method"], record["status"]) == ("POST", 200)
    assert "warehouses" in record["request_body"] and "Main warehouse" in record["response_body"]
    assert "sandbox-centra" not in repr(record)


def test_calls_are_counted_inside_the_block_and_in_this_thread_only(sandbox):
    session = centra_session(sandbox)
    ask_for_warehouses(session)
    with calls_counted() as outer:
        ask_for_warehouses(session)
        with calls_counted() as inner:
            ask_for_warehouses(session)
        elsewhere = threading.Thread(target=ask_for_warehouses, args=(session,))
        elsewhere.start()
        elsewhere.join()
    assert (outer.calls, inner.calls) == (2, 1)


def test_proxies_are_taken_from_the_environment_once_when_the_session_is_made(sandbox, monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there: a refused connection
    through_the_proxy = centra_session(sandbox)
    monkeypatch.delenv("http_proxy")
    direct = centra_session(sandbox)
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    assert ask_for_warehouses(direct).status_code == 200
    with pytest.raises(TransientError, match="could not connect"):
        ask_for_warehouses(through_the_proxy)
