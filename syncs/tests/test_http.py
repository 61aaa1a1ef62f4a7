"""The shared HTTP layer's parts that need no server: Retry-After, pacing, redaction."""

import email.utils

import pytest

from syncs.connectors.errors import DataError, Exchange, RateLimited
from syncs.connectors.http import RateLimiter, Redactor, parse_retry_after

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
