"""Which rules decide a SKU's available-to-sell on a channel: the stock status rules (which statuses are taken
off) and the channel's stock buffers (which one applies). The stock push and the stock page read them here, so the
page explains a figure with exactly the rules the push applied."""

from collections.abc import Callable, Mapping

from django.db.models import Q
from django.db.models.functions import Lower

from mappings.models import Channel, StockBuffer
from syncs.stock.ats import Buffer
from syncs.stock.in_flight import STATUS as IN_FLIGHT

BufferLookup = Callable[[str, str], Buffer]


def subtracted_statuses(rules: Mapping[str, bool]) -> set[str]:
    """The statuses taken off what can be sold, given the stock master's rules ({status: subtract}, as
    ``mappings.services.stock_statuses`` gives them): those the rules subtract, and units in flight."""
    return {status for status, subtract in rules.items() if subtract} | {IN_FLIGHT}


def statuses_without_rule(statuses: Mapping[str, int], rules: Mapping[str, bool]) -> set[str]:
    """The statuses holding stock that no rule covers: never guessed at, the stock push holds such a SKU back."""
    return {
        status for status, units in statuses.items() if units and status.lower() not in rules and status != IN_FLIGHT
    }


def buffer_lookup(channel: Channel, *, centra_sku: str | None = None, product_number: str = "") -> BufferLookup:
    """A look-up of the buffer rule for (SKU, product number) on ``channel``: the SKU's own, else its product's,
    else the channel's, else none (``Buffer.source`` says which). Reads every rule of the channel in one query, or,
    given ``centra_sku``, only the rules that can apply to that SKU."""
    rules = StockBuffer.objects.filter(channel=channel)
    if centra_sku is not None:
        rules = rules.alias(sku_key=Lower("centra_sku"), product_key=Lower("product_number")).filter(
            Q(sku_key=centra_sku.lower()) | Q(sku_key="", product_key__in=[product_number.lower(), ""])
        )
    by_sku, by_product, default = {}, {}, Buffer()
    for rule in rules:
        scope = "sku" if rule.centra_sku else "product" if rule.product_number else "channel"
        buffer = Buffer(rule.buffer, rule.max_quantity, rule.zero_at_or_below, source=scope)
        if rule.centra_sku:
            by_sku[rule.centra_sku.lower()] = buffer
        elif rule.product_number:
            by_product[rule.product_number.lower()] = buffer
        else:
            default = buffer

    def lookup(sku: str, product_number: str) -> Buffer:
        return by_sku.get(sku.lower()) or by_product.get((product_number or "").lower()) or default

    return lookup
