"""A team's digest of its exception queue: what is new since the last digest and how much is still open, as plain
text for e-mail and as a Slack-compatible incoming-webhook message. Sending is not done here (the queue speaks no
HTTP): ``syncs.notifications`` sends what these functions build, then records it with ``digest_mark_sent``."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Min, Q
from django.utils import timezone

from exceptions.kinds import KINDS, TEAMS
from exceptions.models import ACTIVE, DigestState, ExceptionEvent, Status, SyncException
from mappings.money import is_currency, is_exact, minor_unit

TOP = 5  # the new exceptions shown one by one, the most costly first


@dataclass(frozen=True)
class DigestItem:
    id: int
    kind_label: str
    title: str
    object_ref: str
    value: Decimal | None
    currency: str
    age: timedelta
    link: str  # a path (``/exceptions/12/``), made absolute by the renderers when given a base URL


@dataclass(frozen=True)
class Digest:
    team: str
    team_label: str
    since: datetime | None  # None: no digest was ever sent, so every open exception is new
    at: datetime
    new_count: int
    new_by_kind: list[tuple[str, int]]  # (kind label, count), the most frequent first
    top: list[DigestItem]
    open_count: int  # open or retrying, new ones included
    oldest_open_age: timedelta | None


def digest_for_team(*, team: str, since: datetime | None, at: datetime | None = None) -> Digest | None:
    """The team's digest of exceptions that need a person (status open) and were recorded — or reopened — since
    ``since``, with the count of everything still open. None when nothing is new: nothing should be sent.

    Exceptions still retrying automatically are counted as open but not announced as new: they may heal by
    themselves."""
    at = at or timezone.now()
    team_queue = SyncException.objects.filter(team=team)
    new = team_queue.filter(status=Status.OPEN)
    if since is not None:
        reopened = ExceptionEvent.objects.filter(action=ExceptionEvent.Action.REOPENED, at__gte=since, at__lt=at)
        new = new.filter(
            Q(first_seen__gte=since, first_seen__lt=at) | Q(pk__in=reopened.values("exception_id").distinct())
        )
    else:
        new = new.filter(first_seen__lt=at)
    by_kind = list(new.order_by().values("kind").annotate(count=Count("id")).order_by("-count", "kind"))
    new_count = sum(row["count"] for row in by_kind)
    if not new_count:
        return None
    top = new.order_by("-priority", "-value_rank", "first_seen", "id").only(
        "id", "kind", "title", "object_ref", "value", "currency", "first_seen"
    )[:TOP]
    still_open = team_queue.filter(status__in=ACTIVE).aggregate(count=Count("id"), oldest=Min("first_seen"))
    return Digest(
        team=team,
        team_label=TEAMS.get(team, team),
        since=since,
        at=at,
        new_count=new_count,
        new_by_kind=[(_kind_label(row["kind"]), row["count"]) for row in by_kind],
        top=[
            DigestItem(
                id=exception.pk,
                kind_label=_kind_label(exception.kind),
                title=exception.title,
                object_ref=exception.object_ref,
                value=exception.value,
                currency=exception.currency,
                age=at - exception.first_seen,
                link=f"/exceptions/{exception.pk}/",
            )
            for exception in top
        ],
        open_count=still_open["count"],
        oldest_open_age=at - still_open["oldest"] if still_open["oldest"] else None,
    )


def digest_mark_sent(*, team: str, at: datetime) -> DigestState:
    """Record that ``team``'s digest went out at ``at``: the next one tells only what is new after it."""
    state, _ = DigestState.objects.update_or_create(team=team, defaults={"last_sent_at": at})
    return state


# --- rendering ----------------------------------------------------------------------------------------------------


def digest_subject(digest: Digest) -> str:
    return (
        f"Switchyard: {digest.new_count} new {_plural(digest.new_count, 'exception')} for {digest.team_label}, "
        f"{digest.open_count} open"
    )


def digest_text(digest: Digest, *, base_url: str = "") -> str:
    """The digest as plain text (the e-mail body). Links are paths unless ``base_url`` is given."""
    lines = [
        f"{digest.new_count} new {_plural(digest.new_count, 'exception')} for {digest.team_label} "
        f"{_since_phrase(digest)}:",
        "",
    ]
    lines += [f"  {count} × {label}" for label, count in digest.new_by_kind]
    lines += ["", "Most costly first:", ""]
    for item in digest.top:
        lines.append(f"- {item.title} ({item.object_ref})")
        lines.append(f"  {_item_facts(item)}")
        lines.append(f"  {base_url.rstrip('/')}{item.link}")
    if digest.new_count > len(digest.top):
        lines += ["", f"…and {digest.new_count - len(digest.top)} more."]
    lines += ["", _open_sentence(digest), f"The queue: {base_url.rstrip('/')}/exceptions/?team={digest.team}"]
    return "\n".join(lines) + "\n"


def digest_chat_payload(digest: Digest, *, base_url: str = "") -> dict:
    """The digest as a Slack incoming-webhook message: ``text`` (the notification and fallback) and mrkdwn
    ``blocks``. Links are clickable only when ``base_url`` is given (Slack needs absolute URLs)."""
    base = base_url.rstrip("/")
    headline = (
        f"{digest.new_count} new {_plural(digest.new_count, 'exception')} for {digest.team_label} "
        f"{_since_phrase(digest)}"
    )
    kinds = ", ".join(f"{count} × {_escape(label)}" for label, count in digest.new_by_kind)
    blocks: list[dict] = [
        _section(f"*{_escape(headline)}*\n{kinds}"),
    ]
    for item in digest.top:
        title = _escape(f"{item.title} ({item.object_ref})")
        heading = f"<{base}{item.link}|{title}>" if base else f"*{title}*  `{item.link}`"
        blocks.append(_section(f"{heading}\n{_escape(_item_facts(item))}"))
    footer = _open_sentence(digest)
    if digest.new_count > len(digest.top):
        footer = f"…and {digest.new_count - len(digest.top)} more. {footer}"
    queue = f"/exceptions/?team={digest.team}"
    footer += f" <{base}{queue}|Open the queue>" if base else f" The queue: `{queue}`"
    # The footer is our own words and paths, with links meant as links: not escaped.
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _limit(footer)}]})
    return {"text": f"{headline}. {_open_sentence(digest)}", "blocks": blocks}


def _section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _limit(text)}}


def _limit(text: str, size: int = 3000) -> str:
    # Slack refuses a section whose text is longer than 3,000 characters.
    return text if len(text) <= size else text[: size - 1] + "…"


def _escape(text: str) -> str:
    """Slack's mrkdwn treats &, < and > as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _kind_label(code: str) -> str:
    return KINDS[code].label if code in KINDS else code


def _item_facts(item: DigestItem) -> str:
    facts = [item.kind_label]
    if item.value is not None:
        facts.append(_money(item.value, item.currency))
    facts.append(f"waiting {_duration(item.age)}")
    return " · ".join(facts)


def _open_sentence(digest: Digest) -> str:
    if not digest.open_count:
        return "Nothing is open."
    oldest = f", the oldest waiting {_duration(digest.oldest_open_age)}" if digest.oldest_open_age else ""
    return f"{digest.open_count} still open{oldest}."


def _since_phrase(digest: Digest) -> str:
    return "since the last digest" if digest.since else "so far"


def _money(value: Decimal, currency: str) -> str:
    # Shown in the currency's minor unit (120.500 EUR as 120.50), never rounded: an inexact amount shows as it is.
    if currency and is_currency(currency) and is_exact(value, currency):
        value = value.quantize(minor_unit(currency))
    return f"{currency} {value:,}".strip()


def _duration(age: timedelta) -> str:
    minutes = max(0, int(age.total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} days"


def _plural(count: int, word: str) -> str:
    return word if count == 1 else f"{word}s"
