"""Schema migrations with Alembic, driven from code (`taskgate db upgrade`).

Alembic, with the Mako and Pygments it brings, is some 10 MiB of modules that a long-running
process would carry for nothing: such a process only needs to know whether the schema is current.
So that check reads Alembic's version table with plain SQLAlchemy against `HEAD`, and Alembic is
imported only to migrate, which `serve` does in a short-lived child process (`upgrade_apart`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import Engine, inspect, text

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0008"  # the newest migration's revision (tests/unit/test_database.py checks it)
VERSION_TABLE = "alembic_version"


def alembic_config(url: str):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = url
    return config


def ensure_sqlite_directory(url: str) -> None:
    prefix = "sqlite:///"
    if url.startswith(prefix) and len(url) > len(prefix):
        Path(url[len(prefix) :]).parent.mkdir(parents=True, exist_ok=True)


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    ensure_sqlite_directory(url)
    command.upgrade(alembic_config(url), revision)


def upgrade_apart(url: str) -> None:
    """upgrade(url) in a child process, so that this one never loads Alembic; raises
    RuntimeError with the child's error output if it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "taskgate.database", url], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise RuntimeError(f"migrating the database failed:\n{done.stderr.strip()}")


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, None if it was never migrated."""
    with engine.connect() as connection:
        if not inspect(connection).has_table(VERSION_TABLE):
            return None
        return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def is_current(engine: Engine) -> bool:
    """True if the database is at the newest migration."""
    return current_revision(engine) == HEAD


if __name__ == "__main__":  # `python -m taskgate.database URL`: what upgrade_apart runs
    upgrade(sys.argv[1])
