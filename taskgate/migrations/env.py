"""Alembic environment: one migration history for the tables of the gateway and every context."""

from __future__ import annotations

from alembic import context
from sqlalchemy.pool import NullPool

from messaging.db import make_engine
from taskgate.registry import METADATA

config = context.config
url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")


def run_migrations_online() -> None:
    engine = make_engine(url, poolclass=NullPool)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite changes a table by rebuilding it (batch mode), which its foreign keys refuse
            # for a table others refer to: they are off while migrating (SQLite takes the setting
            # only outside a transaction) and checked before the commit.
            connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
        context.configure(
            connection=connection,
            target_metadata=METADATA,
            render_as_batch=sqlite,
            compare_type=True,
            transactional_ddl=True,  # every migration in one transaction, on SQLite too
        )
        with context.begin_transaction():
            before = context.get_context().get_current_revision()
            context.run_migrations()
            migrated = context.get_context().get_current_revision() != before
            if (
                sqlite
                and migrated
                and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").all())
            ):
                raise RuntimeError(f"the migrations broke foreign keys: {broken[:5]}")
    engine.dispose()


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=METADATA, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
