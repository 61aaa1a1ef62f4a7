"""Nightly reconciliations, in the brand's night (TIME_ZONE): the SKU sets at 02:15, the orders at 02:45 (after
the evening's late exports)."""

from datetime import datetime, time, timedelta

from django.db import migrations
from django.utils import timezone

SCHEDULES = [
    ("SKU reconciliation", "'reconcile_skus'", time(2, 15)),
    ("Order reconciliation", "'reconcile_orders'", time(2, 45)),
]


def schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    today = timezone.localdate()
    for name, args, at in SCHEDULES:
        first = timezone.make_aware(datetime.combine(today, at))
        if first <= timezone.now():
            first += timedelta(days=1)
        Schedule.objects.update_or_create(
            name=name,
            defaults={"func": "syncs.tasks.run", "args": args, "schedule_type": "D", "repeats": -1, "next_run": first},
        )


def unschedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name__in=[s[0] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("syncs", "0015_sign_off_permission"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
