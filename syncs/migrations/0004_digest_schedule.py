"""Schedule the team digests every 5 minutes. Each team's own interval (EXCEPTION_DIGEST_MINUTES, read when the task
runs, not here) decides whether its digest is due, so changing the setting needs no new migration."""

from django.db import migrations

NAME = "Team digests"


def schedule_digests(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=NAME,
        defaults={"func": "syncs.tasks.send_digests", "schedule_type": "I", "minutes": 5, "repeats": -1},
    )


def unschedule_digests(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("syncs", "0003_order_import_schedule"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(schedule_digests, unschedule_digests)]
