"""Changing one SKU's own stock buffer on one channel, as the stock page does: validated as the admin validates
it, recorded in the buffer's history with who changed it, and followed by a stock push of that SKU, so the channel
shows the new figure within seconds rather than at the next scheduled run."""

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models.functions import Lower

from mappings.models import Channel, StockBuffer
from syncs.stock.in_flight import stock_push_soon

ADD = "mappings.add_stockbuffer"
CHANGE = "mappings.change_stockbuffer"
DELETE = "mappings.delete_stockbuffer"


def stock_buffer_may_edit(user) -> bool:
    """Whether ``user`` may set a SKU's buffer on the stock page (create a SKU's rule and change it)."""
    return user.has_perm(ADD) and user.has_perm(CHANGE)


def stock_buffer_may_remove(user) -> bool:
    """Whether ``user`` may take a SKU's own buffer rule away (its product's or channel's then applies)."""
    return user.has_perm(DELETE)


def stock_buffer_for_sku(*, channel: Channel, centra_sku: str) -> StockBuffer | None:
    """The SKU's own buffer rule on ``channel`` (SKUs compare without case, as the rules' uniqueness does)."""
    rules = StockBuffer.objects.alias(sku_key=Lower("centra_sku")).filter(channel=channel, sku_key=centra_sku.lower())
    return rules.first()


def stock_buffer_set(
    *,
    channel: Channel,
    centra_sku: str,
    buffer: int,
    max_quantity: int | None,
    zero_at_or_below: int | None,
    actor,
) -> StockBuffer:
    """Give ``centra_sku`` its own buffer rule on ``channel`` with these values, creating it or changing the one
    there, then push the SKU's stock once the change is committed. A rule already holding these values is left
    as it is (no history row, no push).

    Raises PermissionDenied when ``actor`` may not create (or change) stock buffers, ValidationError when the values
    are refused by the rule's own validation — the admin's (``full_clean``)."""
    with transaction.atomic():
        rule = _sku_rule_locked(channel, centra_sku)
        if not actor.has_perm(CHANGE if rule else ADD):
            raise PermissionDenied("Your role may not change stock buffers.")
        if rule is None:
            rule = StockBuffer(channel=channel, centra_sku=centra_sku)
        elif (rule.buffer, rule.max_quantity, rule.zero_at_or_below) == (buffer, max_quantity, zero_at_or_below):
            return rule
        rule.buffer, rule.max_quantity, rule.zero_at_or_below = buffer, max_quantity, zero_at_or_below
        rule.full_clean()
        rule._history_user = actor
        rule.save()
        stock_push_soon([rule.centra_sku])
    return rule


def stock_buffer_remove(*, channel: Channel, centra_sku: str, actor) -> bool:
    """Remove the SKU's own buffer rule on ``channel``, so its product's or the channel's applies again, then push
    the SKU's stock. Returns whether there was one. Raises PermissionDenied when ``actor`` may not delete stock
    buffers."""
    if not stock_buffer_may_remove(actor):
        raise PermissionDenied("Your role may not remove stock buffers.")
    with transaction.atomic():
        rule = _sku_rule_locked(channel, centra_sku)
        if rule is None:
            return False
        rule._history_user = actor
        rule.delete()
        stock_push_soon([centra_sku])
    return True


def _sku_rule_locked(channel: Channel, centra_sku: str) -> StockBuffer | None:
    """The SKU's own buffer rule on ``channel`` (however its SKU is typed), locked for the transaction."""
    return (
        StockBuffer.objects.select_for_update()
        .alias(sku_key=Lower("centra_sku"))
        .filter(channel=channel, sku_key=centra_sku.lower())
        .first()
    )
