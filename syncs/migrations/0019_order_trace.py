"""The order trace and the runs page: identifiers no Link column holds (tracking numbers, Fulfil shipment numbers) as
LinkRef rows, references found in any case with one index look-up, and runs listed by status."""

import django.db.models.deletion
import django.db.models.functions.text
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('syncs', '0018_product_sync_schedule'),
    ]

    operations = [
        migrations.CreateModel(
            name='LinkRef',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('ref', models.CharField(max_length=200)),
                ('what', models.CharField(help_text='Which identifier it is, e.g. tracking_number.', max_length=30)),
                ('link', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='refs', to='syncs.link')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('ref', 'link'), name='link_ref_once')],
            },
        ),
        migrations.AddIndex(
            model_name='link',
            index=models.Index(django.db.models.functions.text.Lower('source_ref'), name='link_source_ref_any_case'),
        ),
        migrations.AddIndex(
            model_name='syncrun',
            index=models.Index(fields=['status', 'flow', '-id'], name='syncrun_by_status'),
        ),
    ]
