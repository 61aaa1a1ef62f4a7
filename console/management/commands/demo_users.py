from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from console.roles import ROLE_LABELS

# One person per role, with a name, so the demo reads like a brand's team.
DEMO_PEOPLE = {
    "ecommerce": ("erin", "Erin", "Ecommerce"),
    "finance": ("fred", "Fred", "Finance"),
    "operations": ("olga", "Olga", "Operations"),
    "customer_service": ("cora", "Cora", "Service"),
    "integration_admin": ("ada", "Ada", "Admin"),
}


class Command(BaseCommand):
    help = "Create (or reset) one demo user per staff role. Refuses to run with DEBUG off unless --force."

    def add_arguments(self, parser):
        parser.add_argument("--password", default="switchyard", help="Password for every demo user.")
        parser.add_argument("--force", action="store_true", help="Run even though DEBUG is off.")

    @transaction.atomic
    def handle(self, *args, password: str, force: bool, **options):
        if not settings.DEBUG and not force:
            raise CommandError("Demo users are for demos: set DEBUG=true or pass --force.")
        User = get_user_model()
        for role, (username, first_name, last_name) in DEMO_PEOPLE.items():
            user, created = User.objects.get_or_create(
                username=username, defaults={"first_name": first_name, "last_name": last_name}
            )
            # Every console user is staff so the admin shows them the mapping tables; the role decides what
            # they may change there.
            user.is_staff = True
            user.set_password(password)
            user.save()
            user.groups.set([Group.objects.get(name=role)])
            verb = "created" if created else "reset"
            self.stdout.write(f"{username:6} {ROLE_LABELS[role]:18} {verb}")
        self.stdout.write(self.style.SUCCESS(f"Sign in as any of them with the password {password!r}."))
