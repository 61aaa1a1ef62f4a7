"""The sandbox: simulators of every outside system, served over HTTP on 127.0.0.1 (docs/sandbox.md)."""

# Where each system's simulator lives under the sandbox's address.
SANDBOX_PATHS = {
    "centra": "centra",
    "fulfil": "fulfil",
    "virtualstock": "virtualstock",
    "inventory_planner": "inventory-planner",
    "marketplace": "marketplace",
}
