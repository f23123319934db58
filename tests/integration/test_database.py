"""The schema check that long-running processes make without loading Alembic."""

from __future__ import annotations

import subprocess
import sys

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

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
