"""Inserting many rows in one statement, and looking rows up by pairs of keys (in_both)."""

from __future__ import annotations

import functools

from sqlalchemy import bindparam, insert

from messaging.db.backends import backend


def insert_ignoring_duplicates(connection_or_session, table, values: dict) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True if the row was inserted."""
    statement = _insert_ignoring_duplicates(backend(connection_or_session).name, table)
    return connection_or_session.execute(statement, values).first() is not None


def insert_many_ignoring_duplicates(connection_or_session, table, rows: list[dict]) -> set:
    """Many rows in one INSERT ... ON CONFLICT DO NOTHING, in their order; the primary keys of
    those inserted."""
    if not rows:
        return set()
    statement = _insert_ignoring_duplicates(backend(connection_or_session).name, table)
    return set(connection_or_session.execute(statement, rows).scalars())


def insert_many(connection_or_session, table, rows: list[dict]) -> None:
    """Many rows in one INSERT, in their order; a duplicate key fails it."""
    if rows:
        connection_or_session.execute(_insert_returning_key(table), rows)


# Built once per table: only the parameters change from call to call. With RETURNING, SQLAlchemy
# sends the rows of an executemany as one multi-row INSERT ("insertmanyvalues"), on every backend.


@functools.cache
def _insert_returning_key(table):
    return insert(table).returning(next(iter(table.primary_key.columns)))


@functools.cache
def _insert_ignoring_duplicates(dialect: str, table):
    # RETURNING, not rowcount: some drivers report -1 for INSERT ... ON CONFLICT.
    return (
        backend(dialect)
        .insert(table)
        .on_conflict_do_nothing()
        .returning(next(iter(table.primary_key.columns)))
    )


def in_both(first, second) -> tuple:
    """Conditions matching rows whose (first, second) may be among the keys given at execution as
    both_of(keys): first among the firsts AND second among the seconds, which an index on the two
    columns serves (a row-value IN often is not). They can match pairs that are not keys; the
    caller keeps only the keys. A statement using them is built once, as only the parameters change."""
    return first.in_(bindparam("firsts", expanding=True)), second.in_(bindparam("seconds", expanding=True))


def both_of(keys) -> dict:
    """The parameters of in_both for these (first, second) keys."""
    return {"firsts": sorted({key[0] for key in keys}), "seconds": sorted({key[1] for key in keys})}
