"""Product sync against the sandbox over HTTP: Centra's content and prices reach Virtualstock and the marketplace
(only what changed), a product that cannot go is one exception naming every problem, and an edit made on the
marketplace is flagged and re-asserted from the exception page."""

import functools
import io
import json
import zlib
from types import SimpleNamespace

import pytest
import requests
from django.core.management import call_command
from django.test import Client

from exceptions.models import Status, SyncException
from mappings.models import Channel, MarketMapping, SkuMapping
from syncs.flows.product_sync import FLOW, product_sync_run
from syncs.flows.webhooks import flows_touched
from syncs.models import ProductState
from syncs.runs import run_flow
from syncs.sandbox.world import ean13

UPDATES = {"products_update", "prices_update", "product_update"}  # the calls that change a channel


def product(number: str, name: str, *, sizes=("S", "M"), media=True, ean_for=None, **content) -> dict:
    """A Centra product with one Black variant, priced in the EUR (2) and GBP (3) pricelists."""
    return {
        "name": name,
        "productNumber": number,
        "prices": {"2": "29.00", "3": "25.00"},
        "description": f"{name}, made to last.",
        "shortDescription": name,
        "media": [f"https://images.example.com/{number.lower()}.jpg"] if media else [],
        "attributes": {"material": "Organic cotton"},
        "variants": [
            {
                "name": "Black",
                "variantNumber": "BLK",
                "sizes": [
                    {"sizeNumber": size, "name": size, "EAN": (ean_for or {}).get(size, an_ean(number + size))}
                    for size in sizes
                ],
            }
        ],
        **content,
    }


def an_ean(seed: str) -> str:
    return ean13(700_000_000_000 + zlib.crc32(seed.encode()))


TEE = product("TEE100", "Organic Cotton Tee")
KNIT = product("KNIT200", "Merino Crew Knit")
SKUS = ["TEE100BLKS", "TEE100BLKM", "KNIT200BLKS", "KNIT200BLKM"]


@pytest.fixture
def shop(connected, control, settings, db):
    """Two channels — the marketplace (EUR) and John Lewis through Virtualstock (GBP) — each knowing the four SKUs
    by its own code, with stale content the first sync replaces."""
    settings.PRODUCT_SYNC_REQUIRED_ATTRIBUTES = {"marketplace": ["material"], "virtualstock": ["material"]}
    settings.PRODUCT_SYNC_PRICELISTS = {"marketplace": 2, "john-lewis": 3}
    Channel.objects.create(code="marketplace", name="Marketplace", system="marketplace", centra_market_id=2)
    Channel.objects.create(code="john-lewis", name="John Lewis", system="virtualstock", centra_market_id=3)
    for market, currency in ((2, "EUR"), (3, "GBP")):
        MarketMapping.objects.create(
            centra_store_id=1, centra_market_id=market, currency=currency, fulfil_channel_id=1, fulfil_warehouse_id=1
        )
    for sku in SKUS:
        SkuMapping.objects.create(system="marketplace", centra_sku=sku, external_code=f"MP-{sku}")
        SkuMapping.objects.create(system="virtualstock", centra_sku=sku, external_code=f"JL-{sku}")
    control("centra").seed(products=[TEE, KNIT])
    control("marketplace").seed(offers=[{"sku": f"MP-{sku}", "price": "1.00", "title": "old"} for sku in SKUS])
    control("virtualstock").seed(
        products=[{"part_number": f"JL-{sku}", "data": {"rrp": "1.00", "supplier_free_stock": 0}} for sku in SKUS]
    )
    return control


def sync() -> SimpleNamespace:
    """One run, recorded as the scheduler records it (the next run starts from its cursors)."""
    return SimpleNamespace(**run_flow(flow=FLOW, action=product_sync_run, trigger="schedule").summary)


def clear_calls(control, *systems: str) -> None:
    for system in systems:
        requests.post(f"{control(system).url}/_sandbox/calls/clear", timeout=10).raise_for_status()


def updates(control, system: str) -> list[str]:
    return [operation for operation in control(system).operations() if operation in UPDATES]


def offer(control, code: str) -> dict:
    return control("marketplace").state()["offers"][code]


def vs_data(control, part_number: str) -> dict:
    return next(p for p in control("virtualstock").state()["products"].values() if p["part_number"] == part_number)[
        "data"
    ]


def centra_edit(control, **changes) -> None:
    requests.post(f"{control('centra').url}/_sandbox/product-edit", json=changes, timeout=10).raise_for_status()


def marketplace_edit(control, **changes) -> None:
    requests.post(f"{control('marketplace').url}/_sandbox/offer-edit", json=changes, timeout=10).raise_for_status()


# --- sending what changed -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_first_run_sends_centras_content_and_prices_to_every_channel_by_its_own_codes(shop):
    summary = sync()
    assert (summary.examined, summary.sent, summary.failed, summary.full) == (2, 8, 0, True)
    tee_small = offer(shop, "MP-TEE100BLKS")
    assert tee_small["title"] == "Organic Cotton Tee Black S"
    assert tee_small["description"] == "Organic Cotton Tee, made to last."
    assert tee_small["images"] == ["https://images.example.com/tee100.jpg"]
    assert tee_small["attributes"] == {"material": "Organic cotton"}
    assert (tee_small["price"], tee_small["currency"]) == ("29.00", "EUR")
    data = vs_data(shop, "JL-TEE100BLKS")
    assert (data["short_description"], data["rrp"], data["image"], data["material"]) == (
        "Organic Cotton Tee Black S",
        "25.00",
        "https://images.example.com/tee100.jpg",
        "Organic cotton",
    )
    assert data["barcode"] == TEE["variants"][0]["sizes"][0]["EAN"]
    assert ProductState.objects.filter(acknowledged_at__isnull=False).count() == 8


@pytest.mark.django_db
def test_a_changed_price_reaches_virtualstock_and_the_marketplace_while_unchanged_products_cost_no_calls(shop):
    sync()
    clear_calls(shop, "marketplace", "virtualstock")

    again = sync()
    assert (again.full, again.sent, again.unchanged) == (False, 0, 8)
    assert updates(shop, "marketplace") == [] and updates(shop, "virtualstock") == []

    centra_edit(shop, productNumber="TEE100", prices={"2": "35.00", "3": "30.00"})
    clear_calls(shop, "marketplace", "virtualstock")
    changed = sync()
    assert (changed.sent, changed.unchanged, changed.failed) == (4, 4, 0)
    # The marketplace gets one batch of prices and no content (only the price changed); Virtualstock one call per
    # SKU of the changed product; the knit costs nothing.
    assert updates(shop, "marketplace") == ["prices_update"]
    assert updates(shop, "virtualstock") == ["product_update", "product_update"]
    assert [offer(shop, f"MP-{sku}")["price"] for sku in SKUS] == ["35.00", "35.00", "29.00", "29.00"]
    assert [vs_data(shop, f"JL-{sku}")["rrp"] for sku in SKUS] == ["30.00", "30.00", "25.00", "25.00"]


@pytest.mark.django_db
def test_a_sku_without_a_mapping_for_a_channel_is_not_sent_there(shop):
    SkuMapping.objects.filter(system="virtualstock", centra_sku__startswith="KNIT").delete()
    summary = sync()
    assert summary.channels["john-lewis"]["sent"] == 2 and summary.channels["marketplace"]["sent"] == 4
    assert vs_data(shop, "JL-KNIT200BLKS")["rrp"] == "1.00"


# --- checks before sending ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_product_with_a_bad_ean_and_no_image_is_one_exception_naming_both_and_nothing_of_it_is_sent(shop):
    shop("centra").seed(products=[product("BAD300", "Odd Sock", sizes=["OS"], media=False, ean_for={"OS": "12345"})])
    SkuMapping.objects.create(system="marketplace", centra_sku="BAD300BLKOS", external_code="MP-BAD300BLKOS")
    shop("marketplace").seed(offers=[{"sku": "MP-BAD300BLKOS", "price": "1.00", "title": "old"}])
    summary = sync()
    assert summary.invalid == 1 and summary.channels["marketplace"]["sent"] == 4  # the other products went through
    exception = SyncException.objects.get(flow=FLOW, object_ref="marketplace:BAD300")
    assert (exception.kind, exception.team, exception.status) == ("validation_failed", "ecommerce", Status.OPEN)
    assert exception.context["problems"] == [
        "There is no image: at least one is required.",
        "BAD300BLKOS: EAN 12345 is not a valid EAN/GTIN (its check digit is wrong).",
    ]
    assert "There is no image" in exception.message and "EAN 12345" in exception.message
    assert (offer(shop, "MP-BAD300BLKOS")["title"], offer(shop, "MP-BAD300BLKOS")["price"]) == ("old", "1.00")
    assert not ProductState.objects.filter(sku="BAD300BLKOS").exists()
    assert SyncException.objects.filter(flow=FLOW).count() == 1  # one exception, not one per problem or SKU


@pytest.mark.django_db
def test_every_problem_of_a_product_is_listed_and_fixing_it_in_centra_sends_it_and_resolves_the_exception(shop):
    centra_edit(shop, productNumber="TEE100", attributes={}, prices={"2": "0", "3": "25.00"})
    sync()
    exception = SyncException.objects.get(flow=FLOW, object_ref="marketplace:TEE100")
    assert exception.context["problems"] == [
        "The attribute 'material' is missing: Marketplace requires it.",
        "Variant Black: the price 0.00 EUR is not above zero.",
    ]
    assert SyncException.objects.get(flow=FLOW, object_ref="john-lewis:TEE100").context["problems"] == [
        "The attribute 'material' is missing: John Lewis requires it."
    ]
    assert offer(shop, "MP-TEE100BLKS")["price"] == "1.00"

    centra_edit(shop, productNumber="TEE100", attributes={"material": "Organic cotton"}, prices={"2": "29.00"})
    summary = sync()
    assert summary.failed == 0
    exception.refresh_from_db()
    assert exception.status == Status.RESOLVED
    assert offer(shop, "MP-TEE100BLKS")["price"] == "29.00"


@pytest.mark.django_db
def test_a_price_in_another_currency_than_the_channel_sells_in_is_refused(shop, settings):
    settings.PRODUCT_SYNC_PRICELISTS = {"marketplace": 3, "john-lewis": 3}  # GBP prices for a EUR marketplace
    sync()
    exception = SyncException.objects.get(flow=FLOW, object_ref="marketplace:TEE100")
    assert exception.context["problems"] == ["Variant Black is priced in GBP, but Marketplace sells in EUR."]


# --- the source-of-truth guard ------------------------------------------------------------------------------------


@pytest.fixture
def drifted(shop):
    """The marketplace's content team retitled one offer after Centra's title reached it."""
    sync()
    marketplace_edit(shop, sku="MP-TEE100BLKS", title="Cheap tee!! Best price")
    sync()  # as the offer.updated webhook would start it
    return SyncException.objects.get(flow=FLOW, kind="attribute_drift")


@pytest.mark.django_db
def test_a_title_edited_on_the_marketplace_raises_attribute_drift_for_ecommerce_with_both_values(drifted):
    assert (drifted.object_ref, drifted.team, drifted.status) == ("marketplace:TEE100BLKS", "ecommerce", Status.OPEN)
    assert drifted.context["differences"] == [
        {
            "field": "title",
            "centra": "Organic Cotton Tee Black S",
            "channel": "Cheap tee!! Best price",
            "channel_name": "Marketplace",
        }
    ]
    assert 'title: Centra "Organic Cotton Tee Black S", Marketplace "Cheap tee!! Best price"' in drifted.message
    assert drifted.payload["centra"]["title"] == "Organic Cotton Tee Black S"
    assert drifted.payload["channel"]["title"] == "Cheap tee!! Best price"
    assert SyncException.objects.filter(flow=FLOW).count() == 1  # only the edited SKU


@pytest.mark.django_db
def test_the_next_run_counts_the_same_drift_again_and_does_not_overwrite_it_by_itself(shop, drifted):
    clear_calls(shop, "marketplace")
    sync()
    drifted.refresh_from_db()
    assert (drifted.status, drifted.occurrences) == (Status.OPEN, 2)
    assert SyncException.objects.filter(flow=FLOW).count() == 1
    assert updates(shop, "marketplace") == []
    assert offer(shop, "MP-TEE100BLKS")["title"] == "Cheap tee!! Best price"  # a person decides


@pytest.mark.django_db
def test_erin_sees_both_values_and_re_asserting_centras_value_fixes_it(shop, drifted, erin, client_for):
    client = client_for(erin)
    page = client.get(f"/exceptions/{drifted.pk}/").content.decode()
    assert "Re-assert Centra's value" in page
    assert "Cheap tee!! Best price" in page and "Organic Cotton Tee Black S" in page

    clear_calls(shop, "marketplace")
    response = client.post(f"/exceptions/{drifted.pk}/reassert/")
    assert response.status_code == 302 and response["Location"] == f"/exceptions/{drifted.pk}/"
    assert offer(shop, "MP-TEE100BLKS")["title"] == "Organic Cotton Tee Black S"
    assert shop("marketplace").operations() == ["products_update", "prices_update", "offers_list"]  # sent, read back
    drifted.refresh_from_db()
    assert drifted.status == Status.RESOLVED
    actions = list(drifted.events.values_list("action", "actor__username"))
    assert ("retry_requested", "erin") in actions
    assert "the channel now shows it" in client.get(response["Location"]).content.decode()


@pytest.mark.django_db
def test_a_marketplace_refusing_centras_value_is_said_on_the_page_and_queued_as_its_own_problem(
    shop, drifted, erin, client_for
):
    shop("marketplace").faults(fail_operations=["products_update"], error_rate=1.0, error_status=400)
    response = client_for(erin).post(f"/exceptions/{drifted.pk}/reassert/", follow=True)
    assert "could not be sent" in response.content.decode()
    assert offer(shop, "MP-TEE100BLKS")["title"] == "Cheap tee!! Best price"
    drifted.refresh_from_db()
    refused = SyncException.objects.get(flow=FLOW, object_ref="marketplace:TEE100BLKS", kind="validation_failed")
    assert drifted.status == Status.RESOLVED and refused.title in drifted.resolution_note
    assert refused.status == Status.OPEN


@pytest.mark.django_db
def test_people_who_may_not_act_do_not_see_the_action_and_are_refused_it(shop, drifted, fred, cora, client_for):
    for person in (fred, cora):
        client = client_for(person)
        page = client.get(f"/exceptions/{drifted.pk}/").content.decode()
        assert "Re-assert Centra's value" not in page
        assert "Cheap tee!! Best price" in page  # everyone reads
        assert client.post(f"/exceptions/{drifted.pk}/reassert/").status_code == 403
    drifted.refresh_from_db()
    assert drifted.status == Status.OPEN
    assert offer(shop, "MP-TEE100BLKS")["title"] == "Cheap tee!! Best price"


@pytest.mark.django_db
def test_re_asserting_needs_a_post_with_a_csrf_token_from_a_signed_in_person(drifted, erin, client_for, client):
    url = f"/exceptions/{drifted.pk}/reassert/"
    assert client_for(erin).get(url).status_code == 405
    assert client.post(url)["Location"].startswith("/login/")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(erin)
    assert strict.post(url).status_code == 403
    drifted.refresh_from_db()
    assert drifted.status == Status.OPEN


@pytest.mark.django_db
def test_only_a_drift_can_be_re_asserted(shop, erin, client_for):
    centra_edit(shop, productNumber="TEE100", media=[])
    sync()
    invalid = SyncException.objects.get(flow=FLOW, object_ref="marketplace:TEE100")
    page = client_for(erin).get(f"/exceptions/{invalid.pk}/").content.decode()
    assert "Re-assert Centra's value" not in page
    assert client_for(erin).post(f"/exceptions/{invalid.pk}/reassert/").status_code == 404


@pytest.mark.django_db
def test_virtualstock_is_read_back_on_the_full_sweep_and_a_price_changed_there_is_flagged(shop):
    sync()
    product_id = next(
        p["id"] for p in shop("virtualstock").state()["products"].values() if p["part_number"] == "JL-KNIT200BLKM"
    )
    requests.patch(  # someone at the retailer's end lowers the price
        f"{shop('virtualstock').url}/api/v4/products/{product_id}/",
        json={"data": {"rrp": "19.99"}},
        auth=("supplier", "sandbox"),
        timeout=10,
    ).raise_for_status()
    assert sync().drifted == 0  # not read back between sweeps: Virtualstock cannot list what changed
    summary = SimpleNamespace(
        **run_flow(flow=FLOW, action=functools.partial(product_sync_run, full=True), trigger="schedule").summary
    )
    assert (summary.full, summary.drifted, summary.channels["john-lewis"]["read"]) == (True, 1, 4)
    drift = SyncException.objects.get(flow=FLOW, kind="attribute_drift")
    assert drift.object_ref == "john-lewis:KNIT200BLKM"
    assert [(d["field"], d["centra"], d["channel"]) for d in drift.context["differences"]] == [
        ("price", "25.00", "19.99")
    ]


@pytest.mark.django_db
def test_a_marketplace_outage_is_retried_automatically_and_the_retry_sends_the_product(shop):
    from exceptions.services import exception_run_retry

    shop("marketplace").faults(fail_operations=["products_update"], error_rate=1.0, error_status=503)
    summary = sync()
    assert summary.channels["john-lewis"]["sent"] == 4 and summary.channels["marketplace"]["sent"] == 0
    outage = SyncException.objects.filter(flow=FLOW, kind="api_unavailable").order_by("object_ref")
    assert [(e.object_ref, e.status) for e in outage] == [
        ("marketplace:KNIT200", Status.RETRYING),
        ("marketplace:TEE100", Status.RETRYING),
    ]
    shop("marketplace").faults()
    assert exception_run_retry(exception_id=outage[1].pk) is True
    assert offer(shop, "MP-TEE100BLKS")["title"] == "Organic Cotton Tee Black S"
    assert offer(shop, "MP-KNIT200BLKS")["title"] == "old"  # its own retry, or the next run, sends the knit


# --- events and the command line ----------------------------------------------------------------------------------


def test_centra_product_events_and_marketplace_offer_edits_start_the_product_sync():
    assert flows_touched("centra", [{"type": "product", "action": "update", "id": 1}]) == {"product_sync"}
    assert flows_touched("marketplace", {"type": "offer.updated", "data": {}}) == {"product_sync"}


@pytest.mark.django_db
def test_runsync_prints_one_json_line(shop):
    out = io.StringIO()
    call_command("runsync", "product_sync", stdout=out)
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert (summary["flow"], summary["sent"], summary["examined"]) == ("product_sync", 8, 2)


@pytest.mark.django_db
def test_a_run_whose_time_budget_is_spent_leaves_the_rest_to_the_next_which_resumes_it(shop, settings):
    settings.PRODUCT_SYNC_MAX_SECONDS = 0  # spent before Virtualstock's first one-product call
    first = sync()
    assert (first.full, first.deferred, first.resume_full, first.failed) == (True, 4, True, 0)
    assert updates(shop, "virtualstock") == []  # nothing sent there, nothing raised
    assert not SyncException.objects.exists()
    settings.PRODUCT_SYNC_MAX_SECONDS = 60
    clear_calls(shop, "marketplace", "virtualstock")
    second = sync()
    assert (second.full, second.deferred, second.sent) == (True, 0, 4)  # swept again: the deferred four went
    assert updates(shop, "virtualstock") == ["product_update"] * 4 and updates(shop, "marketplace") == []
    assert vs_data(shop, "JL-TEE100BLKS")["rrp"] == "25.00"
    assert sync().full is False  # the sweep is done: back to changes only
