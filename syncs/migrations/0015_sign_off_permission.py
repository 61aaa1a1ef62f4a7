"""Finance and integration admins may sign off a reconciled day; everyone signed in may read the reports."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

SIGNERS = ["finance", "integration_admin"]
READERS = ["ecommerce", "finance", "operations", "customer_service", "integration_admin"]


def _permission(apps, codename):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    return apps.get_model("auth", "Permission").objects.get(content_type__app_label="syncs", codename=codename)


def grant(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    sign_off = _permission(apps, "sign_off_orderreconciliation")
    view = _permission(apps, "view_orderreconciliation")
    for group in Group.objects.filter(name__in=SIGNERS):
        group.permissions.add(sign_off)
    for group in Group.objects.filter(name__in=READERS):
        group.permissions.add(view)


def revoke(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    permissions = Permission.objects.filter(
        content_type__app_label="syncs", codename__in=["sign_off_orderreconciliation", "view_orderreconciliation"]
    )
    for group in apps.get_model("auth", "Group").objects.filter(name__in=READERS):
        group.permissions.remove(*permissions)


class Migration(migrations.Migration):
    dependencies = [
        ("syncs", "0014_order_reconciliation"),
        ("console", "0004_roles_read_exceptions"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
