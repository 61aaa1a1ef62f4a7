"""The errors every connector raises. Each says which system and operation failed, whether trying again may
help, and carries the request and response as they were, with credentials taken out."""

from dataclasses import dataclass, field


@dataclass
class Exchange:
    """One HTTP request and its response (if any), safe to store and show: credentials are already redacted."""

    method: str
    url: str
    request_body: str = ""
    status: int | None = None
    response_body: str = ""
    response_headers: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "method": self.method,
            "url": self.url,
            "request_body": self.request_body,
            "status": self.status,
            "response_headers": self.response_headers,
            "response_body": self.response_body,
        }


class ConnectorError(Exception):
    """A call to an external system failed.

    ``transient`` says whether the same call may succeed later unchanged (timeouts, 5xx, 429); when it is False
    the request itself is wrong for that system, or we are not allowed to make it, and a person must act.
    """

    transient = False

    def __init__(self, message: str, *, system: str, operation: str, exchange: Exchange | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.system = system
        self.operation = operation
        self.exchange = exchange

    def __str__(self) -> str:
        return f"{self.system} {self.operation}: {self.message}"

    def __reduce__(self):  # keep the keyword-only fields through pickling (the task queue pickles results)
        return (_rebuild, (type(self), self.message, self.system, self.operation, self.exchange, self.__dict__))


def _rebuild(cls, message, system, operation, exchange, state):
    error = cls.__new__(cls)
    ConnectorError.__init__(error, message, system=system, operation=operation, exchange=exchange)
    error.__dict__.update(state)
    return error


class TransientError(ConnectorError):
    """Timeouts, connection failures, 5xx: the same call may succeed if tried again later."""

    transient = True


class RateLimited(TransientError):
    """The system asked us to slow down. ``retry_after`` is how many seconds it asked us to wait, if it said."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class DataError(ConnectorError):
    """The system refused the request as wrong for it: unknown SKU, failed validation, a user error. Trying the
    same request again will fail the same way. ``details`` are the system's own messages, one per problem."""

    def __init__(self, message: str, *, details: list[str] | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.details = details or [message]


class AuthError(ConnectorError):
    """The credentials were refused (401/403): someone must fix the connection's settings."""


def may_have_landed(error: BaseException) -> bool:
    """Whether a write that failed with ``error`` may still have been carried out: anything but an answer that says
    the system did not take it (refused as wrong, credentials refused, asked to slow down). A timeout or a 5xx may
    come from a write the system is still finishing, which lands after the failure is seen: such a write is not sent
    again at once — its item is retried later from the queue, whose retry looks for what the first attempt made."""
    if isinstance(error, DataError | AuthError | RateLimited):
        return False
    return getattr(error, "may_have_reached", True)  # a refused connection or a 502–504 never reached it


class WebhookRejected(Exception):
    """An incoming webhook failed verification. ``reason`` is safe to log and to answer with."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
