"""The runs page: every run with its counts and summary, live progress for the running ones, and starting a flow by
hand for the roles allowed."""

import time

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_q.models import OrmQ

from console.flow_starts import STARTABLE_BY_ROLE, startable_flows
from console.roles import ROLES
from syncs.flows import FLOWS
from syncs.models import SyncRun
from syncs.runs import RunCounter, run_flow

pytestmark = pytest.mark.django_db

ORDER_FLOWS = ["order_import", "order_export", "order_cancel", "order_watch", "shipment_sync", "return_sync"]


def finished_run(flow: str = "order_export", **summary) -> SyncRun:
    """A run of ``flow`` that went through, as run_flow records one."""
    return run_flow(flow=flow, action=lambda counter: summary, trigger="schedule")


def failed_run(flow: str = "stock_push", error: str = "Fulfil is down") -> SyncRun:
    def down(counter):
        counter.add(examined=3, succeeded=3)
        raise RuntimeError(error)

    with pytest.raises(RuntimeError):
        run_flow(flow=flow, action=down, trigger="event")
    return SyncRun.objects.filter(flow=flow).latest("pk")


def running_run(
    flow: str = "shipment_sync", *, trigger: str = "schedule", examined: int = 60, failed: int = 2, **summary
) -> SyncRun:
    """A run going now, whose counter has flushed what it did so far (as RunCounter does every 50 items)."""
    run = SyncRun.objects.create(flow=flow, trigger=trigger, summary=summary)
    counter = RunCounter(run, every=1)
    counter.add(examined=examined, succeeded=examined - failed, failed=failed)
    run.refresh_from_db()
    return run


def htmx(client: Client, url: str, target: str | None = None):
    headers = {"HTTP_HX_REQUEST": "true"} | ({"HTTP_HX_TARGET": target} if target else {})
    return client.get(url, **headers)


# --- who may start what -------------------------------------------------------------------------------------------


def test_each_role_starts_the_flows_the_mapping_gives_it(ada, erin, fred, olga, cora):
    assert startable_flows(ada) == list(FLOWS)
    assert sorted(startable_flows(erin)) == sorted([*ORDER_FLOWS, "product_sync", "reconcile_skus"])
    assert sorted(startable_flows(fred)) == ["reconcile_orders", "reconcile_skus"]
    assert startable_flows(olga) == ["stock_push"]
    assert startable_flows(cora) == []


def test_the_mapping_names_every_role_and_only_flows_that_exist():
    assert set(STARTABLE_BY_ROLE) == set(ROLES)
    for flows in STARTABLE_BY_ROLE.values():
        assert flows is None or set(flows) <= set(FLOWS)


# --- the list -----------------------------------------------------------------------------------------------------


def test_the_page_lists_runs_newest_first_with_counts_summary_and_error(cora, client_for):
    finished_run(examined=5, exported=3, already_exported=1, failed=1, exception_ids=[41, 42])
    failed_run(error="Fulfil is down: 503")
    running_run()
    page = client_for(cora).get(reverse("runs:list")).content.decode()
    table = page.split('id="runs-table"', 1)[1]
    assert table.index("shipment_sync") < table.index("stock_push") < table.index("order_export")
    assert "exported 3 · already exported 1" in table  # the summary's line, expandable to all of it
    assert '<details class="run-summary">' in table
    assert reverse("exceptions:detail", args=[41]) in table
    assert "Fulfil is down: 503" in table
    assert '<span class="run-status run-status-failed">Failed</span>' in table
    assert '<span class="run-status run-status-running">Running</span>' in table
    assert '<td class="num">5</td>' in table and '<td class="num">4</td>' in table  # examined, succeeded


def test_the_page_filters_by_flow_and_status(cora, client_for):
    finished_run("order_export", examined=1)
    finished_run("order_import", examined=1)
    failed_run("order_import")
    client = client_for(cora)
    table = htmx(client, reverse("runs:list") + "?flow=order_import", target="runs-table").content.decode()
    assert "order_import" in table and "order_export" not in table
    assert "<h1>" not in table  # the partial alone
    table = client.get(reverse("runs:list"), {"flow": "order_import", "status": "failed"}).content.decode()
    assert table.split('id="runs-table"', 1)[1].count('class="run-status run-status-failed"') == 1
    assert "run-status-succeeded" not in table.split('id="runs-table"', 1)[1]
    # Unknown values are ignored rather than refused.
    assert client.get(reverse("runs:list"), {"flow": "nope", "status": "maybe"}).status_code == 200


def test_the_page_goes_back_in_time_by_keyset(cora, client_for):
    SyncRun.objects.bulk_create(
        SyncRun(flow="order_watch", status=SyncRun.Status.SUCCEEDED, examined=n) for n in range(60)
    )
    newest = SyncRun.objects.order_by("-pk")
    client = client_for(cora)
    first = client.get(reverse("runs:list")).context
    assert [row.run.pk for row in first["rows"]] == [run.pk for run in newest[:50]]
    assert first["next_url"] == f"?before={newest[49].pk}"
    second = client.get(reverse("runs:list") + first["next_url"]).context
    assert [row.run.pk for row in second["rows"]] == [run.pk for run in newest[50:]]
    assert second["next_url"] is None and second["continued"]


def test_the_page_costs_the_same_queries_however_many_runs_there_are(cora, client_for, django_assert_num_queries):
    client = client_for(cora)
    finished_run(examined=1)
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("runs:list"))
    SyncRun.objects.bulk_create(SyncRun(flow="order_watch", status=SyncRun.Status.FAILED) for _ in range(200))
    with django_assert_num_queries(len(few.captured_queries)):
        client.get(reverse("runs:list"))


# --- progress -----------------------------------------------------------------------------------------------------


def test_a_running_run_s_progress_partial_answers_htmx_and_polls_until_it_ends(cora, client_for):
    finished_run("shipment_sync", examined=400)
    run = running_run(examined=60, failed=2)
    client = client_for(cora)
    response = htmx(client, reverse("runs:detail", args=[run.pk]))
    part = response.content.decode()
    assert response.status_code == 200 and "<html" not in part
    assert f'hx-get="{reverse("runs:detail", args=[run.pk])}" hx-trigger="every 2s"' in part
    assert "<progress aria-label" in part  # indeterminate: the flow did not say how many items it has
    assert "60 examined · 58 succeeded · " in part and "2 failed" in part and "so far" in part
    assert "The last successful run examined 400" in part
    SyncRun.objects.filter(pk=run.pk).update(status=SyncRun.Status.SUCCEEDED, summary={"examined": 61})
    part = htmx(client, reverse("runs:detail", args=[run.pk])).content.decode()
    assert "hx-trigger" not in part and "<progress" not in part  # finished: the polling stops
    assert "Succeeded" in part


def test_a_run_that_knows_its_total_shows_the_share_done(cora, client_for):
    run = running_run(examined=50, failed=0, total=200)
    part = htmx(client_for(cora), reverse("runs:detail", args=[run.pk])).content.decode()
    assert '<progress max="200" value="50"' in part
    assert "50 of 200 examined (25%)" in part


def test_the_live_panel_shows_the_runs_going_now_and_polls_quickly_while_there_are(cora, client_for):
    client = client_for(cora)
    idle = client.get(reverse("runs:live")).content.decode()
    assert "Nothing is running." in idle and 'hx-trigger="every 15s"' in idle
    run = running_run("order_import")
    live = client.get(reverse("runs:live")).content.decode()
    assert 'hx-trigger="every 2s"' in live and reverse("runs:detail", args=[run.pk]) in live
    assert "<progress" in live


def test_a_run_whose_worker_stopped_is_not_shown_as_going(cora, client_for, settings):
    run = running_run("order_import")
    SyncRun.objects.filter(pk=run.pk).update(started_at=run.started_at.replace(year=run.started_at.year - 1))
    client = client_for(cora)
    assert "Nothing is running." in client.get(reverse("runs:live")).content.decode()
    table = client.get(reverse("runs:list")).content.decode()
    assert "its worker may have stopped" in table


def test_a_run_has_its_own_page(cora, client_for):
    run = finished_run(examined=2, exported=2, cursor="2026-03-01T10:00:00+00:00")
    page = client_for(cora).get(reverse("runs:detail", args=[run.pk])).content.decode()
    assert f"order_export run {run.pk}" in page and "2026-03-01T10:00:00+00:00" in page


# --- starting a flow by hand --------------------------------------------------------------------------------------


def queued_tasks() -> list[tuple[str, tuple]]:
    return [(task.task["func"], task.task["args"]) for task in OrmQ.objects.all()]


def test_an_allowed_role_confirms_what_the_flow_does_then_starts_it(
    erin, client_for, django_capture_on_commit_callbacks
):
    client = client_for(erin)
    page = client.get(reverse("runs:list")).content.decode()
    assert f'href="{reverse("runs:start")}?flow=order_export"' in page
    assert f'href="{reverse("runs:start")}?flow=stock_push"' not in page
    confirm = client.get(reverse("runs:start"), {"flow": "order_export"}).content.decode()
    assert "posts each as a confirmed sale in Fulfil" in confirm and "<strong>Fulfil</strong>" in confirm
    assert 'name="csrfmiddlewaretoken"' in confirm and 'name="flow" value="order_export"' in confirm
    assert queued_tasks() == []  # looking at the confirmation starts nothing
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("runs:start"), {"flow": "order_export"})
    assert response.status_code == 302 and response["Location"] == reverse("runs:list") + "?flow=order_export"
    assert queued_tasks() == [("syncs.tasks.run", ("order_export", "manual"))]
    [task] = OrmQ.objects.all()
    assert task.task["name"].startswith("order_export by erin ")
    page = client.get(response["Location"]).content.decode()
    assert "Order export is queued" in page
    assert '<span class="run-status run-status-queued">Queued</span>' in page
    # Once a worker begins it, it is a running run rather than a queued start.
    running_run("order_export", trigger="manual")
    live = client.get(reverse("runs:live")).content.decode()
    assert "run-status-queued" not in live and "run-status-running" in live


@pytest.mark.parametrize(
    ("person", "allowed", "refused"),
    [
        ("fred", "reconcile_orders", "order_export"),
        ("olga", "stock_push", "product_sync"),
        ("erin", "product_sync", "stock_push"),
        ("ada", "reconcile_orders", None),
    ],
)
def test_each_role_starts_its_own_flows_and_is_refused_the_others(
    person, allowed, refused, request, client_for, django_capture_on_commit_callbacks
):
    client = client_for(request.getfixturevalue(person))
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(reverse("runs:start"), {"flow": allowed}).status_code == 302
    if refused:
        assert client.get(reverse("runs:start"), {"flow": refused}).status_code == 403
        with django_capture_on_commit_callbacks(execute=True):
            assert client.post(reverse("runs:start"), {"flow": refused}).status_code == 403
    assert queued_tasks() == [("syncs.tasks.run", (allowed, "manual"))]


def test_a_role_that_may_start_nothing_sees_no_button_and_is_refused(cora, client_for):
    client = client_for(cora)
    page = client.get(reverse("runs:list")).content.decode()
    assert "Start a flow by hand" not in page and reverse("runs:start") not in page
    for flow in FLOWS:
        assert client.get(reverse("runs:start"), {"flow": flow}).status_code == 403
        assert client.post(reverse("runs:start"), {"flow": flow}).status_code == 403
    assert queued_tasks() == []


def test_starting_needs_a_post_with_the_csrf_token(ada, client_for):
    client = Client(enforce_csrf_checks=True)
    client.force_login(ada)
    assert client.post(reverse("runs:start"), {"flow": "order_watch"}).status_code == 403
    assert client_for(ada).put(reverse("runs:start"), {"flow": "order_watch"}).status_code == 405
    assert client_for(ada).delete(reverse("runs:start")).status_code == 405
    assert queued_tasks() == []


def test_a_flow_already_running_is_not_started_twice(
    ada, client_for, django_capture_on_commit_callbacks, run_going_elsewhere
):
    running_run("order_import")
    run_going_elsewhere("order_import")  # on a live worker
    client = client_for(ada)
    assert "A run of it is going now" in client.get(reverse("runs:start"), {"flow": "order_import"}).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("runs:start"), {"flow": "order_import"}, follow=True)
    assert "Order import is running now: wait for it to finish." in response.content.decode()
    assert queued_tasks() == []


def test_an_unknown_flow_is_not_found(ada, client_for):
    assert client_for(ada).get(reverse("runs:start"), {"flow": "rm_rf"}).status_code == 404
    assert client_for(ada).post(reverse("runs:start"), {"flow": ""}).status_code == 404


def test_the_pages_need_a_login(db):
    finished = finished_run()
    for url in (reverse("runs:list"), reverse("runs:live"), reverse("runs:detail", args=[finished.pk])):
        response = Client().get(url)
        assert response.status_code == 302 and "login" in response["Location"]
    assert Client().post(reverse("runs:start"), {"flow": "order_watch"}).status_code == 302
    assert queued_tasks() == []


def test_the_read_pages_refuse_other_methods(cora, client_for):
    client = client_for(cora)
    assert client.post(reverse("runs:list")).status_code == 405
    assert client.post(reverse("runs:live")).status_code == 405
    assert client.get(reverse("runs:detail", args=[999999])).status_code == 404


def test_the_sidebar_runs_entry_leads_here(olga, client_for):
    page = client_for(olga).get(reverse("runs:list")).content.decode()
    assert f'<a href="{reverse("runs:list")}" aria-current="page">Runs</a>' in page


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_started_flow_runs_on_a_worker_and_shows_as_a_manual_run(ada, worker_cluster):
    client = Client()
    client.force_login(ada)
    client.post(reverse("runs:start"), {"flow": "order_watch"})
    deadline = time.monotonic() + 60
    while not SyncRun.objects.filter(flow="order_watch", status=SyncRun.Status.SUCCEEDED).exists():
        assert time.monotonic() < deadline, worker_cluster.log_path.read_text()
        time.sleep(0.3)
    run = SyncRun.objects.get(flow="order_watch")
    assert run.trigger == "manual"
    live = client.get(reverse("runs:live")).content.decode()
    assert "run-status-queued" not in live
