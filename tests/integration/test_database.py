"""The schema: the check long-running processes make without loading Alembic, and the
migrations that move rows."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, select, text

from gateway.tables import delivery_attempts, results
from messaging.db import make_engine
from taskgate import database


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
