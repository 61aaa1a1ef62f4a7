import random
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from syncs.sandbox.core import SandboxApp, run_periodically
from syncs.sandbox.server import RunningSandbox, build_simulators

WEBHOOK_SENDERS = ("centra", "fulfil", "marketplace")


def _stop(signum, frame) -> None:
    # serve_forever runs in this (the main) thread, so it cannot be shut down from here: leave it by exception.
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = (
        "Serve the simulators of Centra, Fulfil, Virtualstock, Inventory Planner and a marketplace on 127.0.0.1, "
        "seeded with a demo brand, sending signed webhooks to the console and (with --demo) keeping the world "
        "moving. See docs/sandbox.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8100)
        parser.add_argument("--seed", type=int, default=42, help="The demo brand; the same seed, the same data.")
        parser.add_argument("--products", type=int, default=200)
        parser.add_argument("--orders", type=int, default=60)
        parser.add_argument("--no-seed", action="store_true", help="Start empty (seed through the control API).")
        parser.add_argument("--demo", action="store_true", help="Keep the world moving: orders, stock, shipments.")
        parser.add_argument("--pace", type=float, default=5.0, help="Seconds between demo ticks.")
        parser.add_argument(
            "--console-url", default="http://127.0.0.1:8000", help="Where webhooks go ('' to send none)."
        )
        parser.add_argument(
            "--enforce-rate-limits",
            action="store_true",
            help="Answer 429 at each system's published limits, as the real ones do.",
        )

    def handle(
        self, *args, port, seed, products, orders, no_seed, demo, pace, console_url, enforce_rate_limits, **options
    ):
        app = SandboxApp(build_simulators(settings.CONNECTIONS))
        if console_url:
            if not console_url.startswith(("http://127.", "http://localhost", "http://[::1]")):
                raise CommandError("Webhooks go only to a console on this machine (127.0.0.1 or localhost).")
            app.configure_webhooks(
                console_url=console_url,
                secrets={name: settings.CONNECTIONS[name]["webhook_secret"] for name in WEBHOOK_SENDERS},
            )
            for name, simulator in app.simulators.items():
                if name not in WEBHOOK_SENDERS:
                    simulator.webhook_url = None
        for simulator in app.simulators.values():
            simulator.enforce_rate_limit = enforce_rate_limits
            if not no_seed:
                with simulator.lock:
                    simulator.seed({"generate": {"seed": seed, "products": products, "orders": orders}})
        running = RunningSandbox(app, port)
        stop = threading.Event()
        if demo:
            rng = random.Random(seed)

            def tick() -> None:
                for simulator in app.simulators.values():
                    simulator.tick(rng)

            run_periodically(pace, tick, stop)
        self.stdout.write(f"Sandbox on {running.url}/ — systems: {', '.join(app.simulators)}")
        signal.signal(signal.SIGTERM, _stop)
        try:
            running.server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            running.server.server_close()
