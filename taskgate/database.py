"""Schema migrations with Alembic, driven from code (`taskgate db upgrade`).

Alembic, with the Mako and Pygments it brings, is some 10 MiB of modules that a long-running
process would carry for nothing: such a process only needs to know whether the schema is current.
So that check reads Alembic's version table with plain SQLAlchemy against the newest script's
revision (`head()`, read from the scripts' text), and Alembic is imported only to migrate,
which `serve` does in a short-lived child process (`upgrade_apart`).
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path

from sqlalchemy import Engine, inspect, text

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"
UNAVAILABLE_EXIT = 75  # the child's exit status when the database is unavailable (EX_TEMPFAIL)


class MigrationUnavailable(Exception):
    """The database was unavailable to the migrating child process; worth trying again."""


@functools.cache
def head() -> str:
    """The newest migration's revision, read from the scripts without importing Alembic: the one
    that no script names as its down_revision (tests/integration/test_database.py checks it
    against Alembic's own answer)."""
    revisions, parents = set(), set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        source = script.read_text()
        revisions.update(re.findall(r"^revision\s*=\s*[\"'](\w+)[\"']", source, re.MULTILINE))
        parents.update(re.findall(r"^down_revision\s*=\s*[\"'](\w+)[\"']", source, re.MULTILINE))
    heads = revisions - parents
    if len(heads) != 1:
        raise RuntimeError(f"expected one newest migration in {MIGRATIONS}, found {sorted(heads)}")
    return heads.pop()


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
    """upgrade(url) in a child process, so that this one never loads Alembic. Raises
    MigrationUnavailable if the database was unavailable (locked, unreachable), RuntimeError with
    the child's error output if the migration failed otherwise."""
    done = subprocess.run(
        [sys.executable, "-m", "taskgate.database", url], capture_output=True, text=True, check=False
    )
    if done.returncode == UNAVAILABLE_EXIT:
        raise MigrationUnavailable(done.stderr.strip())
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
    return current_revision(engine) == head()


def _main(url: str) -> int:
    """`python -m taskgate.database URL`: what upgrade_apart runs."""
    from messaging.db import is_unavailable

    try:
        upgrade(url)
    except Exception as error:
        if not is_unavailable(error):
            raise
        print(f"database unavailable: {str(error).splitlines()[0]}", file=sys.stderr)
        return UNAVAILABLE_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
