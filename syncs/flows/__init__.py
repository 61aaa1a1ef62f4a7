"""The flows: one module per kind of movement. Importing this package registers each flow's retry handler."""

from syncs.flows import order_import

FLOWS = {
    order_import.FLOW: order_import.order_import_run,
}
