"""How fast every console page answers with a realistic data set, on PostgreSQL.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/switchyard_bench_pages .venv/bin/python bench/pages.py

Creates the database if needed and migrates it; loads once (later runs reuse the data unless ``--reload``):
1,000,000 exceptions (bench/exceptions_queue.py's COPY loader), 100,000 SKUs × 3 channels of stock states,
100,000 orders with their shipments, returns and searchable refs, 100,000 sync runs and 400 days × 3 markets of
order reconciliation; ANALYZEs; then times each page through Django's test Client, signed in as an integration
admin (staff, for /metrics): one warm-up, ``--repeat`` timed requests (median, p95, max), the query count of one
more. A page over the 100 ms goal gets EXPLAIN (ANALYZE, BUFFERS) of its slowest query. Not part of the test suite.

Inventory Planner is pointed at a closed local port (INVENTORY_PLANNER_BASE_URL=http://127.0.0.1:9/…) so the SKU
page's live read fails at once (connection refused) and its "unreachable" answer is cached for 15 s, as it would
be in production with Inventory Planner down.
"""

import argparse
import os
import statistics
import sys
import time

from postgres_django import django_on_postgres

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/switchyard_bench_pages"
GOAL_MS = 100.0
EXCEPTIONS = 1_000_000
SKUS = 100_000
ORDERS = 100_000
RUNS = 100_000
RECON_DAYS = 400
CHANNELS = [  # code, name, system, Centra market
    ("centra", "Centra", "centra", 1),
    ("john-lewis", "John Lewis", "virtualstock", 3),
    ("zalando", "Zalando", "marketplace", 2),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reload", action="store_true", help="rebuild the benchmark's data")
    parser.add_argument("--repeat", type=int, default=20, help="timed requests per page")
    parser.add_argument("--only", default="", help="time only the pages whose label contains this")
    args = parser.parse_args()

    os.environ.setdefault("INVENTORY_PLANNER_BASE_URL", "http://127.0.0.1:9/inventory-planner/api/v1")
    django_on_postgres(DEFAULT_URL)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = '60s'")
        counts = {}
        for table in ["exceptions_syncexception", "syncs_stockstate", "syncs_link", "syncs_syncrun"]:
            cursor.execute(f"SELECT count(*) FROM {table}")
            counts[table] = cursor.fetchone()[0]
    if args.reload or counts["exceptions_syncexception"] != EXCEPTIONS:
        from exceptions_queue import load as load_exceptions

        print(f"loading {EXCEPTIONS:,} exceptions …", flush=True)
        load_exceptions(EXCEPTIONS)
    else:
        print(f"reusing {EXCEPTIONS:,} exceptions", flush=True)
    if args.reload or counts["syncs_stockstate"] != SKUS * 3 or counts["syncs_link"] == 0:
        load_syncs()
    else:
        print("reusing stock states, links, runs and reconciliation (--reload to rebuild)", flush=True)
    measure(repeat=args.repeat, only=args.only)
    return 0


# --- loading ------------------------------------------------------------------------------------------------------


def load_syncs() -> None:
    from django.db import connection, transaction
    from django.utils import timezone

    from mappings.models import Channel
    from syncs.flows import FLOWS

    started = time.perf_counter()
    now = timezone.now()
    for code, name, system, market in CHANNELS:
        Channel.objects.update_or_create(
            code=code, defaults={"name": name, "system": system, "centra_market_id": market, "active": True}
        )
    channel_ids = [Channel.objects.get(code=code).pk for code, *_ in CHANNELS]
    flows = "ARRAY[" + ", ".join(f"'{flow}'" for flow in FLOWS) + "]"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 0")
        cursor.execute("SELECT setseed(0.26)")
        cursor.execute(
            "TRUNCATE syncs_linkref, syncs_unitsinflight, syncs_link, syncs_stockstate, syncs_syncrun, "
            "syncs_orderreconciliation RESTART IDENTITY CASCADE"
        )
        # Stock: every SKU on every channel. ~6% pending (never accepted or changed since), half of those
        # unconfirmed for over a day (stale); ~2% drift (the channel shows something else); ~10% zero.
        cursor.execute(
            f"""
            INSERT INTO syncs_stockstate (channel_id, sku, product_number, master_on_hand, master_statuses,
                master_version, ats, pushed_value, pushed_version, acknowledged_at, channel_value, external_id,
                external_detail, velocity, attempts)
            SELECT c.id, s.sku, s.product, s.on_hand, '{{}}', %(now)s - interval '5 minutes', s.ats,
                CASE WHEN r < 0.01 THEN NULL WHEN r < 0.06 THEN s.ats + 1 ELSE s.ats END,
                %(now)s - interval '1 hour' * (r * 48),
                CASE WHEN r < 0.01 THEN NULL WHEN r < 0.035 THEN %(now)s - interval '2 days'
                     ELSE %(now)s - interval '1 minute' * (r * 600) END,
                CASE WHEN r2 < 0.02 THEN s.ats + 3 WHEN r2 < 0.5 THEN s.ats ELSE NULL END,
                'EXT-' || c.id || '-' || s.i, '{{}}', round((r2 * 5)::numeric, 3), 0
            FROM (
                SELECT i, 'SKU' || lpad(i::text, 6, '0') AS sku, 'P' || lpad((i / 10)::text, 5, '0') AS product,
                       (i * 7) %% 60 AS on_hand, CASE WHEN i %% 10 = 0 THEN 0 ELSE (i * 7) %% 60 END AS ats
                FROM generate_series(1, {SKUS}) AS i
            ) AS s
            CROSS JOIN unnest(%(channels)s::bigint[]) AS c(id)
            CROSS JOIN LATERAL (SELECT random() + 0 * s.i AS r, random() + 0 * c.id AS r2) AS rnd
            """,
            {"now": now, "channels": channel_ids},
        )
        # Orders: a third from each channel, over a year; 90% exported, 70% shipped (one shipment each, with a
        # tracking number and Fulfil shipment number), 10% with a return.
        cursor.execute(
            f"""
            INSERT INTO syncs_link (id, kind, source_system, source_ref, source_id, channel_id, order_id,
                centra_number, fulfil_id, centra_id, created_in_target_at, acknowledged_at, exported_at, shipped_at,
                created_at, updated_at, detail)
            SELECT i, 'order', (ARRAY['centra', 'virtualstock', 'marketplace'])[i %% 3 + 1],
                CASE i %% 3 WHEN 0 THEN (100000000 + i)::text WHEN 1 THEN 'JL' || lpad(i::text, 9, '0')
                     ELSE 'ZL-' || lpad(i::text, 8, '0') END,
                '', (%(channels)s::bigint[])[i %% 3 + 1], NULL, 100000000 + i,
                CASE WHEN i %% 10 <> 0 THEN 500000 + i END, '', t, t, CASE WHEN i %% 10 <> 0 THEN t END,
                CASE WHEN i %% 10 < 7 AND i %% 10 <> 0 THEN t + interval '1 day' END, t, t,
                '{{"grand_total": "89.00", "currency": "EUR"}}'
            FROM generate_series(1, {ORDERS}) AS i,
                 LATERAL (SELECT %(now)s - interval '1 minute' * (({ORDERS} - i) * 5.2) AS t) AS at
            """,
            {"now": now, "channels": channel_ids},
        )
        cursor.execute(
            f"""
            INSERT INTO syncs_link (id, kind, source_system, source_ref, source_id, channel_id, order_id,
                centra_number, fulfil_id, centra_id, created_in_target_at, acknowledged_at, exported_at, shipped_at,
                created_at, updated_at, detail)
            SELECT {ORDERS} + o.id, 'shipment', 'fulfil', (700000 + o.id)::text, (700000 + o.id)::text,
                o.channel_id, o.id, NULL, NULL, 'cs-' || o.id, o.shipped_at, NULL, NULL, NULL, o.shipped_at,
                o.shipped_at, jsonb_build_object('tracking_number', '1Z' || lpad(o.id::text, 12, '0'),
                                                 'shipment_number', 'CS' || lpad(o.id::text, 7, '0'))
            FROM syncs_link o WHERE o.kind = 'order' AND o.shipped_at IS NOT NULL
            """
        )
        cursor.execute(
            f"""
            INSERT INTO syncs_link (id, kind, source_system, source_ref, source_id, channel_id, order_id,
                centra_number, fulfil_id, centra_id, created_in_target_at, acknowledged_at, exported_at, shipped_at,
                created_at, updated_at, detail)
            SELECT {2 * ORDERS} + o.id, 'return', 'centra', 'R' || o.id, '', o.channel_id, o.id, NULL,
                900000 + o.id, 'ret-' || o.id, o.shipped_at + interval '5 days', NULL, NULL, NULL,
                o.shipped_at + interval '5 days', o.shipped_at + interval '5 days', '{{}}'
            FROM syncs_link o WHERE o.kind = 'order' AND o.shipped_at IS NOT NULL AND o.id %% 10 = 1
            """,
            {},
        )
        cursor.execute("SELECT setval(pg_get_serial_sequence('syncs_link', 'id'), (SELECT max(id) FROM syncs_link))")
        cursor.execute(
            """
            INSERT INTO syncs_linkref (link_id, ref, what)
            SELECT id, lower(detail ->> 'tracking_number'), 'tracking_number' FROM syncs_link WHERE kind = 'shipment'
            UNION ALL
            SELECT id, lower(detail ->> 'shipment_number'), 'shipment_number' FROM syncs_link WHERE kind = 'shipment'
            """
        )
        # Runs: every flow in turn over ~70 days; 3% failed, the newest few running.
        cursor.execute(
            f"""
            INSERT INTO syncs_syncrun (flow, trigger, status, started_at, finished_at, examined, succeeded, failed,
                summary, error)
            SELECT ({flows})[i %% {len(FLOWS)} + 1], CASE WHEN i %% 50 = 0 THEN 'manual' ELSE 'schedule' END,
                CASE WHEN i > {RUNS} - 3 THEN 'running' WHEN i %% 33 = 0 THEN 'failed' ELSE 'succeeded' END,
                t, CASE WHEN i > {RUNS} - 3 THEN NULL ELSE t + interval '20 seconds' END,
                i %% 200 + 1, i %% 200 + 1 - CASE WHEN i %% 33 = 0 THEN 1 ELSE 0 END, CASE WHEN i %% 33 = 0 THEN 1 ELSE 0 END,
                '{{"created": 3, "skipped": 1}}', CASE WHEN i %% 33 = 0 THEN 'ApiUnavailable: 503' ELSE '' END
            FROM generate_series(1, {RUNS}) AS i,
                 LATERAL (SELECT %(now)s - interval '1 minute' * (({RUNS} - i) * 1.0) AS t) AS at
            """,
            {"now": now},
        )
        # Reconciliation: 400 days × 3 markets; a day in ten with two differences, older ones signed off.
        cursor.execute(
            f"""
            INSERT INTO syncs_orderreconciliation (day, market_id, market_name, currency, centra_orders, centra_value,
                fulfil_sales, fulfil_value, centra_refunds, refund_value, fulfil_credits, credit_value, differences,
                checked_at, signed_off_at, sign_off_note, sign_off_history, signed_off_by_id)
            SELECT d::date, m.id, m.name, m.currency, 250, 22250, 250 - diff, 22250 - diff * 89, 20, 1780, 20, 1780,
                CASE WHEN diff > 0 THEN jsonb_build_array(
                    jsonb_build_object('day', d::date, 'kind', 'missing_sale', 'ref', '1' || m.id || n,
                                       'order', '1' || m.id || n, 'centra', '89.000', 'fulfil', NULL,
                                       'currency', m.currency),
                    jsonb_build_object('day', d::date, 'kind', 'missing_sale', 'ref', '2' || m.id || n,
                                       'order', '2' || m.id || n, 'centra', '89.000', 'fulfil', NULL,
                                       'currency', m.currency)) ELSE '[]'::jsonb END,
                d + interval '1 day 2 hours', CASE WHEN n > 30 AND diff = 0 THEN d + interval '2 days' END,
                '', '[]', NULL
            FROM generate_series(1, {RECON_DAYS}) AS n,
                 LATERAL (SELECT (%(today)s::date - n) AS d, CASE WHEN n %% 10 = 3 THEN 2 ELSE 0 END AS diff) AS x,
                 (VALUES (1, 'Europe', 'EUR'), (2, 'Zalando', 'EUR'), (3, 'United Kingdom', 'GBP'))
                     AS m(id, name, currency)
            """,
            {"today": timezone.localdate()},
        )
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")
        for table in ["syncs_stockstate", "syncs_link", "syncs_linkref", "syncs_syncrun", "syncs_orderreconciliation"]:
            cursor.execute(f"VACUUM ANALYZE {table}")
        cursor.execute("SET statement_timeout = '60s'")
    print(f"loaded stock, orders, runs and reconciliation in {time.perf_counter() - started:.0f} s", flush=True)


# --- measuring ----------------------------------------------------------------------------------------------------


def measure(*, repeat: int, only: str) -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from console.roles import INTEGRATION_ADMIN
    from exceptions.models import SyncException
    from exceptions.selectors import SORTS, QueueFilters, _encode, exception_queue
    from syncs.models import Link, LinkRef, OrderReconciliation

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    user, _ = get_user_model().objects.update_or_create(
        username="bench-pages", defaults={"is_staff": True, "is_superuser": False}
    )
    user.groups.add(Group.objects.get(name=INTEGRATION_ADMIN))
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)

    exception = SyncException.objects.filter(status="open", object_type="order").order_by("id").first()
    _, keys = SORTS["impact"]
    deep_row = exception_queue(QueueFilters()).order_by(*SORTS["impact"][0])[50_000]
    deep_cursor = _encode([getattr(deep_row, key) for key in keys])
    order = Link.objects.filter(kind="order", source_system="centra", shipped_at__isnull=False).order_by("-pk")[500]
    tracking = LinkRef.objects.filter(link__order=order, what="tracking_number").values_list("ref", flat=True)[0]
    day = OrderReconciliation.objects.exclude(differences=[]).order_by("-day").first()
    htmx = {"HTTP_HX_REQUEST": "true"}
    pages = [
        ("dashboard", "/", {}),
        *[(f"dashboard card {card}", "/", htmx | {"HTTP_HX_TARGET": card}) for card in _cards()],
        ("exceptions", "/exceptions/", {}),
        ("exceptions team=finance", "/exceptions/?team=finance", {}),
        ("exceptions q=<order ref>", f"/exceptions/?q={exception.object_ref}", {}),
        ("exceptions cursor 50k deep", f"/exceptions/?cursor={deep_cursor}", {}),
        ("exception detail", f"/exceptions/{exception.pk}/", {}),
        ("stock", "/stock/", {}),
        ("stock state=stale", "/stock/?state=stale", {}),
        ("stock state=drift", "/stock/?state=drift", {}),
        ("stock state=pending", "/stock/?state=pending", {}),
        ("stock q=SKU0123 (prefix)", "/stock/?q=SKU0123", {}),
        ("stock SKU page", "/stock/SKU012345/", {}),
        ("orders q=<centra number>", f"/orders/?q={order.centra_number}", {}),
        ("orders q=<tracking number>", f"/orders/?q={tracking.upper()}", {}),
        ("order trace", f"/orders/{order.pk}/", {}),
        ("runs", "/runs/", {}),
        ("runs flow=stock_push", "/runs/?flow=stock_push", {}),
        ("runs live", "/runs/live/", {}),
        ("reconciliation", "/reconciliation/", {}),
        ("reconciliation day", f"/reconciliation/orders/{day.pk}/", {}),
        ("metrics (staff)", "/metrics", {}),
        ("healthz", "/healthz", {}),
        ("mappings", "/mappings/", {}),
    ]
    results = []
    print()
    print(
        f"{'page (test Client, signed in)':<40} {'status':>6} {'median':>8} {'p95':>8} {'max':>8} {'queries':>8}  goal"
    )
    for label, path, headers in pages:
        if only and only not in label:
            continue
        response = client.get(path, **headers)  # warm-up
        timings = []
        for _ in range(repeat):
            started = time.perf_counter()
            response = client.get(path, **headers)
            timings.append((time.perf_counter() - started) * 1000)
        with CaptureQueriesContext(connection) as captured:
            client.get(path, **headers)
        median = statistics.median(timings)
        verdict = "ok" if median < GOAL_MS else "MISSED"
        status = response.status_code
        if status >= 400 and label != "healthz":
            verdict = f"{verdict} (status {status}!)"
        print(
            f"{label:<40} {status:>6} {median:>8.1f} {_p95(timings):>8.1f} {max(timings):>8.1f} "
            f"{len(captured.captured_queries):>8}  {verdict}",
            flush=True,
        )
        results.append((label, path, median, captured.captured_queries))

    for label, path, median, queries in results:
        if median < GOAL_MS or not queries:
            continue
        slowest = max(queries, key=lambda query: float(query["time"]))
        print()
        print(f"MISSED {label} ({path}): median {median:.1f} ms; its slowest query ({slowest['time']} s of the run):")
        print(slowest["sql"])
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {slowest['sql']}")
            for (line,) in cursor.fetchall():
                print("   ", line)


def _cards() -> list[str]:
    from console.views import CARDS

    return list(CARDS)


def _p95(timings: list[float]) -> float:
    ordered = sorted(timings)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


if __name__ == "__main__":
    sys.exit(main())
