"""Available to sell: what a channel may offer of a SKU. Pure functions, whole units only.

ATS = on hand − the stock in statuses that cannot be sold (reserved, quarantined, QC, allocated to other
channels…, as the stock status rules say) − the channel's safety buffer, floored at 0; then capped at the
channel's maximum, and sent as 0 when it is at or below the channel's "send 0 at or below" threshold.
A bundle can be sold as many times as its scarcest component allows.

``ats_breakdown`` is the one computation: it keeps every step, so the stock page can show how a figure was reached
with the very arithmetic the stock push used; ``available_to_sell`` is its last line.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Buffer:
    buffer: int = 0
    max_quantity: int | None = None
    zero_at_or_below: int | None = None
    # Which rule this is — "sku", "product", "channel", or "default" when the channel has none: for people only.
    source: str = field(default="default", compare=False)


@dataclass(slots=True)
class Breakdown:
    """How available-to-sell was reached, step by step."""

    on_hand: int
    subtracted: dict[str, int]  # each status taken off, with the units taken (never negative; 0 when none)
    buffer: Buffer
    after_buffer: int  # on hand − every subtracted status − the safety buffer (negative when more is held)
    floored: int  # after_buffer, at least 0
    capped: int  # floored, at most the buffer's maximum
    available: int  # what the channel may sell: capped, or 0 when at or below the "send 0" threshold

    @property
    def buffer_units(self) -> int:
        return max(0, int(self.buffer.buffer))

    @property
    def was_capped(self) -> bool:
        return self.capped < self.floored

    @property
    def was_zeroed(self) -> bool:
        return self.available < self.capped


def ats_breakdown(
    *, on_hand: int, statuses: Mapping[str, int], subtracted: Iterable[str], buffer: Buffer = Buffer()
) -> Breakdown:
    """Available to sell with each step kept. ``statuses`` are the quantities the stock master holds in each
    status; those in ``subtracted`` cannot be sold. Negative inputs (a master that went below zero) count as
    nothing to sell."""
    taken = {status: max(0, int(statuses.get(status, 0))) for status in subtracted}
    after_buffer = int(on_hand) - sum(taken.values()) - max(0, int(buffer.buffer))
    floored = max(0, after_buffer)
    capped = floored if buffer.max_quantity is None else min(floored, max(0, int(buffer.max_quantity)))
    zeroed = buffer.zero_at_or_below is not None and capped <= buffer.zero_at_or_below
    return Breakdown(int(on_hand), taken, buffer, after_buffer, floored, capped, 0 if zeroed else capped)


def available_to_sell(
    *, on_hand: int, statuses: Mapping[str, int], subtracted: Iterable[str], buffer: Buffer = Buffer()
) -> int:
    """The whole number of units a channel may sell (never negative): the last line of ``ats_breakdown``."""
    return ats_breakdown(on_hand=on_hand, statuses=statuses, subtracted=subtracted, buffer=buffer).available


def bundle_available(components: Iterable[tuple[int, int]]) -> int:
    """How many bundles can be sold given [(available of the component, units of it per bundle)]: the scarcest
    component decides. A bundle with no components cannot be sold."""
    counts = [available // per_bundle for available, per_bundle in components if per_bundle > 0]
    return max(0, min(counts)) if counts else 0
