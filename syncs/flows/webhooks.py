"""What a received webhook sets moving. Webhooks are kept first (syncs.services.webhook_receive) and processed
here by a task within seconds; the scheduled runs are the safety net for anything a webhook never announced."""

import logging

from django.conf import settings
from django.utils import timezone

from mappings.models import System
from syncs import connections
from syncs.connectors.errors import ConnectorError
from syncs.connectors.fulfil import inventory_levels
from syncs.flows.stock_push import stock_push_run
from syncs.models import InboundWebhook

logger = logging.getLogger("switchyard.webhooks")


def webhook_process(*, webhook_id: int) -> str:
    """Act on one received webhook, once: the row is claimed by a conditional update, so a task delivered twice
    does nothing the second time. Returns what was done."""
    claimed = InboundWebhook.objects.filter(pk=webhook_id, status=InboundWebhook.Status.RECEIVED).update(
        status=InboundWebhook.Status.PROCESSED, processed_at=timezone.now()
    )
    if claimed != 1:
        return "already processed"
    webhook = InboundWebhook.objects.get(pk=webhook_id)
    try:
        skus = _skus_touched(webhook)
        if skus:
            summary = stock_push_run(skus=sorted(skus))
            return f"stock pushed for {len(skus)} SKU(s): {summary.pushed} update(s)"
        return "nothing to do"
    except ConnectorError as error:
        # The scheduled push will catch the change up; keep the webhook marked so people can see it failed.
        InboundWebhook.objects.filter(pk=webhook_id).update(status=InboundWebhook.Status.FAILED)
        logger.warning("webhook %s could not be acted on: %s", webhook_id, error)
        return f"failed: {error}"


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
        skus = set()
        for number in numbers:
            order = connections.centra().order(int(number))
            if order is not None:
                skus |= {line.sku for line in order.lines}
        return skus
    return set()
