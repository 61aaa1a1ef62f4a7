"""Run bookkeeping: a run in progress holds its flow; a run whose worker died does not."""

import threading

import pytest
from django.db import connection

from syncs.models import SyncRun
from syncs.runs import flow_running, run_flow

# Another thread's connection must see the runs: committed, so the tests run outside a test transaction (with the
# migrations' rows restored after, as every transactional test here does).
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def flow_running_elsewhere(flow: str) -> bool:
    """``flow_running`` asked by another worker (another thread: another database connection)."""
    answer = {}

    def ask() -> None:
        try:
            answer["running"] = flow_running(flow)
        finally:
            connection.close()

    thread = threading.Thread(target=ask)
    thread.start()
    thread.join()
    return answer["running"]


def test_a_run_in_progress_holds_its_flow_for_every_other_worker():
    seen = {}

    def action(counter):
        seen["while running"] = flow_running_elsewhere("order_export")
        return {"examined": 0}

    run = run_flow(flow="order_export", action=action, trigger="schedule")
    assert seen["while running"] is True
    assert run.status == SyncRun.Status.SUCCEEDED
    assert flow_running_elsewhere("order_export") is False


def test_a_run_whose_worker_was_killed_frees_its_flow_at_once_and_is_recorded_as_failed():
    # What a worker killed mid-run leaves behind: its run marked running, and no live connection holding it.
    dead = SyncRun.objects.create(flow="order_export", trigger="schedule")
    assert dead.status == SyncRun.Status.RUNNING
    assert flow_running_elsewhere("order_export") is False
    dead.refresh_from_db()
    assert dead.status == SyncRun.Status.FAILED
    assert dead.error == "The worker running it stopped."


def test_a_run_of_another_flow_does_not_hold_this_one():
    seen = {}

    def action(counter):
        seen["export while importing"] = flow_running_elsewhere("order_export")
        return {}

    run_flow(flow="order_import", action=action, trigger="schedule")
    assert seen["export while importing"] is False
