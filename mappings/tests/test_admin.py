import pytest
from django.urls import reverse

from mappings.models import Bundle, CarrierMapping, SkuMapping

pytestmark = pytest.mark.django_db

CARRIER = {"system": "virtualstock", "centra_carrier": "DHL", "centra_service": "Express", "target_code": "dhl"}


def test_a_finance_user_can_read_but_not_change_a_carrier_mapping(fred, client_for):
    mapping = CarrierMapping.objects.create(**CARRIER)
    client = client_for(fred)
    change_url = reverse("admin:mappings_carriermapping_change", args=[mapping.pk])
    assert client.get(reverse("admin:mappings_carriermapping_changelist")).status_code == 200
    page = client.get(change_url)
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert client.post(change_url, {**CARRIER, "target_code": "ups"}).status_code == 403
    assert client.get(reverse("admin:mappings_carriermapping_add")).status_code == 403
    mapping.refresh_from_db()
    assert mapping.target_code == "dhl"


def test_an_integration_admin_changes_a_carrier_mapping_and_history_names_her(ada, client_for):
    mapping = CarrierMapping.objects.create(**CARRIER)
    response = client_for(ada).post(
        reverse("admin:mappings_carriermapping_change", args=[mapping.pk]), {**CARRIER, "target_code": "dhl-express"}
    )
    assert response.status_code == 302
    mapping.refresh_from_db()
    assert mapping.target_code == "dhl-express"
    latest = mapping.history.latest()
    assert (latest.history_type, latest.history_user, latest.target_code) == ("~", ada, "dhl-express")
    assert latest.prev_record.target_code == "dhl"


def test_the_admin_form_gives_a_clear_message_for_a_duplicate(ada, client_for):
    CarrierMapping.objects.create(**CARRIER)
    response = client_for(ada).post(reverse("admin:mappings_carriermapping_add"), {**CARRIER, "centra_carrier": "dhl"})
    assert response.status_code == 200
    assert "This carrier and service are already mapped for that system." in response.content.decode()
    assert CarrierMapping.objects.count() == 1


def test_ecommerce_may_change_sku_mappings_but_not_carriers(erin, client_for):
    client = client_for(erin)
    response = client.post(
        reverse("admin:mappings_skumapping_add"),
        {"system": "marketplace", "centra_sku": "TEE-M", "external_code": "Z-TEE-M", "ean": ""},
    )
    assert response.status_code == 302
    assert SkuMapping.objects.get().history.get().history_user == erin
    assert client.post(reverse("admin:mappings_carriermapping_add"), CARRIER).status_code == 403
    assert not CarrierMapping.objects.exists()


def bundle_form(shares):
    data = {
        "bundle_sku": "GIFT",
        "name": "Gift set",
        "components-TOTAL_FORMS": str(len(shares)),
        "components-INITIAL_FORMS": "0",
        "components-MIN_NUM_FORMS": "0",
        "components-MAX_NUM_FORMS": "1000",
    }
    for index, share in enumerate(shares):
        data |= {
            f"components-{index}-component_sku": f"PART-{index}",
            f"components-{index}-quantity": "1",
            f"components-{index}-price_share": share,
        }
    return data


def test_a_bundles_component_shares_must_add_up_to_100_percent(ada, client_for):
    client = client_for(ada)
    response = client.post(reverse("admin:mappings_bundle_add"), bundle_form(["50", "40"]))
    assert response.status_code == 200
    assert "they must add up to exactly 100%" in response.content.decode()
    assert not Bundle.objects.exists()
    response = client.post(reverse("admin:mappings_bundle_add"), bundle_form(["50", "25.5", "24.5"]))
    assert response.status_code == 302
    assert Bundle.objects.get().components.count() == 3
