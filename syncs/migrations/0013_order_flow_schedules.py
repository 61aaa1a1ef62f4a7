"""Order-to-cash schedules, the safety net under the events and webhooks that start each flow within seconds:
export and cancellations every two minutes, shipments every five, returns and the stalled-order watch every ten,
and Centra's events queue every minute (it does nothing unless CENTRA_EVENTS_POLL is set)."""

from django.db import migrations

SCHEDULES = [
    ("Order export", "syncs.tasks.run", "'order_export'", 2),
    ("Order cancellations", "syncs.tasks.run", "'order_cancel'", 2),
    ("Shipment sync", "syncs.tasks.run", "'shipment_sync'", 5),
    ("Return sync", "syncs.tasks.run", "'return_sync'", 10),
    ("Order watch", "syncs.tasks.run", "'order_watch'", 10),
    ("Centra events", "syncs.tasks.poll_centra_events", "", 1),
]


def schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for name, func, args, minutes in SCHEDULES:
        Schedule.objects.update_or_create(
            name=name,
            defaults={"func": func, "args": args or None, "schedule_type": "I", "minutes": minutes, "repeats": -1},
        )


def unschedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name__in=[s[0] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("syncs", "0012_rate_budget"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
