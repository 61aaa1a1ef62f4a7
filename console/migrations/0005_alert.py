"""Alerts: their state (one row per occurrence, raised to cleared), and the task that judges them every minute.

The first evaluation waits two minutes, so a fresh install's worker has run its heartbeat before it is judged."""

from datetime import timedelta

from django.db import migrations, models
from django.utils import timezone

NAME = "Alerts"


def schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=NAME,
        defaults={
            "func": "console.tasks.evaluate_alerts",
            "schedule_type": "I",
            "minutes": 1,
            "repeats": -1,
            "next_run": timezone.now() + timedelta(minutes=2),
        },
    )


def unschedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('console', '0004_roles_read_exceptions'),
        ('django_q', '0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more'),
    ]

    operations = [
        migrations.CreateModel(
            name='Alert',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('key', models.CharField(help_text="The rule and what it is about, e.g. 'stock_stale:john-lewis'.", max_length=150)),
                ('title', models.CharField(help_text='What is wrong, in a few words.', max_length=300)),
                ('raised_at', models.DateTimeField()),
                ('cleared_at', models.DateTimeField(blank=True, null=True)),
                ('last_value', models.FloatField(help_text='The figure the rule measured when last evaluated.')),
                ('threshold', models.FloatField(help_text='The figure it must exceed to hold.')),
                ('last_message', models.TextField(blank=True, help_text='The figure and threshold as last measured, in words.')),
                ('link', models.CharField(blank=True, help_text='The console page that shows it (a path).', max_length=300)),
                ('evaluated_at', models.DateTimeField()),
                ('raise_sent_at', models.DateTimeField(blank=True, help_text='When the message that it holds went out.', null=True)),
                ('recovery_sent_at', models.DateTimeField(blank=True, help_text='When the recovery message went out.', null=True)),
                ('delivery', models.TextField(blank=True, help_text='Where the messages went, and any that failed.')),
            ],
            options={
                'ordering': ['-raised_at'],
                'indexes': [models.Index(fields=['key', '-raised_at'], name='console_ale_key_793bef_idx')],
                'constraints': [models.UniqueConstraint(condition=models.Q(('cleared_at__isnull', True)), fields=('key',), name='alert_once_while_it_holds')],
            },
        ),
        migrations.RunPython(schedule, unschedule),
    ]
