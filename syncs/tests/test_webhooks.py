"""The console's webhook endpoints: signed deliveries are kept once; anything else is refused with a 4xx and
nothing is written."""

import hashlib
import hmac
import json
import time
from urllib.parse import urlencode

import pytest
from django.urls import reverse

from syncs.models import InboundWebhook

pytestmark = pytest.mark.django_db

SECRET = "a-test-webhook-secret"
BODY = urlencode({"payload": json.dumps({"events": [{"type": "order", "action": "update", "id": 1000}]})})


@pytest.fixture(autouse=True)
def secrets(settings):
    settings.CONNECTIONS = {
        **settings.CONNECTIONS,
        "centra": {**settings.CONNECTIONS["centra"], "webhook_secret": SECRET},
    }


def centra_signature(body: str, timestamp: int | None = None, secret: str = SECRET) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def post(client, body: str, signature: str | None, system: str = "centra"):
    headers = {"X-Centra-Signature": signature} if signature else {}
    return client.post(
        reverse("webhook", args=[system]), data=body, content_type="application/x-www-form-urlencoded", headers=headers
    )


def test_a_signed_centra_webhook_is_kept_without_a_login(client):
    response = post(client, BODY, centra_signature(BODY))
    assert response.status_code == 202
    stored = InboundWebhook.objects.get()
    assert (stored.system, stored.status, stored.payload) == (
        "centra",
        "received",
        [{"type": "order", "action": "update", "id": 1000}],
    )


def test_the_same_delivery_twice_is_kept_once(client):
    signature = centra_signature(BODY)
    assert post(client, BODY, signature).json()["duplicate"] is False
    again = post(client, BODY, signature)
    assert (again.status_code, again.json()["duplicate"]) == (202, True)
    assert InboundWebhook.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "signature", "reason"),
    [
        (BODY, lambda: None, "no X-Centra-Signature header"),
        (BODY, lambda: centra_signature(BODY, secret="forged"), "does not match"),
        (BODY, lambda: centra_signature(BODY, timestamp=int(time.time()) - 86400), "outside the allowed window"),
        ("payload=not-json", lambda: centra_signature("payload=not-json"), "no JSON payload"),
        (
            "payload=%E2%98%83%F0%9F%92%A5",
            lambda: centra_signature("payload=%E2%98%83%F0%9F%92%A5"),
            "no JSON payload",
        ),
    ],
)
def test_a_bad_webhook_is_refused_and_nothing_is_kept(client, body, signature, reason):
    # Signed as the test runs, not as the module is collected: a long suite would age the signature past the window.
    response = post(client, body, signature())
    assert response.status_code == 401
    assert reason in response.json()["error"]
    assert not InboundWebhook.objects.exists()


def test_a_huge_body_is_refused_before_it_is_read(client, settings):
    settings.WEBHOOK_MAX_BYTES = 1000
    body = "payload=" + "x" * 5000
    response = post(client, body, centra_signature(body))
    assert response.status_code == 413
    assert not InboundWebhook.objects.exists()


def test_only_post_is_accepted_and_unknown_systems_are_not_found(client):
    assert client.get(reverse("webhook", args=["centra"])).status_code == 405
    assert post(client, BODY, centra_signature(BODY), system="shopify").status_code == 404


def test_a_missing_secret_refuses_everything(client, settings):
    settings.CONNECTIONS = {**settings.CONNECTIONS, "centra": {**settings.CONNECTIONS["centra"], "webhook_secret": ""}}
    assert post(client, BODY, centra_signature(BODY, secret="")).status_code == 401


def test_a_signed_fulfil_webhook_is_kept_and_a_forged_one_refused(client, settings):
    import base64

    key = b"fulfil-webhook-key"
    settings.CONNECTIONS = {
        **settings.CONNECTIONS,
        "fulfil": {**settings.CONNECTIONS["fulfil"], "webhook_secret": base64.b64encode(key).decode()},
    }
    body = json.dumps({"id": 7, "topic": "stock.shipment.out.done"})
    signature = base64.b64encode(hmac.new(key, body.encode(), hashlib.sha256).digest()).decode()
    url = reverse("webhook", args=["fulfil"])
    good = client.post(url, data=body, content_type="application/json", headers={"X-Fulfil-Hmac-SHA256": signature})
    assert good.status_code == 202
    forged = client.post(
        url, data=body.replace("7", "8"), content_type="application/json", headers={"X-Fulfil-Hmac-SHA256": signature}
    )
    assert forged.status_code == 401
    assert InboundWebhook.objects.filter(system="fulfil").count() == 1


def test_a_fulfil_secret_that_is_not_base64_refuses_rather_than_fails(client, settings):
    settings.CONNECTIONS = {
        **settings.CONNECTIONS,
        "fulfil": {**settings.CONNECTIONS["fulfil"], "webhook_secret": "not base64 !!"},
    }
    response = client.post(
        reverse("webhook", args=["fulfil"]),
        data="{}",
        content_type="application/json",
        headers={"X-Fulfil-Hmac-SHA256": "abc"},
    )
    assert response.status_code == 401


def test_a_signature_with_characters_no_digest_has_is_refused_not_a_server_error(client):
    response = post(client, BODY, f"t={int(time.time())},v1=éé")
    assert response.status_code == 401
    assert not InboundWebhook.objects.exists()


def test_a_webhook_that_cannot_be_acted_on_lands_in_the_queue_and_is_retried(settings):
    from exceptions.models import SyncException
    from exceptions.services import exception_run_retry
    from syncs.flows.webhooks import webhook_process

    settings.STOCK_MASTER = "fulfil"
    settings.CONNECTIONS = {
        **settings.CONNECTIONS,
        "fulfil": {**settings.CONNECTIONS["fulfil"], "base_url": "http://127.0.0.1:9/api/v2"},
    }
    from syncs import connections

    connections.fulfil.cache_clear()
    try:
        webhook = InboundWebhook.objects.create(
            system="fulfil",
            digest="x",
            payload={
                "event": "product.product.inventory_level_changed",
                "payload": [
                    {
                        "product_code": "TEE100BLKS",
                        "product_id": 1,
                        "warehouse_quantities": [{"warehouse_id": 4, "quantity_on_hand": 1, "quantity_available": 1}],
                    }
                ],
            },
        )
        assert webhook_process(webhook_id=webhook.pk).startswith("failed")
        webhook.refresh_from_db()
        exception = SyncException.objects.get(flow="webhooks")
        assert (webhook.status, exception.object_ref) == ("failed", f"webhook:{webhook.pk}")
        SyncException.objects.filter(pk=exception.pk).update(status="retrying")
        assert exception_run_retry(exception_id=exception.pk) is False  # still unreachable: not called resolved
        exception.refresh_from_db()
        assert exception.status != "resolved"
    finally:
        connections.fulfil.cache_clear()
