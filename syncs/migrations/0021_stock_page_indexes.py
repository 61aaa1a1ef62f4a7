"""The stock page's look-ups at 300,000 SKU × channel pairs: pairs in SKU order, SKU prefixes (LIKE needs the
pattern operator class unless the database collation is C), product numbers, and one partial index per filter
(pending, drift, zero) in SKU order."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("syncs", "0020_connection_health"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="stockstate",
            index=models.Index(fields=["sku", "channel"], name="stock_state_by_sku"),
        ),
        migrations.AddIndex(
            model_name="stockstate",
            index=models.Index(fields=["sku"], name="stock_state_sku_prefix", opclasses=["varchar_pattern_ops"]),
        ),
        migrations.AddIndex(
            model_name="stockstate",
            index=models.Index(fields=["product_number"], name="stock_state_product"),
        ),
        migrations.AddIndex(
            model_name="stockstate",
            index=models.Index(
                condition=models.Q(
                    ("pushed_value__isnull", True),
                    models.Q(("pushed_value", models.F("ats")), _negated=True),
                    _connector="OR",
                ),
                fields=["sku", "channel"],
                name="stock_state_pending",
            ),
        ),
        migrations.AddIndex(
            model_name="stockstate",
            index=models.Index(
                condition=models.Q(
                    ("channel_value__isnull", False),
                    models.Q(
                        ("pushed_value__isnull", True),
                        models.Q(("channel_value", models.F("pushed_value")), _negated=True),
                        _connector="OR",
                    ),
                ),
                fields=["sku", "channel"],
                name="stock_state_drift",
            ),
        ),
        migrations.AddIndex(
            model_name="stockstate",
            index=models.Index(condition=models.Q(("ats", 0)), fields=["sku", "channel"], name="stock_state_zero"),
        ),
    ]
