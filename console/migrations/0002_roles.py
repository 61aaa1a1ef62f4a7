"""Create the staff roles as groups with their model permissions.

Everyone may view every mapping table; integration admins may change all of them; ecommerce may change SKU
mappings and stock buffers. Later migrations extend these as new tables arrive.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLES = ["ecommerce", "finance", "operations", "customer_service", "integration_admin"]
MAPPING_MODELS = [
    "channel",
    "skumapping",
    "carriermapping",
    "shippingmethodmapping",
    "taxmapping",
    "marketmapping",
    "bundle",
    "bundlecomponent",
    "stockbuffer",
    "stockstatusrule",
]
CHANGE = ("add", "change", "delete")
EDITS = {
    "integration_admin": MAPPING_MODELS,
    "ecommerce": ["skumapping", "stockbuffer"],
}


def create_roles(apps, schema_editor):
    # Permissions are normally created after all migrations have run; create them now so groups can hold them.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")

    def permissions(actions, models):
        codenames = [f"{action}_{model}" for action in actions for model in models]
        return Permission.objects.filter(content_type__app_label="mappings", codename__in=codenames)

    for role in ROLES:
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.add(*permissions(["view"], MAPPING_MODELS))
        group.permissions.add(*permissions(CHANGE, EDITS.get(role, [])))


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("console", "0001_initial"),
        ("mappings", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
