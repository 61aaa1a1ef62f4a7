"""django-q2 entry points of the queue. Thin: each takes ids and calls a service."""

from exceptions.services import exception_run_retry, exceptions_retry_due


def retry_many(exception_ids: list[int]) -> int:
    """Re-run these exceptions' items. Returns how many went through."""
    return sum(exception_run_retry(exception_id=exception_id) for exception_id in exception_ids)


def retry_due() -> int:
    """Scheduled every minute: the automatic retries whose time has come."""
    return exceptions_retry_due()
