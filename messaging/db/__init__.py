"""Database helpers shared by every owner of tables, one module per job: engines, what differs
between the backends, SQLite's writer lock, column types, inserts and key lookups, locks, and
telling an outage from a failure."""

from messaging.db.backends import backend
from messaging.db.engines import make_engine, read_only
from messaging.db.errors import is_unavailable
from messaging.db.inserts import (
    both_of,
    in_both,
    insert_ignoring_duplicates,
    insert_many,
    insert_many_ignoring_duplicates,
)
from messaging.db.locks import lock_row, serialize_on, serialize_on_many
from messaging.db.types import JsonDocument, Transaction, UtcDateTime, utcnow

__all__ = [
    "JsonDocument",
    "Transaction",
    "UtcDateTime",
    "backend",
    "both_of",
    "in_both",
    "insert_ignoring_duplicates",
    "insert_many",
    "insert_many_ignoring_duplicates",
    "is_unavailable",
    "lock_row",
    "make_engine",
    "read_only",
    "serialize_on",
    "serialize_on_many",
    "utcnow",
]
