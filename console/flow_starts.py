"""Starting a flow by hand: which role may start which flow (the one place that says so), what each flow does in
plain words (the confirmation page shows it), and the one service that hands a start to a worker."""

from dataclasses import dataclass
from uuid import uuid4

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django_q.tasks import async_task

from console.roles import CUSTOMER_SERVICE, ECOMMERCE, FINANCE, INTEGRATION_ADMIN, OPERATIONS, user_roles
from syncs.flows import FLOWS
from syncs.runs import flow_running

ORDER_FLOWS = frozenset({"order_import", "order_export", "order_cancel", "shipment_sync", "return_sync", "order_watch"})
RECONCILIATIONS = frozenset({"reconcile_orders", "reconcile_skus"})

# Role → the flows its members may start by hand. Integration admins start every flow (None: all of FLOWS).
# Ecommerce also starts the SKU reconciliation, as the reconciliation page already lets it: one answer everywhere.
STARTABLE_BY_ROLE: dict[str, frozenset[str] | None] = {
    INTEGRATION_ADMIN: None,
    FINANCE: RECONCILIATIONS,
    OPERATIONS: frozenset({"stock_push"}),
    ECOMMERCE: ORDER_FLOWS | {"product_sync", "reconcile_skus"},
    CUSTOMER_SERVICE: frozenset(),
}


@dataclass(frozen=True)
class FlowDescription:
    label: str
    does: str  # what one run does, in plain words
    writes_to: tuple[str, ...]  # the systems a run may change; empty: it only reads (and raises exceptions)


DESCRIPTIONS = {
    "order_import": FlowDescription(
        "Order import",
        "Reads the new retailer orders Virtualstock relays and the new marketplace orders, creates each in Centra "
        "under the order number reserved for it, and acknowledges it at its source once Centra has it. An order "
        "already imported is not created again; one that cannot be imported becomes an exception.",
        ("Centra", "Virtualstock", "the marketplace"),
    ),
    "order_export": FlowDescription(
        "Order export",
        "Reads the Centra orders that reached an export status since the last run, and those still waiting for "
        "their payment capture, and posts each as a confirmed sale in Fulfil with Centra's amounts to the cent. An "
        "order already in Fulfil is not posted again.",
        ("Fulfil",),
    ),
    "order_cancel": FlowDescription(
        "Order cancellations",
        "Reads the Centra orders changed since the last run and carries every cancelled line or order to its Fulfil "
        "sale, to the marketplace or Virtualstock it came from, and back on sale in stock.",
        ("Fulfil", "Virtualstock", "the marketplace", "every channel's stock"),
    ),
    "shipment_sync": FlowDescription(
        "Shipment sync",
        "Reads the shipments Fulfil marked done since the last run, creates and completes each in Centra with its "
        "carrier and tracking number, and reports it to the retailer or marketplace the order came from.",
        ("Centra", "Virtualstock", "the marketplace"),
    ),
    "return_sync": FlowDescription(
        "Returns and refunds",
        "Reads the new Centra returns and those not finished yet, posts each one's credit in Fulfil, reports "
        "marketplace returns, and books the units back into stock once the warehouse has inspected them.",
        ("Fulfil", "the marketplace", "the stock master"),
    ),
    "order_watch": FlowDescription(
        "Order watch",
        "Looks at every order's steps, raises order_stalled for each order that has not moved on in time and "
        "resolves those that have.",
        (),
    ),
    "stock_push": FlowDescription(
        "Stock push",
        "Reads the stock master and sends every channel the available-to-sell figures that changed. A push that "
        "would zero an unusual share of a channel is held for operations to approve.",
        ("Centra", "Virtualstock", "the marketplace"),
    ),
    "product_sync": FlowDescription(
        "Product sync",
        "Sends the products Centra changed since the last run — titles, copy, images, attributes, prices — to "
        "Virtualstock and the marketplace. What a channel already accepted is not sent again.",
        ("Virtualstock", "the marketplace"),
    ),
    "reconcile_skus": FlowDescription(
        "SKU reconciliation",
        "Compares Centra's SKUs with Fulfil, Inventory Planner and each selling channel; raises missing_in_target "
        "for each gap and resolves the gaps that closed.",
        (),
    ),
    "reconcile_orders": FlowDescription(
        "Order reconciliation",
        "Reconciles the last ORDER_RECONCILE_DAYS days up to yesterday: Centra's orders and refunds against Fulfil's "
        "sales and credits per day, market and currency. A signed-off day whose figures changed loses its sign-off.",
        (),
    ),
}


def flow_description(flow: str) -> FlowDescription:
    return DESCRIPTIONS.get(flow) or FlowDescription(flow.replace("_", " ").capitalize(), f"Runs {flow} once.", ())


def startable_flows(user) -> list[str]:
    """The flows ``user`` may start by hand, in FLOWS order."""
    allowed: set[str] = set()
    for role in user_roles(user):
        flows = STARTABLE_BY_ROLE.get(role, frozenset())
        allowed |= set(FLOWS) if flows is None else set(flows)
    return [flow for flow in FLOWS if flow in allowed]


def may_start(user, flow: str) -> bool:
    return flow in startable_flows(user)


def flow_start(*, flow: str, actor) -> str:
    """Hand one run of ``flow`` to a worker (``syncs.tasks.run(flow, "manual")``), once the transaction commits.
    Returns the task's name, which says who started it. Raises PermissionDenied when ``actor``'s roles may not start
    it, ValidationError for an unknown flow or while a run of it is still going."""
    if flow not in FLOWS:
        raise ValidationError(f"There is no flow {flow!r}.")
    if not may_start(actor, flow):
        raise PermissionDenied(f"Your role may not start {flow}.")
    if flow_running(flow):
        raise ValidationError(f"{flow_description(flow).label} is running now: wait for it to finish.")
    name = f"{flow} by {actor.get_username()} {uuid4().hex[:8]}"
    transaction.on_commit(lambda: async_task("syncs.tasks.run", flow, "manual", task_name=name))
    return name
