"""Hostile CSV files in and out: files in the wrong encoding, with invalid or NUL bytes, or not text at all, are
refused whole with a message the person can act on; cells a spreadsheet would run as a formula are refused on
import; and every CSV Switchyard hands out defuses such cells, whatever put them in the database."""

import csv
import io
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from mappings.models import CarrierMapping, SkuMapping
from mappings.resources import RESOURCES
from mappings.services import mapping_import_csv
from syncs.csv_stream import text_cell
from syncs.models import OrderReconciliation

pytestmark = pytest.mark.django_db

HEADER = "system,centra_carrier,centra_service,target_code\n"
GOOD_ROW = "virtualstock,DHL,Express,dhl-express\n"
SAVE_AS = "Save it from the spreadsheet as “CSV UTF-8 (comma delimited)”"
BROKEN_FILES = {
    "Latin-1": ((HEADER + "virtualstock,Café Post,Express,cafe\n").encode("latin-1"), "not UTF-8 text (line 2"),
    "UTF-16 with a byte-order mark": ((HEADER + GOOD_ROW).encode("utf-16"), "not UTF-8 text (line 1"),
    "UTF-16 without a byte-order mark": ((HEADER + GOOD_ROW).encode("utf-16-le"), "Line 1 holds a NUL character"),
    "invalid UTF-8 bytes": (HEADER.encode() + b"virtualstock,DHL\xff\xfe,Express,dhl\n", "not UTF-8 text (line 2"),
    "NUL bytes": ((HEADER + GOOD_ROW + "virtualstock,UPS\x00,,ups\n").encode(), "Line 3 holds a NUL character"),
    "a binary file": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "not UTF-8 text (line 1"),
}
# Each starts a formula in a spreadsheet (OWASP's list).
FORMULAS = ['=HYPERLINK("http://evil.example","click")', "+1", "-1+1", "@SUM(A1:A9)", "\t=1", "\r=1"]
# Refused on import too: a formula after leading blanks, or after a CR that reading the file made a line break.
HIDDEN_FORMULAS = [" =1+1", "\n=1+1", "\r\n@SUM(A1)"]


def upload(client, content: bytes):
    url = reverse("admin:mappings_carriermapping_import")
    return client.post(url, {"import_file": SimpleUploadedFile("carriers.csv", content), "format": "0"})


def assert_nothing_imported() -> None:
    assert not CarrierMapping.objects.exists()
    assert not CarrierMapping.history.exists()


@pytest.mark.parametrize("broken", list(BROKEN_FILES))
def test_the_admin_refuses_a_file_it_cannot_read_saying_what_to_do(ada, client_for, broken):
    content, reason = BROKEN_FILES[broken]
    response = upload(client_for(ada), content)
    assert response.status_code == 200
    errors = response.context["form"].errors["import_file"]
    assert len(errors) == 1 and reason in errors[0] and SAVE_AS in errors[0]
    assert response.context.get("confirm_form") is None
    assert_nothing_imported()


@pytest.mark.parametrize("broken", list(BROKEN_FILES))
def test_the_import_command_refuses_a_file_it_cannot_read_saying_what_to_do(ada, tmp_path, broken):
    content, reason = BROKEN_FILES[broken]
    path = tmp_path / "carriers.csv"
    path.write_bytes(content)
    with pytest.raises(CommandError) as refused:
        call_command("import_mappings", "carriermapping", str(path), "--as", "ada")
    assert reason in str(refused.value) and SAVE_AS in str(refused.value)
    assert_nothing_imported()


def test_a_utf8_file_with_or_without_a_byte_order_mark_is_read(ada, tmp_path):
    for name, content in (("plain.csv", HEADER + GOOD_ROW), ("bom.csv", "\ufeff" + HEADER + GOOD_ROW)):
        path = tmp_path / name
        path.write_bytes(content.encode())
        call_command("import_mappings", "carriermapping", str(path), "--as", "ada", stdout=io.StringIO())
    assert CarrierMapping.objects.get().target_code == "dhl-express"


def test_text_holding_a_nul_character_is_refused_before_any_row_is_read(ada):
    report = mapping_import_csv(model_name="carriermapping", csv_text=HEADER + GOOD_ROW + "ups,\x00,,x\n", actor=ada)
    assert report.problems[0].startswith("Line 3 holds a NUL character")
    assert_nothing_imported()


@pytest.mark.parametrize("formula", FORMULAS + HIDDEN_FORMULAS)
def test_a_cell_a_spreadsheet_would_run_is_refused_naming_line_and_column(ada, formula):
    text = HEADER + GOOD_ROW + csv_line(["virtualstock", formula, "Express", "x-1"])
    report = mapping_import_csv(model_name="carriermapping", csv_text=text, actor=ada)
    assert len(report.problems) == 1
    assert report.problems[0].startswith("Line 3: centra_carrier: ")
    assert "would run as a formula in a spreadsheet" in report.problems[0]
    assert_nothing_imported()


@pytest.mark.parametrize("formula", FORMULAS + HIDDEN_FORMULAS)
def test_the_admin_preview_shows_a_formula_cell_and_offers_no_confirmation(ada, client_for, formula):
    response = upload(client_for(ada), (HEADER + GOOD_ROW + csv_line(["virtualstock", "DHL", formula, "x"])).encode())
    assert response.context.get("confirm_form") is None
    invalid = response.context["result"].invalid_rows
    assert [row.number for row in invalid] == [2]
    assert "would run as a formula in a spreadsheet" in str(invalid[0].error_dict["centra_service"])
    assert_nothing_imported()


@pytest.mark.parametrize("table", sorted(RESOURCES))
def test_every_mapping_table_refuses_formula_cells_in_its_text_columns(ada, table):
    resource = RESOURCES[table]()
    columns = [field.column_name for field in resource.get_import_fields()]
    model = resource._meta.model
    before = model.objects.count()
    text = csv_line(columns) + csv_line(["=1+1" for _ in columns])
    report = mapping_import_csv(model_name=table, csv_text=text, actor=ada)
    assert not report.ok
    assert model.objects.count() == before


# --- what goes out ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("formula", FORMULAS)
def test_text_cell_defuses_every_formula_start(formula):
    assert text_cell(formula) == "'" + formula
    assert text_cell("TEE-BLK-S") == "TEE-BLK-S"


@pytest.mark.parametrize("formula", FORMULAS)
def test_the_mapping_export_defuses_formula_cells_whatever_stored_them(ada, client_for, formula):
    # Stored by a raw edit, as a row written before imports refused them would be.
    CarrierMapping.objects.create(system="virtualstock", centra_carrier=formula, centra_service="", target_code="x")
    SkuMapping.objects.create(system="fulfil", centra_sku="TEE-BLK-S", external_code="F-1")
    client = client_for(ada)
    carriers = exported(client, "carriermapping")
    assert carriers[0]["centra_carrier"] == "'" + formula
    assert exported(client, "skumapping")[0]["centra_sku"] == "TEE-BLK-S"


@pytest.mark.parametrize("formula", FORMULAS)
def test_the_reconciliation_csv_defuses_every_text_column(fred, client_for, formula):
    difference = {"kind": "sale_differs", "ref": formula, "order": formula, "centra": "-10.00", "fulfil": "-9.99"}
    day = OrderReconciliation.objects.create(
        day=timezone.localdate() - timedelta(days=1),
        market_id=2,
        market_name=formula,
        currency="EUR",
        checked_at=timezone.now(),
        differences=[difference],
        sign_off_note=formula,
    )
    since = (day.day - timedelta(days=1)).isoformat()
    response = client_for(fred).get(reverse("reconciliation:orders_csv"), {"since": since})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert {row["market"] for row in rows} == {"'" + formula}
    assert rows[0]["note"] == "'" + formula  # the day's row carries the sign-off
    found = next(row for row in rows if row["difference"])
    assert (found["reference"], found["order"]) == ("'" + formula, "'" + formula)
    assert (found["centra"], found["fulfil"]) == ("-10.00", "-9.99")  # amounts stay numbers


def exported(client, table: str) -> list[dict]:
    response = client.post(reverse(f"admin:mappings_{table}_export"), {"format": "0", "resource": "0"})
    if response.status_code == 200 and response.get("Content-Type", "").startswith("text/html"):
        # django-import-export 4 asks which fields to export first: take them all.
        form = response.context["form"]
        fields = {name: "on" for name in form.fields if name not in ("format", "resource", "export_items")}
        response = client.post(reverse(f"admin:mappings_{table}_export"), {"format": "0", "resource": "0", **fields})
    assert response["Content-Type"].startswith("text/csv"), response["Content-Type"]
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))


def csv_line(cells: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue()
