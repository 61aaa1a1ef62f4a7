"""The machinery every simulator shares: routing, the control API, the call log, faults, rate limits, webhooks.

The sandbox plays the outside world, so it imports nothing from the connectors: a misunderstanding shared by
both would hide itself.
"""

import hashlib
import hmac
import json
import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import requests
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

logger = logging.getLogger("switchyard.sandbox")


def utcnow_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def json_response(data, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(data, default=str), status=status, headers=headers, mimetype="application/json")


class ApiError(Exception):
    """Raised by a handler to answer with the simulated system's own error shape."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


@dataclass
class Faults:
    """Trouble injected into a simulator's API (never into its control API)."""

    error_rate: float = 0.0  # share of calls answered with error_status
    error_status: int = 500
    throttle_rate: float = 0.0  # share of calls answered 429 in the system's own shape, Retry-After one second
    timeout_rate: float = 0.0  # share of calls that hang for timeout_seconds before answering
    timeout_seconds: float = 10.0
    latency_ms: float = 0.0  # added to every call
    rate_limit: dict | None = None  # {"limit": N, "window": seconds}; None: the system's own default
    fail_first: int = 0  # the next N calls fail with error_status, then calls succeed: "5xx, then success"
    hang_first: int = 0  # the next N calls hang for timeout_seconds and are then carried out: an answer lost
    malformed_rate: float = 0.0  # share of calls answered 200 with a body cut off half-way
    fail_operations: list[str] = field(default_factory=list)  # only these operations fail; empty: all

    def applies_to(self, operation: str) -> bool:
        return not self.fail_operations or operation in self.fail_operations


class Window:
    """The sandbox's own count of calls in a sliding window, to answer 429 as the real system would."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit, self.seconds = limit, seconds
        self.calls: deque[float] = deque()

    def admit(self, now: float) -> float | None:
        """None if the call may go; else seconds until it could."""
        while self.calls and now - self.calls[0] >= self.seconds:
            self.calls.popleft()
        if len(self.calls) >= self.limit:
            return self.calls[0] + self.seconds - now
        self.calls.append(now)
        return None


@dataclass
class Call:
    method: str
    path: str
    operation: str
    status: int | None
    at: str


class Simulator:
    """One external system. Subclasses set ``name``, add API routes in ``api_rules`` and implement handlers.

    ``self.state`` is everything the system holds (JSON-shaped); it is guarded by ``self.lock``.
    """

    name = "system"
    #: The system's published rate limit, as (limit, seconds), applied unless faults say otherwise; None: none.
    default_rate_limit: tuple[int, float] | None = None

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.calls: list[Call] = []
        self.faults = Faults()
        self.window: Window | None = None
        self.webhook_url: str | None = None
        self.webhook_secret: str = ""
        self.outbox: queue.Queue | None = None  # set by the server: webhooks are sent off the request thread
        self.enforce_rate_limit = False
        self.state: dict = {}
        self.reset()
        control = [
            Rule("/_sandbox/reset", endpoint="control_reset", methods=["POST"]),
            Rule("/_sandbox/seed", endpoint="control_seed", methods=["POST"]),
            Rule("/_sandbox/state", endpoint="control_state", methods=["GET"]),
            Rule("/_sandbox/calls", endpoint="control_calls", methods=["GET"]),
            Rule("/_sandbox/calls/clear", endpoint="control_calls_clear", methods=["POST"]),
            Rule("/_sandbox/faults", endpoint="control_faults", methods=["GET", "POST"]),
        ]
        self.url_map = Map(control + list(self.api_rules()), strict_slashes=False)

    # --- to be provided by each system ------------------------------------------------------------------------

    def api_rules(self) -> list[Rule]:
        return []

    def empty_state(self) -> dict:
        return {}

    def seed(self, body: dict) -> dict:
        """Load generated or explicit data; returns a summary of what was loaded."""
        raise NotImplementedError

    def authenticate(self, request: Request, operation: str) -> Response | None:
        """None if the request's credentials are good; else the system's own 401 answer."""
        return None

    def operation_of(self, request: Request, endpoint: str, arguments: dict) -> str:
        return endpoint

    def tick(self, rng: random.Random) -> None:
        """Demo mode: move the world on a little (a new order, a stock movement, a shipment…). Called
        periodically, with the sandbox's random generator; must take ``self.lock`` for what it changes."""

    def rate_limited_response(self, retry_after: float) -> Response:
        return json_response({"detail": "Too many requests"}, 429, {"Retry-After": str(int(retry_after) + 1)})

    def fault_response(self, status: int) -> Response:
        return json_response({"error": "Internal error"}, status)

    # --- control API ------------------------------------------------------------------------------------------

    def reset(self) -> None:
        with self.lock:
            self.state = self.empty_state()
            self.calls = []
            self.faults = Faults()
            self.window = None

    def control_reset(self, request: Request) -> Response:
        self.reset()
        return json_response({"reset": self.name})

    def control_seed(self, request: Request) -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return json_response({"error": 'Send a JSON object: {"generate": {...}} or explicit objects.'}, 400)
        with self.lock:
            try:
                summary = self.seed(body)
            except (KeyError, TypeError, ValueError) as error:
                return json_response({"error": f"Cannot seed: {error}"}, 400)
        return json_response({"seeded": summary})

    def control_state(self, request: Request) -> Response:
        with self.lock:
            return json_response(self.state)

    def control_calls(self, request: Request) -> Response:
        with self.lock:
            return json_response([asdict(call) for call in self.calls])

    def control_calls_clear(self, request: Request) -> Response:
        with self.lock:
            self.calls = []
        return json_response({"cleared": True})

    def control_faults(self, request: Request) -> Response:
        if request.method == "POST":
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                return json_response({"error": "Send a JSON object of faults."}, 400)
            known = set(Faults.__dataclass_fields__)
            unknown = set(body) - known
            if unknown:
                return json_response({"error": f"Unknown faults: {sorted(unknown)}; known: {sorted(known)}"}, 400)
            with self.lock:
                self.faults = Faults(**body)
                limit = self.faults.rate_limit
                self.window = Window(int(limit["limit"]), float(limit["window"])) if limit else None
        return json_response(asdict(self.faults))

    # --- serving ----------------------------------------------------------------------------------------------

    def _rate_window(self) -> Window | None:
        if self.window is None and self.enforce_rate_limit and self.default_rate_limit:
            self.window = Window(*self.default_rate_limit)
        return self.window

    def handle(self, request: Request, path: str) -> Response:
        adapter = self.url_map.bind("sandbox", path_info=path)
        try:
            endpoint, arguments = adapter.match(method=request.method)
        except (NotFound, MethodNotAllowed) as error:
            return error.get_response()
        if endpoint.startswith("control_"):
            return getattr(self, endpoint)(request, **arguments)

        operation = self.operation_of(request, endpoint, arguments)
        # Logged on arrival, so a call still hanging (a simulated timeout) is already in the log; its status is
        # filled in when it is answered (None until then).
        call = Call(request.method, request.path, operation, None, utcnow_iso())
        with self.lock:
            self.calls.append(call)
        response = self._serve_api(request, endpoint, arguments, operation)
        call.status = response.status_code
        return response

    def _serve_api(self, request: Request, endpoint: str, arguments: dict, operation: str) -> Response:
        faults = self.faults
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        denied = self.authenticate(request, operation)
        if denied is not None:
            return denied
        with self.lock:
            window = self._rate_window()
            wait = window.admit(time.time()) if window else None
        if wait is not None:
            return self.rate_limited_response(wait)
        if faults.applies_to(operation):
            with self.lock:
                fail_now = faults.fail_first > 0
                if fail_now:
                    faults.fail_first -= 1
            if fail_now:
                return self.fault_response(faults.error_status)
            with self.lock:
                hang_now = faults.hang_first > 0
                if hang_now:
                    faults.hang_first -= 1
            roll = random.random()
            if hang_now or roll < faults.timeout_rate:
                time.sleep(faults.timeout_seconds)
            elif roll < faults.timeout_rate + faults.error_rate:
                return self.fault_response(faults.error_status)
            elif roll < faults.timeout_rate + faults.error_rate + faults.malformed_rate:
                return Response('{"results": [{"id": 1, "na', status=200, mimetype="application/json")
            elif roll < faults.timeout_rate + faults.error_rate + faults.malformed_rate + faults.throttle_rate:
                return self.rate_limited_response(0.0)
        try:
            return getattr(self, endpoint)(request, **arguments)
        except ApiError as error:
            return error.response
        except HTTPException as error:
            return error.get_response()

    # --- webhooks ---------------------------------------------------------------------------------------------

    def emit_webhook(self, payload: dict) -> None:
        """Queue a signed webhook to the console, if one is configured. Sent in the background, in order."""
        if self.webhook_url and self.outbox is not None:
            self.outbox.put((self, payload))

    def sign_and_send(self, payload: dict) -> None:
        """Build this system's own webhook request and send it. Subclasses shape it as the real system does."""
        body = json.dumps(payload).encode()
        signature = hmac.new(self.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
        requests.post(
            self.webhook_url,
            data=body,
            headers={"Content-Type": "application/json", "X-Signature": signature},
            timeout=10,
        )


class WebhookSender(threading.Thread):
    """Sends queued webhooks one by one, retrying a few times as real systems do when the receiver fails."""

    def __init__(self, outbox: queue.Queue, attempts: int = 3) -> None:
        super().__init__(name="sandbox-webhooks", daemon=True)
        self.outbox = outbox
        self.attempts = attempts

    def run(self) -> None:
        while True:
            simulator, payload = self.outbox.get()
            for attempt in range(self.attempts):
                try:
                    simulator.sign_and_send(payload)
                    break
                except requests.RequestException as error:
                    logger.warning("webhook from %s failed (%s), attempt %d", simulator.name, error, attempt + 1)
                    time.sleep(0.5 * 2**attempt)
            self.outbox.task_done()


class SandboxApp:
    """The WSGI application serving every simulator under its own prefix: /centra/, /fulfil/, …"""

    def __init__(self, simulators: dict[str, Simulator]) -> None:
        self.simulators = simulators
        self.outbox: queue.Queue = queue.Queue()
        for simulator in simulators.values():
            simulator.outbox = self.outbox
        self.sender = WebhookSender(self.outbox)
        self.sender.start()

    def __call__(self, environ, start_response):
        request = Request(environ)
        prefix, _, rest = request.path.strip("/").partition("/")
        simulator = self.simulators.get(prefix)
        if simulator is None:
            response = json_response({"error": "Unknown system", "systems": sorted(self.simulators)}, 404)
        else:
            response = simulator.handle(request, "/" + rest)
        return response(environ, start_response)

    def configure_webhooks(self, *, console_url: str, secrets: dict[str, str]) -> None:
        """Point every simulator that sends webhooks at the console, each with its signing secret."""
        for name, simulator in self.simulators.items():
            simulator.webhook_url = f"{console_url.rstrip('/')}/webhooks/{name}/"
            simulator.webhook_secret = secrets.get(name, "")


def run_periodically(interval: float, action: Callable[[], None], stop: threading.Event) -> threading.Thread:
    """Call ``action`` every ``interval`` seconds on a daemon thread until ``stop`` is set."""

    def loop() -> None:
        while not stop.wait(interval):
            try:
                action()
            except Exception:  # the demo must keep going whatever one tick does
                logger.exception("sandbox tick failed")

    thread = threading.Thread(target=loop, name="sandbox-ticker", daemon=True)
    thread.start()
    return thread
