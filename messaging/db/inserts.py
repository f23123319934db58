"""Inserting many rows in few statements, and looking rows up by lists of keys (Among, in_both)."""

from __future__ import annotations

import functools

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Connection,
    CursorResult,
    String,
    all_,
    any_,
    bindparam,
    insert,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.visitors import InternalTraversal

from messaging.db.backends import backend
from messaging.db.engines import PLAN_PER_CALL, dialect_name


def insert_ignoring_duplicates(connection_or_session, table, values: dict) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True if the row was inserted."""
    statement = _insert_ignoring_duplicates(dialect_name(connection_or_session), table)
    return connection_or_session.execute(statement, values).first() is not None


def insert_many_ignoring_duplicates(connection_or_session, table, rows: list[dict]) -> set:
    """Many rows in one INSERT ... ON CONFLICT DO NOTHING, in their order; the primary keys of
    those inserted. Every row gives the same columns (keyed as in table.c), with values of one
    Python type per column, and gives every column that has no server default: on PostgreSQL
    (psycopg) several rows go as one array per column (see _ArrayInsert), which applies no
    Python-side defaults (it refuses rows that leave out a column that has one)."""
    if not rows:
        return set()
    connection = _connection_of(connection_or_session)
    if connection.dialect.driver == "psycopg" and len(rows) > 1:
        inserting = _ArrayInsert.of(table, tuple(rows[0]), ignoring_duplicates=True)
        return set(inserting.execute(connection, rows).scalars())
    statement = _insert_ignoring_duplicates(connection.dialect.name, table)
    return set(connection.execute(statement, rows).scalars())


def insert_many(connection_or_session, table, rows: list[dict]) -> None:
    """Many rows in one INSERT, in their order; a duplicate key fails it. What rows must give is
    as for insert_many_ignoring_duplicates: elsewhere than on psycopg, one statement per row
    (executemany)."""
    if not rows:
        return
    connection = _connection_of(connection_or_session)
    if connection.dialect.driver == "psycopg" and len(rows) > 1:
        _ArrayInsert.of(table, tuple(rows[0]), ignoring_duplicates=False).execute(connection, rows)
    else:
        connection.execute(_plain_insert(table), rows)


@functools.cache
def _plain_insert(table):
    return insert(table)


def _connection_of(connection_or_session) -> Connection:
    if isinstance(connection_or_session, Connection):
        return connection_or_session
    return connection_or_session.connection()


# The dialect _ArrayInsert compiles for (making it does not import the driver).
_PSYCOPG = postgresql.psycopg.dialect()


class _ArrayInsert:
    """INSERT ... SELECT FROM unnest(one array per column) on PostgreSQL (ignoring duplicates: ON
    CONFLICT DO NOTHING RETURNING the primary key): one SQL text whatever the number of rows, sent
    through the driver with the arrays in binary.

    A multi-row VALUES list has one SQL text per number of rows, which psycopg parses with a
    regular expression at every call once it has more than 50 parameters (it caches no more),
    which PostgreSQL parses and plans afresh, and which SQLAlchemy renders row by row (the
    client's CPU per batch: docs/performance.md). The values pass the columns' own bind processing (JSON, UTC
    datetimes); strings are cast to VARCHAR without a length, so one too long for its column
    fails the insert as it would in VALUES, instead of being cut short by the cast."""

    _dialect = _PSYCOPG

    def __init__(self, table, names: tuple[str, ...], *, ignoring_duplicates: bool):
        preparer = self._dialect.identifier_preparer
        columns = [table.c[name] for name in names]
        arrays = ", ".join(f"%b::{self._array_type(column)}" for column in columns)
        listed = ", ".join(preparer.quote(column.name) for column in columns)
        key = preparer.quote(next(iter(table.primary_key.columns)).name)
        self.sql = (
            f"INSERT INTO {preparer.format_table(table)} ({listed}) SELECT {listed} "
            f"FROM unnest({arrays}) WITH ORDINALITY AS given ({listed}, taskgate_ordinal) "
            "ORDER BY taskgate_ordinal"
        )
        if ignoring_duplicates:
            self.sql += f" ON CONFLICT DO NOTHING RETURNING {key}"
        python_defaults = [
            column.name
            for column in table.columns
            if column.default is not None and column.server_default is None and column.name not in names
        ]
        if python_defaults:  # executemany fills them in, arrays would leave them NULL
            raise ValueError(f"rows must give {python_defaults}: their defaults are Python-side")
        self.names = names
        self.processors = [
            column.type.dialect_impl(self._dialect).bind_processor(self._dialect) for column in columns
        ]

    @classmethod
    @functools.cache
    def of(cls, table, names: tuple[str, ...], *, ignoring_duplicates: bool) -> _ArrayInsert:
        return cls(table, names, ignoring_duplicates=ignoring_duplicates)

    def _array_type(self, column) -> str:
        item = _unsized(column.type)
        return f"{item.dialect_impl(self._dialect).compile(dialect=self._dialect)}[]"

    def execute(self, connection: Connection, rows: list[dict]) -> CursorResult:
        arrays = tuple(
            [process(row[name]) for row in rows] if process else [row[name] for row in rows]
            for name, process in zip(self.names, self.processors, strict=True)
        )
        return connection.exec_driver_sql(self.sql, arrays)


@functools.cache
def _insert_ignoring_duplicates(dialect: str, table):
    """Built once per table: only the parameters change from call to call."""
    insert = backend(dialect).insert
    # RETURNING, not rowcount: some drivers report -1 for INSERT ... ON CONFLICT.
    key = next(iter(table.primary_key.columns))
    return insert(table).on_conflict_do_nothing().returning(key)


class Among(ColumnElement[bool]):
    """column IN the list given at execution as `parameter` (NOT IN with negate).

    On PostgreSQL `column = ANY(:parameter)` (`<> ALL`), an array parameter: one SQL text whatever
    the list's length, not one per length as an expanding `IN (…)` has. A statement with a positive
    Among is sent unprepared, to be planned for the keys it gets (see make_engine). Elsewhere an
    expanding IN.
    """

    inherit_cache = True
    type = Boolean()
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("parameter", InternalTraversal.dp_string),
        ("negate", InternalTraversal.dp_boolean),
    ]

    def __init__(self, column, parameter: str, *, negate: bool = False):
        self.column = column
        self.parameter = parameter
        self.negate = negate

    @property
    def _from_objects(self):
        return self.column._from_objects

    def self_group(self, against=None):
        return self  # already a condition: not to be compared with true where booleans are 1/0


@compiles(Among)
def _expanding_in(element: Among, compiler, **kw) -> str:
    listed = bindparam(element.parameter, expanding=True)
    condition = element.column.not_in(listed) if element.negate else element.column.in_(listed)
    return compiler.process(condition, **kw)


@compiles(Among, "postgresql")
def _any_of_array(element: Among, compiler, **kw) -> str:
    listed = bindparam(element.parameter, type_=postgresql.ARRAY(_unsized(element.column.type)))
    if not element.negate:  # a lookup by keys, whose best plan depends on the table's size
        setattr(compiler, PLAN_PER_CALL, True)
    condition = element.column != all_(listed) if element.negate else element.column == any_(listed)
    return compiler.process(condition, **kw)


def _unsized(type_):
    """type_ for an array cast: a string's length (or collation) stays off it, as casting to
    VARCHAR(n)[] would cut longer values short (and so match the stored ones they begin with, or
    store them cut)."""
    return String() if isinstance(type_, String) else type_


def in_both(first, second) -> tuple:
    """Conditions matching rows whose (first, second) may be among the keys given at execution as
    both_of(keys): first among the firsts AND second among the seconds (see Among), which an index
    on the two columns serves (a row-value IN often is not). They can match pairs that are not
    keys; the caller keeps only the keys. A statement using them is built once, as only the
    parameters change."""
    return Among(first, "firsts"), Among(second, "seconds")


def both_of(keys) -> dict:
    """The parameters of in_both for these (first, second) keys."""
    return {"firsts": sorted({key[0] for key in keys}), "seconds": sorted({key[1] for key in keys})}
