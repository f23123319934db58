"""What a point's tasks cost in counts that do not depend on the machine's speed, and where their time
goes hop by hop.

Counts, from PostgreSQL's own statistics for the benchmark database, taken before and after the
measured load (each after FLUSH_SECONDS of quiet: an idle backend reports its transactions up to
10 s late, so a snapshot taken sooner misses the warm-up's and counts them in the load's):
- statements: pg_stat_statements' calls, BEGIN/COMMIT/ROLLBACK left out (None unless the server
  loads pg_stat_statements: shared_preload_libraries = 'pg_stat_statements', then a restart);
- commits: pg_stat_database.xact_commit (read-only transactions and every statement run outside a
  transaction block included, as the server counts them), and commit_statements: the COMMITs sent;
- outbox messages: rows inserted into the outbox tables, each of which is published once.

Hops, from the timestamps taskgate keeps anyway, for the tasks received during the load: accepted
(task received) -> decided (its first result occurred in the context) -> recorded (the gateway
queued its delivery) -> attempted (first callback attempt) -> answered (that attempt's end).
"""

from __future__ import annotations

import itertools
import time
from datetime import datetime

from sqlalchemy import create_engine, func, select, text

from bench.figures import percentile
from gateway.tables import delivery_attempts, results, tasks

STATEMENTS = text(
    "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
    "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND query !~* '^\\s*(begin|commit|rollback)\\M'"
)
COMMIT_STATEMENTS = text(
    "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
    "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND query ~* '^\\s*commit\\M'"
)
COMMITS = text("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
OUTBOX_ROWS = text(
    "SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_user_tables WHERE relname LIKE '%\\_outbox'"
)
FLUSH_SECONDS = 11.0  # PostgreSQL's PGSTAT_IDLE_INTERVAL (10 s), and a margin


def snapshot(database_url: str) -> dict[str, int | None]:
    time.sleep(FLUSH_SECONDS)  # not waiting for work: the server's statistics lag by design
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            loaded = connection.scalar(
                text("SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'")
            )
            return {
                "statements": int(connection.scalar(STATEMENTS)) if loaded else None,
                "commit_statements": int(connection.scalar(COMMIT_STATEMENTS)) if loaded else None,
                "commits": int(connection.scalar(COMMITS)),
                "outbox_messages": int(connection.scalar(OUTBOX_ROWS)),
            }
    finally:
        engine.dispose()


def enable_statement_statistics(database_url: str) -> bool:
    """CREATE EXTENSION pg_stat_statements in the benchmark database if the server loads it."""
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            loaded = "pg_stat_statements" in connection.scalar(text("SHOW shared_preload_libraries"))
            if loaded:
                connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
            return loaded
    finally:
        engine.dispose()


def per_task(before: dict, database_url: str, tasks_accepted: int) -> dict[str, float | None]:
    after = snapshot(database_url)
    return {
        f"{name}_per_task": None
        if before[name] is None or after[name] is None
        else round((after[name] - before[name]) / max(tasks_accepted, 1), 2)
        for name in before
    }


HOPS = ("accepted→decided", "decided→recorded", "recorded→attempted", "attempted→answered")


def hops(database_url: str, since: datetime) -> dict[str, dict[str, float | None]]:
    """p50 and p99 in ms of each hop, over the tasks received since since (taskgate's tables)."""
    engine = create_engine(database_url)
    first_attempt = (
        select(
            delivery_attempts.c.result_id,
            func.min(delivery_attempts.c.id).label("id"),
        )
        .group_by(delivery_attempts.c.result_id)
        .subquery()
    )
    query = (
        select(
            tasks.c.received_at,
            results.c.occurred_at,
            results.c.created_at,
            delivery_attempts.c.attempted_at,
            delivery_attempts.c.duration_ms,
        )
        .join(results, results.c.task_uuid == tasks.c.task_uuid)
        .join(first_attempt, first_attempt.c.result_id == results.c.result_id)
        .join(delivery_attempts, delivery_attempts.c.id == first_attempt.c.id)
        .where(tasks.c.received_at >= since)
    )
    try:
        with engine.connect() as connection:
            rows = connection.execute(query).all()
    finally:
        engine.dispose()
    spans = {name: [] for name in HOPS}
    for row in rows:
        marks = [row.received_at, row.occurred_at, row.created_at, row.attempted_at]
        for name, (start, end) in zip(HOPS, itertools.pairwise(marks), strict=False):
            spans[name].append((end - start).total_seconds() * 1000)
        spans["attempted→answered"].append(float(row.duration_ms))
    return {
        name: {"p50": _round(percentile(values, 0.5)), "p99": _round(percentile(values, 0.99))}
        for name, values in spans.items()
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
