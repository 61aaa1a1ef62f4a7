"""Team digests of the exception queue: each team's members by e-mail, and the team's chat channel through its
incoming webhook, at most every ``EXCEPTION_DIGEST_MINUTES``, and only when something is new.

A scheduled task calls ``send_team_digests`` every few minutes; it decides per team whether the interval has passed.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from exceptions.digests import digest_chat_payload, digest_for_team, digest_mark_sent, digest_subject, digest_text
from exceptions.kinds import TEAMS
from exceptions.models import DigestState
from syncs.connectors.chat import post_chat_message
from syncs.connectors.errors import ConnectorError

logger = logging.getLogger("switchyard.notifications")

NOT_DUE = "not due"
NOTHING_NEW = "nothing new"
BUSY = "busy"  # another worker is sending this team's digest right now


def send_team_digests(*, now: datetime | None = None) -> dict[str, str]:
    """Send each team whose interval has passed its digest of what is new since its last one. Returns what
    happened per team: ``not due``, ``nothing new``, ``busy``, or a sentence starting ``sent`` that says where to
    and whether the webhook failed. One team's failure never stops another's."""
    now = now or timezone.now()
    outcomes = {}
    for team in TEAMS:
        try:
            outcomes[team] = team_digest_send(team=team, now=now)
        except Exception as error:  # the mail server, say: this team tries again next time, the others go on
            logger.exception("the %s digest failed", team)
            outcomes[team] = f"failed: {type(error).__name__}: {error}"
    return outcomes


def team_digest_send(*, team: str, now: datetime) -> str:
    """Send one team's digest if its interval has passed and something is new; record it as sent. Returns the
    outcome (see ``send_team_digests``). Raises what the e-mail backend raises; then nothing is recorded as sent.

    The team's DigestState row is locked while sending, so two workers (django-q2 may deliver a task twice) never
    send the same digest twice."""
    interval = timedelta(minutes=settings.EXCEPTION_DIGEST_MINUTES)
    with transaction.atomic():
        state = DigestState.objects.select_for_update(skip_locked=True).filter(team=team).first()
        if state is None and DigestState.objects.filter(team=team).exists():
            return BUSY
        since = state.last_sent_at if state else None
        if since is not None and now - since < interval:
            return NOT_DUE
        digest = digest_for_team(team=team, since=since, at=now)
        if digest is None:
            # Nothing recorded: the next digest still covers everything since the last one that went out.
            return NOTHING_NEW
        # A setting the lead may add (the console's public address); until then links are paths.
        base_url = getattr(settings, "SITE_URL", "")
        recipients = team_recipients(team=team)
        if recipients:
            send_mail(
                digest_subject(digest),
                digest_text(digest, base_url=base_url),
                settings.DEFAULT_FROM_EMAIL,
                recipients,
            )
        webhook = settings.EXCEPTION_DIGEST_WEBHOOKS.get(team) or ""
        webhook_outcome = ""
        if webhook:
            try:
                post_chat_message(url=webhook, payload=digest_chat_payload(digest, base_url=base_url))
                webhook_outcome = "the webhook"
            except ConnectorError as error:
                logger.warning("the %s digest webhook failed: %s", team, error)
                webhook_outcome = f"webhook failed: {error}"
        digest_mark_sent(team=team, at=now)
    where = f"{len(recipients)} {'person' if len(recipients) == 1 else 'people'}"
    if webhook_outcome.startswith("webhook failed"):
        return f"sent to {where}; {webhook_outcome}"
    return f"sent to {where}" + (f" and {webhook_outcome}" if webhook_outcome else "")


def team_recipients(*, team: str) -> list[str]:
    """The e-mail addresses of the team's active members (the group named after the team), sorted."""
    users = get_user_model().objects.filter(is_active=True, groups__name=team).exclude(email="")
    return sorted(set(users.values_list("email", flat=True)))
