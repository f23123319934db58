"""What differs between the databases taskgate runs on, behind one interface: one small class per
backend, so that the code using them reads the same on both."""

from __future__ import annotations

from sqlalchemy import Connection, Engine, Select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


class Backend:
    name: str
    # The dialect's INSERT, which knows ON CONFLICT DO NOTHING / DO UPDATE.
    insert = None
    # Whether several transactions can take rows of one table at once, each skipping the rows
    # another holds (FOR UPDATE SKIP LOCKED): relays, dispatchers and sweepers share the work.
    shares_rows: bool = False
    # Whether transactions that must take turns need locks to do so (SQLite's single writer
    # already makes them).
    needs_locks: bool = False

    def skipping_locked(self, query: Select) -> Select:
        """query, taking its rows for this transaction and skipping those another holds."""
        return query.with_for_update(skip_locked=True) if self.shares_rows else query


class PostgreSQL(Backend):
    name = "postgresql"
    insert = staticmethod(postgresql.insert)
    shares_rows = True
    needs_locks = True


class SQLite(Backend):
    name = "sqlite"
    insert = staticmethod(sqlite.insert)


BACKENDS = {backend.name: backend for backend in (PostgreSQL(), SQLite())}


def backend(bind: Connection | Session | Engine | str) -> Backend:
    """The backend of a connection, session, engine, or dialect name."""
    if isinstance(bind, str):
        return BACKENDS[bind]
    if isinstance(bind, Session):
        bind = bind.get_bind()
    return BACKENDS[bind.dialect.name]
