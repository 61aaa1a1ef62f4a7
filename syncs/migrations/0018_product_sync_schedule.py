"""Product sync every fifteen minutes: the safety net under Centra's product webhooks and the marketplace's
offer.updated (a run that finds nothing changed costs a page of Centra and the changed-offers listing); the first
run PRODUCT_SYNC_FULL_SWEEP_HOURS after the last full sweep becomes one by itself."""

from django.db import migrations

NAME = "Product sync"


def schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=NAME,
        defaults={"func": "syncs.tasks.run", "args": "'product_sync'", "schedule_type": "I", "minutes": 15, "repeats": -1},
    )


def unschedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("syncs", "0017_productstate"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
