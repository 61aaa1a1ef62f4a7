from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

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

pytestmark = pytest.mark.django_db


def messages_of(error: ValidationError) -> str:
    return " ".join(error.messages)


def saved(instance):
    instance.full_clean()
    instance.save()
    return instance


def test_a_centra_sku_is_mapped_once_per_system_whatever_its_case():
    saved(SkuMapping(system="virtualstock", centra_sku="TSHIRT-BLK-M", external_code="VS-1"))
    duplicate = SkuMapping(system="virtualstock", centra_sku="tshirt-blk-m", external_code="VS-2")
    with pytest.raises(ValidationError) as error:
        duplicate.full_clean()
    assert "This Centra SKU is already mapped for that system." in messages_of(error.value)
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.save()


def test_the_same_centra_sku_may_be_mapped_in_each_system():
    saved(SkuMapping(system="virtualstock", centra_sku="TSHIRT-BLK-M", external_code="VS-1"))
    saved(SkuMapping(system="marketplace", centra_sku="TSHIRT-BLK-M", external_code="MP-1"))
    assert SkuMapping.objects.count() == 2


def test_two_centra_skus_cannot_share_one_code_in_a_system():
    saved(SkuMapping(system="fulfil", centra_sku="A-1", external_code="F-1"))
    with pytest.raises(ValidationError) as error:
        SkuMapping(system="fulfil", centra_sku="A-2", external_code="f-1").full_clean()
    assert "already mapped to another Centra SKU" in messages_of(error.value)


def test_sku_codes_with_spaces_are_refused_with_a_reason():
    with pytest.raises(ValidationError) as error:
        SkuMapping(system="fulfil", centra_sku="A 1", external_code="F-1").full_clean()
    assert "must not contain spaces" in messages_of(error.value)


def test_surrounding_spaces_pasted_from_a_spreadsheet_are_trimmed():
    mapping = saved(SkuMapping(system="fulfil", centra_sku="  A-1 ", external_code="F-1\t"))
    assert (mapping.centra_sku, mapping.external_code) == ("A-1", "F-1")


def test_an_ean_must_have_a_correct_check_digit():
    saved(SkuMapping(system="fulfil", centra_sku="A-1", external_code="F-1", ean="4006381333931"))
    with pytest.raises(ValidationError) as error:
        SkuMapping(system="fulfil", centra_sku="A-2", external_code="F-2", ean="4006381333932").full_clean()
    assert "not a valid EAN/GTIN" in messages_of(error.value)


def test_centra_is_not_a_target_of_sku_mappings():
    with pytest.raises(ValidationError) as error:
        SkuMapping(system="centra", centra_sku="A-1", external_code="A-1").full_clean()
    assert "system" in error.value.message_dict


def test_a_carrier_and_service_are_mapped_once_per_system():
    saved(CarrierMapping(system="virtualstock", centra_carrier="DHL", centra_service="Express", target_code="dhl"))
    saved(CarrierMapping(system="virtualstock", centra_carrier="DHL", centra_service="", target_code="dhl"))
    with pytest.raises(ValidationError) as error:
        CarrierMapping(
            system="virtualstock", centra_carrier="dhl", centra_service="EXPRESS", target_code="dhl-x"
        ).full_clean()
    assert "already mapped for that system" in messages_of(error.value)


def test_a_shipping_method_is_mapped_once_per_source():
    saved(ShippingMethodMapping(system="marketplace", source_method="NEXT_DAY", centra_shipping_option="express"))
    with pytest.raises(ValidationError) as error:
        ShippingMethodMapping(
            system="marketplace", source_method="next_day", centra_shipping_option="standard"
        ).full_clean()
    assert "already mapped" in messages_of(error.value)
    with pytest.raises(ValidationError):
        ShippingMethodMapping(system="fulfil", source_method="X", centra_shipping_option="y").full_clean()


def test_a_tax_class_is_mapped_once_per_country_and_once_as_default():
    saved(TaxMapping(centra_tax_class="standard", country="SE", fulfil_tax_code="SE25"))
    saved(TaxMapping(centra_tax_class="standard", country="", fulfil_tax_code="EU-STD"))
    with pytest.raises(ValidationError) as error:
        TaxMapping(centra_tax_class="Standard", country="SE", fulfil_tax_code="SE25b").full_clean()
    assert "already mapped for that country" in messages_of(error.value)


def test_a_tax_rate_is_a_percentage_and_the_country_must_exist():
    with pytest.raises(ValidationError) as error:
        TaxMapping(centra_tax_class="standard", country="XX", rate=Decimal("120"), fulfil_tax_code="T").full_clean()
    assert {"country", "rate"} <= set(error.value.message_dict)


def test_a_market_is_mapped_once_and_its_currency_is_iso_4217():
    mapping = saved(
        MarketMapping(centra_store_id=1, centra_market_id=2, currency="sek", fulfil_channel_id=3, fulfil_warehouse_id=4)
    )
    assert mapping.currency == "SEK"
    with pytest.raises(ValidationError) as error:
        MarketMapping(
            centra_store_id=1, centra_market_id=2, currency="EUR", fulfil_channel_id=5, fulfil_warehouse_id=4
        ).full_clean()
    assert "already mapped" in messages_of(error.value)
    with pytest.raises(ValidationError) as error:
        MarketMapping(
            centra_store_id=1, centra_market_id=3, currency="EURO", fulfil_channel_id=5, fulfil_warehouse_id=4
        ).full_clean()
    assert "not an ISO 4217 currency code" in messages_of(error.value)


def test_bundle_components_are_validated():
    bundle = saved(Bundle(bundle_sku="GIFT-SET"))
    saved(BundleComponent(bundle=bundle, component_sku="SOCK-1", quantity=2, price_share=Decimal("40")))
    with pytest.raises(ValidationError) as error:
        BundleComponent(bundle=bundle, component_sku="sock-1", quantity=1, price_share=Decimal("60")).full_clean()
    assert "already a component of that bundle" in messages_of(error.value)
    with pytest.raises(ValidationError) as error:
        BundleComponent(bundle=bundle, component_sku="GIFT-SET", quantity=1, price_share=Decimal("60")).full_clean()
    assert "cannot contain itself" in messages_of(error.value)
    with pytest.raises(ValidationError) as error:
        BundleComponent(bundle=bundle, component_sku="HAT", quantity=0, price_share=Decimal("101")).full_clean()
    assert {"quantity", "price_share"} <= set(error.value.message_dict)


def test_the_database_refuses_a_component_with_no_quantity():
    bundle = saved(Bundle(bundle_sku="GIFT-SET"))
    with pytest.raises(IntegrityError), transaction.atomic():
        BundleComponent.objects.create(bundle=bundle, component_sku="HAT", quantity=0, price_share=Decimal(10))


def test_a_stock_buffer_is_for_a_sku_or_a_product_not_both():
    channel = saved(Channel(code="john-lewis", name="John Lewis", system="virtualstock"))
    with pytest.raises(ValidationError) as error:
        StockBuffer(channel=channel, centra_sku="A-1", product_number="A", buffer=2).full_clean()
    assert "Give a SKU or a product, not both." in messages_of(error.value)
    with pytest.raises(IntegrityError), transaction.atomic():
        StockBuffer.objects.create(channel=channel, centra_sku="A-1", product_number="A", buffer=2)


def test_a_channel_has_one_buffer_per_scope():
    channel = saved(Channel(code="john-lewis", name="John Lewis", system="virtualstock"))
    saved(StockBuffer(channel=channel, buffer=1))
    saved(StockBuffer(channel=channel, product_number="A", buffer=2))
    saved(StockBuffer(channel=channel, centra_sku="A-1", buffer=3))
    with pytest.raises(ValidationError) as error:
        StockBuffer(channel=channel, product_number="a", buffer=5).full_clean()
    assert "already has a buffer" in messages_of(error.value)


def test_a_stock_status_has_one_rule_per_stock_master():
    saved(StockStatusRule(system="fulfil", status="quarantined", subtract=True))
    saved(StockStatusRule(system="centra", status="quarantined", subtract=False))
    with pytest.raises(ValidationError) as error:
        StockStatusRule(system="fulfil", status="Quarantined", subtract=False).full_clean()
    assert "already has a rule" in messages_of(error.value)
    with pytest.raises(ValidationError):
        StockStatusRule(system="marketplace", status="reserved").full_clean()


def test_channel_codes_are_unique_slugs():
    saved(Channel(code="zalando-de", name="Zalando DE", system="marketplace"))
    with pytest.raises(ValidationError) as error:
        Channel(code="zalando de", name="Zalando", system="marketplace").full_clean()
    assert "code" in error.value.message_dict
    with pytest.raises(ValidationError):
        Channel(code="zalando-de", name="Zalando again", system="marketplace").full_clean()
