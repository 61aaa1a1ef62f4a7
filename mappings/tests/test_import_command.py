import pytest
from django.core.management import CommandError, call_command

from mappings.models import TaxMapping

pytestmark = pytest.mark.django_db


def test_it_imports_a_file_as_the_named_user(ada, tmp_path):
    path = tmp_path / "tax.csv"
    path.write_text("centra_tax_class,country,rate,fulfil_tax_code\nstandard,SE,25,SE-25\nstandard,,,EU\n")
    call_command("import_mappings", "taxmapping", str(path), username="ada")
    assert TaxMapping.objects.count() == 2
    assert TaxMapping.history.filter(history_user=ada).count() == 2


def test_it_lists_the_problems_and_imports_nothing(ada, tmp_path, capsys):
    path = tmp_path / "tax.csv"
    path.write_text("centra_tax_class,country,rate,fulfil_tax_code\nstandard,SE,25,SE-25\nstandard,XX,,EU\n")
    with pytest.raises(CommandError, match="Nothing imported: 1 problem"):
        call_command("import_mappings", "taxmapping", str(path), username="ada")
    assert "Line 3: country:" in capsys.readouterr().err
    assert not TaxMapping.objects.exists()


def test_it_refuses_a_user_who_may_not_change_the_table(fred, tmp_path):
    path = tmp_path / "tax.csv"
    path.write_text("centra_tax_class,country,rate,fulfil_tax_code\nstandard,SE,25,SE-25\n")
    with pytest.raises(CommandError, match="fred may not change taxmapping"):
        call_command("import_mappings", "taxmapping", str(path), username="fred")


def test_a_file_that_is_not_utf8_is_refused_clearly(ada, tmp_path):
    path = tmp_path / "tax.csv"
    path.write_bytes("centra_tax_class,country,rate,fulfil_tax_code\nmoms,SE,25,Mjölk\n".encode("utf-16"))
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_mappings", "taxmapping", str(path), username="ada")
