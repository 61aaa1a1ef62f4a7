"""Writes of the syncs app that are not a flow of their own."""

import hashlib
import logging
import math
from collections.abc import Callable, Mapping

from django.conf import settings
from django.db import IntegrityError, transaction
from django_q.tasks import async_task

from syncs.connectors import centra, fulfil, marketplace
from syncs.connectors.errors import WebhookRejected
from syncs.models import InboundWebhook

logger = logging.getLogger("switchyard.webhooks")

# Deeper than any system's real events (a handful of levels), far below what the JSON writer can take (~900).
WEBHOOK_MAX_DEPTH = 64
# system -> (the connector's verifier, the header that carries the signature)
WEBHOOK_VERIFIERS: dict[str, tuple[Callable[..., object], str]] = {
    "centra": (centra.verify_webhook, "X-Centra-Signature"),
    "fulfil": (fulfil.verify_webhook, "X-Fulfil-Hmac-SHA256"),
    "marketplace": (marketplace.verify_webhook, "X-Marketplace-Signature"),
}


def webhook_receive(*, system: str, body: bytes, headers: Mapping[str, str]) -> tuple[InboundWebhook, bool]:
    """Verify a webhook's signature with the system's secret and keep it once.

    Returns (the stored webhook, whether it is new). A delivery already stored (the sender retrying, or the same
    request replayed while its signature is still fresh) is not stored again. Raises WebhookRejected for a
    missing, wrong or stale signature or an unreadable body, and KeyError for a system that sends no webhooks.
    """
    verify, signature_header = WEBHOOK_VERIFIERS[system]
    secret = settings.CONNECTIONS[system]["webhook_secret"]
    if not secret:
        raise WebhookRejected(f"no webhook secret is configured for {system}")
    try:
        payload = verify(secret=secret, body=body, headers=headers)
    except TypeError:
        # A signature with characters no digest has (hmac refuses to compare them): a forgery or garbage.
        raise WebhookRejected("the signature is malformed") from None
    except RecursionError:
        raise WebhookRejected("the body is nested too deeply to read") from None
    except ValueError:
        # The configured secret itself is unusable (Fulfil's must be base64): refuse, and say so in the log.
        logger.error("the %s webhook secret is not in the form %s gives it", system, system)
        raise WebhookRejected(f"the {system} webhook secret is misconfigured") from None
    if problem := _unstorable(payload):
        raise WebhookRejected(problem)
    digest = hashlib.sha256((headers.get(signature_header) or "").encode() + b"\n" + body).hexdigest()
    try:
        with transaction.atomic():
            stored = InboundWebhook.objects.create(system=system, digest=digest, payload=payload)
    except IntegrityError:
        logger.info("%s webhook delivered again; kept once", system)
        stored = InboundWebhook.objects.get(system=system, digest=digest)
        if stored.status == InboundWebhook.Status.RECEIVED:
            # Kept before but perhaps never handed to a worker (the broker was down): hand it over again.
            transaction.on_commit(lambda: async_task("syncs.tasks.process_webhook", stored.pk))
        return stored, False
    transaction.on_commit(lambda: async_task("syncs.tasks.process_webhook", stored.pk))
    return stored, True


def _unstorable(payload) -> str:
    """Why a decoded payload cannot be kept as JSON in the database, or '' when it can: PostgreSQL refuses NaN and
    Infinity and lone surrogates (which Python's JSON reader accepts) and text holding a NUL character, and nesting
    deeper than WEBHOOK_MAX_DEPTH could not be written back out as JSON. Walked without recursion, so a deeply nested
    payload cannot exhaust the stack."""
    pending = [(payload, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > WEBHOOK_MAX_DEPTH:
            return f"the body is nested more than {WEBHOOK_MAX_DEPTH} levels deep"
        if isinstance(value, float) and not math.isfinite(value):
            return "the body holds NaN or Infinity, which JSON does not allow"
        if isinstance(value, str) and "\x00" in value:
            return "the body holds a NUL character"
        if isinstance(value, str) and not _is_unicode(value):
            return "the body holds text that is not Unicode (a lone surrogate)"
        if isinstance(value, dict):
            pending.extend((item, depth + 1) for item in (*value.keys(), *value.values()))
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)
    return ""


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
