"""django-q2 entry points of the syncs. Thin: each calls a flow through the run bookkeeping."""

import functools
from datetime import date

from syncs.flows import FLOWS
from syncs.flows.reconcile_orders import reconcile_orders_run
from syncs.flows.stock_push import stock_push_run, stock_reconcile_if_due, velocity_refresh
from syncs.flows.webhooks import centra_events_poll, webhook_process, webhooks_sweep
from syncs.notifications import send_team_digests
from syncs.runs import flow_running, run_flow


def run(flow: str, trigger: str = "schedule") -> int | None:
    """Run one flow once; returns the SyncRun's id. A scheduled or event-started run is skipped while another run
    of the same flow is still going (a slow API, two clusters): it would only redo the same work."""
    if trigger in ("schedule", "event") and flow_running(flow):
        return None
    return run_flow(flow=flow, action=FLOWS[flow], trigger=trigger).pk


def send_digests() -> dict[str, str]:
    """Scheduled every 5 minutes: each team's digest whose interval has passed."""
    return send_team_digests()


def process_webhook(webhook_id: int) -> str:
    """Enqueued when a webhook is kept: act on it within seconds."""
    return webhook_process(webhook_id=webhook_id)


def stock_reconcile() -> bool:
    """Scheduled: the full stock reconcile, when STOCK_FULL_RECONCILE_MINUTES have passed since the last."""
    return stock_reconcile_if_due()


def stock_push_skus(skus: list[str]) -> str:
    """Enqueued when orders are seen: push these SKUs' stock now, their units in flight counted as sold."""
    summary = stock_push_run(skus=skus)
    return f"stock pushed for {len(skus)} SKU(s): {summary.pushed} update(s)"


def stock_verify(channel_code: str, skus: list[str] | None) -> str:
    """Scheduled a little after a stock write was sent again following a timeout: read these SKUs (the whole channel
    when None) back from the channel and push again the ones an attempt that landed late left showing an older
    figure."""
    summary = stock_push_run(channel_code=channel_code, skus=skus, full=True)
    return f"stock verified on {channel_code}: {summary.drift} drifted, {summary.pushed} pushed again"


def stock_velocity() -> int:
    """Scheduled daily: sales velocities from Inventory Planner, for the risk order of stock pushes."""
    return velocity_refresh()


def sweep_webhooks() -> int:
    """Scheduled every minute: webhooks kept but never handed to a worker."""
    return webhooks_sweep()


def poll_centra_events() -> str:
    """Scheduled every minute: Centra's events queue, for brands that use it instead of webhooks."""
    return centra_events_poll()


def reconcile_order_days(since: str, until: str) -> int:
    """Started from the reconciliation page: the order reconciliation of the days asked for (ISO dates)."""
    first, last = date.fromisoformat(since), date.fromisoformat(until)
    action = functools.partial(reconcile_orders_run, first=first, last=last)
    return run_flow(flow="reconcile_orders", action=action, trigger="manual").pk
