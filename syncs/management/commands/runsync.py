import json

from django.core.management.base import BaseCommand, CommandError

from syncs.flows import FLOWS
from syncs.runs import run_flow


class Command(BaseCommand):
    help = "Run one flow once in the foreground and print a JSON summary line."

    def add_arguments(self, parser):
        parser.add_argument("flow", choices=sorted(FLOWS))

    def handle(self, *args, flow: str, **options):
        try:
            run = run_flow(flow=flow, action=FLOWS[flow], trigger="command")
        except Exception as error:
            raise CommandError(f"{flow} failed: {error}") from error
        self.stdout.write(json.dumps({"flow": flow, "run": run.pk, **run.summary}, default=str))
