"""Available to sell: what a channel may offer of a SKU. Pure functions, whole units only.

ATS = on hand − the stock in statuses that cannot be sold (reserved, quarantined, QC, allocated to other
channels…, as the stock status rules say) − the channel's safety buffer, floored at 0; then capped at the
channel's maximum, and sent as 0 when it is at or below the channel's "send 0 at or below" threshold.
A bundle can be sold as many times as its scarcest component allows.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Buffer:
    buffer: int = 0
    max_quantity: int | None = None
    zero_at_or_below: int | None = None


def available_to_sell(
    *, on_hand: int, statuses: Mapping[str, int], subtracted: Iterable[str], buffer: Buffer = Buffer()
) -> int:
    """The whole number of units a channel may sell (never negative). ``statuses`` are the quantities the stock
    master holds in each status; those in ``subtracted`` cannot be sold. Negative inputs (a master that went
    below zero) count as nothing to sell."""
    unsellable = sum(max(0, int(statuses.get(status, 0))) for status in set(subtracted))
    available = max(0, int(on_hand) - unsellable - max(0, int(buffer.buffer)))
    if buffer.max_quantity is not None:
        available = min(available, max(0, int(buffer.max_quantity)))
    if buffer.zero_at_or_below is not None and available <= buffer.zero_at_or_below:
        available = 0
    return available


def bundle_available(components: Iterable[tuple[int, int]]) -> int:
    """How many bundles can be sold given [(available of the component, units of it per bundle)]: the scarcest
    component decides. A bundle with no components cannot be sold."""
    counts = [available // per_bundle for available, per_bundle in components if per_bundle > 0]
    return max(0, min(counts)) if counts else 0
