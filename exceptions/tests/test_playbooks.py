"""The Playbooks page: every kind of exception, its owner, priority and the steps to fix it."""

from decimal import Decimal

import pytest

from exceptions.kinds import KINDS, TEAMS
from exceptions.services import failure_record
from mappings.services import MissingMapping

pytestmark = pytest.mark.django_db
URL = "/exceptions/playbooks/"


def test_the_playbooks_list_every_kind_with_its_owner_and_steps(cora, client_for):
    page = client_for(cora).get(URL).content.decode()
    for code, kind in KINDS.items():
        assert f'id="{code}"' in page, code
        assert kind.label in page
        assert kind.cause.replace("'", "&#x27;") in page
        assert kind.steps[0].replace("'", "&#x27;") in page
    assert all(label in page for label in TEAMS.values())
    assert "Yes: retried automatically" in page  # api_unavailable heals by itself


def test_each_kind_counts_its_active_exceptions_and_links_to_them(erin, client_for):
    for ref in ("a", "b"):
        failure_record(
            flow="order_import",
            object_type="order",
            object_ref=ref,
            error=MissingMapping(kind="sku", system="virtualstock", key={"code": ref}),
            title=f"Order {ref}",
            value=Decimal("10.00"),
            currency="EUR",
        )
    response = client_for(erin).get(URL)
    entry = next(entry for entry in response.context["entries"] if entry["code"] == "unmapped_sku")
    assert entry["active"] == 2
    assert '<a href="/exceptions/?kind=unmapped_sku">2 active</a>' in response.content.decode()


def test_the_playbooks_need_a_signed_in_person_and_a_get(client, erin, client_for):
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert client_for(erin).post(URL).status_code == 405
