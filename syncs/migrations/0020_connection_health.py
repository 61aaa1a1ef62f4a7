"""When each external system last answered and last failed, for the dashboard (syncs.connection_health)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('syncs', '0019_order_trace'),
    ]

    operations = [
        migrations.CreateModel(
            name='ConnectionHealth',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('system', models.CharField(max_length=30, unique=True)),
                ('last_success_at', models.DateTimeField(blank=True, null=True)),
                ('last_error_at', models.DateTimeField(blank=True, null=True)),
                ('last_error', models.CharField(blank=True, help_text='The error, short and redacted.', max_length=300)),
            ],
            options={
                'verbose_name_plural': 'connection health',
            },
        ),
    ]
