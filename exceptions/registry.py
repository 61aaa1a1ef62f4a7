"""Flows register how to retry one of their items. The queue never imports a flow: it asks the registry."""

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from exceptions.models import SyncException

RetryHandler = Callable[["SyncException"], None]


class AlreadyRecorded(Exception):
    """Raised by a retry handler whose flow has already recorded the item's failure itself (so the queue must
    neither record it again nor call it resolved)."""


_handlers: dict[str, RetryHandler] = {}


def register_retry_handler(flow: str, handler: RetryHandler) -> None:
    """``handler(exception)`` re-runs that one item through ``flow``, idempotently (it checks the target before
    creating anything). It returns when the item went through and raises the flow's error when it did not."""
    _handlers[flow] = handler


def retry_handler(flow: str) -> RetryHandler:
    """Raises LookupError for a flow that registered no handler."""
    try:
        return _handlers[flow]
    except KeyError:
        raise LookupError(f"no retry handler is registered for the {flow} flow") from None


def registered_flows() -> list[str]:
    """The flows that can retry their items, sorted."""
    return sorted(_handlers)
