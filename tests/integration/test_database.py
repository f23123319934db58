"""The schema: the check long-running processes make without loading Alembic, and the
migrations that move rows."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import IntegrityError

from contexts.maintenance.tables import jobs
from gateway.tables import delivery_attempts, results
from messaging.db import make_engine
from taskgate import database, registry
from tests import backends

# SQLite's no-double-booking triggers (migrations 0002, 0014); PostgreSQL has exclusion constraints.
NO_OVERLAP_TRIGGERS = sorted(
    f"{name}_no_overlap_{event}"
    for name in ("appointment_resource", "appointment_customer", "maintenance_position")
    for event in ("insert", "update")
)


def test_head_is_the_newest_migration():
    scripts = ScriptDirectory.from_config(database.alembic_config("sqlite://"))
    assert scripts.get_current_head() == database.head()


def test_a_migrated_database_is_current(database_url):
    engine = create_engine(database_url)
    try:
        assert database.current_revision(engine) == database.head()
        assert database.is_current(engine)
    finally:
        engine.dispose()


def test_a_database_is_migrated_apart_without_loading_alembic_here(tmp_path):
    url = f"sqlite:///{tmp_path / 'data' / 'taskgate.db'}"
    script = (
        "import sys\n"
        "from sqlalchemy import create_engine\n"
        "import taskgate.cli\n"  # all that serve and worker import
        "from taskgate import database\n"
        "engine = create_engine(sys.argv[1])\n"
        "assert database.current_revision(engine) is None\n"
        "database.upgrade_apart(sys.argv[1])\n"
        "assert database.is_current(engine), database.current_revision(engine)\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('alembic', 'mako')))\n"
    )
    (tmp_path / "data").mkdir()
    done = subprocess.run([sys.executable, "-c", script, url], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_what_serve_and_worker_import_loads_no_postgresql_driver():
    """On SQLite a process does without psycopg (some 8 MiB of RSS): nothing imports it before a
    PostgreSQL engine is made."""
    script = (
        "import sys\n"
        "import taskgate.cli\n"  # all that serve and worker import
        "print(sorted(name for name in sys.modules if name.startswith('psycopg')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_failed_migration_apart_says_why(tmp_path):
    (tmp_path / "taskgate.db").write_text("not a database")
    with pytest.raises(RuntimeError, match="file is not a database"):
        database.upgrade_apart(f"sqlite:///{tmp_path / 'taskgate.db'}")


def test_an_unreachable_database_is_reported_as_unavailable_for_a_retry():
    with pytest.raises(database.MigrationUnavailable, match="database unavailable"):
        database.upgrade_apart("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")


def test_migration_0019_keeps_each_results_delivery_and_attempts_and_gives_them_back(database_url):
    """0019 makes a result and its delivery one row: a delivery a database held before (its status,
    attempts, replays and attempt log) is the result's after the upgrade, and its own again after
    a downgrade."""
    config = database.alembic_config(database_url)
    command.downgrade(config, "0018")
    engine = make_engine(database_url)
    try:
        at = "2026-12-07 06:00:00.000000"
        task, result = uuid.uuid4().hex, uuid.uuid4().hex
        with engine.begin() as connection:
            for statement in (
                "INSERT INTO gateway_clients (client_id, callback_url, signing_secret, api_token_sha256,"
                " created_at) VALUES ('acme', 'http://x', 's', 't', :at)",
                "INSERT INTO gateway_tasks (task_uuid, client_id, task_id, type, customer_id, payload,"
                " content_sha256, status, received_at, updated_at, customer_seq)"
                " VALUES (:task, 'acme', 'T-1', 'customer.upsert', 'C-1', '{}', 'd', 'succeeded',"
                " :at, :at, 1)",
                "INSERT INTO gateway_results (result_id, task_uuid, context, outcome, status, result,"
                " occurred_at) VALUES (:result, :task, 'customers', 'x', 'succeeded', '{}', :at)",
                "INSERT INTO gateway_deliveries (result_id, client_id, status, attempts,"
                " replayed_after_attempts, last_status_code, created_at)"
                " VALUES (:result, 'acme', 'failed', 3, 1, 500, :at)",
                "INSERT INTO gateway_delivery_attempts (result_id, attempted_at, duration_ms, status_code)"
                " VALUES (:result, :at, 5, 500)",
            ):
                connection.execute(text(statement), {"at": at, "task": task, "result": result})
        database.upgrade(database_url)
        with engine.connect() as connection:
            row = connection.execute(select(results)).one()
            logged = connection.execute(select(delivery_attempts.c.result_id)).scalars().all()
        assert (row.client_id, row.delivery_status, row.attempts, row.replayed_after_attempts) == (
            "acme",
            "failed",
            3,
            1,
        )
        assert (row.status, row.last_status_code, logged) == ("succeeded", 500, [row.result_id])
        command.downgrade(config, "0018")
        with engine.connect() as connection:
            delivery = connection.execute(text("SELECT status, attempts FROM gateway_deliveries")).one()
        assert tuple(delivery) == ("failed", 3)
    finally:
        engine.dispose()
        database.upgrade(database_url)


def no_overlap_triggers(url):
    """{name: sql} of a SQLite database's no-overlap triggers."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            found = connection.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))
            return {name: sql for name, sql in found if "_no_overlap_" in name}
    finally:
        engine.dispose()


def test_sqlite_keeps_the_no_overlap_triggers_through_a_downgrade_and_upgrade(tmp_path):
    """SQLite drops a table's triggers with the table when batch mode copies it to drop a column
    (0017 copies maintenance_jobs): the downgrade puts them back, and the database still refuses
    a double booking of a position."""
    url = backends.sqlite_url(tmp_path)
    at_head = no_overlap_triggers(url)
    assert sorted(at_head) == NO_OVERLAP_TRIGGERS
    command.downgrade(database.alembic_config(url), "0016")
    assert sorted(no_overlap_triggers(url)) == NO_OVERLAP_TRIGGERS
    database.upgrade(url)
    assert no_overlap_triggers(url) == at_head
    nine = datetime(2026, 12, 1, 9, tzinfo=UTC)
    job = {
        "client_id": "acme",
        "customer_id": "C-1",
        "vin": "WVWZZZ1JZXW000001",
        "position": "bay-1",
        "starts_at": nine,
        "ends_at": nine + timedelta(hours=1),
        "status": "active",
        "created_at": nine,
    }
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(jobs.insert().values(job_id=uuid.uuid4(), task_id="M-1", **job))
        overlapping = {
            **job,
            "starts_at": nine + timedelta(minutes=30),
            "ends_at": nine + timedelta(minutes=90),
        }
        with (
            pytest.raises(IntegrityError, match="maintenance_position_no_overlap"),
            engine.begin() as connection,
        ):
            connection.execute(jobs.insert().values(job_id=uuid.uuid4(), task_id="M-2", **overlapping))
    finally:
        engine.dispose()


def test_sqlite_downgrades_from_head_to_base(tmp_path):
    """Every downgrade runs on SQLite, 0014's (which copies both booked tables) leaving the triggers
    0002 made, and 0002's dropping them."""
    url = backends.sqlite_url(tmp_path)
    config = database.alembic_config(url)
    command.downgrade(config, "0013")
    assert sorted(no_overlap_triggers(url)) == NO_OVERLAP_TRIGGERS
    command.downgrade(config, "base")
    assert no_overlap_triggers(url) == {}
    engine = create_engine(url)
    try:
        assert database.current_revision(engine) is None
    finally:
        engine.dispose()


def test_the_migrated_schema_is_the_one_the_tables_describe(database_url):
    """Columns, types, indexes, constraints: what `taskgate db upgrade` builds is what the code's
    Table definitions say (a column or index added to one and not the other is a difference)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, registry.METADATA) == []
    finally:
        engine.dispose()
