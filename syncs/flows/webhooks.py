"""What a received webhook sets moving. Webhooks are kept first (syncs.services.webhook_receive) and processed
here by a task within seconds; the scheduled runs are the safety net for anything a webhook never announced."""

import hashlib
import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from exceptions.registry import AlreadyRecorded, register_retry_handler
from exceptions.services import failure_record, object_succeeded
from mappings.models import System
from syncs import connections
from syncs.connectors.fulfil import inventory_levels
from syncs.flows.stock_push import stock_push_run
from syncs.models import InboundWebhook
from syncs.runs import flow_run_soon

logger = logging.getLogger("switchyard.webhooks")
FLOW = "webhooks"


def webhook_process(*, webhook_id: int) -> str:
    """Act on one received webhook, once: the row is claimed by a conditional update, so a task delivered twice
    does nothing the second time; a claim older than the task time limit (a worker that died) is taken over.
    Whatever goes wrong is one exception in the queue, retried like any other. Returns what was done."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.Q_TIMEOUT)
    claimed = (
        InboundWebhook.objects.filter(pk=webhook_id)
        .filter(
            Q(status=InboundWebhook.Status.RECEIVED)
            | Q(status=InboundWebhook.Status.PROCESSING, processed_at__lt=stale)
            | Q(status=InboundWebhook.Status.FAILED)
        )
        .update(status=InboundWebhook.Status.PROCESSING, processed_at=now)
    )
    if claimed != 1:
        return "already processed"
    webhook = InboundWebhook.objects.get(pk=webhook_id)
    try:
        skus = _skus_touched(webhook)
        done = []
        if skus:
            summary = stock_push_run(skus=sorted(skus))
            done.append(f"stock pushed for {len(skus)} SKU(s): {summary.pushed} update(s)")
        flows = flows_touched(webhook.system, webhook.payload)
        for flow in sorted(flows):
            flow_run_soon(flow)
        if flows:
            done.append(f"started {', '.join(sorted(flows))}")
        outcome = "; ".join(done) or "nothing to do"
    except Exception as error:  # a failure must land in the queue, never vanish with the task
        InboundWebhook.objects.filter(pk=webhook_id).update(status=InboundWebhook.Status.FAILED)
        failure_record(
            flow=FLOW,
            object_type="webhook",
            object_ref=f"webhook:{webhook_id}",
            error=error,
            title=f"A {webhook.system} webhook could not be acted on",
            system=webhook.system,
            context={"webhook_id": webhook_id},
        )
        return f"failed: {error}"
    InboundWebhook.objects.filter(pk=webhook_id).update(status=InboundWebhook.Status.PROCESSED)
    object_succeeded(flow=FLOW, object_ref=f"webhook:{webhook_id}")
    return outcome


def webhooks_sweep(*, older_than_seconds: int = 60) -> int:
    """Process webhooks kept but never handed over (the broker was down when they arrived). Returns how many."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    waiting = list(
        InboundWebhook.objects.filter(status=InboundWebhook.Status.RECEIVED, received_at__lt=cutoff)
        .order_by("received_at")
        .values_list("id", flat=True)[:500]
    )
    for webhook_id in waiting:
        webhook_process(webhook_id=webhook_id)
    return len(waiting)


def retry(exception) -> None:
    """Act on the webhook again (the queue calls this). Raises AlreadyRecorded if it fails again."""
    if webhook_process(webhook_id=exception.context["webhook_id"]).startswith("failed"):
        raise AlreadyRecorded


# What each system's events set moving, besides stock: Centra's object types (webhook "type", events queue
# "objectType"), Fulfil's event names, the marketplace's event types.
CENTRA_FLOWS = {
    "order": ("order_export", "order_cancel"),
    "return": ("return_sync",),
    "product": ("product_sync",),  # its copy, media, attributes or prices changed
}
FULFIL_FLOWS = {"stock.shipment.out": ("shipment_sync",), "stock.shipment.in.return": ("return_sync",)}
# Centra's object type names (events queue) for the webhook types above.
CENTRA_OBJECT_TYPES = {name.capitalize() for name in CENTRA_FLOWS}
# An offer edited on the marketplace: product_sync reads back the offers changed since it last looked.
MARKETPLACE_FLOWS = {"order.created": ("order_import",), "offer.updated": ("product_sync",)}


def flows_touched(system: str, payload) -> set[str]:
    """The flows an event from ``system`` gives work to."""
    flows: set[str] = set()
    if system == System.CENTRA:
        for event in payload if isinstance(payload, list) else []:
            flows.update(CENTRA_FLOWS.get(str(event.get("type") or event.get("objectType") or "").lower(), ()))
    elif system == System.FULFIL and isinstance(payload, dict):
        event = str(payload.get("event") or "")
        for prefix, names in FULFIL_FLOWS.items():
            if event.startswith(prefix):
                flows.update(names)
    elif system == System.MARKETPLACE and isinstance(payload, dict):
        flows.update(MARKETPLACE_FLOWS.get(str(payload.get("type") or ""), ()))
    return flows


def centra_events_poll() -> str:
    """Read Centra's events queue (for brands that use it rather than webhooks), act on them as on a webhook, and
    confirm them. Off unless CENTRA_EVENTS_POLL is set."""
    if not settings.CENTRA_EVENTS_POLL:
        return "off"
    client = connections.centra()
    if not getattr(client, "_listening", False):
        client.listen_for(sorted(CENTRA_OBJECT_TYPES))  # idempotent at Centra; once per worker process
        client._listening = True
    events = client.events(limit=200)
    if not events:
        return "no events"
    payload = [{"type": event.object_type.lower(), "id": event.object_reference} for event in events]
    # Kept like a webhook (once per batch of event ids), so acting on them has the same claim, retry and queue.
    webhook, created = _keep_polled("centra", payload, [event.id for event in events])
    if created:
        webhook_process(webhook_id=webhook.pk)
    client.confirm_events([event.id for event in events])
    return f"{len(events)} event(s)"


def _keep_polled(system: str, payload: list, ids: list[int]) -> tuple[InboundWebhook, bool]:
    digest = hashlib.sha256(f"events:{','.join(map(str, ids))}".encode()).hexdigest()
    return InboundWebhook.objects.get_or_create(system=system, digest=digest, defaults={"payload": payload})


def _skus_touched(webhook: InboundWebhook) -> set[str]:
    """The SKUs whose stock the webhook says changed at the stock master."""
    master = settings.STOCK_MASTER
    if webhook.system == System.FULFIL and master == System.FULFIL:
        event = (webhook.payload or {}).get("event") or ""
        data = (webhook.payload or {}).get("payload")
        if "inventory_level_changed" in event or (
            isinstance(data, list) and data and "warehouse_quantities" in data[0]
        ):
            return {level.product_code for level in inventory_levels(data)}
    if webhook.system == System.CENTRA and master == System.CENTRA:
        numbers = [event.get("id") for event in webhook.payload or [] if event.get("type") == "order"]
        numbers = [number for number in numbers if str(number).isdigit()]
        skus = set()
        for number in numbers:
            order = connections.centra().order(int(number))
            if order is not None:
                skus |= {line.sku for line in order.lines}
        return skus
    return set()


register_retry_handler(FLOW, retry)
