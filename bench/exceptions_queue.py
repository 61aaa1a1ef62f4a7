"""How fast the exception queue answers at a million exceptions, on PostgreSQL.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/switchyard_bench .venv/bin/python bench/exceptions_queue.py

Creates the database if needed and migrates it; loads 1,000,000 exceptions (once: later runs reuse them unless
``--reload``) with COPY, spread over kinds, teams, flows, statuses (~15% active), values and 90 days; ANALYZEs;
then times, in this process, the queries the queue page makes through the real selectors (server time: no network,
no browser), the real page through Django's test Client, and prints EXPLAIN (ANALYZE, BUFFERS) for the slowest
query. Not part of the test suite. Bounded: every statement has a timeout, every measurement a fixed count.
"""

import argparse
import io
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from postgres_django import django_on_postgres

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/switchyard_bench"
GOAL_MS = 100.0

# How often each kind happens, roughly as a brand sees them: stock and mapping gaps dominate, money problems are rare.
KIND_WEIGHTS = {
    "unmapped_sku": 18,
    "stock_stale": 16,
    "api_unavailable": 12,
    "validation_failed": 10,
    "missing_in_target": 8,
    "attribute_drift": 7,
    "order_stalled": 5,
    "unmapped_carrier": 4,
    "unmapped_shipping_method": 3,
    "payment_capture_lag": 3,
    "totals_mismatch": 2,
    "return_stock_in_failed": 2,
    "refund_not_posted": 2,
    "auth_failed": 2,
    "unmapped_tax": 1,
    "unmapped_market": 1,
    "unmapped_stock_status": 1,
    "stock_push_held": 1,
    "internal_error": 2,
}
# The flows a kind happens in, with the object it is about.
KIND_FLOWS = {
    "unmapped_sku": [("order_import", "order"), ("stock_push", "sku"), ("order_export", "order")],
    "stock_stale": [("stock_push", "sku")],
    "api_unavailable": [("stock_push", "sku"), ("order_import", "order"), ("shipment_sync", "shipment")],
    "validation_failed": [("product_sync", "product"), ("order_export", "order")],
    "missing_in_target": [("reconciliation", "order"), ("reconciliation", "sku")],
    "attribute_drift": [("product_sync", "product")],
    "order_stalled": [("order_export", "order")],
    "unmapped_carrier": [("shipment_sync", "shipment")],
    "unmapped_shipping_method": [("order_import", "order")],
    "payment_capture_lag": [("order_export", "order")],
    "totals_mismatch": [("order_export", "order"), ("order_import", "order")],
    "return_stock_in_failed": [("returns", "return")],
    "refund_not_posted": [("returns", "return")],
    "auth_failed": [("order_import", "order"), ("stock_push", "sku")],
    "unmapped_tax": [("order_export", "order")],
    "unmapped_market": [("order_export", "order")],
    "unmapped_stock_status": [("stock_push", "sku")],
    "stock_push_held": [("stock_push", "sku")],
    "internal_error": [("order_import", "order"), ("stock_push", "sku")],
}
SYSTEMS = {"order": "centra", "sku": "virtualstock", "shipment": "fulfil", "product": "marketplace", "return": "fulfil"}
CURRENCIES = [("GBP", 1.16, 5), ("EUR", 1.0, 3), ("SEK", 0.087, 1), ("USD", 0.92, 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reload", action="store_true", help="delete the benchmark's exceptions and load them anew")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20, help="timings per query")
    args = parser.parse_args()

    django_on_postgres(DEFAULT_URL)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = '60s'")
        cursor.execute("SELECT count(*) FROM exceptions_syncexception")
        existing = cursor.fetchone()[0]
    if args.reload or existing != args.rows:
        print(f"loading {args.rows:,} exceptions (found {existing:,}) …", flush=True)
        load(args.rows)
    else:
        print(f"reusing {existing:,} exceptions (--reload to rebuild)", flush=True)
    measure(repeat=args.repeat)
    return 0


# --- loading ------------------------------------------------------------------------------------------------------


def load(rows: int) -> None:
    from django.db import connection, transaction

    from exceptions.kinds import KINDS
    from exceptions.models import ExceptionEvent, ExceptionRef, SyncException

    started = time.perf_counter()
    rng = random.Random(20261126)
    now = datetime.now(UTC)
    kinds = list(KIND_WEIGHTS)
    weights = [KIND_WEIGHTS[k] for k in kinds]
    columns = [
        "id",
        "flow",
        "kind",
        "object_type",
        "object_ref",
        "system",
        "title",
        "message",
        "team",
        "status",
        "priority",
        "value",
        "currency",
        "value_rank",
        "attempts",
        "occurrences",
        "first_seen",
        "last_seen",
        "next_retry_at",
        "payload",
        "response",
        "context",
        "mapping_kind",
        "mapping_system",
        "mapping_key",
        "resolved_at",
        "resolution_note",
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 0")
        cursor.execute(
            f"TRUNCATE {ExceptionRef._meta.db_table}, {ExceptionEvent._meta.db_table}, "
            f"{SyncException._meta.db_table} RESTART IDENTITY CASCADE"
        )
        raw = cursor.cursor  # psycopg 3's own cursor, for COPY
        with raw.copy(f"COPY {SyncException._meta.db_table} ({', '.join(columns)}) FROM STDIN") as copy:
            buffer = io.StringIO()
            for pk in range(1, rows + 1):
                code = rng.choices(kinds, weights)[0]
                kind = KINDS[code]
                flow, object_type = rng.choice(KIND_FLOWS[code])
                # Closed ones spread over 90 days; the active ~15% lean recent (most are fixed in days).
                roll = rng.random()
                if roll < 0.12:
                    status = "open"
                elif roll < 0.15:
                    status = "retrying" if code == "api_unavailable" or rng.random() < 0.3 else "open"
                elif roll < 0.22:
                    status = "ignored"
                else:
                    status = "resolved"
                days = 90 * rng.random() ** (2.0 if status in ("open", "retrying") else 1.0)
                first_seen = now - timedelta(days=days)
                last_seen = min(now, first_seen + timedelta(hours=rng.expovariate(1 / 6)))
                if object_type in ("order", "return"):
                    currency, rate, _ = rng.choices(CURRENCIES, [c[2] for c in CURRENCIES])[0]
                    value = Decimal(str(round(min(5000.0, rng.lognormvariate(4.3, 0.9)), 2)))
                    if currency == "SEK":
                        value *= 10
                    rank = (value * Decimal(str(rate))).quantize(Decimal("0.01"))
                    value_text, rank_text = f"{value:.3f}", str(rank)
                    ref = f"{'VS' if flow == 'order_import' else 'C'}-{pk:08d}"
                else:
                    currency, value_text, rank_text = "", "\\N", "0"
                    ref = f"SKU{pk % 40000:06d}-{pk:07d}" if object_type == "sku" else f"{object_type}-{pk}"
                mapping = kind.mapping or ""
                mapping_key = f'{{"code": "{ref}"}}' if mapping else "{}"
                closed = status in ("resolved", "ignored")
                buffer.write(
                    "\t".join(
                        [
                            str(pk),
                            flow,
                            code,
                            object_type,
                            ref,
                            SYSTEMS[object_type],
                            f"{kind.label}: {ref}",
                            f"{SYSTEMS[object_type]} {flow}: {kind.label.lower()} for {ref}",
                            kind.team,
                            status,
                            str(kind.priority),
                            value_text,
                            currency,
                            rank_text,
                            str(rng.randint(1, 6)),
                            str(rng.randint(1, 4)),
                            first_seen.isoformat(),
                            last_seen.isoformat(),
                            (now + timedelta(minutes=rng.randint(1, 60))).isoformat()
                            if status == "retrying"
                            else "\\N",
                            '{"method": "POST", "url": "https://example.invalid/api", "request_body": "{}"}',
                            '{"status": 422, "body": "{\\\\"errors\\\\": [\\\\"refused\\\\"]}"}',
                            '{"channel": "john-lewis"}',
                            mapping,
                            SYSTEMS[object_type] if mapping else "",
                            mapping_key,
                            (last_seen + timedelta(hours=rng.randint(1, 72))).isoformat() if closed else "\\N",
                            "Fixed at the source." if closed else "",
                        ]
                    )
                    + "\n"
                )
                if pk % 20_000 == 0:
                    copy.write(buffer.getvalue())
                    buffer = io.StringIO()
            copy.write(buffer.getvalue())
        table = SyncException._meta.db_table
        cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {rows})")
        # One searchable ref per exception (its object ref), and a marketplace reference for orders.
        cursor.execute(
            f"INSERT INTO {ExceptionRef._meta.db_table} (exception_id, ref) "
            f"SELECT id, lower(object_ref) FROM {table} "
            f"UNION ALL SELECT id, 'jl' || lpad(id::text, 9, '0') FROM {table} WHERE object_type = 'order'"
        )
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")
        cursor.execute("VACUUM ANALYZE exceptions_syncexception")
        cursor.execute("VACUUM ANALYZE exceptions_exceptionref")
        cursor.execute("SET statement_timeout = '60s'")
    print(f"loaded in {time.perf_counter() - started:.0f} s", flush=True)


# --- measuring ----------------------------------------------------------------------------------------------------


def measure(*, repeat: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from exceptions.models import SyncException
    from exceptions.selectors import SORTS, QueueFilters, _encode, count_capped, exception_queue, queue_page

    active = exception_queue(QueueFilters())
    # A cursor 50,000 rows deep into the active queue by impact, as following "next" that far would give.
    _, keys = SORTS["impact"]
    deep_row = active.order_by(*SORTS["impact"][0])[50_000]
    deep_cursor = _encode([getattr(deep_row, key) for key in keys])
    searched = SyncException.objects.filter(status="open", object_type="order").order_by("id").first()

    cases = {
        "page 1, active, by impact": lambda: queue_page(active, sort="impact").rows,
        "page 1, active, by age": lambda: queue_page(active, sort="age").rows,
        "page 1, active, newest": lambda: queue_page(active, sort="newest").rows,
        "team=finance, by impact": lambda: queue_page(exception_queue(QueueFilters(team="finance"))).rows,
        "team=ecommerce, by age": lambda: queue_page(exception_queue(QueueFilters(team="ecommerce")), sort="age").rows,
        "team+kind (ops, stock_stale)": lambda: (
            queue_page(exception_queue(QueueFilters(team="operations", kind="stock_stale"))).rows
        ),
        "kind=totals_mismatch": lambda: queue_page(exception_queue(QueueFilters(kind="totals_mismatch"))).rows,
        "age=24h, by impact": lambda: queue_page(exception_queue(QueueFilters(age="24h"))).rows,
        "age=7d + team=finance": lambda: queue_page(exception_queue(QueueFilters(age="7d", team="finance"))).rows,
        "flow=shipment_sync": lambda: queue_page(exception_queue(QueueFilters(flow="shipment_sync"))).rows,
        "status=all, by impact": lambda: queue_page(exception_queue(QueueFilters(status="all"))).rows,
        "status=resolved, by impact": lambda: queue_page(exception_queue(QueueFilters(status="resolved"))).rows,
        "q=<order ref>": lambda: queue_page(exception_queue(QueueFilters(q=searched.object_ref))).rows,
        "q=<marketplace ref>, all": lambda: (
            queue_page(exception_queue(QueueFilters(q=f"JL{searched.pk:09d}", status="all"))).rows
        ),
        "deep page (cursor 50k in)": lambda: queue_page(active, sort="impact", cursor=deep_cursor).rows,
        "count_capped, active": lambda: count_capped(active),
        "count_capped, team=finance": lambda: count_capped(exception_queue(QueueFilters(team="finance"))),
        "count_capped, team+kind": lambda: count_capped(
            exception_queue(QueueFilters(team="operations", kind="stock_stale"))
        ),
    }
    results = []
    for name, run in cases.items():
        run()  # warm: the first run reads from disk; the page is served warm in practice
        timings = []
        for _ in range(repeat):
            started = time.perf_counter()
            run()
            timings.append((time.perf_counter() - started) * 1000)
        with CaptureQueriesContext(connection) as captured:
            run()
        results.append((name, timings, [q["sql"] for q in captured.captured_queries]))

    print()
    print(f"{'query (server time, in process)':<34} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}  goal")
    for name, timings, _ in results:
        median, p95 = statistics.median(timings), _p95(timings)
        print(f"{name:<34} {median:>10.2f} {p95:>8.2f} {max(timings):>8.2f}  {'ok' if p95 < GOAL_MS else 'SLOW'}")

    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_superuser": True})
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    pages = {
        "queue page, active": "/exceptions/",
        "queue page, team=finance": "/exceptions/?team=finance",
        "queue page, team+kind": "/exceptions/?team=operations&kind=stock_stale",
        "queue page, q=<order ref>": f"/exceptions/?q={searched.object_ref}",
        "API list, team=finance": "/api/exceptions/?team=finance",
    }
    print()
    print(f"{'page (test Client, signed in)':<34} {'median ms':>10} {'p95 ms':>8} {'queries':>8}  status")
    for label, path in pages.items():
        response = client.get(path)
        if response.status_code != 200:
            print(f"{label:<34} {'-':>10} {'-':>8} {'-':>8}  {response.status_code} ({path}: not served yet?)")
            continue
        timings = []
        for _ in range(max(5, repeat // 2)):
            started = time.perf_counter()
            response = client.get(path)
            timings.append((time.perf_counter() - started) * 1000)
        with CaptureQueriesContext(connection) as captured:
            client.get(path)
        print(
            f"{label:<34} {statistics.median(timings):>10.2f} {_p95(timings):>8.2f} "
            f"{len(captured.captured_queries):>8}  {response.status_code}"
        )

    name, timings, queries = max(results, key=lambda result: statistics.median(result[1]))
    print()
    print(f"slowest: {name} (median {statistics.median(timings):.2f} ms); EXPLAIN (ANALYZE, BUFFERS):")
    with connection.cursor() as cursor:
        for sql in queries:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
            print()
            print(sql)
            for (line,) in cursor.fetchall():
                print("   ", line)


def _p95(timings: list[float]) -> float:
    ordered = sorted(timings)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


if __name__ == "__main__":
    sys.exit(main())
