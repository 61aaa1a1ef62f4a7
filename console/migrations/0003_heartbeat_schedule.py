"""Schedule the worker heartbeat every minute, so the console can tell whether the scheduler and a worker live."""

from django.db import migrations

NAME = "Worker heartbeat"


def schedule_heartbeat(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=NAME,
        defaults={"func": "console.tasks.heartbeat", "schedule_type": "I", "minutes": 1, "repeats": -1},
    )


def unschedule_heartbeat(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("console", "0002_roles"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(schedule_heartbeat, unschedule_heartbeat)]
