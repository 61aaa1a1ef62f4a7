"""The stock pages, end to end against the sandbox: Fulfil as the stock master, Centra, Virtualstock (john-lewis)
and the marketplace (zalando) as channels, states made by real stock pushes."""

import time
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ
from hypothesis import given
from hypothesis import strategies as st

from console import stock_selectors
from mappings.models import Bundle, BundleComponent, Channel, StockBuffer, StockStatusRule
from syncs.connectors.http import Timeouts
from syncs.flows.stock_push import stock_push_run
from syncs.models import Link, StockState
from syncs.stock import planner
from syncs.stock.ats import Buffer, ats_breakdown, available_to_sell
from syncs.stock.in_flight import units_in_flight_record
from syncs.tests.test_stock_push import SKUS, fulfil_stock, on_channels, reserve_in_fulfil
from syncs.tests.test_stock_push import stock as stock  # the engine's own sandbox world, reused as it is

SKU = "TEE100BLKS"


@pytest.fixture(autouse=True)
def planner_figures_forgotten():
    """Inventory Planner's figures are cached for a minute: every test starts without them."""
    cache.clear()
    yield
    cache.clear()


def page(client, url, **params):
    response = client.get(url, params)
    assert response.status_code == 200, response.content[:500]
    return response


def found(client, **params) -> set[tuple[str, str]]:
    """The (SKU, channel code) pairs the list shows for ``params``, every page followed."""
    pairs, url = [], reverse("stock:pairs")
    response = page(client, url, **params)
    while True:
        pairs += [(row.sku, row.channel.code) for row in response.context["rows"]]
        if not response.context["next_url"]:
            break
        response = page(client, url + response.context["next_url"])
    assert len(pairs) == len(set(pairs)), "a pair shown twice across pages"
    return set(pairs)


# --- one SKU ------------------------------------------------------------------------------------------------------


def test_the_breakdown_names_each_subtraction_and_adds_up_to_what_the_push_sent(stock, fred, client_for):
    StockStatusRule.objects.create(system="fulfil", status="quarantined", subtract=True, description="Held for QC.")
    centra, john_lewis, zalando = (Channel.objects.get(code=code) for code in ("centra", "john-lewis", "zalando"))
    StockBuffer.objects.create(channel=centra, buffer=1, zero_at_or_below=4)
    StockBuffer.objects.create(channel=john_lewis, centra_sku=SKU, buffer=1, max_quantity=3)
    StockBuffer.objects.create(channel=zalando, product_number="TEE100", buffer=2)
    stock_push_run()
    # Fulfil reports no product numbers; a Centra-mastered reading records them, and the push then keeps them.
    StockState.objects.filter(sku__startswith="TEE100").update(product_number="TEE100")
    reserve_in_fulfil(3)  # an order Fulfil holds stock for
    order = Link.objects.create(kind=Link.Kind.ORDER, source_system="zalando", source_ref="Z-1")
    units_in_flight_record(order, {SKU: 2})  # sold on Zalando, not yet at Fulfil
    stock_push_run(skus=[SKU])

    response = page(client_for(fred), reverse("stock:sku", args=[SKU]))

    shown = {entry.channel.code: entry for entry in response.context["stock"].channels}
    expected = {"centra": 0, "john-lewis": 3, "zalando": 3}  # 10 − 3 reserved − 2 in flight = 5, then each buffer
    assert {code: StockState.objects.get(channel__code=code, sku=SKU).ats for code in shown} == expected
    assert {code: values[SKU] for code, values in on_channels(stock).items()} == expected
    for code, entry in shown.items():
        labels = {line.label: line for line in entry.lines}
        assert labels["On hand at the stock master"].units == 10
        assert labels["Reserved for open orders"].units == -3
        assert labels["In flight: sold, not yet at the stock master"].units == -2
        assert labels["Quarantined"].units == 0 and labels["Quarantined"].note == "Held for QC."
        terms = sum(line.units for line in entry.lines if line.kind == "minus")
        assert 10 + terms == labels["Left after the buffer"].units == entry.breakdown.after_buffer
        assert labels["Available to sell"].units == entry.breakdown.available == expected[code]
        assert entry.agrees
    assert [(line.units, line.note) for line in shown["centra"].lines if line.label == "Safety buffer"] == [
        (-1, "the channel's rule")
    ]
    assert "Sent as 0" in {line.label for line in shown["centra"].lines}
    assert [line.note for line in shown["john-lewis"].lines if line.label == "Safety buffer"] == ["this SKU's own rule"]
    assert "Capped at the maximum of 3" in {line.label for line in shown["john-lewis"].lines}
    assert [line.note for line in shown["zalando"].lines if line.label == "Safety buffer"] == ["product TEE100's rule"]
    html = response.content.decode()
    for text in ("Reserved for open orders", "In flight: sold, not yet at the stock master", "Sent as 0"):
        assert text in html


def test_a_buffer_changed_since_the_last_push_shows_what_the_next_push_sends(stock, fred, client_for):
    stock_push_run()
    StockBuffer.objects.create(channel=Channel.objects.get(code="zalando"), buffer=4)

    response = page(client_for(fred), reverse("stock:sku", args=[SKU]))

    zalando = next(entry for entry in response.context["stock"].channels if entry.channel.code == "zalando")
    assert (zalando.state.ats, zalando.breakdown.available, zalando.agrees) == (10, 6, False)
    assert "with today's buffer and status rules it is 6" in response.content.decode()


def test_a_bundle_is_explained_from_its_scarcest_component(stock, fred, client_for):
    bundle = Bundle.objects.create(bundle_sku="TEE100DUO", name="Two tees")
    BundleComponent.objects.create(bundle=bundle, component_sku="TEE100BLKM", quantity=2, price_share=50)
    BundleComponent.objects.create(bundle=bundle, component_sku="TEE100BLKL", quantity=1, price_share=50)
    StockBuffer.objects.create(channel=Channel.objects.get(code="zalando"), buffer=1)
    stock_push_run()

    response = page(client_for(fred), reverse("stock:sku", args=["TEE100DUO"]))

    for entry in response.context["stock"].channels:
        labels = {line.label: line.units for line in entry.lines}
        assert labels["Component TEE100BLKM"] == 2 and labels["Component TEE100BLKL"] == 25  # 4 ÷ 2, 25 ÷ 1
        assert labels["Bundles the scarcest component allows"] == 2
        state = StockState.objects.get(channel=entry.channel, sku="TEE100DUO")
        assert labels["Available to sell"] == entry.breakdown.available == state.ats
    assert {e.channel.code: e.breakdown.available for e in response.context["stock"].channels}["zalando"] == 1


def test_each_channel_shows_what_it_accepted_when_and_what_it_showed(stock, fred, client_for):
    stock_push_run(full=True)
    john_lewis = StockState.objects.get(channel__code="john-lewis", sku=SKU)
    StockState.objects.filter(pk=john_lewis.pk).update(acknowledged_at=timezone.now() - timedelta(hours=5))
    fulfil_stock(stock, {SKU: 6})
    stock("virtualstock").faults(error_rate=1.0, error_status=400, fail_operations=["product_stock"])
    stock_push_run(skus=[SKU])

    response = page(client_for(fred), reverse("stock:sku", args=[SKU]))

    entry = next(entry for entry in response.context["stock"].channels if entry.channel.code == "john-lewis")
    assert (entry.state.ats, entry.state.pushed_value, entry.state.channel_value) == (6, 10, 10)
    assert entry.state.stale and entry.state.pending and not entry.state.drift
    assert [exception.kind for exception in entry.exceptions] == ["validation_failed"]
    html = response.content.decode()
    assert "stock-flag-stale" in html
    assert reverse("exceptions:detail", args=[entry.exceptions[0].pk]) in html


def test_an_unknown_sku_is_not_found(fred, client_for):
    assert client_for(fred).get(reverse("stock:sku", args=["NOPE"])).status_code == 404


@given(
    on_hand=st.integers(-20, 500),
    statuses=st.dictionaries(st.sampled_from(["reserved", "in_flight", "qc", "allocated"]), st.integers(-5, 200)),
    subtracting=st.sets(st.sampled_from(["reserved", "qc"])),
    buffer=st.builds(
        Buffer,
        buffer=st.integers(0, 50),
        max_quantity=st.none() | st.integers(0, 300),
        zero_at_or_below=st.none() | st.integers(0, 20),
    ),
)
def test_the_lines_of_any_breakdown_add_up_to_what_the_push_sends(on_hand, statuses, subtracting, buffer):
    rules = {"reserved": "reserved" in subtracting, "qc": "qc" in subtracting}
    subtracted = subtracting | {"in_flight"}
    breakdown = ats_breakdown(on_hand=on_hand, statuses=statuses, subtracted=subtracted, buffer=buffer)
    lines = stock_selectors.breakdown_lines(breakdown, statuses, rules, {}, "")
    labels = [line.label for line in lines]
    assert lines[0].units == on_hand
    assert lines[0].units + sum(line.units for line in lines if line.kind == "minus") == breakdown.after_buffer
    assert lines[-1].units == available_to_sell(
        on_hand=on_hand, statuses=statuses, subtracted=subtracted, buffer=buffer
    )
    assert ("Floored at 0" in labels) == (breakdown.after_buffer < 0)
    assert ("Sent as 0" in labels) == breakdown.was_zeroed
    held_not_taken = {s for s, units in statuses.items() if units and s not in subtracted}
    assert len([line for line in lines if line.kind == "info"]) == len(held_not_taken)


# --- Inventory Planner beside it ----------------------------------------------------------------------------------


def test_inventory_planner_replenishment_figures_are_shown_beside_the_stock(stock, fred, client_for):
    stock("inventory-planner").seed(variants=[{"sku": SKU, "in_stock": 10, "velocity": 2, "lead_time": 21}])
    stock_push_run()

    response = page(client_for(fred), reverse("stock:sku", args=[SKU]))

    figures = response.context["planner"]
    variant = next(v for v in stock("inventory-planner").state()["variants"].values() if v["sku"] == SKU)
    assert figures.found and figures.lead_time == 21 == variant["lead_time"]
    assert (figures.replenishment, figures.to_order) == (variant["replenishment"], variant["to_order"])
    assert figures.replenishment > 0
    assert "Replenishment" in response.content.decode()


def test_the_page_renders_with_a_note_when_inventory_planner_is_down(stock, fred, client_for):
    stock("inventory-planner").faults(error_rate=1.0, error_status=503)
    stock_push_run()

    response = page(client_for(fred), reverse("stock:sku", args=[SKU]))

    assert not response.context["planner"].found
    assert "Inventory Planner could not be read" in response.content.decode()
    assert len(response.context["stock"].channels) == 3


def test_a_hanging_inventory_planner_costs_the_page_only_its_short_timeout(stock, fred, client_for, monkeypatch):
    stock_push_run()
    monkeypatch.setattr(planner, "TIMEOUTS", Timeouts(connect=1.0, read=0.5))
    stock("inventory-planner").faults(timeout_rate=1.0, timeout_seconds=5)

    started = time.monotonic()
    response = page(client_for(fred), reverse("stock:sku", args=[SKU]))

    assert time.monotonic() - started < 3
    assert "Inventory Planner could not be read" in response.content.decode()


# --- the list of pairs --------------------------------------------------------------------------------------------


@pytest.fixture
def troubled(stock):
    """Everything pushed, then: S sold out and M down to 2 at Fulfil; John Lewis refuses stock (its M pair last
    confirmed 5 hours ago: stale), Zalando refuses stock and shows 99 of L, which nobody sent (drift)."""
    stock_push_run(full=True)
    fulfil_stock(stock, {"TEE100BLKS": 0, "TEE100BLKM": 2})
    stock("virtualstock").faults(error_rate=1.0, error_status=400, fail_operations=["product_stock"])
    stock("marketplace").faults(error_rate=1.0, error_status=400, fail_operations=["stock_update"])
    stock("marketplace").seed(offers=[{"sku": "TEE100BLKL", "title": "L", "price": "29.00", "quantity": 99}])
    stock_push_run(full=True)
    long_ago = timezone.now() - timedelta(hours=5)
    StockState.objects.filter(channel__code="john-lewis", sku="TEE100BLKM").update(acknowledged_at=long_ago)
    return stock


def test_the_filters_find_stale_drifted_pending_and_zero_pairs(troubled, olga, client_for):
    client = client_for(olga)
    assert found(client, state="stale") == {("TEE100BLKM", "john-lewis")}
    assert found(client, state="drift") == {("TEE100BLKL", "zalando")}
    assert found(client, state="pending") == {
        ("TEE100BLKS", "john-lewis"),
        ("TEE100BLKM", "john-lewis"),
        ("TEE100BLKS", "zalando"),
        ("TEE100BLKM", "zalando"),
        ("TEE100BLKL", "zalando"),
    }
    assert found(client, state="zero") == {(SKU, code) for code in ("centra", "john-lewis", "zalando")}
    assert found(client, state="pending", channel="zalando") == {(sku, "zalando") for sku in SKUS}
    counts = {state["code"]: state["count"] for state in page(client, reverse("stock:pairs")).context["states"]}
    assert counts == {"stale": "1", "drift": "1", "pending": "5", "zero": "3"}


def test_the_list_highlights_stale_and_drifted_pairs(troubled, olga, client_for):
    html = page(client_for(olga), reverse("stock:pairs"), q="TEE100BLKL").content.decode()
    assert html.count("stock-flag-drift") == 1
    html = page(client_for(olga), reverse("stock:pairs"), q="TEE100BLKM").content.decode()
    assert html.count("stock-flag-stale") == 1


def test_skus_are_found_by_prefix_as_typed_or_in_capitals_or_exactly(stock, cora, client_for):
    stock_push_run()
    StockState.objects.filter(sku="TEE100BLKL").update(product_number="TEE100")
    client = client_for(cora)
    everything = {(sku, code) for sku in SKUS for code in ("centra", "john-lewis", "zalando")}
    assert found(client, q="tee100blk") == everything
    assert found(client, q="TEE100BLKM", exact="on") == {("TEE100BLKM", c) for c in ("centra", "john-lewis", "zalando")}
    assert found(client, q="TEE100BLK", exact="on") == set()
    assert found(client, q="TEE100") == everything
    assert found(client, q="TEE100", exact="on") == {("TEE100BLKL", c) for c in ("centra", "john-lewis", "zalando")}


def test_pages_follow_each_other_in_sku_order_without_repeats(stock, cora, client_for, monkeypatch):
    stock_push_run()
    monkeypatch.setattr(stock_selectors, "PAGE_SIZE", 4)
    client = client_for(cora)
    first = page(client, reverse("stock:pairs"))
    assert len(first.context["rows"]) == 4 and first.context["next_url"]
    assert len(found(client)) == 9
    htmx = client.get(reverse("stock:pairs") + first.context["next_url"], headers={"HX-Request": "true"})
    assert [t.name for t in htmx.templates][0] == "console/_stock_pairs.html"
    assert client.get(reverse("stock:pairs"), {"cursor": "not-a-cursor"}).status_code == 200


def test_the_sidebar_links_to_the_stock_page(cora, client_for):
    html = page(client_for(cora), reverse("dashboard")).content.decode()
    assert f'href="{reverse("stock:pairs")}"' in html


# --- buffers in place ---------------------------------------------------------------------------------------------


def buffer_url(channel: str, sku: str = SKU) -> str:
    return reverse("stock:buffer", args=[sku, channel])


def test_ecommerce_edits_a_buffer_in_place_and_the_sku_is_pushed(
    stock, erin, client_for, django_capture_on_commit_callbacks
):
    stock_push_run()
    client = client_for(erin)
    assert 'class="stock-buffer"' in page(client, reverse("stock:sku", args=[SKU])).content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            buffer_url("zalando"),
            {"zalando-buffer": "4", "zalando-max_quantity": "", "zalando-zero_at_or_below": "2"},
            headers={"HX-Request": "true"},
        )

    assert response.status_code == 200
    assert [t.name for t in response.templates][0] == "console/_stock_channel.html"
    assert "saved" in response.content.decode()
    rule = StockBuffer.objects.get(channel__code="zalando", centra_sku=SKU)
    assert (rule.buffer, rule.max_quantity, rule.zero_at_or_below) == (4, None, 2)
    assert rule.history.get().history_user == erin
    assert [(task.func(), task.task["args"]) for task in OrmQ.objects.all()] == [
        ("syncs.tasks.stock_push_skus", (["TEE100BLKS"],))
    ]
    entry = response.context["entry"]
    assert (entry.breakdown.available, entry.buffer_source) == (6, "this SKU's own rule")


def test_a_buffer_the_rules_refuse_is_not_saved_and_says_why(
    stock, ada, client_for, django_capture_on_commit_callbacks
):
    stock_push_run()
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(ada).post(
            buffer_url("centra"),
            {"centra-buffer": "-1", "centra-max_quantity": "", "centra-zero_at_or_below": ""},
            headers={"HX-Request": "true"},
        )
    assert response.status_code == 200
    assert "greater than or equal to 0" in response.content.decode()
    assert not StockBuffer.objects.exists() and not OrmQ.objects.exists()


def test_an_admin_hands_a_sku_back_to_its_channel_buffer(stock, ada, client_for, django_capture_on_commit_callbacks):
    zalando = Channel.objects.get(code="zalando")
    StockBuffer.objects.create(channel=zalando, buffer=2)
    StockBuffer.objects.create(channel=zalando, centra_sku=SKU, buffer=5)
    stock_push_run()
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(ada).post(buffer_url("zalando"), {"remove": "1"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert list(StockBuffer.objects.values_list("centra_sku", flat=True)) == [""]
    assert response.context["entry"].buffer_source == "the channel's rule"
    assert OrmQ.objects.count() == 1


def test_without_htmx_saving_a_buffer_returns_to_the_sku_page(stock, erin, client_for):
    stock_push_run()
    response = client_for(erin).post(
        buffer_url("john-lewis"), {"john-lewis-buffer": "1", "john-lewis-max_quantity": "5"}
    )
    assert response.status_code == 302 and response["Location"] == reverse("stock:sku", args=[SKU])
    assert StockBuffer.objects.get(centra_sku=SKU).max_quantity == 5


@pytest.mark.parametrize("person", ["fred", "cora", "olga"])
def test_roles_that_may_not_change_buffers_read_them_and_are_refused(stock, person, request, client_for):
    stock_push_run()
    client = client_for(request.getfixturevalue(person))
    html = page(client, reverse("stock:sku", args=[SKU])).content.decode()
    assert 'class="stock-buffer"' not in html and "hx-post" not in html
    assert "Safety buffer" in html
    response = client.post(buffer_url("zalando"), {"zalando-buffer": "3"}, headers={"HX-Request": "true"})
    assert response.status_code == 403
    assert not StockBuffer.objects.exists() and not OrmQ.objects.exists()


def test_the_stock_pages_answer_only_their_methods(stock, erin, client_for):
    stock_push_run()
    client = client_for(erin)
    assert client.get(buffer_url("zalando")).status_code == 405
    assert client.post(reverse("stock:sku", args=[SKU])).status_code == 405
    assert client.post(reverse("stock:pairs")).status_code == 405
    assert client.post(buffer_url("nowhere"), {"nowhere-buffer": "1"}).status_code == 404


@pytest.mark.django_db
def test_the_stock_pages_need_a_signed_in_user(client):
    for url in (reverse("stock:pairs"), reverse("stock:sku", args=[SKU])):
        response = client.get(url)
        assert response.status_code == 302 and "login" in response["Location"]
    response = client.post(buffer_url("zalando"), {"zalando-buffer": "3"})
    assert response.status_code == 302 and not StockBuffer.objects.exists()


def test_the_pages_cost_a_fixed_number_of_queries(stock, erin, client_for, django_assert_max_num_queries):
    StockBuffer.objects.create(channel=Channel.objects.get(code="zalando"), buffer=2)
    stock_push_run()
    client = client_for(erin)
    with django_assert_max_num_queries(10):  # whatever the page size: channels come with their pairs
        page(client, reverse("stock:pairs"))
    with django_assert_max_num_queries(20):  # two buffer look-ups a channel, the rest once
        page(client, reverse("stock:sku", args=[SKU]))
