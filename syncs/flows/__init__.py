"""The flows: one module per kind of movement. Importing this package registers each flow's retry handler."""

from syncs.flows import (  # noqa: F401 - webhooks registers its retry handler
    order_cancel,
    order_export,
    order_import,
    order_watch,
    product_sync,
    reconcile_orders,
    reconcile_skus,
    return_sync,
    shipment_sync,
    stock_push,
    webhooks,
)

FLOWS = {
    order_import.FLOW: order_import.order_import_run,
    order_export.FLOW: order_export.order_export_run,
    order_cancel.FLOW: order_cancel.order_cancel_run,
    stock_push.FLOW: stock_push.stock_push_run,
    order_watch.FLOW: order_watch.order_watch_run,
    shipment_sync.FLOW: shipment_sync.shipment_sync_run,
    return_sync.FLOW: return_sync.return_sync_run,
    reconcile_skus.FLOW: reconcile_skus.reconcile_skus_run,
    reconcile_orders.FLOW: reconcile_orders.reconcile_orders_run,
    product_sync.FLOW: product_sync.product_sync_run,
}
