"""Outgoing chat messages through a Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat and Teams'
Slack-compatible endpoints take the same ``{"text": …, "blocks": […]}`` JSON).

The webhook URL is the credential — anyone holding it can post to the channel — so it is redacted from every error
and stored exchange. Slack answers 200 ``ok``; a refused message is 4xx with a short reason (``invalid_payload``,
``no_service``, ``channel_is_archived``), raised as DataError, or AuthError for 401/403.
"""

from urllib.parse import urlsplit

from syncs.connectors.http import ConnectorSession, RetryPolicy, Timeouts

SYSTEM = "chat"
# A digest is not worth holding a worker for long: a couple of quick tries, then the next digest carries it.
RETRY = RetryPolicy(attempts=3, base_delay=0.5, max_delay=5.0, max_retry_after=30.0)


def post_chat_message(
    *, url: str, payload: dict, timeouts: Timeouts = Timeouts(connect=5.0, read=10.0), retry: RetryPolicy = RETRY
) -> None:
    """POST ``payload`` as JSON to the incoming webhook at ``url``. Returns when the webhook accepted it (2xx).

    A POST is not repeated once it may have reached the chat service (so a slow answer never posts twice); it is
    retried when it cannot have been processed (connection refused, 429, 503). Raises TransientError, RateLimited,
    DataError or AuthError, none of which contains the URL."""
    path = urlsplit(url).path
    session = ConnectorSession(
        system=SYSTEM,
        base_url=url,
        # The whole URL, and its path alone (the secret part of a Slack URL), wherever either appears.
        secrets=[url, *([path] if len(path) > 8 else [])],
        timeouts=timeouts,
        retry=retry,
    )
    session.request("POST", url, operation="post message", json_body=payload, idempotent=False)
