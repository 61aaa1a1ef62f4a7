"""Rate budgets shared by every worker: two processes' limiters spend one budget between them."""

import threading

import pytest
from django.db import connection, transaction

from syncs import connections
from syncs.models import RateBudget
from syncs.rate_budget import SharedRateLimiter


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_limiters_with_one_key_share_one_budget():
    first, second = SharedRateLimiter("test:bucket", [(3, 10)]), SharedRateLimiter("test:bucket", [(3, 10)])
    assert first.acquire() == 0 and first.acquire() == 0
    assert second.wait_time() == 0
    assert second.acquire() == 0
    # Three calls in the window between them: neither may make a fourth for about ten seconds.
    assert 9 < first.wait_time() <= 10 and 9 < second.wait_time() <= 10
    assert len(RateBudget.objects.get(key="test:bucket").calls) == 3
    assert SharedRateLimiter("test:other", [(3, 10)]).wait_time() == 0


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_workers_never_take_more_places_than_the_window_allows():
    granted, errors = [], []

    def worker():
        limiter = SharedRateLimiter("test:race", [(5, 30)])
        try:
            for _ in range(5):
                if limiter._take_place() <= 0:
                    granted.append(1)
        except Exception as error:  # surfaced below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(granted) == 5  # 20 attempts from 4 connections; exactly the window's 5 went
    assert len(RateBudget.objects.get(key="test:race").calls) == 5


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_configured_clients_pace_through_the_shared_budget(settings, connected):
    settings.RATE_LIMITS_SHARED = True
    connections.centra.cache_clear()
    client = connections.centra()
    client.warehouses()
    assert isinstance(client.session.rate_limiter, SharedRateLimiter)
    assert isinstance(client.mutation_limiter, SharedRateLimiter)
    assert 1 <= len(RateBudget.objects.get(key="centra:requests").calls) <= 60 // 4  # this call, maybe a few ahead
    connections.centra.cache_clear()


@pytest.mark.django_db
def test_inside_a_transaction_the_process_paces_itself_rather_than_lock_the_budget():
    limiter = SharedRateLimiter("test:local", [(2, 10)])
    with transaction.atomic():
        assert limiter.acquire() == 0 and limiter.acquire() == 0
        assert limiter.wait_time() > 9
    assert not RateBudget.objects.filter(key="test:local").exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_with_plenty_of_room_a_worker_takes_places_ahead_and_the_budget_still_counts_every_call():
    first, second = SharedRateLimiter("test:lease", [(100, 10)]), SharedRateLimiter("test:lease", [(100, 10)])
    assert first.acquire() == 0
    taken = len(RateBudget.objects.get(key="test:lease").calls)
    assert taken == 25  # a quarter of the room, for this worker's next tenth of a second
    for _ in range(24):
        assert first.acquire() == 0
    assert len(RateBudget.objects.get(key="test:lease").calls) == 25  # used without touching the row
    assert second.acquire() == 0
    assert len(RateBudget.objects.get(key="test:lease").calls) == 25 + 75 // 4
    # However the places are taken, the window never lets more than its limit through.
    granted = 26  # the calls made above
    for limiter in [first, second] * 100:
        if limiter._from_lease() or limiter._take_place() <= 0:
            granted += 1
    assert granted <= 100
    assert len(RateBudget.objects.get(key="test:lease").calls) <= 100


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_places_taken_ahead_lapse_after_their_lease():
    limiter = SharedRateLimiter("test:lapse", [(100, 10)])
    now = [1_000_000.0]
    limiter._clock = lambda: now[0]
    limiter.acquire()
    assert limiter._leased == 24
    now[0] += limiter.lease_seconds + 0.01
    assert limiter._from_lease() is False and limiter._leased == 0
