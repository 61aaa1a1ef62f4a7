"""The chaos run's schedule probe, run by the clusters' workers: each firing of a probe schedule is one row, so a
schedule fired twice for the same moment shows as two rows with the same ``fired_for`` (see bench/chaos.py)."""

from django.db import connection

TABLE = "chaos_probe_firing"


def table_create() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (schedule text NOT NULL, fired_for text NOT NULL, "
            "at timestamptz NOT NULL DEFAULT now())"
        )
        cursor.execute(f"TRUNCATE {TABLE}")


def fired(schedule: str, fired_for: str) -> str:
    """A probe schedule's task: record that ``schedule`` fired for the moment ``fired_for`` (its intended run)."""
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {TABLE} (schedule, fired_for) VALUES (%s, %s)", [schedule, fired_for])
    return f"{schedule} fired for {fired_for}"
