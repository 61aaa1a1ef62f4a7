import pickle
from decimal import Decimal

import pytest

from mappings.models import (
    Bundle,
    BundleComponent,
    CarrierMapping,
    Channel,
    MarketMapping,
    ShippingMethodMapping,
    SkuMapping,
    StockBuffer,
    StockStatusRule,
    TaxMapping,
)
from mappings.services import (
    BufferRule,
    MissingMapping,
    bundle_split,
    carrier_code_for,
    carrier_for_code,
    centra_sku_for,
    centra_skus_mapped,
    market_for,
    shipping_method_for,
    shipping_methods_for,
    sku_for,
    skus_mapped,
    stock_buffer_for,
    stock_status_subtracts,
    tax_code_for,
)

pytestmark = pytest.mark.django_db


def test_a_mapped_sku_reads_as_its_code_in_that_system():
    SkuMapping.objects.create(system="virtualstock", centra_sku="TEE-BLK-M", external_code="JL-889")
    assert sku_for(system="virtualstock", centra_sku="TEE-BLK-M") == "JL-889"
    assert centra_sku_for(system="virtualstock", code="jl-889") == "TEE-BLK-M"


def test_an_unmapped_sku_in_a_system_with_its_own_codes_is_missing(settings):
    settings.SKU_SAME_AS_CENTRA = ["fulfil"]
    with pytest.raises(MissingMapping) as error:
        sku_for(system="virtualstock", centra_sku="TEE-BLK-M")
    missing = error.value
    assert (missing.kind, missing.system, missing.key) == ("sku", "virtualstock", {"centra_sku": "TEE-BLK-M"})
    assert missing.exception_kind == "unmapped_sku"
    assert str(missing) == "No SKU mapping for Virtualstock: centra sku 'TEE-BLK-M'."


def test_systems_that_share_centras_skus_need_no_mapping_unless_they_differ(settings):
    settings.SKU_SAME_AS_CENTRA = ["fulfil"]
    SkuMapping.objects.create(system="fulfil", centra_sku="TEE-BLK-L", external_code="F-TEE-L")
    assert sku_for(system="fulfil", centra_sku="TEE-BLK-M") == "TEE-BLK-M"
    assert sku_for(system="fulfil", centra_sku="TEE-BLK-L") == "F-TEE-L"
    assert centra_sku_for(system="fulfil", code="UNKNOWN-9") == "UNKNOWN-9"


def test_many_skus_are_looked_up_at_once_and_the_unmapped_left_out(settings, django_assert_num_queries):
    settings.SKU_SAME_AS_CENTRA = []
    SkuMapping.objects.create(system="marketplace", centra_sku="A-1", external_code="M-1")
    SkuMapping.objects.create(system="marketplace", centra_sku="A-2", external_code="M-2")
    with django_assert_num_queries(1):
        codes = skus_mapped(system="marketplace", centra_skus=["A-1", "a-2", "A-3"])
    assert codes == {"A-1": "M-1", "a-2": "M-2"}


def test_many_codes_are_read_back_as_centra_skus_at_once(settings, django_assert_num_queries):
    settings.SKU_SAME_AS_CENTRA = ["fulfil"]
    SkuMapping.objects.create(system="fulfil", centra_sku="TEE-BLK-L", external_code="F-TEE-L")
    SkuMapping.objects.create(system="marketplace", centra_sku="A-1", external_code="M-1")
    with django_assert_num_queries(1):
        fulfil = centra_skus_mapped(system="fulfil", codes=["f-tee-l", "TEE-BLK-M"])
    assert fulfil == {"f-tee-l": "TEE-BLK-L", "TEE-BLK-M": "TEE-BLK-M"}
    assert centra_skus_mapped(system="marketplace", codes=["m-1", "M-9"]) == {"m-1": "A-1"}


def test_a_carrier_with_its_exact_service_wins_over_the_carrier_alone():
    CarrierMapping.objects.create(system="virtualstock", centra_carrier="DHL", centra_service="", target_code="dhl")
    CarrierMapping.objects.create(
        system="virtualstock", centra_carrier="DHL", centra_service="Express", target_code="dhl-express"
    )
    assert carrier_code_for(system="virtualstock", carrier="dhl ", service="EXPRESS") == "dhl-express"
    assert carrier_code_for(system="virtualstock", carrier="DHL", service="Parcel") == "dhl"
    assert carrier_code_for(system="virtualstock", carrier="DHL") == "dhl"


def test_a_carrier_unknown_to_a_system_names_carrier_and_service():
    CarrierMapping.objects.create(system="fulfil", centra_carrier="UPS", target_code="ups")
    with pytest.raises(MissingMapping) as error:
        carrier_code_for(system="virtualstock", carrier="UPS", service="Standard")
    assert error.value.key == {"carrier": "UPS", "service": "Standard"}
    assert error.value.exception_kind == "unmapped_carrier"
    assert str(error.value) == "No carrier mapping for Virtualstock: carrier 'UPS', service 'Standard'."


def test_a_target_carrier_code_reads_back_as_centras_carrier_and_service():
    CarrierMapping.objects.create(system="fulfil", centra_carrier="DHL", centra_service="", target_code="dhl_de")
    CarrierMapping.objects.create(system="fulfil", centra_carrier="DHL", centra_service="Paket", target_code="dhl_de")
    assert carrier_for_code(system="fulfil", code="DHL_DE") == ("DHL", "Paket")
    with pytest.raises(MissingMapping):
        carrier_for_code(system="fulfil", code="royal_mail")


def test_a_marketplace_shipping_method_gives_the_centra_option():
    ShippingMethodMapping.objects.create(
        system="marketplace", source_method="NEXT_DAY", centra_shipping_option="express", target_service_code="ND"
    )
    mapping = shipping_method_for(system="marketplace", method="next_day")
    assert (mapping.centra_shipping_option, mapping.target_service_code) == ("express", "ND")
    with pytest.raises(MissingMapping) as error:
        shipping_method_for(system="virtualstock", method="NEXT_DAY")
    assert error.value.exception_kind == "unmapped_shipping_method"


def test_many_shipping_methods_are_looked_up_at_once_and_the_unmapped_left_out(django_assert_num_queries):
    ShippingMethodMapping.objects.create(
        system="marketplace", source_method="NEXT_DAY", centra_shipping_option="express"
    )
    with django_assert_num_queries(1):
        found = shipping_methods_for(system="marketplace", methods=["next_day", " NEXT_DAY", "PICKUP"])
    assert {method: mapping.centra_shipping_option for method, mapping in found.items()} == {
        "next_day": "express",
        " NEXT_DAY": "express",
    }


def test_a_countrys_own_tax_code_wins_over_the_tax_class_default():
    TaxMapping.objects.create(centra_tax_class="standard", country="", fulfil_tax_code="EU-STD")
    TaxMapping.objects.create(centra_tax_class="standard", country="SE", fulfil_tax_code="SE-25")
    assert tax_code_for(tax_class="Standard", country="se") == "SE-25"
    assert tax_code_for(tax_class="standard", country="DE") == "EU-STD"
    with pytest.raises(MissingMapping) as error:
        tax_code_for(tax_class="reduced", country="DE")
    assert error.value.key == {"tax_class": "reduced", "country": "DE"}
    assert error.value.exception_kind == "unmapped_tax"


def test_a_store_and_market_give_the_fulfil_channel_and_warehouse():
    MarketMapping.objects.create(
        centra_store_id=1, centra_market_id=4, currency="EUR", fulfil_channel_id=2, fulfil_warehouse_id=3
    )
    mapping = market_for(store_id=1, market_id=4)
    assert (mapping.fulfil_channel_id, mapping.fulfil_warehouse_id, mapping.currency) == (2, 3, "EUR")
    with pytest.raises(MissingMapping) as error:
        market_for(store_id=1, market_id=5)
    assert str(error.value) == "No market mapping for Fulfil: store id 1, market id 5."


def test_a_bundle_price_is_shared_between_its_components_to_the_cent():
    bundle = Bundle.objects.create(bundle_sku="TRIO")
    for sku, share in (("A", "33.3333"), ("B", "33.3333"), ("C", "33.3334")):
        BundleComponent.objects.create(bundle=bundle, component_sku=sku, quantity=1, price_share=Decimal(share))
    parts = bundle_split(sku="trio", amount=Decimal("100.00"), currency="EUR")
    assert [part.amount for part in parts] == [Decimal("33.33"), Decimal("33.33"), Decimal("33.34")]
    assert sum(part.amount for part in parts) == Decimal("100.00")
    yen = bundle_split(sku="TRIO", amount=Decimal("1000"), currency="JPY")
    assert sum(part.amount for part in yen) == Decimal("1000")
    assert all(part.amount == part.amount.to_integral_value() for part in yen)


def test_a_sku_that_is_no_bundle_is_not_split():
    assert bundle_split(sku="PLAIN", amount=Decimal("10.00"), currency="EUR") is None


def test_the_most_specific_stock_buffer_applies():
    channel = Channel.objects.create(code="zalando", name="Zalando", system="marketplace")
    other = Channel.objects.create(code="jl", name="John Lewis", system="virtualstock")
    assert stock_buffer_for(channel=channel, centra_sku="TEE-M", product_number="TEE") == BufferRule()
    StockBuffer.objects.create(channel=channel, buffer=1)
    StockBuffer.objects.create(channel=channel, product_number="TEE", buffer=2, max_quantity=50)
    StockBuffer.objects.create(channel=channel, centra_sku="TEE-M", buffer=3, zero_at_or_below=2)
    StockBuffer.objects.create(channel=other, centra_sku="TEE-S", buffer=9)
    assert stock_buffer_for(channel=channel, centra_sku="tee-m", product_number="TEE") == BufferRule(3, None, 2)
    rule = stock_buffer_for(channel=channel, centra_sku="TEE-S", product_number="TEE")
    assert (rule, rule.source) == (BufferRule(2, 50, None), "product")
    rule = stock_buffer_for(channel=channel, centra_sku="CAP-1", product_number="CAP")
    assert (rule, rule.source) == (BufferRule(1), "channel")


def test_a_stock_status_without_a_rule_is_never_guessed():
    StockStatusRule.objects.create(system="fulfil", status="quarantined", subtract=True)
    StockStatusRule.objects.create(system="fulfil", status="in_transit", subtract=False)
    assert stock_status_subtracts(system="fulfil", status="Quarantined") is True
    assert stock_status_subtracts(system="fulfil", status="in_transit") is False
    with pytest.raises(MissingMapping) as error:
        stock_status_subtracts(system="fulfil", status="damaged")
    assert error.value.exception_kind == "unmapped_stock_status"


def test_a_missing_mapping_survives_the_task_queue():
    original = MissingMapping(kind="carrier", system="marketplace", key={"carrier": "DPD", "service": ""})
    copy = pickle.loads(pickle.dumps(original))
    assert (copy.kind, copy.system, copy.key, str(copy)) == (
        original.kind,
        original.system,
        original.key,
        str(original),
    )
