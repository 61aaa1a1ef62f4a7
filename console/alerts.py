"""Alerts: a few rules over the figures of ``console.monitoring``, judged every minute by a scheduled task
(``console.tasks.evaluate_alerts``).

An alert is told once when it starts to hold and once more when it clears — by e-mail to ALERT_EMAILS and to the
Slack-compatible incoming webhook ALERT_WEBHOOK_URL, through the same sending code as the team digests (Django's
``send_mail`` and ``syncs.connectors.chat``). Each occurrence is one ``Alert`` row, from raised to cleared; a database
constraint keeps one row per key while it holds, and each message is claimed with a conditional update before it is
sent, so two workers judging at once (django-q2 may deliver a task twice) never tell it twice.

The rules, each with its thresholds in settings:
- ``stock_stale:<channel>``: a channel's share of stale SKU × channel pairs above ALERT_STOCK_STALE_SHARE, or a pair
  waiting longer than ALERT_STOCK_STALE_MAX_MINUTES;
- ``orders_stalled``: more open ``order_stalled`` exceptions than ALERT_ORDERS_STALLED;
- ``exceptions_spike``: more new exceptions in the last hour than ALERT_EXCEPTIONS_PER_HOUR, or than
  ALERT_EXCEPTIONS_SPIKE_FACTOR × the hourly average before it (and more than ALERT_EXCEPTIONS_SPIKE_MIN);
- ``connection:<system>``: more open ``api_unavailable`` / ``auth_failed`` exceptions against a system than
  ALERT_CONNECTION_FAILURES;
- ``worker_heartbeat``: no heartbeat for WORKER_HEARTBEAT_STALE_AFTER seconds. (A cluster that is down entirely
  cannot run this task: /healthz and the heartbeat metric are watched from outside for that.)
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse
from django.utils import timezone

from console import monitoring
from console.models import Alert
from exceptions.kinds import KINDS
from exceptions.models import Status
from syncs.connections import LABELS as SYSTEM_LABELS
from syncs.connectors.chat import post_chat_message
from syncs.connectors.errors import ConnectorError

logger = logging.getLogger("switchyard.alerts")

RECOVERY_GIVE_UP = timedelta(days=1)  # a recovery no destination took for a day is no longer news


@dataclass(frozen=True)
class Reading:
    """One rule's judgement of one thing, now."""

    key: str
    title: str  # what is wrong when it holds, in a few words: "Stock stale on John Lewis"
    holds: bool
    value: float
    threshold: float
    figure: str  # the figure and the threshold in words
    link: str  # the console page to look at (a path)


# --- the rules ----------------------------------------------------------------------------------------------------


def alert_readings(*, now: datetime) -> list[Reading]:
    """Every rule's reading now, whether it holds or not (the recovery message tells the figure it cleared at)."""
    return [
        *_stock_readings(now=now),
        _orders_stalled_reading(),
        _exceptions_spike_reading(now=now),
        *_connection_readings(),
        _heartbeat_reading(now=now),
    ]


def _stock_readings(*, now: datetime) -> list[Reading]:
    share_limit = settings.ALERT_STOCK_STALE_SHARE
    max_minutes = settings.ALERT_STOCK_STALE_MAX_MINUTES
    readings = []
    for channel in monitoring.stock_freshness(now=now):
        too_old = bool(max_minutes) and channel.oldest_waiting_age > max_minutes * 60
        figure = (
            f"{_percent(channel.stale_share)} of its {channel.pairs:,} SKUs ({channel.stale:,}) have a change the "
            f"channel has not confirmed for over {_minutes(settings.STOCK_STALE_MINUTES)}"
        )
        if channel.oldest_waiting_age:
            figure += f"; the longest has waited {_duration(channel.oldest_waiting_age)}"
        figure += f" (alert above {_percent(share_limit)}"
        figure += f" or past {_minutes(max_minutes)})" if max_minutes else ")"
        readings.append(
            Reading(
                key=f"stock_stale:{channel.channel}",
                title=f"Stock stale on {channel.name}",
                holds=channel.stale_share > share_limit or too_old,
                value=channel.stale_share,
                threshold=share_limit,
                figure=figure,
                link=_queue_link(kind="stock_stale"),
            )
        )
    return readings


def _orders_stalled_reading() -> Reading:
    count, limit = monitoring.open_count(kind="order_stalled"), settings.ALERT_ORDERS_STALLED
    return Reading(
        key="orders_stalled",
        title="Orders stalled",
        holds=count > limit,
        value=count,
        threshold=limit,
        figure=f"{count:,} open order_stalled {_plural(count, 'exception')} (alert above {limit:,})",
        link=_queue_link(kind="order_stalled", status=Status.OPEN),
    )


def _exceptions_spike_reading(*, now: datetime) -> Reading:
    hours = settings.ALERT_EXCEPTIONS_BASELINE_HOURS
    new = monitoring.new_exceptions(now=now, hours=hours)
    spike = max(settings.ALERT_EXCEPTIONS_SPIKE_MIN, settings.ALERT_EXCEPTIONS_SPIKE_FACTOR * new.hourly_average)
    limit = min(settings.ALERT_EXCEPTIONS_PER_HOUR, spike)
    return Reading(
        key="exceptions_spike",
        title="Exceptions spiking",
        holds=new.last_hour > limit,
        value=new.last_hour,
        threshold=limit,
        figure=(
            f"{new.last_hour:,} new {_plural(new.last_hour, 'exception')} in the last hour, against "
            f"{new.hourly_average:,.1f} an hour over the {hours} hours before (alert above {limit:,.0f})"
        ),
        link=reverse("exceptions:queue") + "?" + urlencode({"status": "all", "age": "1h", "sort": "newest"}),
    )


def _connection_readings() -> list[Reading]:
    limit = settings.ALERT_CONNECTION_FAILURES
    failures = monitoring.connection_failures()
    by_system: dict[str, dict[str, int]] = {system: {} for system in SYSTEM_LABELS}
    for (system, kind), count in failures.items():
        by_system.setdefault(system, {})[kind] = count
    readings = []
    for system, kinds in by_system.items():
        total = sum(kinds.values())
        parts = ", ".join(f"{count:,} × {KINDS[kind].label}" for kind, count in sorted(kinds.items()))
        readings.append(
            Reading(
                key=f"connection:{system or 'unknown'}",
                title=f"{SYSTEM_LABELS.get(system, system or 'A system')} connection failing",
                holds=total > limit,
                value=total,
                threshold=limit,
                figure=(
                    f"{total:,} open {_plural(total, 'exception')} of calls that failed"
                    + (f" ({parts})" if parts else "")
                    + f" (alert above {limit:,})"
                ),
                link=_queue_link(kind=max(kinds, key=kinds.get) if kinds else "api_unavailable", status=Status.OPEN),
            )
        )
    return readings


def _heartbeat_reading(*, now: datetime) -> Reading:
    age, limit = monitoring.heartbeat_age(now=now), settings.WORKER_HEARTBEAT_STALE_AFTER
    seen = age != monitoring.NEVER
    return Reading(
        key="worker_heartbeat",
        title="Worker heartbeat stale",
        holds=age >= limit,
        value=age,
        threshold=limit,
        figure=(
            (f"no heartbeat for {_duration(age)}" if seen else "no heartbeat ever recorded")
            + f" (alert after {_duration(limit)})"
        ),
        link=reverse("dashboard"),
    )


# --- state --------------------------------------------------------------------------------------------------------


def alerts_evaluate(*, now: datetime | None = None) -> list[str]:
    """Judge every rule: raise the alerts that now hold (recording the figure of those already raised), clear the
    ones that no longer do, then send the messages due. Returns one line per message sent or failed."""
    now = now or timezone.now()
    readings = {reading.key: reading for reading in alert_readings(now=now)}
    for reading in readings.values():
        if reading.holds:
            alert_hold(reading=reading, now=now)
    for alert in monitoring.alerts_holding():
        reading = readings.get(alert.key)
        if reading is None or not reading.holds:
            alert_clear(alert=alert, reading=reading, now=now)
    return alerts_send_due(now=now)


def alert_hold(*, reading: Reading, now: datetime) -> Alert:
    """Raise the alert for ``reading`` unless it is already raised; either way record the latest figure."""
    figures = {
        "title": reading.title,
        "last_value": reading.value,
        "threshold": reading.threshold,
        "last_message": reading.figure,
        "link": reading.link,
        "evaluated_at": now,
    }
    # The constraint allows one uncleared row per key: a second worker's create fails and finds the first's row.
    alert, created = Alert.objects.get_or_create(
        key=reading.key, cleared_at=None, defaults={**figures, "raised_at": now}
    )
    if not created:
        Alert.objects.filter(pk=alert.pk).update(**figures)
    return alert


def alert_clear(*, alert: Alert, reading: Reading | None, now: datetime) -> bool:
    """Mark the alert cleared, with the figure it cleared at (unchanged when the rule no longer measures it: a
    channel removed). Returns False when another worker cleared it first."""
    figures = {"last_value": reading.value, "last_message": reading.figure} if reading else {}
    cleared = Alert.objects.filter(pk=alert.pk, cleared_at__isnull=True).update(
        cleared_at=now, evaluated_at=now, **figures
    )
    return cleared == 1


def alerts_send_due(*, now: datetime) -> list[str]:
    """Send the messages not yet sent: that an alert holds (while it holds), and that one cleared (for a day after,
    if the message that it held went out). A message no destination took is tried again next time."""
    outcomes = []
    for alert in Alert.objects.filter(cleared_at__isnull=True, raise_sent_at__isnull=True).order_by("raised_at"):
        outcomes.append(_send_once(alert, "raise_sent_at", _raised_message(alert), now=now))
    recovered = Alert.objects.filter(
        cleared_at__gte=now - RECOVERY_GIVE_UP, raise_sent_at__isnull=False, recovery_sent_at__isnull=True
    ).order_by("cleared_at")
    for alert in recovered:
        outcomes.append(_send_once(alert, "recovery_sent_at", _recovered_message(alert), now=now))
    return [outcome for outcome in outcomes if outcome]


def _send_once(alert: Alert, sent_field: str, message: "Message", *, now: datetime) -> str:
    """Claim the message (stamp ``sent_field`` if no one has), send it, and keep the stamp if any destination took
    it; otherwise give the claim back so the next evaluation tries again. Returns what happened ('' if another
    worker had claimed it)."""
    claimed = Alert.objects.filter(pk=alert.pk, **{f"{sent_field}__isnull": True}).update(**{sent_field: now})
    if claimed != 1:
        return ""
    delivered, failed = _deliver(message)
    if failed and not delivered:
        outcome = f"{message.subject}: not sent ({'; '.join(failed)}); tried again next time"
        Alert.objects.filter(pk=alert.pk).update(**{sent_field: None}, delivery=_noted(alert, outcome, now=now))
        return outcome
    where = ", ".join(delivered) or "nowhere (neither ALERT_EMAILS nor ALERT_WEBHOOK_URL is set)"
    outcome = "; ".join([f"{message.subject}: sent to {where}", *failed])
    Alert.objects.filter(pk=alert.pk).update(delivery=_noted(alert, outcome, now=now))
    return outcome


def _noted(alert: Alert, outcome: str, *, now: datetime) -> str:
    """The alert's delivery notes with ``outcome`` added (the last twenty are plenty)."""
    return "\n".join([*alert.delivery.splitlines()[-19:], f"{now:%Y-%m-%d %H:%M:%S} {outcome}"])


# --- messages -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    subject: str
    text: str  # the e-mail body
    chat: dict  # the Slack-compatible webhook payload


def _raised_message(alert: Alert) -> Message:
    url = _url(alert.link)
    subject = f"Switchyard alert: {alert.title}"
    text = f"{alert.title}: {alert.last_message}.\n\nRaised {_when(alert.raised_at)}.\n{url}\n"
    chat = f":rotating_light: *{_escape(alert.title)}*: {_escape(alert.last_message)}. {_chat_link(url)}"
    return Message(subject=subject, text=text, chat={"text": chat})


def _recovered_message(alert: Alert) -> Message:
    url = _url(alert.link)
    lasted = _duration((alert.cleared_at - alert.raised_at).total_seconds())
    subject = f"Switchyard recovered: {alert.title}"
    text = (
        f"Cleared: {alert.title}. Now {alert.last_message}.\n\n"
        f"It held for {lasted} (raised {_when(alert.raised_at)}, cleared {_when(alert.cleared_at)}).\n{url}\n"
    )
    chat = (
        f":white_check_mark: *Cleared: {_escape(alert.title)}*. Now {_escape(alert.last_message)}. "
        f"It held for {lasted}. {_chat_link(url)}"
    )
    return Message(subject=subject, text=text, chat={"text": chat})


def _deliver(message: Message) -> tuple[list[str], list[str]]:
    """Send ``message`` to every configured destination; returns (where it went, what failed). One destination
    failing never stops the other."""
    delivered, failed = [], []
    recipients = settings.ALERT_EMAILS
    if recipients:
        try:
            send_mail(message.subject, message.text, settings.DEFAULT_FROM_EMAIL, recipients)
            delivered.append(f"{len(recipients)} e-mail {_plural(len(recipients), 'address', 'addresses')}")
        except Exception as error:  # the mail server, say: the webhook may still take it
            logger.exception("alert e-mail failed")
            failed.append(f"e-mail failed: {type(error).__name__}")
    if settings.ALERT_WEBHOOK_URL:
        try:
            post_chat_message(url=settings.ALERT_WEBHOOK_URL, payload=message.chat)
            delivered.append("the webhook")
        except ConnectorError as error:  # never names the URL: it is the credential
            logger.warning("alert webhook failed: %s", error)
            failed.append(f"webhook failed: {error}")
    return delivered, failed


def _queue_link(**filters: str) -> str:
    return reverse("exceptions:queue") + "?" + urlencode(filters)


def _url(path: str) -> str:
    return f"{settings.SITE_URL.rstrip('/')}{path}"


def _chat_link(url: str) -> str:
    # Slack makes a link only of an absolute URL; without SITE_URL the path is shown as code.
    return f"<{url}|Open in Switchyard>" if url.startswith(("http://", "https://")) else f"`{url}`"


def _escape(text: str) -> str:
    """Slack's mrkdwn treats &, < and > as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _when(moment: datetime) -> str:
    return f"{timezone.localtime(moment):%d %b %Y %H:%M %Z}"


def _duration(seconds: float) -> str:
    minutes = max(0, int(seconds // 60))
    if minutes < 2:
        return f"{max(0, int(seconds))} s"
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} days"


def _minutes(minutes: int) -> str:
    return _duration(minutes * 60)


def _percent(share: float) -> str:
    return f"{share:.1%}".replace(".0%", "%")


def _plural(count: float, word: str, plural: str = "") -> str:
    return word if count == 1 else plural or f"{word}s"
