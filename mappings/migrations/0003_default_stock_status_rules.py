"""The stock statuses each possible stock master reports, with the usual answer: stock reserved or allocated to
orders cannot be sold again. Staff change these in the admin; a status with no rule is never guessed at."""

from django.db import migrations

DEFAULTS = [
    ("fulfil", "reserved", True, "On hand but reserved for orders (on hand − available)."),
    ("centra", "allocated", True, "Allocated to Centra orders not yet shipped."),
]


def create(apps, schema_editor):
    StockStatusRule = apps.get_model("mappings", "StockStatusRule")
    for system, status, subtract, description in DEFAULTS:
        StockStatusRule.objects.get_or_create(
            system=system, status=status, defaults={"subtract": subtract, "description": description}
        )


def remove(apps, schema_editor):
    StockStatusRule = apps.get_model("mappings", "StockStatusRule")
    for system, status, _, _ in DEFAULTS:
        StockStatusRule.objects.filter(system=system, status=status).delete()


class Migration(migrations.Migration):
    dependencies = [("mappings", "0002_channel_centra_market_id_channel_external_account_and_more")]

    operations = [migrations.RunPython(create, remove)]
