"""The GraphQL half of the Centra simulator: the schema and a resolver for every query, mutation and derived
field. Resolvers read and change the simulator's state (``info.root_value``) under its lock."""

import base64
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from graphql import GraphQLError, build_schema

from syncs.sandbox.centra.values import COUNTRIES, CURRENCIES, dec, excluding_tax, money, now_iso

if TYPE_CHECKING:
    from syncs.sandbox.centra.simulator import CentraSimulator

SCHEMA = build_schema(Path(__file__).with_name("schema.graphql").read_text())


def resolve_field(source, info, **args):
    """Dispatch to ``Type_field`` below when it exists; else read the key of a dict."""
    resolver = RESOLVERS.get(f"{info.parent_type.name}.{info.field_name}")
    if resolver is not None:
        return resolver(source, info, **args)
    if isinstance(source, dict):
        return source.get(info.field_name)
    return getattr(source, info.field_name, None)


def _sim(info) -> "CentraSimulator":
    return info.root_value


def _page(rows: list, limit: int, page: int) -> list:
    if limit < 1 or limit > 200:
        raise GraphQLError("Limit must be in range 1 - 200")
    if page < 1:
        raise GraphQLError("Page must be 1 or more")
    return rows[(page - 1) * limit : page * limit]


def _in_range(value: str, window: dict | None) -> bool:
    if not window:
        return True
    moment = datetime.fromisoformat(value)
    for bound, compare in (("from", lambda a, b: a >= b), ("to", lambda a, b: a <= b)):
        if window.get(bound):
            limit = datetime.fromisoformat(window[bound].replace(" ", "T"))
            if limit.tzinfo is None:
                limit = limit.replace(tzinfo=UTC)
            if not compare(moment, limit):
                return False
    return True


def _filter_orders(sim: "CentraSimulator", where: dict | None, sort: list | None) -> list[dict]:
    where = where or {}
    rows = list(sim.state["orders"].values())
    checks = [
        ("number", lambda o, v: o["number"] in v),
        ("id", lambda o, v: o["id"] in v),
        ("status", lambda o, v: o["status"] in v),
        ("storeId", lambda o, v: o["storeId"] in v),
        ("marketId", lambda o, v: o["marketId"] in v),
        ("isOnHold", lambda o, v: o["isOnHold"] == v),
        ("createdAt", lambda o, v: _in_range(o["createdAt"], v)),
        ("updatedAt", lambda o, v: _in_range(o["updatedAt"], v)),
        ("orderDate", lambda o, v: _in_range(o["createdAt"], v)),
        ("storeType", lambda o, v: sim.state["stores"][str(o["storeId"])]["type"] == v),
    ]
    for key, check in checks:
        if where.get(key) is not None:
            value = where[key]
            rows = [order for order in rows if check(order, value)]
    field, _, direction = ((sort or ["number_ASC"])[0]).rpartition("_")
    key = {"number": "number", "orderDate": "createdAt", "updatedAt": "updatedAt"}[field]
    return sorted(rows, key=lambda order: order[key], reverse=direction == "DESC")


def _stock_totals(sim: "CentraSimulator", size_ids: list[int], warehouse_ids: list[int] | None = None) -> dict:
    physical = allocated = 0
    for size_id in size_ids:
        for warehouse in sim.state["warehouses"].values():
            if warehouse_ids and warehouse["id"] not in warehouse_ids:
                continue
            stock = sim.state["stock"].get(f"{size_id}:{warehouse['id']}")
            if stock:
                physical += stock["physical"]
                allocated += stock["allocated"]
    free = max(0, physical - allocated)
    return {
        "freeToAllocateQuantity": free,
        "physicalQuantity": physical,
        "allocatedQuantity": allocated,
        "demandQuantity": 0,
        "unshippedQuantity": allocated,
        "availableNowQuantity": free,
        "availableQuantity": free,
        "incomingQuantity": 0,
    }


def _user_error(message: str, *path: str) -> dict:
    return {"message": message, "path": list(path)}


def _payload(**fields) -> dict:
    return {"userErrors": [], "userWarnings": [], **fields}


def _find_order(sim: "CentraSimulator", reference: dict) -> dict | None:
    if reference.get("number") is not None:
        return sim.state["orders"].get(str(reference["number"]))
    for order in sim.state["orders"].values():
        if order["id"] == reference.get("id"):
            return order
    return None


def _order_line(order: dict, line_id: int) -> dict | None:
    return next((line for line in order["lines"] if line["id"] == line_id), None)


# Queries


def q_orders(sim, info, where=None, sort=None, limit=20, page=1):
    return _page(_filter_orders(_sim(info), where, sort), limit, page)


def q_order_connection(sim, info, where=None, sort=None, first=None, after=None):
    rows = _filter_orders(_sim(info), where, sort)
    start = 0
    if after:
        number = int(base64.b64decode(after).decode().split(":")[1])
        start = next((i + 1 for i, order in enumerate(rows) if order["number"] == number), len(rows))
    chunk = rows[start : start + (first or 20)]
    edges = [{"cursor": base64.b64encode(f"number:{o['number']}".encode()).decode(), "node": o} for o in chunk]
    return {
        "totalCount": len(rows),
        "edges": edges,
        "pageInfo": {
            "hasNextPage": start + len(chunk) < len(rows),
            "hasPreviousPage": start > 0,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


def q_products(sim, info, where=None, sort=None, limit=20, page=1):
    where = where or {}
    rows = sorted(_sim(info).state["products"].values(), key=lambda p: p["id"])
    if where.get("id"):
        rows = [p for p in rows if p["id"] in where["id"]]
    if where.get("status"):
        rows = [p for p in rows if p["status"] in where["status"]]
    if where.get("productNumber"):
        rows = [p for p in rows if p["productNumber"] in where["productNumber"]]
    if where.get("updatedAt"):
        rows = [p for p in rows if _in_range(p["updatedAt"], where["updatedAt"])]
    if sort and sort[0].endswith("_DESC"):
        rows.reverse()
    return _page(rows, limit, page)


def q_product_sizes(sim, info, where=None, limit=20, page=1):
    where = where or {}
    rows = sorted(_sim(info).state["sizes"].values(), key=lambda s: s["id"])
    for key in ("SKU", "EAN", "id"):
        if where.get(key):
            rows = [s for s in rows if s[key] in where[key]]
    return _page(rows, limit, page)


def q_rate_limits(sim, info):
    simulator = _sim(info)
    now = time.time()
    limits = []
    for (kind, interval), window in simulator.buckets.items():
        used = sum(1 for at in window.calls if now - at < window.seconds)
        limits.append(
            {
                "type": kind,
                "intervalSeconds": interval,
                "quota": window.limit,
                "usedQuota": used,
                "remainingQuota": max(0, window.limit - used),
            }
        )
    for interval, (quota, _) in (("TEN_SECONDS", (250000, 10)), ("ONE_HOUR", (30000000, 3600))):
        limits.append(
            {
                "type": "QUERY_COMPLEXITY",
                "intervalSeconds": interval,
                "quota": quota,
                "usedQuota": 0,
                "remainingQuota": quota,
            }
        )
    return limits


def q_events(sim, info, where=None, limit=100):
    where = where or {}
    rows = _sim(info).state["events"]
    for key, field in (
        ("objectType", "objectType"),
        ("changeType", "changeType"),
        ("storeId", "storeId"),
        ("marketId", "marketId"),
    ):
        if where.get(key):
            rows = [e for e in rows if e[field] in where[key]]
    return rows[: max(1, min(limit, 500))]


def q_returns(sim, info, where=None, limit=20, page=1):
    """Returns in the order they were made, filtered as Centra's ``ReturnFilter`` filters them."""
    simulator, where = _sim(info), where or {}
    rows = sorted(simulator.state["returns"].values(), key=lambda record: record["id"])
    checks = [
        ("id", lambda r, v: r["id"] in v),
        ("orderNumber", lambda r, v: r["orderNumber"] in v),
        ("shipmentId", lambda r, v: r["shipmentId"] in v),
        ("storeId", lambda r, v: simulator.state["orders"][str(r["orderNumber"])]["storeId"] in v),
        ("createdAt", lambda r, v: _in_range(r["createdAt"], v)),
    ]
    for key, check in checks:
        if where.get(key) is not None:
            rows = [record for record in rows if check(record, where[key])]
    return _page(rows, limit, page)


# Mutations


def m_set_stock(sim, info, input):
    simulator = _sim(info)
    warehouse_id = input["warehouse"]["id"]
    if str(warehouse_id) not in simulator.state["warehouses"]:
        return _payload(stockChanges=[], userErrors=[_user_error(f"Warehouse {warehouse_id} not found", "warehouse")])
    if input["stockQuantityType"] != "PHYSICAL":
        return _payload(stockChanges=[], userErrors=[_user_error("Only PHYSICAL stock can be set here")])
    changes, errors = [], []
    for index, entry in enumerate(input.get("productVariants") or []):
        variant = simulator.state["variants"].get(str(entry["productVariant"]["id"]))
        if variant is None:
            errors.append(
                _user_error(
                    f"Product variant {entry['productVariant']['id']} not found", "input", "productVariants", str(index)
                )
            )
            continue
        sizes = {
            simulator.state["sizes"][str(i)]["description"]: simulator.state["sizes"][str(i)]
            for i in variant["sizeIds"]
        }
        for level_index, level in enumerate(entry["sizeStockLevels"]):
            size = sizes.get(level["size"]["name"])
            if size is None:
                errors.append(
                    _user_error(
                        f"Size {level['size']['name']} not found on variant {variant['id']}",
                        "input",
                        "productVariants",
                        str(index),
                        "sizeStockLevels",
                        str(level_index),
                    )
                )
            elif level["quantity"] < 0:
                errors.append(_user_error("Quantity cannot be negative", "input", "productVariants", str(index)))
            else:
                changes.append((size["id"], level["quantity"]))
    for index, entry in enumerate(input.get("productSizes") or []):
        size = simulator.state["sizes"].get(str(entry["productSize"]["id"]))
        if size is None:
            errors.append(
                _user_error(f"Product size {entry['productSize']['id']} not found", "input", "productSizes", str(index))
            )
        elif entry["quantity"] < 0:
            errors.append(_user_error("Quantity cannot be negative", "input", "productSizes", str(index)))
        else:
            changes.append((size["id"], entry["quantity"]))
    if errors:  # nothing is modified when there are userErrors
        return _payload(stockChanges=[], userErrors=errors)
    for size_id, quantity in changes:
        simulator._stock(size_id, warehouse_id)["physical"] = quantity
    simulator.state["stock_changes"] += 1
    simulator._event("StockChange", "CREATED", simulator.state["stock_changes"])
    return _payload(stockChanges=[{"id": simulator.state["stock_changes"]}])


def m_change_stock(sim, info, input):
    simulator = _sim(info)
    into, out = input.get("intoWarehouse"), input.get("outFromWarehouse")
    if not into and not out:
        return _payload(stockChange=None, userErrors=[_user_error("Give intoWarehouse, outFromWarehouse or both")])
    for name, warehouse in (("intoWarehouse", into), ("outFromWarehouse", out)):
        if warehouse and str(warehouse["id"]) not in simulator.state["warehouses"]:
            return _payload(stockChange=None, userErrors=[_user_error(f"Warehouse {warehouse['id']} not found", name)])
    moves = []
    for index, entry in enumerate(input["productVariants"]):
        variant = simulator.state["variants"].get(str(entry["productVariant"]["id"]))
        if variant is None:
            return _payload(
                stockChange=None,
                userErrors=[
                    _user_error(
                        f"Product variant {entry['productVariant']['id']} not found",
                        "input",
                        "productVariants",
                        str(index),
                    )
                ],
            )
        sizes = {simulator.state["sizes"][str(i)]["description"]: i for i in variant["sizeIds"]}
        for change in entry["sizeChanges"]:
            if change["size"]["name"] not in sizes:
                return _payload(stockChange=None, userErrors=[_user_error(f"Size {change['size']['name']} not found")])
            moves.append((sizes[change["size"]["name"]], change["deliveredQuantity"]))
    if out:
        for size_id, quantity in moves:
            stock = simulator._stock(size_id, out["id"])
            if stock["physical"] - stock["allocated"] < quantity:
                return _payload(
                    stockChange=None,
                    userErrors=[_user_error(f"Not enough free stock of size {size_id} in warehouse {out['id']}")],
                )
    for size_id, quantity in moves:
        if out:
            simulator._stock(size_id, out["id"])["physical"] -= quantity
        if into:
            simulator._stock(size_id, into["id"])["physical"] += quantity
    simulator.state["stock_changes"] += 1
    simulator._event("StockChange", "CREATED", simulator.state["stock_changes"])
    return _payload(stockChange={"id": simulator.state["stock_changes"]})


def m_confirm_order(sim, info, input):
    simulator = _sim(info)
    order = _find_order(simulator, input["order"])
    if order is None:
        return _payload(order=None, userErrors=[_user_error("Order not found", "input", "order")])
    if order["status"] != "PENDING":
        return _payload(order=order, userErrors=[_user_error(f"Order is {order['status']}, not PENDING")])
    order["status"], order["updatedAt"] = "CONFIRMED", now_iso()
    simulator._event("Order", "UPDATED", order["number"], order)
    return _payload(order=order)


def m_update_order(sim, info, order, input):
    simulator = _sim(info)
    record = _find_order(simulator, order)
    if record is None:
        return _payload(order=None, userErrors=[_user_error("Order not found", "order")])
    for index, cancel in enumerate(input.get("cancelLines") or []):
        line = _order_line(record, cancel["line"]["id"])
        unshipped = line["quantity"] - line["shippedQuantity"] if line else 0
        if line is None or not 0 < cancel["quantity"] <= unshipped:
            return _payload(
                order=record,
                userErrors=[_user_error("Cannot cancel that quantity of the line", "input", "cancelLines", str(index))],
            )
    for cancel in input.get("cancelLines") or []:
        line = _order_line(record, cancel["line"]["id"])
        line["quantity"] -= cancel["quantity"]
        line["cancelledQuantity"] += cancel["quantity"]
        simulator._stock(line["sizeId"], 1)["allocated"] -= cancel["quantity"]
    if all(line["quantity"] == 0 for line in record["lines"]):
        record["status"] = "CANCELLED"
    for key in ("isOnHold", "internalComment"):
        if input.get(key) is not None:
            record[key] = input[key]
    record["updatedAt"] = now_iso()
    simulator._event("Order", "UPDATED", record["number"], record)
    return _payload(order=record)


def m_cancel_order(sim, info, id, input=None):
    simulator = _sim(info)
    record = _find_order(simulator, {"id": id})
    if record is None:
        return _payload(order=None, userErrors=[_user_error("Order not found", "id")])
    if record["status"] in ("SHIPPED", "ARCHIVED", "CANCELLED") or record["shipmentIds"]:
        return _payload(
            order=record, userErrors=[_user_error(f"An order that is {record['status']} cannot be cancelled")]
        )
    for line in record["lines"]:
        simulator._stock(line["sizeId"], 1)["allocated"] -= line["quantity"]
        line["cancelledQuantity"] += line["quantity"]
        line["quantity"] = 0
    record["status"], record["updatedAt"] = "CANCELLED", now_iso()
    simulator._event("Order", "UPDATED", record["number"], record)
    return _payload(order=record)


def m_create_shipment(sim, info, input):
    simulator = _sim(info)
    order = _find_order(simulator, input["order"])
    if order is None:
        return _payload(shipment=None, userErrors=[_user_error("Order not found", "input", "order")])
    if order["status"] not in ("CONFIRMED", "PROCESSING"):
        return _payload(
            shipment=None,
            userErrors=[
                _user_error(f"Cannot create a shipment for an order that is {order['status']}", "input", "order")
            ],
        )
    lines = []
    for index, entry in enumerate(input["lines"]):
        line = _order_line(order, entry["orderLine"]["id"])
        pending = (
            sum(
                s_line["quantity"]
                for s in order["shipmentIds"]
                for s_line in simulator.state["shipments"][str(s)]["lines"]
                if s_line["orderLineId"] == entry["orderLine"]["id"]
            )
            if line
            else 0
        )
        if line is None or entry["quantity"] <= 0 or entry["quantity"] > line["quantity"] - pending:
            return _payload(
                shipment=None,
                userErrors=[
                    _user_error("Quantity exceeds what is left to ship on the line", "input", "lines", str(index))
                ],
            )
        lines.append({"id": simulator._next("line"), "orderLineId": line["id"], "quantity": entry["quantity"]})
    warnings = []
    captured = any(p["entryType"] == "CAPTURE" and p["status"] == "SUCCESS" for p in order["payments"])
    if input.get("capture") and not captured:
        warnings.append(
            _user_error("Capture failed: the payment provider has not settled the capture request", "input", "capture")
        )
    shipment_id = simulator._next("shipment")
    shipment = {
        "id": shipment_id,
        "number": f"{order['number']}-{len(order['shipmentIds']) + 1}",
        "orderNumber": order["number"],
        "createdAt": now_iso(),
        "isGoodToGo": bool(input.get("isGoodToGo")),
        "isShipped": False,
        "shippedAt": None,
        "isPaid": captured or bool(input.get("isPaid")),
        "isCaptured": captured,
        "capturedAt": now_iso() if captured else None,
        "trackingNumber": None,
        "numberOfPackages": 0,
        "carrier": None,
        "service": None,
        "lines": lines,
    }
    simulator.state["shipments"][str(shipment_id)] = shipment
    order["shipmentIds"].append(shipment_id)
    order["status"], order["updatedAt"] = "PROCESSING", now_iso()
    simulator._event("Shipment", "CREATED", shipment_id, order)
    if input.get("shippedAt"):  # created already sent: completed at once, with the shipment info given
        _ship(simulator, shipment, order, input)
    return _payload(shipment=shipment, userWarnings=warnings)


def m_complete_shipment(sim, info, id, input=None):
    simulator = _sim(info)
    input = input or {}
    shipment = simulator.state["shipments"].get(str(id))
    if shipment is None:
        return _payload(shipment=None, userErrors=[_user_error(f"Shipment {id} not found", "id")])
    if shipment["isShipped"]:
        return _payload(shipment=shipment, userErrors=[_user_error("Shipment is already completed", "id")])
    _ship(simulator, shipment, simulator.state["orders"][str(shipment["orderNumber"])], input)
    return _payload(shipment=shipment)


def _ship(simulator, shipment: dict, order: dict, input: dict) -> None:
    """Mark a shipment sent (``completeShipment``, or ``createShipment`` with ``shippedAt``): its info, the
    order's shipped quantities and stock, and the order SHIPPED once every line has gone."""
    info_input = input.get("shipmentInfo") or {}
    shipment.update(
        {
            "isShipped": True,
            "shippedAt": input.get("shippedAt") or now_iso(),
            "trackingNumber": info_input.get("trackingNumber"),
            "carrier": info_input.get("carrier"),
            "service": info_input.get("service"),
            "numberOfPackages": info_input.get("packagesNumber") or 1,
        }
    )
    for s_line in shipment["lines"]:
        line = _order_line(order, s_line["orderLineId"])
        line["shippedQuantity"] += s_line["quantity"]
        stock = simulator._stock(line["sizeId"], 1)
        stock["physical"] -= s_line["quantity"]
        stock["allocated"] -= s_line["quantity"]
    if all(line["shippedQuantity"] >= line["quantity"] for line in order["lines"]):
        order["status"] = "SHIPPED"
        simulator._event("Order", "COMPLETED", order["number"], order)
    order["updatedAt"] = now_iso()
    simulator._event("Shipment", "COMPLETED", shipment["id"], order)


def m_create_return(sim, info, input):
    simulator = _sim(info)
    shipment = simulator.state["shipments"].get(str(input["shipment"]["id"]))
    if shipment is None or not shipment["isShipped"]:
        return _payload(**{"return": None}, userErrors=[_user_error("Shipment not found or not shipped", "input")])
    order = simulator.state["orders"][str(shipment["orderNumber"])]
    lines, value = [], Decimal(0)
    for index, entry in enumerate(input["lines"]):
        s_line = next((line for line in shipment["lines"] if line["id"] == entry["shipmentLine"]["id"]), None)
        if s_line is None or not 0 < entry["quantity"] <= s_line["quantity"] - s_line.get("returned", 0):
            return _payload(
                **{"return": None},
                userErrors=[
                    _user_error(
                        "Quantity exceeds what can be returned of the shipment line", "input", "lines", str(index)
                    )
                ],
            )
        order_line = _order_line(order, s_line["orderLineId"])
        lines.append(
            {
                "id": simulator._next("line"),
                "shipmentLineId": s_line["id"],
                "quantity": entry["quantity"],
                "sizeId": order_line["sizeId"],
            }
        )
        value += dec(order_line["unitPrice"]) * entry["quantity"]
    for entry, line in zip(input["lines"], lines, strict=True):
        s_line = next(s for s in shipment["lines"] if s["id"] == line["shipmentLineId"])
        s_line["returned"] = s_line.get("returned", 0) + entry["quantity"]
        _order_line(order, s_line["orderLineId"])["returnedQuantity"] += entry["quantity"]
    policy = input.get("returnStockActionPolicy") or {}
    costs = {}
    for name, from_shipment in (("shippingCost", dec(order["shipping"])), ("handlingCost", Decimal(0))):
        chosen = input.get(name) or {}
        if len([key for key in ("fromShipment", "value") if chosen.get(key) is not None]) > 1:
            return _payload(
                **{"return": None}, userErrors=[_user_error("Give exactly one of its fields", "input", name)]
            )
        costs[name] = from_shipment if chosen.get("fromShipment") else dec((chosen.get("value") or {}).get("value", 0))
    return_cost = dec((input.get("returnCost") or {}).get("value", 0))
    return_id = simulator._next("return")
    record = {
        "id": return_id,
        "status": "PENDING",
        "createdAt": now_iso(),
        "orderNumber": order["number"],
        "shipmentId": shipment["id"],
        "lines": lines,
        "value": str(value),
        "refunded": False,
        "releaseToStock": bool(policy.get("releaseItemsBackToWarehouse")),
        "comment": input.get("comment"),
        "shipping": str(costs["shippingCost"]),
        "handling": str(costs["handlingCost"]),
        "returnCost": str(return_cost),
    }
    simulator.state["returns"][str(return_id)] = record
    simulator._event("Return", "CREATED", return_id, order)
    return _payload(**{"return": record})


def m_complete_return(sim, info, id, input=None):
    simulator = _sim(info)
    record = simulator.state["returns"].get(str(id))
    if record is None:
        return _payload(**{"return": None}, userErrors=[_user_error(f"Return {id} not found", "id")])
    simulator._complete_return(record, refund=False)
    return _payload(**{"return": record})


def m_set_event_listeners(sim, info, input):
    simulator = _sim(info)
    for listener in input:
        existing = simulator.state["event_listeners"].get(listener["objectType"], [])
        changes = listener.get("changeTypes")
        merged = None if changes is None or existing is None else sorted(set(existing) | set(changes))
        simulator.state["event_listeners"][listener["objectType"]] = merged
    return _payload(eventListeners=q_event_listeners(sim, info))


def q_event_listeners(sim, info):
    return [
        {"objectType": kind, "changeTypes": changes, "createdAt": now_iso()}
        for kind, changes in _sim(info).state["event_listeners"].items()
    ]


def m_confirm_events(sim, info, input):
    simulator = _sim(info)
    wanted = set(input["eventsIds"])
    confirmed = [e for e in simulator.state["events"] if e["id"] in wanted]
    simulator.state["events"] = [e for e in simulator.state["events"] if e["id"] not in wanted]
    return _payload(events=confirmed)


# Object fields


def _order_of_line(info, line) -> dict:
    return next(o for o in _sim(info).state["orders"].values() if line in o["lines"])


def _line_money(field: str):
    """Resolver for a line's unitOriginalPrice, unitPrice or lineValue, with or without tax."""

    def resolve(line, info, includingTax=True):
        order = _order_of_line(info, line)
        amount = dec(line["unitPrice"]) * line["quantity"] if field == "lineValue" else dec(line[field])
        if not includingTax:
            amount = excluding_tax(amount, dec(line["taxPercent"]), order["currency"])
        return money(amount, order["currency"])

    return resolve


def _totals(order, info):
    currency = order["currency"]
    original = sum((dec(line["unitOriginalPrice"]) * line["quantity"] for line in order["lines"]), Decimal(0))
    paid = sum((dec(line["unitPrice"]) * line["quantity"] for line in order["lines"]), Decimal(0))
    shipping = dec(order["shipping"])
    tax = sum(
        (
            dec(line["unitPrice"]) * line["quantity"]
            - excluding_tax(dec(line["unitPrice"]) * line["quantity"], dec(line["taxPercent"]), currency)
            for line in order["lines"]
        ),
        Decimal(0),
    )
    tax += shipping - excluding_tax(shipping, dec(order["shippingTaxPercent"]), currency)
    return {
        "quantity": sum(line["quantity"] for line in order["lines"]),
        "lineValues": money(original, currency),
        "handling": money(0, currency),
        "shipping": money(shipping, currency),
        "discounts": money(original - paid, currency),
        "taxAdded": money(0, currency),
        "taxDeducted": money(0, currency),
        "taxIncluded": money(tax, currency),
    }


def _grand_total(order, info, includingTax=True):
    total = _sim(info)._grand_total(order)
    if not includingTax:
        total -= dec(_totals(order, info)["taxIncluded"]["value"])
    return money(total, order["currency"])


def _address(order, info):
    customer = order.get("customer") or {}
    country = customer.get("country")
    return {
        "firstName": customer.get("first_name"),
        "lastName": customer.get("last_name"),
        "address1": customer.get("address1"),
        "city": customer.get("city"),
        "zipCode": customer.get("zipcode"),
        "email": customer.get("email"),
        "phoneNumber": customer.get("phone"),
        "country": {"id": 1, "code": country, "name": COUNTRIES.get(country, country)} if country else None,
    }


def _payment_history(order, info, where=None):
    where = where or {}
    rows = order["payments"]
    if where.get("entryType"):
        rows = [p for p in rows if p["entryType"] in where["entryType"]]
    if where.get("status"):
        rows = [p for p in rows if p["status"] in where["status"]]
    return [{**p, "value": money(dec(p["value"]), p["currency"])} for p in rows]


def _shipment_lines(shipment, info):
    order = _sim(info).state["orders"][str(shipment["orderNumber"])]
    return [
        {"id": line["id"], "quantity": line["quantity"], "orderLine": _order_line(order, line["orderLineId"])}
        for line in shipment["lines"]
    ]


def _return_lines(record, info):
    simulator = _sim(info)
    shipment = simulator.state["shipments"][str(record["shipmentId"])]
    by_id = {line["id"]: line for line in _shipment_lines(shipment, info)}
    currency = simulator.state["orders"][str(record["orderNumber"])]["currency"]
    return [
        {
            "id": line["id"],
            "quantity": line["quantity"],
            "shipmentLine": by_id[line["shipmentLineId"]],
            "currency": currency,
        }
        for line in record["lines"]
    ]


def _return_line_money(field: str):
    """Resolver for a return line's unitPrice or lineValue: the order line's price, with or without tax."""

    def resolve(line, info, includingTax=True):
        order_line = line["shipmentLine"]["orderLine"]
        unit = dec(order_line["unitPrice"])
        amount = unit * line["quantity"] if field == "lineValue" else unit
        if not includingTax:
            amount = excluding_tax(amount, dec(order_line["taxPercent"]), line["currency"])
        return money(amount, line["currency"])

    return resolve


def _return_totals(record, info):
    order = _sim(info).state["orders"][str(record["orderNumber"])]
    return {
        "quantity": sum(line["quantity"] for line in record["lines"]),
        "lineValues": money(dec(record["value"]), order["currency"]),
        "handling": money(dec(record.get("handling", "0")), order["currency"]),
        "shipping": money(dec(record.get("shipping", "0")), order["currency"]),
        "discounts": money(0, order["currency"]),
        "returnCost": money(dec(record.get("returnCost", "0")), order["currency"]),
    }


def _refunds(record, info):
    order = _sim(info).state["orders"][str(record["orderNumber"])]
    return _payment_history(order, info, {"entryType": ["REFUND"]}) if record["refunded"] else []


RESOLVERS = {
    "Query.orders": q_orders,
    "Query.orderConnection": q_order_connection,
    "Query.products": q_products,
    "Query.productSizes": q_product_sizes,
    "Query.warehouses": lambda s, i: sorted(_sim(i).state["warehouses"].values(), key=lambda w: w["id"]),
    "Query.stores": lambda s, i: sorted(_sim(i).state["stores"].values(), key=lambda x: x["id"]),
    "Query.markets": lambda s, i: sorted(_sim(i).state["markets"].values(), key=lambda x: x["id"]),
    "Query.pricelists": lambda s, i: [
        {**p, "currency": CURRENCIES[p["currency"]]} for p in _sim(i).state["pricelists"].values()
    ],
    "Query.shipments": lambda s, i, limit=20, page=1: _page(list(_sim(i).state["shipments"].values()), limit, page),
    "Query.returns": q_returns,
    "Query.events": q_events,
    "Query.eventListeners": q_event_listeners,
    "Query.rateLimits": q_rate_limits,
    "Mutation.setStock": m_set_stock,
    "Mutation.changeStock": m_change_stock,
    "Mutation.confirmOrder": m_confirm_order,
    "Mutation.updateDirectToConsumerOrder": m_update_order,
    "Mutation.cancelDirectToConsumerOrder": m_cancel_order,
    "Mutation.createShipment": m_create_shipment,
    "Mutation.completeShipment": m_complete_shipment,
    "Mutation.createReturn": m_create_return,
    "Mutation.completeReturn": m_complete_return,
    "Mutation.setEventListeners": m_set_event_listeners,
    "Mutation.confirmEvents": m_confirm_events,
    "DirectToConsumerOrder.grandTotal": _grand_total,
    "DirectToConsumerOrder.orderDate": lambda o, i: o["createdAt"],
    "DirectToConsumerOrder.store": lambda o, i: _sim(i).state["stores"][str(o["storeId"])],
    "DirectToConsumerOrder.market": lambda o, i: _sim(i).state["markets"][str(o["marketId"])],
    "DirectToConsumerOrder.pricelist": lambda o, i: {
        **_sim(i).state["pricelists"][str(o["pricelistId"])],
        "currency": CURRENCIES[o["currency"]],
    },
    "DirectToConsumerOrder.customer": lambda o, i: {
        "id": abs(hash(o["customer"].get("email", ""))) % 100000,
        "email": o["customer"].get("email"),
        "firstName": o["customer"].get("first_name"),
        "lastName": o["customer"].get("last_name"),
    },
    "DirectToConsumerOrder.shippingAddress": _address,
    "DirectToConsumerOrder.billingAddress": _address,
    "DirectToConsumerOrder.totals": _totals,
    "DirectToConsumerOrder.lines": lambda o, i, includeFullyCancelled=False: [
        line for line in o["lines"] if includeFullyCancelled or line["quantity"] > 0
    ],
    "DirectToConsumerOrder.paymentHistory": _payment_history,
    "DirectToConsumerOrder.shipments": lambda o, i: [_sim(i).state["shipments"][str(s)] for s in o["shipmentIds"]],
    "DirectToConsumerOrder.shippingPriceGroup": lambda o, i: {"shippingOption": {"id": 1, "name": o["shippingOption"]}},
    "ProductOrderLine.unitOriginalPrice": _line_money("unitOriginalPrice"),
    "ProductOrderLine.unitPrice": _line_money("unitPrice"),
    "ProductOrderLine.lineValue": _line_money("lineValue"),
    "ProductOrderLine.discountPercent": lambda line, i: float(
        ((dec(line["unitOriginalPrice"]) - dec(line["unitPrice"])) / dec(line["unitOriginalPrice"]) * 100).quantize(
            Decimal("0.01")
        )
        if dec(line["unitOriginalPrice"])
        else 0
    ),
    "ProductOrderLine.taxPercent": lambda line, i: float(dec(line["taxPercent"])),
    "ProductOrderLine.hasAnyDiscount": lambda line, i: dec(line["unitOriginalPrice"]) != dec(line["unitPrice"]),
    "ProductOrderLine.productSize": lambda line, i: _sim(i).state["sizes"].get(str(line["sizeId"])),
    "ProductOrderLine.productVariant": lambda line, i: _sim(i).state["variants"][
        str(_sim(i).state["sizes"][str(line["sizeId"])]["variantId"])
    ],
    "ProductOrderLine.product": lambda line, i: _sim(i).state["products"][
        str(_sim(i).state["sizes"][str(line["sizeId"])]["productId"])
    ],
    "DirectToConsumerShipment.lines": _shipment_lines,
    "DirectToConsumerShipment.order": lambda s, i: _sim(i).state["orders"][str(s["orderNumber"])],
    "DirectToConsumerShipment.carrierInformation": lambda s, i: (
        {"carrierName": s["carrier"], "serviceName": s["service"]} if s["carrier"] else None
    ),
    "DirectToConsumerReturn.lines": _return_lines,
    "DirectToConsumerReturn.shipment": lambda r, i: _sim(i).state["shipments"][str(r["shipmentId"])],
    "DirectToConsumerReturn.totals": _return_totals,
    "DirectToConsumerReturn.returnedToStock": lambda r, i: r["releaseToStock"] and r["status"] == "COMPLETED",
    "DirectToConsumerReturn.refundPaymentHistory": _refunds,
    "DirectToConsumerReturn.grandTotal": lambda r, i, includingTax=True: money(
        _sim(i)._return_total(r), _sim(i).state["orders"][str(r["orderNumber"])]["currency"]
    ),
    "ReturnLine.lineValue": _return_line_money("lineValue"),
    "ReturnLine.unitPrice": _return_line_money("unitPrice"),
    "Product.variants": lambda p, i: [_sim(i).state["variants"][str(v)] for v in p["variantIds"]],
    "ProductVariant.product": lambda v, i: _sim(i).state["products"][str(v["productId"])],
    "ProductVariant.productSizes": lambda v, i: [_sim(i).state["sizes"][str(s)] for s in v["sizeIds"]],
    "ProductVariant.stockTotals": lambda v, i: _stock_totals(_sim(i), v["sizeIds"]),
    "ProductSize.productVariant": lambda s, i: _sim(i).state["variants"][str(s["variantId"])],
    "ProductSize.stockTotals": lambda s, i: _stock_totals(_sim(i), [s["id"]]),
    "ProductSize.stock": lambda s, i, where=None, limit=20, page=1: [
        {"warehouse": w, **_stock_totals(_sim(i), [s["id"]], [w["id"]])}
        for w in sorted(_sim(i).state["warehouses"].values(), key=lambda w: w["id"])
        if not (where or {}).get("warehouseId") or w["id"] in where["warehouseId"]
    ],
    "Event.store": lambda e, i: _sim(i).state["stores"].get(str(e["storeId"])) if e["storeId"] else None,
    "Event.market": lambda e, i: _sim(i).state["markets"].get(str(e["marketId"])) if e["marketId"] else None,
}


# --- product content (the product sync reads it) ------------------------------------------------------------------


def _product_attributes(product, info):
    """The product's custom attributes as Centra shows them: one dynamic attribute of one text element each."""
    return [
        {
            "type": {"name": name, "isMapped": False, "isMulti": False},
            "description": name.replace("_", " ").capitalize(),
            "objectType": "Product",
            "elements": [
                {
                    "__typename": "AttributeStringElement",
                    "key": "text",
                    "description": name.replace("_", " ").capitalize(),
                    "kind": "INPUT",
                    "value": value,
                }
            ],
        }
        for name, value in (product.get("attributes") or {}).items()
    ]


def _variant_prices(variant, info):
    """A variant's price in each pricelist that has one: the product's price there (the sandbox prices products)."""
    prices = []
    for pricelist in sorted(_sim(info).state["pricelists"].values(), key=lambda p: p["id"]):
        price = pricelist["prices"].get(str(variant["productId"]))
        if price is not None:
            prices.append(
                {
                    "pricelist": {**pricelist, "currency": CURRENCIES[pricelist["currency"]]},
                    "price": money(dec(price), pricelist["currency"]),
                    "recommendedRetailPrice": None,
                }
            )
    return prices


RESOLVERS.update(
    {
        "Product.displays": lambda p, i: p.get("displays") or [],
        "Product.media": lambda p, i: p.get("media") or [],
        "Product.attributes": _product_attributes,
        "ProductMedia.source": lambda m, i, sizeName=None: {
            "url": m["url"],
            "mimeType": m.get("mimeType"),
            "mediaSize": {"name": sizeName or "standard"},
        },
        "ProductVariant.prices": _variant_prices,
    }
)
