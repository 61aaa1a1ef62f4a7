"""Stock schedules: an incremental push every five minutes (only changes are sent), the full reconcile checked
every ten (it runs when STOCK_FULL_RECONCILE_MINUTES have passed), velocities daily."""

from django.db import migrations

SCHEDULES = [
    ("Stock push", "syncs.tasks.run", "'stock_push'", "I", 5),
    ("Stock reconcile", "syncs.tasks.stock_reconcile", "", "I", 10),
    ("Stock velocity", "syncs.tasks.stock_velocity", "", "D", None),
]


def schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for name, func, args, kind, minutes in SCHEDULES:
        Schedule.objects.update_or_create(
            name=name,
            defaults={"func": func, "args": args or None, "schedule_type": kind, "minutes": minutes, "repeats": -1},
        )


def unschedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name__in=[s[0] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("syncs", "0005_stock_state"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
