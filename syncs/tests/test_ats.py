"""Available to sell, property-tested: whole units, never negative, never more than can really be sold."""

from hypothesis import given
from hypothesis import strategies as st

from syncs.stock.ats import Buffer, available_to_sell, bundle_available

quantities = st.integers(min_value=-50, max_value=10_000)
statuses = st.dictionaries(st.sampled_from(["reserved", "quarantined", "qc", "allocated", "in_transit"]), quantities)
buffers = st.builds(
    Buffer,
    buffer=st.integers(min_value=0, max_value=100),
    max_quantity=st.none() | st.integers(min_value=0, max_value=1000),
    zero_at_or_below=st.none() | st.integers(min_value=0, max_value=20),
)
subtracted = st.sets(st.sampled_from(["reserved", "quarantined", "qc", "allocated"]))


def test_the_definition_on_a_worked_example():
    ats = available_to_sell(
        on_hand=40,
        statuses={"reserved": 5, "quarantined": 3, "in_transit": 9},
        subtracted={"reserved", "quarantined"},
        buffer=Buffer(buffer=2),
    )
    assert ats == 30  # 40 − 5 reserved − 3 quarantined − 2 buffer; in transit counts as sellable here


def test_the_cap_and_the_send_zero_threshold():
    assert available_to_sell(on_hand=500, statuses={}, subtracted=(), buffer=Buffer(max_quantity=50)) == 50
    assert available_to_sell(on_hand=3, statuses={}, subtracted=(), buffer=Buffer(zero_at_or_below=3)) == 0
    assert available_to_sell(on_hand=4, statuses={}, subtracted=(), buffer=Buffer(zero_at_or_below=3)) == 4


@given(on_hand=quantities, statuses=statuses, subtracted=subtracted, buffer=buffers)
def test_ats_is_a_whole_number_never_negative_and_never_above_what_is_free(on_hand, statuses, subtracted, buffer):
    ats = available_to_sell(on_hand=on_hand, statuses=statuses, subtracted=subtracted, buffer=buffer)
    assert isinstance(ats, int) and ats >= 0
    free = on_hand - sum(max(0, statuses.get(s, 0)) for s in subtracted) - buffer.buffer
    assert ats <= max(0, free)
    if buffer.max_quantity is not None:
        assert ats <= buffer.max_quantity
    if buffer.zero_at_or_below is not None:
        assert ats == 0 or ats > buffer.zero_at_or_below


@given(on_hand=quantities, statuses=statuses, subtracted=subtracted, buffer=buffers, more=st.integers(1, 100))
def test_more_stock_never_means_less_to_sell(on_hand, statuses, subtracted, buffer, more):
    before = available_to_sell(on_hand=on_hand, statuses=statuses, subtracted=subtracted, buffer=buffer)
    after = available_to_sell(on_hand=on_hand + more, statuses=statuses, subtracted=subtracted, buffer=buffer)
    assert after >= before or (buffer.zero_at_or_below is not None and after == 0)


@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(1, 5)), min_size=1, max_size=6))
def test_a_bundle_never_sells_more_than_its_scarcest_component_allows(components):
    bundles = bundle_available(components)
    assert bundles >= 0
    assert all(bundles * per_bundle <= available for available, per_bundle in components)
    assert any((bundles + 1) * per_bundle > available for available, per_bundle in components)


def test_a_bundle_without_components_cannot_be_sold():
    assert bundle_available([]) == 0
