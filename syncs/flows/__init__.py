"""The flows: one module per kind of movement. Importing this package registers each flow's retry handler."""

from syncs.flows import order_import, order_watch, stock_push, webhooks  # noqa: F401 - webhooks registers its retry handler

FLOWS = {
    order_import.FLOW: order_import.order_import_run,
    stock_push.FLOW: stock_push.stock_push_run,
    order_watch.FLOW: order_watch.order_watch_run,
}
