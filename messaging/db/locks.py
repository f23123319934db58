"""Taking turns: advisory locks by key (PostgreSQL) and lock rows (SELECT ... FOR UPDATE)."""

from __future__ import annotations

import functools
import hashlib

from sqlalchemy import bindparam, select, text

from messaging.db.backends import backend
from messaging.db.inserts import insert_ignoring_duplicates


def serialize_on(session, *key: str) -> None:
    """Serialize this transaction with every other one that serializes on the same key.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: nothing to do, its writers already run
    one at a time (BEGIN IMMEDIATE).
    """
    serialize_on_many(session, [key])


def serialize_on_many(session, keys: list[tuple[str, ...]]) -> None:
    """serialize_on for each of keys, in one statement. The locks are taken in a fixed order (of
    their numbers), so two transactions serializing on overlapping keys cannot deadlock."""
    if not keys or not backend(session).needs_locks:
        return
    numbers = sorted({_lock_number(key) for key in keys})
    if len(numbers) == 1:
        session.execute(_ADVISORY_LOCK, {"key": numbers[0]})
    else:
        # unnest yields the array's elements in order, and each row takes its lock in turn.
        session.execute(_ADVISORY_LOCKS, {"keys": numbers})


_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
_ADVISORY_LOCKS = text("SELECT pg_advisory_xact_lock(key) FROM unnest(CAST(:keys AS bigint[])) AS key")


def _lock_number(key: tuple[str, ...]) -> int:
    digest = hashlib.blake2b("\x1f".join(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_row(session, table, **key: str) -> None:
    """Hold table's row for key (created if missing) until the transaction ends, so that every
    other transaction locking the same row waits its turn. SQLite's single writer already does that.

    The row is locked as it is read: one statement once it exists. A missing row is inserted (a
    concurrent insert of it waits for the first one's commit and then leaves it be) and locked."""
    if not backend(session).needs_locks:
        insert_ignoring_duplicates(session, table, key)
        return
    lock = _lock_query(table, tuple(key))
    if session.execute(lock, key).first() is None:
        insert_ignoring_duplicates(session, table, key)
        session.execute(lock, key)


@functools.cache
def _lock_query(table, columns: tuple[str, ...]):
    """lock_row's SELECT ... FOR UPDATE, built once per table and key columns."""
    return (
        select(*table.primary_key.columns)
        .where(*(table.c[column] == bindparam(column) for column in columns))
        .with_for_update()
    )
