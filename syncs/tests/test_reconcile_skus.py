"""SKU reconciliation against the sandbox: a SKU missing where it should be is one exception, night to night, until
it appears."""

import pytest

from exceptions.models import Status, SyncException
from mappings.models import Channel, SkuMapping
from syncs.flows.reconcile_skus import FLOW, reconcile_skus_run

TEE = {
    "name": "Organic Cotton Tee",
    "productNumber": "TEE100",
    "variants": [
        {
            "name": "Black",
            "variantNumber": "BLK",
            "sizes": [
                {"sizeNumber": "S", "name": "S"},
                {"sizeNumber": "M", "name": "M"},
                {"sizeNumber": "L", "name": "L"},
            ],
        }
    ],
}


@pytest.fixture
def catalogue(connected, control, settings):
    settings.SKU_SAME_AS_CENTRA = ["fulfil", "inventory_planner"]
    control("centra").seed(products=[TEE])
    control("fulfil").seed(products=[{"code": "TEE100BLKS", "name": "Tee"}, {"code": "TEE100BLKL", "name": "Tee"}])
    control("inventory-planner").seed(
        variants=[{"sku": "TEE100BLKS"}, {"sku": "TEE100BLKM"}, {"sku": "TEE100BLKL"}, {"sku": "OLD-1"}]
    )
    Channel.objects.create(code="zalando", name="Zalando", system="marketplace")
    # Zalando lists two of the three sizes (those mapped); it holds one of them, and an offer Centra does not know.
    SkuMapping.objects.create(system="marketplace", centra_sku="TEE100BLKS", external_code="ZL-S")
    SkuMapping.objects.create(system="marketplace", centra_sku="TEE100BLKM", external_code="ZL-M")
    control("marketplace").seed(
        offers=[{"sku": "ZL-S", "price": "29.00", "quantity": 1}, {"sku": "ZL-X", "price": "9.00", "quantity": 1}]
    )
    return control


@pytest.mark.django_db
def test_each_sku_missing_where_it_should_be_is_one_exception_and_the_counts_are_reported(catalogue):
    summary = reconcile_skus_run()
    assert (summary.examined, summary.missing, summary.raised) == (3, 2, 2)
    assert summary.systems["fulfil"] == {"expected": 3, "present": 2, "missing": 1, "only_there": 0}
    assert summary.systems["inventory_planner"] == {"expected": 3, "present": 3, "missing": 0, "only_there": 1}
    assert summary.systems["marketplace"] == {"expected": 2, "present": 1, "missing": 1, "only_there": 1}
    assert "virtualstock" not in summary.systems  # no channel sells there
    refs = sorted(SyncException.objects.filter(flow=FLOW).values_list("object_ref", flat=True))
    assert refs == ["fulfil:TEE100BLKM", "marketplace:TEE100BLKM"]
    exception = SyncException.objects.get(object_ref="fulfil:TEE100BLKM")
    assert (exception.kind, exception.team, exception.title) == (
        "missing_in_target",
        "ecommerce",
        "SKU TEE100BLKM is missing in Fulfil",
    )


@pytest.mark.django_db
def test_night_to_night_it_stays_one_exception_and_resolves_once_created(catalogue):
    reconcile_skus_run()
    assert reconcile_skus_run().raised == 0
    exception = SyncException.objects.get(object_ref="fulfil:TEE100BLKM")
    assert exception.occurrences == 1
    catalogue("fulfil").seed(products=[{"code": "TEE100BLKM", "name": "Tee"}])
    summary = reconcile_skus_run()
    assert summary.resolved == 1
    exception.refresh_from_db()
    assert exception.status == Status.RESOLVED
    assert SyncException.objects.get(object_ref="marketplace:TEE100BLKM").status == Status.OPEN


@pytest.mark.django_db
def test_a_retry_asks_for_the_one_sku_and_resolves_when_it_is_there(catalogue):
    from exceptions.services import exception_run_retry

    reconcile_skus_run()
    exception = SyncException.objects.get(object_ref="marketplace:TEE100BLKM")
    SyncException.objects.filter(pk=exception.pk).update(status=Status.RETRYING)
    assert exception_run_retry(exception_id=exception.pk) is False  # still missing
    catalogue("marketplace").seed(offers=[{"sku": "ZL-M", "price": "29.00", "quantity": 1}])
    SyncException.objects.filter(pk=exception.pk).update(status=Status.RETRYING, claimed_at=None)
    before = len(catalogue("marketplace").calls())
    assert exception_run_retry(exception_id=exception.pk) is True
    assert [call["operation"] for call in catalogue("marketplace").calls()[before:]] == ["offers_list"]  # one ask


@pytest.mark.django_db
def test_a_system_that_cannot_be_read_is_reported_and_leaves_its_exceptions_alone(catalogue):
    reconcile_skus_run()
    catalogue("fulfil").faults(error_rate=1.0, error_status=401)
    summary = reconcile_skus_run()
    assert "error" in summary.systems["fulfil"] and summary.failed == 1
    assert SyncException.objects.get(object_ref="fulfil:TEE100BLKM").status == Status.OPEN
