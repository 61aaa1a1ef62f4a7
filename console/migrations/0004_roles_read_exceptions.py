"""Everyone signed in reads the exception queue, in the admin too. Acting on it is decided per team by the
queue's services, not by model permissions."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLES = ["ecommerce", "finance", "operations", "customer_service", "integration_admin"]
MODELS = ["syncexception", "exceptionevent"]


def grant(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    view = Permission.objects.filter(content_type__app_label="exceptions", codename__in=[f"view_{m}" for m in MODELS])
    for group in Group.objects.filter(name__in=ROLES):
        group.permissions.add(*view)


def revoke(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    view = Permission.objects.filter(content_type__app_label="exceptions", codename__in=[f"view_{m}" for m in MODELS])
    for group in apps.get_model("auth", "Group").objects.filter(name__in=ROLES):
        group.permissions.remove(*view)


class Migration(migrations.Migration):
    dependencies = [
        ("console", "0003_heartbeat_schedule"),
        ("exceptions", "0002_retry_schedule"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
