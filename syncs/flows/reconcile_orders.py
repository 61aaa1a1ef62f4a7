"""Order reconciliation for finance: per day, Centra market and currency, Centra's orders against Fulfil's sales
(how many, how much) and Centra's refunds against Fulfil's credit notes — to the minor unit.

The orders that should be in Fulfil are those in an export status (``ORDER_EXPORT_STATUSES``) with something left
on them; each is matched to its sale by reference (the Centra order number). Each refunded Centra return is matched
to its credit (reference ``centra-return-<id>``), whose total is the refund with the opposite sign. Every order or
refund that does not match — missing, or one minor unit out — is listed on the day and raised once: a missing sale
as ``missing_in_target``, a differing total as ``totals_mismatch``, a missing or differing credit as
``refund_not_posted``; each resolves itself on the night it matches.

Nightly, the last ``ORDER_RECONCILE_DAYS`` days up to yesterday are looked at again (an order exported late
settles its day); finance can re-run any day from the report page. A day signed off whose figures then change
loses its sign-off (kept in its history), so a signature only ever covers figures someone saw.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from exceptions.models import SyncException
from exceptions.registry import register_retry_handler
from exceptions.services import ACTIVE, failure_record, objects_succeeded
from mappings.models import System
from syncs import connections
from syncs.connectors.errors import DataError
from syncs.flows.order_export import TotalsMismatch, export_statuses
from syncs.flows.reconcile_skus import MissingInTarget
from syncs.flows.return_sync import RefundNotPosted
from syncs.models import OrderReconciliation
from syncs.runs import RunCounter, moment

FLOW = "reconcile_orders"


@dataclass
class OrderReconcileSummary:
    examined: int = 0  # orders and refunds looked at
    days: int = 0
    differences: int = 0
    raised: int = 0
    resolved: int = 0
    failed: int = 0
    first_day: str = ""
    last_day: str = ""
    unbalanced: list[str] = field(default_factory=list)


@dataclass
class Group:
    """One day × market × currency as it is being counted."""

    centra_orders: int = 0
    centra_value: Decimal = Decimal(0)
    fulfil_sales: int = 0
    fulfil_value: Decimal = Decimal(0)
    centra_refunds: int = 0
    refund_value: Decimal = Decimal(0)
    fulfil_credits: int = 0
    credit_value: Decimal = Decimal(0)
    differences: list[dict] = field(default_factory=list)


def default_days() -> tuple[date, date]:
    yesterday = timezone.localdate() - timedelta(days=1)
    return yesterday - timedelta(days=settings.ORDER_RECONCILE_DAYS - 1), yesterday


def reconcile_orders_run(
    *, counter: RunCounter | None = None, first: date | None = None, last: date | None = None
) -> OrderReconcileSummary:
    """Reconcile the days ``first``..``last`` (both included; default: the last ORDER_RECONCILE_DAYS to
    yesterday) and record each day × market × currency."""
    if first is None or last is None:
        first, last = default_days()
    summary, problems = _reconcile(first, last)
    if counter:
        counter.add(examined=summary.examined, succeeded=summary.examined - len(problems), failed=len(problems))
    return summary


def _reconcile(first: date, last: date) -> tuple[OrderReconcileSummary, dict]:
    summary = OrderReconcileSummary(first_day=first.isoformat(), last_day=last.isoformat())
    start, end = _moment(first), _moment(last + timedelta(days=1))
    centra, fulfil = connections.centra(), connections.fulfil()
    markets = {int(market["id"]): market.get("name", "") for market in centra.markets()}
    groups: dict[tuple, Group] = defaultdict(Group)
    problems: dict[str, tuple[type[DataError], str, dict]] = {}
    examined_refs: set[str] = set()

    statuses = set(export_statuses())
    orders = [
        order
        for order in centra.orders(where={"createdAt": {"from": start.isoformat(), "to": end.isoformat()}})
        if order.status in statuses and any(line.quantity for line in order.lines)
    ]
    sales = fulfil.sales_by_reference(str(order.number) for order in orders)
    market_of: dict[int, int] = {}
    for order in orders:
        key = (_day(order.created_at), order.market_id, order.currency)
        market_of[order.number] = order.market_id
        group = groups[key]
        group.centra_orders += 1
        group.centra_value += order.grand_total
        ref = f"sale:{order.number}"
        examined_refs.add(ref)
        sale = sales.get(str(order.number))
        if sale is None:
            _differ(group, problems, ref, "missing_sale", order.number, order.grand_total, None, order.currency, key[0])
            continue
        group.fulfil_sales += 1
        group.fulfil_value += sale.total_amount or 0
        if sale.total_amount != order.grand_total:
            _differ(
                group,
                problems,
                ref,
                "sale_differs",
                order.number,
                order.grand_total,
                sale.total_amount,
                order.currency,
                key[0],
            )

    refunds = [
        record for record in centra.return_records() if record.refunds and start <= moment(record.created_at) < end
    ]
    unknown_markets = sorted({record.order_number for record in refunds} - market_of.keys())
    for begin in range(0, len(unknown_markets), 100):
        for order in centra.orders(where={"number": unknown_markets[begin : begin + 100]}):
            market_of[order.number] = order.market_id
    credits = fulfil.sales_by_reference(f"centra-return-{record.id}" for record in refunds)
    for record in refunds:
        refunded = sum(record.refunds, Decimal(0))
        key = (_day(record.created_at), market_of.get(record.order_number, 0), record.currency)
        group = groups[key]
        group.centra_refunds += 1
        group.refund_value += refunded
        ref = f"credit:{record.id}"
        examined_refs.add(ref)
        credit = credits.get(f"centra-return-{record.id}")
        credited = -(credit.total_amount or 0) if credit is not None else None
        if credit is not None:
            group.fulfil_credits += 1
            group.credit_value += credited
        if credited != refunded:
            kind = "missing_credit" if credit is None else "credit_differs"
            _differ(
                group,
                problems,
                ref,
                kind,
                record.id,
                refunded,
                credited,
                record.currency,
                key[0],
                order=record.order_number,
            )

    summary.examined = len(orders) + len(refunds)
    with transaction.atomic():
        _save(groups, markets, first, last, summary)
    summary.differences = len(problems)
    summary.raised, summary.resolved = _raise_and_resolve(problems, examined_refs)
    return summary, problems


def _moment(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def _day(text: str) -> date:
    """The brand's calendar day (TIME_ZONE) an order or return was made on."""
    return timezone.localtime(moment(text)).date()


def _differ(group, problems, ref, kind, number, centra, fulfil, currency, day, order=None) -> None:
    difference = {
        "day": day.isoformat(),
        "kind": kind,
        "ref": str(number),
        "order": str(order or number),
        "centra": str(centra),
        "fulfil": None if fulfil is None else str(fulfil),
        "currency": currency,
    }
    group.differences.append(difference)
    error_class, message = {
        "missing_sale": (MissingInTarget, f"Centra order {number} ({centra} {currency}) has no sale in Fulfil"),
        "sale_differs": (TotalsMismatch, f"Centra order {number} is {centra} {currency}, its Fulfil sale {fulfil}"),
        "missing_credit": (
            RefundNotPosted,
            f"Centra refunded {centra} {currency} (return {number}), Fulfil has no credit",
        ),
        "credit_differs": (
            RefundNotPosted,
            f"Centra refunded {centra} {currency} (return {number}), Fulfil credited {fulfil}",
        ),
    }[kind]
    problems[ref] = (error_class, message, difference)


def _save(groups: dict[tuple, Group], markets: dict[int, str], first: date, last: date, summary) -> None:
    now = timezone.now()
    seen = set()
    for (day, market_id, currency), group in sorted(groups.items()):
        seen.add((day, market_id, currency))
        values = {
            "market_name": markets.get(market_id, ""),
            "centra_orders": group.centra_orders,
            "centra_value": group.centra_value,
            "fulfil_sales": group.fulfil_sales,
            "fulfil_value": group.fulfil_value,
            "centra_refunds": group.centra_refunds,
            "refund_value": group.refund_value,
            "fulfil_credits": group.fulfil_credits,
            "credit_value": group.credit_value,
            "differences": group.differences,
            "checked_at": now,
        }
        row = OrderReconciliation.objects.select_for_update().filter(day=day, market_id=market_id, currency=currency)
        existing = row.first()
        if existing is None:
            OrderReconciliation.objects.create(day=day, market_id=market_id, currency=currency, **values)
        else:
            before = existing.figures()
            for name, value in values.items():
                setattr(existing, name, value)
            if existing.signed_off_at and existing.figures() != before:
                sign_off_clear(existing, reason="the figures changed after the sign-off")
            existing.save()
        if group.differences:
            summary.unbalanced.append(f"{day} {markets.get(market_id, market_id)} {currency}")
    # A day × market × currency that no longer has any order or refund keeps a row of zeros.
    stale = OrderReconciliation.objects.filter(day__range=(first, last)).exclude(checked_at=now)
    for existing in stale:
        if (existing.day, existing.market_id, existing.currency) not in seen:
            existing.centra_orders = existing.fulfil_sales = existing.centra_refunds = existing.fulfil_credits = 0
            existing.centra_value = existing.fulfil_value = existing.refund_value = existing.credit_value = 0
            existing.differences, existing.checked_at = [], now
            existing.save()
    summary.days = (last - first).days + 1


def sign_off_clear(reconciliation: OrderReconciliation, *, reason: str) -> None:
    """Take a sign-off off a day, keeping it in the day's history."""
    reconciliation.sign_off_history = [
        *reconciliation.sign_off_history,
        {
            "by": reconciliation.signed_off_by.get_username() if reconciliation.signed_off_by else "",
            "at": reconciliation.signed_off_at.isoformat() if reconciliation.signed_off_at else "",
            "note": reconciliation.sign_off_note,
            "cleared": reason,
        },
    ]
    reconciliation.signed_off_by = reconciliation.signed_off_at = None
    reconciliation.sign_off_note = ""


def _raise_and_resolve(problems: dict, examined_refs: set[str]) -> tuple[int, int]:
    """Raise each new difference once (one already in the queue is left as it is); resolve what matches now."""
    active = set(
        SyncException.objects.filter(flow=FLOW, status__in=ACTIVE, object_ref__in=list(problems)).values_list(
            "object_ref", flat=True
        )
    )
    raised = 0
    for ref, (error_class, message, difference) in problems.items():
        if ref in active:
            continue
        failure_record(
            flow=FLOW,
            object_type="order" if ref.startswith("sale:") else "refund",
            object_ref=ref,
            error=error_class(message, system=System.FULFIL, operation="order reconciliation"),
            title=message,
            system=System.FULFIL,
            value=Decimal(difference["centra"]),
            currency=difference["currency"],
            refs=sorted({difference["ref"], difference["order"]}),
            context={"difference": difference, "day": difference["day"]},
        )
        raised += 1
    matched = set(
        SyncException.objects.filter(flow=FLOW, status__in=ACTIVE, object_ref__in=list(examined_refs))
        .exclude(object_ref__in=list(problems))
        .values_list("object_ref", flat=True)
    )
    resolved = objects_succeeded(flow=FLOW, object_refs=sorted(matched), note="It matches now.") if matched else 0
    return raised, resolved


def retry(exception) -> None:
    """Look at the order's or refund's day again (the queue calls this): resolves when it matches now."""
    day = date.fromisoformat(exception.context["day"])
    _, problems = _reconcile(day, day)
    if exception.object_ref in problems:
        error_class, message, _ = problems[exception.object_ref]
        raise error_class(message, system=System.FULFIL, operation="order reconciliation")


register_retry_handler(FLOW, retry)
