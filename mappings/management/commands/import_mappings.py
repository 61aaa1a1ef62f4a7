from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from mappings.resources import RESOURCES
from mappings.services import UnreadableCsv, mapping_csv_text, mapping_import_csv


class Command(BaseCommand):
    help = "Import a CSV file into one mapping table, all or nothing. Problems are listed by line."

    def add_arguments(self, parser):
        parser.add_argument("table", choices=sorted(RESOURCES), help="The mapping table, e.g. skumapping.")
        parser.add_argument("csv_file", help="Path to a UTF-8 CSV file with a header row.")
        parser.add_argument("--as", dest="username", required=True, help="The user recorded as the editor.")

    def handle(self, *args, table: str, csv_file: str, username: str, **options):
        try:
            actor = get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"There is no user {username!r}.") from None
        if not actor.has_perm(f"mappings.change_{table}"):
            raise CommandError(f"{username} may not change {table} mappings.")
        try:
            with open(csv_file, "rb") as file:
                text = mapping_csv_text(file.read())
        except OSError as error:
            raise CommandError(f"Cannot read {csv_file}: {error}") from None
        except UnreadableCsv as error:
            raise CommandError(f"Cannot read {csv_file}: {error}") from None
        report = mapping_import_csv(model_name=table, csv_text=text, actor=actor)
        if not report.ok:
            for problem in report.problems:
                self.stderr.write(problem)
            raise CommandError(f"Nothing imported: {len(report.problems)} problem(s) in {csv_file}.")
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {csv_file}: {report.created} created, {report.updated} updated, "
                f"{report.unchanged} unchanged."
            )
        )
