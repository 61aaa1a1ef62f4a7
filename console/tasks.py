"""django-q2 entry points of the console. Thin: each one calls a service."""

import os
import socket

from console.services import heartbeat_record

SCHEDULER_HEARTBEAT = "scheduler"


def heartbeat() -> None:
    """Run every minute by the scheduler: the dashboard shows the worker as alive while this keeps landing."""
    heartbeat_record(name=SCHEDULER_HEARTBEAT, cluster=f"{socket.gethostname()}:{os.getpid()}")


def evaluate_alerts() -> list[str]:
    """Run every minute by the scheduler: raise, clear and tell the alerts. Returns the messages sent or failed."""
    # Imported here, not above: console.alerts reads SCHEDULER_HEARTBEAT from this module.
    from console.alerts import alerts_evaluate

    return alerts_evaluate()
