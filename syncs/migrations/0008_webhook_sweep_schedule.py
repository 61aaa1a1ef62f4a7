"""Every minute, process webhooks that were kept but never handed to a worker (the broker was down)."""

from django.db import migrations

NAME = "Sweep webhooks"


def schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=NAME, defaults={"func": "syncs.tasks.sweep_webhooks", "schedule_type": "I", "minutes": 1, "repeats": -1}
    )


def unschedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("syncs", "0007_webhook_payload_encoder"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
