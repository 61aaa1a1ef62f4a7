"""The one HTTP layer every connector speaks through.

It always sets timeouts; paces calls to stay inside each API's published rate limits; retries timeouts, connection
failures, 5xx and 429 with exponential backoff and jitter, honouring ``Retry-After`` in any of its forms; never
blindly repeats a call that may have created something; and turns every failure into one of the typed errors in
``errors.py``, carrying the request and response with credentials redacted.
"""

import contextlib
import email.utils
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime

import requests

from syncs.connectors.errors import (
    AuthError,
    ConnectorError,
    DataError,
    Exchange,
    RateLimited,
    TransientError,
)

logger = logging.getLogger("switchyard.connectors")

REDACTED = "[redacted]"
SENSITIVE_HEADERS = frozenset(
    {"authorization", "api-authorization", "x-api-key", "cookie", "set-cookie", "proxy-authorization"}
)
SENSITIVE_KEYS = ("password", "secret", "token", "api_key", "apikey", "access", "refresh", "authorization")
BODY_EXCERPT = 20_000  # characters of a request or response body kept with an error
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


# --- Redaction ------------------------------------------------------------------------------------------------


class Redactor:
    """Takes credentials out of anything we keep or show: known secret values wherever they appear, sensitive
    headers, and values under sensitive keys in JSON bodies."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self.secrets:
            value = value.replace(secret, REDACTED)
        return value

    def headers(self, headers: dict[str, str]) -> dict[str, str]:
        return {
            name: REDACTED if name.lower() in SENSITIVE_HEADERS else self.text(str(value))
            for name, value in headers.items()
        }

    def body(self, body: bytes | str | None) -> str:
        if body is None:
            return ""
        if isinstance(body, bytes):
            body = body.decode("utf-8", errors="replace")
        try:
            parsed = json.loads(body)
        except ValueError:
            return self.text(body[:BODY_EXCERPT])
        return self.text(json.dumps(_redact_keys(parsed), ensure_ascii=False)[:BODY_EXCERPT])


def _redact_keys(value):
    if isinstance(value, dict):
        return {
            key: REDACTED
            if isinstance(key, str) and any(word in key.lower() for word in SENSITIVE_KEYS) and value[key]
            else _redact_keys(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_redact_keys(item) for item in value]
    return value


# --- Retry-After ----------------------------------------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds (``"120"``), an HTTP date, a Unix timestamp
    (``"1767225600"``, as Centra sends) or an ISO 8601 timestamp. None when absent or unreadable; never negative."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    now = time.time() if now is None else now
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None:
        # A number this large is a point in time (seconds since 1970), not a delay.
        return max(0.0, number - now if number > 1e9 else number)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now)


# --- Rate limiting --------------------------------------------------------------------------------------------


class RateLimiter:
    """Paces calls so that no window sees more than its limit: e.g. ``[(100, 10), (1000, 3600)]`` for at most
    100 calls in any 10 seconds and 1,000 in any hour. Thread-safe; ``acquire`` blocks until a call may go."""

    def __init__(
        self,
        windows: Iterable[tuple[int, float]],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.windows = [(int(limit), float(seconds)) for limit, seconds in windows]
        self._calls: deque[float] = deque()
        self._longest = max((seconds for _, seconds in self.windows), default=0.0)
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def wait_time(self) -> float:
        """Seconds until the next call may go (0 when it may go now)."""
        with self._lock:
            return self._wait_time(self._clock())

    def _wait_time(self, now: float) -> float:
        while self._calls and now - self._calls[0] >= self._longest:
            self._calls.popleft()
        wait = 0.0
        for limit, seconds in self.windows:
            in_window = [at for at in self._calls if now - at < seconds]
            if len(in_window) >= limit:
                # The call that leaves the window first frees the place.
                wait = max(wait, in_window[-limit] + seconds - now)
        return wait

    def acquire(self) -> float:
        """Take a place for one call, waiting if needed. Returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                wait = self._wait_time(now)
                if wait <= 0:
                    self._calls.append(now)
                    return waited
            self._sleep(wait)
            waited += wait

    def headroom(self) -> float:
        """The smallest share (0..1) of any window still free: 1.0 is idle, 0.0 is at the limit."""
        with self._lock:
            now = self._clock()
            shares = [1 - sum(1 for at in self._calls if now - at < seconds) / limit for limit, seconds in self.windows]
        return max(0.0, min(shares, default=1.0))


# --- Counting calls -------------------------------------------------------------------------------------------


@dataclass
class CallCount:
    """How many HTTP requests were sent while it was counting (every attempt, a retry included)."""

    calls: int = 0


_counts: ContextVar[tuple[CallCount, ...]] = ContextVar("connector_call_counts", default=())


@contextlib.contextmanager
def calls_counted() -> Iterator[CallCount]:
    """Count the requests every session sends inside the ``with`` block, in this thread (or task) only: the calls
    a flow run makes, whatever other threads of the process send meanwhile. Counts may nest."""
    count = CallCount()
    token = _counts.set((*_counts.get(), count))
    try:
        yield count
    finally:
        _counts.reset(token)


# --- The session ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # tries in all, the first included
    base_delay: float = 0.5  # seconds before the first retry; doubles each time
    max_delay: float = 20.0  # no single backoff is longer than this
    max_retry_after: float = 60.0  # a longer Retry-After is not waited out here: the task is rescheduled instead


@dataclass(frozen=True)
class Timeouts:
    connect: float = 5.0
    read: float = 30.0


class ConnectorSession:
    """HTTP for one connection to one system. Connectors build one and call ``request``.

    ``classify(response, exchange)`` lets a connector turn a response the generic rules would accept, or misread,
    into its own typed error (Centra answers 200 with ``errors``; Virtualstock says when to come back in the body).
    ``exchange`` is None: the redacted record of the request is built only for a response that turns out to be an
    error, and the session attaches it to the error the connector returns.

    Proxies and the CA bundle are taken from the environment (``HTTPS_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``…)
    once, when the session is made, not looked up again on every call; ``.netrc`` is not read (connectors send
    their own credentials).
    """

    def __init__(
        self,
        *,
        system: str,
        base_url: str,
        headers: dict[str, str] | None = None,
        secrets: Iterable[str] = (),
        timeouts: Timeouts = Timeouts(),
        retry: RetryPolicy = RetryPolicy(),
        rate_limiter: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.system = system
        self.base_url = base_url.rstrip("/")
        self.timeouts = timeouts
        self.retry = retry
        self.rate_limiter = rate_limiter
        self.redactor = Redactor(secrets)
        self._sleep = sleep
        self._http = requests.Session()
        self._http.headers.update({"User-Agent": "Switchyard/1.0", "Accept": "application/json"})
        self._http.headers.update(headers or {})
        environment = self._http.merge_environment_settings(self.base_url, {}, None, None, None)
        self._http.proxies.update(environment["proxies"])
        self._http.verify = environment["verify"]
        self._http.trust_env = False
        self.last_success_at: float | None = None
        self.last_error: str | None = None
        # Calls sent again after an attempt that may have reached the system: that attempt may still land later.
        self.retried_after_reaching = 0

    def add_secret(self, secret: str) -> None:
        """Teach the redactor a credential learned at run time (an access token, say)."""
        self.redactor = Redactor([*self.redactor.secrets, secret])

    def request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        params: dict | None = None,
        json_body=None,
        data: dict | str | None = None,
        headers: dict[str, str] | None = None,
        idempotent: bool | None = None,
        classify: Callable[[requests.Response, Exchange | None], ConnectorError | None] | None = None,
    ) -> requests.Response:
        """Send one request, retrying what may be retried, and return a successful (2xx) response.

        ``idempotent`` says whether repeating the call after it may have reached the system is harmless; it
        defaults to True for GET, PUT, DELETE. A call that is not idempotent is retried only when it cannot
        have been processed (connection refused, 429, 503). Raises TransientError, RateLimited, DataError or
        AuthError.
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        url = path if path.startswith("http") else f"{self.base_url}/{path.lstrip('/')}"
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._send_once(
                    method, url, operation, params=params, json_body=json_body, data=data, headers=headers
                )
                error = self._classify(response, operation, classify)
            except ConnectorError as failure:
                error = failure
                response = None
            if error is None:
                self.last_success_at = time.time()
                return response
            self.last_error = str(error)
            delay = self._retry_delay(error, attempt, idempotent)
            if delay is None:
                raise error
            if getattr(error, "may_have_reached", False):
                self.retried_after_reaching += 1
            logger.info("%s %s: %s; retrying in %.1fs (attempt %d)", self.system, operation, error, delay, attempt)
            self._sleep(delay)

    def _send_once(self, method, url, operation, *, params, json_body, data, headers) -> requests.Response:
        if self.rate_limiter is not None:
            self.rate_limiter.acquire()
        for count in _counts.get():
            count.calls += 1
        started = time.monotonic()
        try:
            response = self._http.request(
                method,
                url,
                params=params,
                json=json_body,
                data=data,
                headers=headers,
                timeout=(self.timeouts.connect, self.timeouts.read),
            )
        except requests.ConnectionError as error:
            exchange = self._exchange(method, url, json_body if json_body is not None else data)
            # A refused connection never reached the system; a reset or read error may have.
            reached = not isinstance(error, requests.exceptions.ConnectTimeout) and "refused" not in str(error)
            failure = TransientError(
                f"could not connect: {type(error).__name__}", system=self.system, operation=operation, exchange=exchange
            )
            failure.may_have_reached = reached
            raise failure from None
        except requests.Timeout as error:
            exchange = self._exchange(method, url, json_body if json_body is not None else data)
            failure = TransientError(
                f"no answer within {self.timeouts.read:g}s ({type(error).__name__})",
                system=self.system,
                operation=operation,
                exchange=exchange,
            )
            failure.may_have_reached = not isinstance(error, requests.exceptions.ConnectTimeout)
            raise failure from None
        except requests.RequestException as error:  # a broken chunked answer, a bad redirect…: the same as no answer
            exchange = self._exchange(method, url, json_body if json_body is not None else data)
            failure = TransientError(
                f"the answer broke off ({type(error).__name__})",
                system=self.system,
                operation=operation,
                exchange=exchange,
            )
            failure.may_have_reached = True
            raise failure from None
        elapsed_ms = (time.monotonic() - started) * 1000
        logger.debug("%s %s %s -> %s in %.0f ms", self.system, method, operation, response.status_code, elapsed_ms)
        return response

    def _exchange(self, method: str, url: str, body, response: requests.Response | None = None) -> Exchange:
        if body is not None and not isinstance(body, str | bytes):
            body = json.dumps(body, default=str)
        exchange = Exchange(method=method, url=self.redactor.text(url), request_body=self.redactor.body(body))
        if response is not None:
            exchange.status = response.status_code
            exchange.response_body = self.redactor.body(response.content)
            exchange.response_headers = self.redactor.headers(dict(response.headers))
        return exchange

    def exchange_for(self, response: requests.Response) -> Exchange:
        """The request and response of ``response``, redacted, to keep with an error."""
        request = response.request
        return self._exchange(request.method, request.url, request.body, response)

    def _classify(self, response: requests.Response, operation: str, classify) -> ConnectorError | None:
        # Redacting the request and response means parsing both bodies: done only for a response that is an error.
        if classify is not None:
            error = classify(response, None)
            if error is not None:
                if error.exchange is None:
                    error.exchange = self.exchange_for(response)
                return error
        status = response.status_code
        if status < 300:
            return None
        exchange = self.exchange_for(response)
        context = {"system": self.system, "operation": operation, "exchange": exchange}
        summary = _summary(exchange.response_body)
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return RateLimited(f"rate limited (429){summary}", retry_after=retry_after, **context)
        if status in (401, 403):
            return AuthError(f"credentials refused ({status}){summary}", **context)
        if status >= 500 or status in (408, 425):
            error = TransientError(f"the system failed ({status}){summary}", **context)
            # 503 says the request was not processed; a 500 may have been half-way through.
            error.may_have_reached = status not in (502, 503, 504)
            return error
        return DataError(f"request refused ({status}){summary}", **context)

    def _retry_delay(self, error: ConnectorError, attempt: int, idempotent: bool) -> float | None:
        """Seconds to wait before trying again, or None to give up and raise."""
        if not error.transient or attempt >= self.retry.attempts:
            return None
        if not idempotent and getattr(error, "may_have_reached", False):
            return None  # it may have been done already: the caller checks before trying again
        backoff = min(self.retry.max_delay, self.retry.base_delay * 2 ** (attempt - 1))
        delay = backoff * random.uniform(0.5, 1.0)
        if isinstance(error, RateLimited) and error.retry_after is not None:
            if error.retry_after > self.retry.max_retry_after:
                return None
            delay = max(delay, error.retry_after)
        return delay


def _summary(body: str, limit: int = 300) -> str:
    body = " ".join(body.split())
    if not body:
        return ""
    return f": {body[:limit]}{'…' if len(body) > limit else ''}"


def response_json(session: ConnectorSession, response: requests.Response, operation: str):
    """The JSON body of a successful response. A body that is not JSON is the system misbehaving (a proxy's
    HTML error page, a truncated answer): raised as TransientError with the response kept."""
    try:
        return response.json()
    except ValueError:
        raise TransientError(
            f"the answer was not JSON ({response.headers.get('Content-Type', 'no content type')})",
            system=session.system,
            operation=operation,
            exchange=session.exchange_for(response),
        ) from None
