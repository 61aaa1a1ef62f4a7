import functools
import json

from django.core.management.base import BaseCommand, CommandError

from syncs.flows import FLOWS
from syncs.runs import run_flow


class Command(BaseCommand):
    help = "Run one flow once in the foreground and print a JSON summary line."

    def add_arguments(self, parser):
        parser.add_argument("flow", choices=sorted(FLOWS))
        parser.add_argument("--channel", help="stock_push: only this channel (its code).")
        parser.add_argument("--full", action="store_true", help="stock_push: also read each channel and repair drift.")

    def handle(self, *args, flow: str, channel: str | None, full: bool, **options):
        action = FLOWS[flow]
        if flow == "stock_push":
            action = functools.partial(action, channel_code=channel, full=full)
        elif channel or full:
            raise CommandError("--channel and --full are options of stock_push.")
        try:
            run = run_flow(flow=flow, action=action, trigger="command")
        except Exception as error:
            raise CommandError(f"{flow} failed: {error}") from error
        self.stdout.write(json.dumps({"flow": flow, "run": run.pk, **run.summary}, default=str))
