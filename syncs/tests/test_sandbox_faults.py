"""The sandbox's injected faults, through its control API, as a test or the chaos run sets them."""

import time

import pytest
import requests

from syncs.connectors.errors import RateLimited
from syncs.connectors.fulfil import FulfilClient
from syncs.connectors.http import RetryPolicy

# One read per system, with the sandbox's default credentials (a call without them is refused before any fault).
READS = {
    "centra": ("POST", "/centra/graphql", {"Authorization": "Bearer sandbox-centra"}),
    "fulfil": ("PUT", "/fulfil/api/v2/model/product.product/search_read", {"x-api-key": "sandbox-fulfil"}),
    "virtualstock": ("GET", "/virtualstock/restapi/v4/orders/", {"Authorization": "Basic c3VwcGxpZXI6c2FuZGJveA=="}),
    "inventory-planner": (
        "GET",
        "/inventory-planner/api/v1/variants",
        {"Authorization": "sandbox-inventory-planner", "Account": "a1000"},
    ),
    "marketplace": ("GET", "/marketplace/api/v1/orders", {"Authorization": "Bearer sandbox-marketplace"}),
}


def call(sandbox, system: str) -> requests.Response:
    method, path, headers = READS[system]
    return requests.request(method, f"{sandbox.url}{path}", json={}, headers=headers, timeout=10)


@pytest.mark.parametrize("system", sorted(READS))
def test_throttled_calls_are_answered_429_in_the_systems_own_shape_with_a_retry_after(sandbox, control, system):
    control(system).faults(throttle_rate=1.0)
    response = call(sandbox, system)
    assert response.status_code == 429
    assert response.headers["Retry-After"]
    assert response.json()  # the system's own error body, not a bare status


def test_throttling_and_errors_mix_in_one_run_of_calls(sandbox, control):
    fulfil = control("fulfil")
    assert fulfil.faults(error_rate=0.5, error_status=503, throttle_rate=0.5)["throttle_rate"] == 0.5
    statuses = {call(sandbox, "fulfil").status_code for _ in range(60)}
    assert statuses == {429, 503}


def test_a_throttled_call_is_a_rate_limit_naming_the_seconds_to_wait(connected, control):
    fulfil = control("fulfil")
    fulfil.faults(throttle_rate=1.0)
    client = FulfilClient(base_url=f"{connected.url}/fulfil/api/v2", api_key="sandbox-fulfil", retry=RetryPolicy(1))
    with pytest.raises(RateLimited) as raised:
        client.warehouses()
    assert 0 < raised.value.retry_after <= 2
    fulfil.faults()
    assert client.warehouses()


def test_a_hung_call_answers_too_late_and_is_carried_out_and_the_next_answers_at_once(sandbox, control):
    fulfil = control("fulfil")
    fulfil.faults(hang_first=1, timeout_seconds=1.5)
    with pytest.raises(requests.Timeout):
        requests.put(
            f"{sandbox.url}/fulfil/api/v2/model/product.product/create",
            json=[[{"code": "LATE1", "name": "Late"}]],
            headers={"x-api-key": "sandbox-fulfil"},
            timeout=0.5,
        )
    assert call(sandbox, "fulfil").status_code == 200  # only the first call hangs
    deadline = time.monotonic() + 5
    codes: set[str] = set()
    while "LATE1" not in codes and time.monotonic() < deadline:
        time.sleep(0.2)
        codes = {row["code"] for row in fulfil.state()["records"]["product.product"].values()}
    assert "LATE1" in codes  # the call the client gave up on landed after all
