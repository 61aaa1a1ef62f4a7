"""Every kind of exception: who owns it, how much it matters, whether it heals by itself, and its playbook —
the plain-English cause, what it costs the business, and the steps to fix it. Shown on each exception and together
on the Playbooks page, the brand's operating manual."""

from dataclasses import dataclass, field

ECOMMERCE = "ecommerce"
FINANCE = "finance"
OPERATIONS = "operations"
CUSTOMER_SERVICE = "customer_service"
TEAMS = {
    ECOMMERCE: "Ecommerce",
    FINANCE: "Finance",
    OPERATIONS: "Operations",
    CUSTOMER_SERVICE: "Customer service",
}

# Priority bands: money and customer-facing problems first.
MONEY = 100
CUSTOMER = 90
STOCK = 80
DATA = 60
PLUMBING = 50


@dataclass(frozen=True)
class Kind:
    code: str
    label: str
    team: str
    priority: int
    cause: str
    impact: str
    steps: tuple[str, ...]
    transient: bool = False  # heals by itself: retried automatically before anyone is asked
    mapping: str | None = None  # the mapping whose absence causes it (frees it when created)
    tags: tuple[str, ...] = field(default=())


KINDS: dict[str, Kind] = {
    kind.code: kind
    for kind in [
        Kind(
            "refund_not_posted",
            "Refund not posted to finance",
            FINANCE,
            MONEY,
            "A refund or return was completed in Centra but the matching credit could not be created in Fulfil.",
            "The customer has their money back but the books do not show it: revenue is overstated until it is posted.",
            (
                "Open the order in Centra and check the refund amount.",
                "Check the original sale exists in Fulfil (see the links below).",
                "Fix what the error names (a missing product, a closed period), then Retry.",
                "If you posted the credit by hand in Fulfil, Resolve with a note naming the credit note.",
            ),
            tags=("money",),
        ),
        Kind(
            "totals_mismatch",
            "Totals do not add up",
            FINANCE,
            MONEY,
            "The order's lines, shipping, tax and discounts do not add up to the total the sales channel charged, "
            "to the minor unit, so nothing was posted.",
            "The order is not in the ERP: it will not be fulfilled or invoiced until someone decides which figure is "
            "right.",
            (
                "Compare the request and response below: they show every amount as the source sent it.",
                "Correct the order in the source system (or Centra) and Retry.",
                "If the source is right and the rounding is expected, Resolve with a note and post it by hand.",
            ),
            tags=("money",),
        ),
        Kind(
            "payment_capture_lag",
            "Payment not captured",
            FINANCE,
            MONEY,
            "The payment for this order has been waiting for capture longer than the agreed limit (asynchronous "
            "payment providers capture later).",
            "The order is held from the ERP, so it is not shipped; if the capture never lands the brand ships unpaid "
            "goods or loses the sale.",
            (
                "Check the payment in the payment provider's dashboard.",
                "If it was captured there, it clears by itself on the next sync.",
                "If it failed, contact the customer or cancel the order in Centra.",
            ),
            tags=("money",),
        ),
        Kind(
            "unmapped_carrier",
            "Unknown carrier",
            OPERATIONS,
            CUSTOMER,
            "The shipment's carrier and service have no code in the system it must be reported to.",
            "The customer's tracking never reaches the marketplace or retailer: the most common cause of "
            "'where is my order?' tickets, and marketplaces penalise late shipment confirmation.",
            (
                "Use 'Create the missing mapping' below: pick the code the target system uses for this carrier.",
                "Every shipment waiting on this carrier is retried automatically once the mapping exists.",
            ),
            mapping="carrier",
        ),
        Kind(
            "unmapped_sku",
            "Unknown SKU",
            ECOMMERCE,
            CUSTOMER,
            "The item's code in one system has no counterpart in the other: the SKU is not mapped.",
            "The order cannot be imported (the customer waits) or the stock is not sent (the channel oversells or "
            "shows the item as sold out).",
            (
                "Check the code is right in the source system.",
                "Use 'Create the missing mapping' below, or import a CSV of SKU mappings.",
                "Everything waiting on this SKU is retried automatically once the mapping exists.",
            ),
            mapping="sku",
        ),
        Kind(
            "unmapped_shipping_method",
            "Unknown shipping method",
            ECOMMERCE,
            CUSTOMER,
            "The order's shipping method has no Centra shipping option mapped to it.",
            "The order cannot be imported: it will not be fulfilled and the marketplace's dispatch deadline runs.",
            (
                "Use 'Create the missing mapping' below and choose the Centra shipping option.",
                "The order is retried automatically once the mapping exists.",
            ),
            mapping="shipping_method",
        ),
        Kind(
            "unmapped_tax",
            "Unknown tax rate",
            FINANCE,
            MONEY,
            "The order's tax class and country have no Fulfil tax code mapped.",
            "The sale cannot be posted to the ERP with the right tax: the order is held and the VAT return is at risk.",
            (
                "Use 'Create the missing mapping' below with the Fulfil tax code for that class and country.",
                "The order is retried automatically once the mapping exists.",
            ),
            mapping="tax",
        ),
        Kind(
            "unmapped_market",
            "Unknown market",
            FINANCE,
            MONEY,
            "The Centra store and market (or the sales channel) has no Fulfil channel and warehouse mapped.",
            "Orders from that market cannot reach the ERP: nothing from it is fulfilled or invoiced.",
            (
                "Use 'Create the missing mapping' below with the Fulfil channel, warehouse and currency.",
                "Every order waiting on this market is retried automatically once the mapping exists.",
            ),
            mapping="market",
        ),
        Kind(
            "unmapped_stock_status",
            "Unknown stock status",
            OPERATIONS,
            STOCK,
            "The stock master reported stock in a status no rule says whether it can be sold.",
            "Stock for that SKU is not sent to channels until someone decides: it may look sold out, or oversell.",
            ("Add a stock status rule saying whether this status is subtracted from what can be sold.",),
            mapping="stock_status",
        ),
        Kind(
            "order_stalled",
            "Order stalled",
            CUSTOMER_SERVICE,
            CUSTOMER,
            "The order has not moved to its next step (exported, acknowledged, shipped) within the agreed time.",
            "The customer is waiting; a marketplace may cancel the order or penalise the brand.",
            (
                "Trace the order to see the last step it reached and any exception on the way.",
                "Fix that exception, or contact the warehouse if the order is waiting there.",
            ),
        ),
        Kind(
            "cancellation_blocked",
            "Cancellation not carried over",
            OPERATIONS,
            CUSTOMER,
            "An order or line was cancelled in Centra, but the cancellation cannot be carried to Fulfil (its sale is "
            "already being picked or has shipped) or to the channel the order came from (the retailer must ask "
            "for it first).",
            "Goods the customer cancelled may still be shipped and charged, and the channel may still expect them.",
            (
                "Read the message: it names the system that refused and why.",
                "Fulfil: take the cancelled units off the sale's shipment in Fulfil, or treat them as a return if "
                "they have left; then Retry.",
                "Virtualstock: ask the retailer to request the cancellation, then Retry.",
            ),
        ),
        Kind(
            "return_stock_in_failed",
            "Returned stock not booked in",
            OPERATIONS,
            STOCK,
            "A return was received and inspected at the warehouse but putting the stock back to the stock master "
            "failed.",
            "The units are on the shelf but not for sale: lost sales until they are booked in.",
            (
                "Check the stock master for the SKU and warehouse named below.",
                "Fix the cause the error names, then Retry.",
            ),
        ),
        Kind(
            "stock_stale",
            "Stock not confirmed",
            OPERATIONS,
            STOCK,
            "A channel has not confirmed a stock figure for this SKU for longer than the allowed age.",
            "The channel may be selling stock the brand no longer has (oversell) or hiding stock it has.",
            ("Check the connection to the channel on the dashboard.", "Retry to send the current figure again."),
        ),
        Kind(
            "stock_push_held",
            "Stock update held for approval",
            OPERATIONS,
            STOCK,
            "A stock update would have set an unusually large share of a channel's SKUs to zero at once, so it was "
            "held.",
            "Bad master data could empty a storefront; holding it keeps the channel selling until someone checks.",
            (
                "Check the stock master: did a feed fail, or is the stock really gone?",
                "Retry to send the update as it is, or Ignore it if the master data is wrong.",
            ),
        ),
        Kind(
            "missing_in_target",
            "Missing in a system",
            ECOMMERCE,
            STOCK,
            "An item or order that exists in the source system was not found in a system where it should exist.",
            "Whatever depends on it there (selling, fulfilment, invoicing) cannot happen.",
            ("Create it in the target system (or map it), then Retry; it also resolves by itself once it appears.",),
        ),
        Kind(
            "validation_failed",
            "Refused as invalid",
            ECOMMERCE,
            DATA,
            "The target system refused the data: a required field is missing or a value is not allowed.",
            "That item does not reach the target until the data is corrected.",
            ("Read the messages below: each names a problem.", "Correct the data in the source system, then Retry."),
        ),
        Kind(
            "attribute_drift",
            "Changed outside Centra",
            ECOMMERCE,
            DATA,
            "A product attribute or price on a channel differs from Centra, which is the master.",
            "Customers see a title, description or price the brand did not set.",
            ("Compare the two values below.", "Retry to re-assert Centra's value on the channel."),
        ),
        Kind(
            "api_unavailable",
            "System unavailable",
            OPERATIONS,
            PLUMBING,
            "The other system did not answer, or answered with a server error, even after automatic retries.",
            "Everything through that connection waits; it is retried automatically when the system is back.",
            ("Check the system's status page.", "Retry once it is back; nothing is lost meanwhile."),
            transient=True,
        ),
        Kind(
            "internal_error",
            "Switchyard could not process it",
            OPERATIONS,
            PLUMBING,
            "Switchyard itself failed on this item: a defect, not a problem with the data or the other system.",
            "The item waits; others go on.",
            ("Report it to the integration team with the error below.", "Retry once it is fixed."),
        ),
        Kind(
            "auth_failed",
            "Credentials refused",
            OPERATIONS,
            CUSTOMER,
            "The other system refused Switchyard's credentials (expired or revoked key, missing permission).",
            "Nothing moves through that connection until the credentials are fixed.",
            (
                "Ask the integration admin to renew the key in the other system and in Switchyard's settings.",
                "Retry once the new key is in place.",
            ),
        ),
    ]
}


def kind(code: str) -> Kind:
    """The registered kind; an unknown code is a programming error and raises KeyError."""
    return KINDS[code]
