"""Column types and time every owner of tables uses: UTC datetimes on every backend, JSON
(JSONB on PostgreSQL), and what handlers write through."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, Connection, DateTime
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator

JsonDocument = JSON().with_variant(postgresql.JSONB(), "postgresql")


class UtcDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# What handlers and the helpers they call write through: a Core Connection in a transaction (the
# consumers', as the ORM Session costs more per statement and nothing needs it there) or a Session
# (tools, tests). Both offer execute, scalar and scalars; use backend() for the dialect.
Transaction = Connection | Session


def utcnow() -> datetime:
    return datetime.now(UTC)
