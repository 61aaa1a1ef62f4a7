from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from mappings.models import BundleComponent, CarrierMapping, Channel, SkuMapping, StockBuffer
from mappings.services import mapping_import_csv

pytestmark = pytest.mark.django_db

GOOD_SKUS = """system,centra_sku,external_code,ean
virtualstock,TEE-BLK-S,JL-100,4006381333931
virtualstock,TEE-BLK-M,JL-101,
marketplace,TEE-BLK-S,ZAL-TEE-S,
"""

ONE_BAD_ROW = """system,centra_sku,external_code,ean
virtualstock,TEE-BLK-S,JL-100,
virtualstok,TEE-BLK-M,JL-101,
virtualstock,TEE-BLK-L,JL-102,
"""


def test_a_good_file_is_imported_with_its_editor_in_history(ada):
    report = mapping_import_csv(model_name="skumapping", csv_text=GOOD_SKUS, actor=ada)
    assert report.ok, report.problems
    assert (report.created, report.updated) == (3, 0)
    assert SkuMapping.objects.get(system="marketplace", centra_sku="TEE-BLK-S").external_code == "ZAL-TEE-S"
    record = SkuMapping.history.get(centra_sku="TEE-BLK-M")
    assert (record.history_type, record.history_user) == ("+", ada)


def test_a_file_with_one_bad_row_is_rejected_whole_naming_the_line(ada):
    report = mapping_import_csv(model_name="skumapping", csv_text=ONE_BAD_ROW, actor=ada)
    assert not report.ok
    assert report.problems == ["Line 3: system: Value 'virtualstok' is not a valid choice."]
    assert SkuMapping.objects.count() == 0
    assert SkuMapping.history.count() == 0


def test_importing_an_exported_file_again_updates_rather_than_duplicates(ada):
    mapping_import_csv(model_name="skumapping", csv_text=GOOD_SKUS, actor=ada)
    edited = GOOD_SKUS.replace("JL-101", "JL-999")
    report = mapping_import_csv(model_name="skumapping", csv_text=edited, actor=ada)
    assert (report.created, report.updated, report.unchanged) == (0, 1, 2)
    assert SkuMapping.objects.count() == 3
    assert SkuMapping.objects.get(centra_sku="TEE-BLK-M").external_code == "JL-999"


def test_a_key_twice_in_one_file_is_an_error_on_the_second_line(ada):
    text = "system,centra_sku,external_code\nfulfil,A-1,F-1\nfulfil,B-1,F-2\nfulfil,a-1,F-3\n"
    report = mapping_import_csv(model_name="skumapping", csv_text=text, actor=ada)
    assert report.problems == ["Line 4: The same system, centra_sku appears earlier in this file (line 2)."]
    assert SkuMapping.objects.count() == 0


def test_a_row_that_clashes_with_an_existing_mapping_is_reported(ada):
    SkuMapping.objects.create(system="fulfil", centra_sku="A-1", external_code="F-1")
    text = "system,centra_sku,external_code\nfulfil,B-1,F-1\n"
    report = mapping_import_csv(model_name="skumapping", csv_text=text, actor=ada)
    assert report.problems == ["Line 2: That code is already mapped to another Centra SKU in that system."]


def test_a_file_without_the_key_columns_is_refused(ada):
    report = mapping_import_csv(model_name="carriermapping", csv_text="carrier,code\nDHL,dhl\n", actor=ada)
    assert report.problems == ["Line 1: the header lacks the column(s) system, centra_carrier, centra_service."]


def test_bundles_are_imported_as_components_whose_shares_must_make_100_percent(ada):
    good = (
        "bundle_sku,bundle_name,component_sku,quantity,price_share\nGIFT,Gift set,SOCK,2,40\nGIFT,Gift set,HAT,1,60\n"
    )
    report = mapping_import_csv(model_name="bundlecomponent", csv_text=good, actor=ada)
    assert report.ok, report.problems
    assert sorted(BundleComponent.objects.values_list("component_sku", "quantity", "price_share")) == [
        ("HAT", 1, Decimal("60.0000")),
        ("SOCK", 2, Decimal("40.0000")),
    ]
    short = "bundle_sku,component_sku,quantity,price_share\nDUO,SOCK,1,50\nDUO,HAT,1,40\n"
    report = mapping_import_csv(model_name="bundlecomponent", csv_text=short, actor=ada)
    assert report.problems == ["Bundle DUO: the price shares of its components add up to 90.0000%, not 100%."]
    assert not BundleComponent.objects.filter(bundle__bundle_sku="DUO").exists()


def test_a_buffer_for_an_unknown_channel_names_it(ada):
    Channel.objects.create(code="jl", name="John Lewis", system="virtualstock")
    text = "channel,centra_sku,product_number,buffer\njl,TEE-M,,2\nzalando,TEE-M,,3\n"
    report = mapping_import_csv(model_name="stockbuffer", csv_text=text, actor=ada)
    assert len(report.problems) == 1
    assert report.problems[0].startswith("Line 3:")
    assert "There is no channel with code 'zalando'." in report.problems[0]
    assert StockBuffer.objects.count() == 0


def test_an_admin_imports_carriers_through_the_admin_preview_and_confirm(ada, client_for):
    client = client_for(ada)
    upload = SimpleUploadedFile(
        "carriers.csv",
        b"system,centra_carrier,centra_service,target_code\nvirtualstock,DHL,Express,dhl-express\n",
        content_type="text/csv",
    )
    url = reverse("admin:mappings_carriermapping_import")
    preview = client.post(url, {"import_file": upload, "format": "0", "resource": "0"})
    assert preview.status_code == 200
    confirm_form = preview.context["confirm_form"]
    assert confirm_form is not None
    response = client.post(reverse("admin:mappings_carriermapping_process_import"), confirm_form.initial)
    assert response.status_code == 302
    mapping = CarrierMapping.objects.get()
    assert mapping.target_code == "dhl-express"
    assert mapping.history.get().history_user == ada


def test_the_admin_shows_a_bad_row_and_offers_no_confirmation(ada, client_for):
    client = client_for(ada)
    upload = SimpleUploadedFile(
        "carriers.csv",
        b"system,centra_carrier,centra_service,target_code\nvirtualstock,DHL,,dhl\nvirtualstock,UPS,,\n",
        content_type="text/csv",
    )
    response = client.post(
        reverse("admin:mappings_carriermapping_import"), {"import_file": upload, "format": "0", "resource": "0"}
    )
    assert response.status_code == 200
    assert response.context.get("confirm_form") is None
    result = response.context["result"]
    assert [row.number for row in result.invalid_rows] == [2]
    assert CarrierMapping.objects.count() == 0


def test_a_finance_user_cannot_import_carriers(fred, client_for):
    response = client_for(fred).get(reverse("admin:mappings_carriermapping_import"))
    assert response.status_code == 403
