"""Database helpers shared by every owner of tables: engines, portable column types, retries."""

from __future__ import annotations

import functools
import hashlib
import sqlite3
import threading
import weakref
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    Connection,
    CursorResult,
    DateTime,
    Engine,
    String,
    all_,
    any_,
    bindparam,
    create_engine,
    event,
    exc,
    insert,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeDecorator

SQLITE_BUSY_TIMEOUT = 30  # seconds a writer waits for the write lock

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
# (tools, tests). Both offer execute, scalar and scalars; use dialect_name() for the dialect.
Transaction = Connection | Session


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_engine(url: str, **options) -> Engine:
    """An engine for url; SQLite gets WAL, a busy timeout and one writer at a time."""
    if url.startswith("sqlite"):
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT, "check_same_thread": False}
        engine = create_engine(url, connect_args=connect_args, **options)
        _serialize_sqlite_writers(engine)
        return engine
    # No ping before every checkout: it costs a round trip per transaction. A connection the server
    # dropped fails its first statement instead; SQLAlchemy then sees a disconnect and invalidates
    # every pooled connection older than it, so an outage costs each process one failed
    # transaction, which callers treat like any other unavailability (retry, or 503 on the webhook).
    options.setdefault("pool_pre_ping", False)
    if "poolclass" not in options:
        options.setdefault("pool_size", 5)
        options.setdefault("max_overflow", 10)
    engine = create_engine(url, **options)
    if engine.dialect.driver == "psycopg":
        event.listen(engine, "do_execute", _unprepared_if_planned_per_call)
    return engine


def planned_per_call(statement):
    """statement, to be sent unprepared on PostgreSQL: planned each time for its parameters and
    the tables as they are then (see _unprepared_if_planned_per_call), for a statement whose best
    plan changes as its tables grow and that runs seldom enough for planning to cost little."""
    return statement.execution_options(**{PLAN_PER_CALL: True})


def _unprepared_if_planned_per_call(cursor, statement, parameters, context) -> bool:
    """Send a statement that looks rows up by a list of keys (see Among), or one marked with
    planned_per_call, unprepared, so that PostgreSQL plans it for the parameters it is given and
    the tables as they are now.

    psycopg prepares a statement on the server once it has run a few times, and PostgreSQL then
    soon settles on one generic plan for it, kept for as long as the connection lives. A generic
    plan made while a table was small scans the whole table (the cheapest way to read a few
    pages), and keeps scanning it as the table grows to millions of rows: only an ANALYZE of the
    table (autovacuum's) makes PostgreSQL plan it again. Such statements run once per batch, so
    planning them each time costs little. (A server-side cursor takes no such option; executemany
    does not come here.)"""
    if context is None or context._is_server_side:
        return False
    if not (getattr(context.compiled, PLAN_PER_CALL, False) or context.execution_options.get(PLAN_PER_CALL)):
        return False
    cursor.execute(statement, parameters, prepare=False)
    return True


def _serialize_sqlite_writers(engine: Engine) -> None:
    # pysqlite opens transactions lazily and as DEFERRED, so two writers can each hold a read lock
    # and deadlock on upgrade. Taking the write lock at BEGIN (IMMEDIATE) makes SQLite a single
    # writer that others wait for, which is also what the calendar rules rely on. Within a process
    # the writers queue on a lock of ours first: SQLite's own busy handler waits by sleeping and
    # retrying (up to 100 ms a time), which starves threads when many take turns quickly.
    writers = _writer_lock(str(engine.url))

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        if connection.get_execution_options().get(READ_ONLY):
            # WAL: a reader sees the last commit and neither waits for writers nor holds them up.
            connection.exec_driver_sql("BEGIN DEFERRED")
            return
        writers.acquire(connection.connection)
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            writers.release(connection.connection)
            raise

    dialect = engine.dialect
    for name in ("do_commit", "do_rollback", "do_close"):
        _release_after(dialect, name, writers)
    for name in (
        "checkin",
        "invalidate",
        "close",
    ):  # in case a connection goes without ending its transaction
        event.listen(engine, name, lambda dbapi_connection, *_: writers.release(dbapi_connection))


READ_ONLY = "taskgate_read_only"
# Engines derived from an engine by execution options (sharing its pool), made once per engine.
_derived_engines: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _derived(engine: Engine, **options) -> Engine:
    derived = _derived_engines.setdefault(engine, {})
    key = tuple(sorted(options.items()))
    if key not in derived:
        derived[key] = engine.execution_options(**options)
    return derived[key]


def read_only(engine: Engine) -> Engine:
    """engine for transactions that only read. On SQLite they neither wait for the write lock nor
    hold it (so they must not write: that would bypass the writers' queue); elsewhere it is the
    same as engine."""
    return _derived(engine, **{READ_ONLY: True})


def _release_after(dialect, name: str, writers: _WriterLock) -> None:
    finish = getattr(dialect, name)

    def finish_then_release(dbapi_connection):
        try:
            finish(dbapi_connection)
        finally:
            writers.release(dbapi_connection)

    setattr(dialect, name, finish_then_release)


class _WriterLock:
    """The SQLite write lock of one database file, as handed over between this process's threads."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self._lock = threading.Lock()
        self._holder: int | None = None

    def acquire(self, connection) -> None:
        if not self._lock.acquire(timeout=self.timeout):
            raise sqlite3.OperationalError("database is locked")
        self._holder = _identity(connection)

    def release(self, connection) -> None:
        if self._holder == _identity(connection):
            self._holder = None
            self._lock.release()


def _identity(connection) -> int:
    """The same for the DBAPI connection and the pool's proxy of it (dialects are handed either)."""
    return id(getattr(connection, "dbapi_connection", connection))


_writer_locks: dict[str, _WriterLock] = {}
_writer_locks_guard = threading.Lock()


def _writer_lock(url: str) -> _WriterLock:
    with _writer_locks_guard:
        return _writer_locks.setdefault(url, _WriterLock(timeout=SQLITE_BUSY_TIMEOUT))


def dialect_name(connection_or_session) -> str:
    """The dialect of a Connection, or of the engine a Session is bound to."""
    if isinstance(connection_or_session, Connection):
        return connection_or_session.dialect.name
    return connection_or_session.get_bind().dialect.name


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
    which PostgreSQL parses and plans afresh, and which SQLAlchemy renders row by row. Measured
    on inbox rows (3 columns, alternated), client CPU per batch: the same at 2-10 rows, 43 %
    less at 20, 60 % less at 50. The values pass the columns' own bind processing (JSON, UTC
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
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # RETURNING, not rowcount: some drivers report -1 for INSERT ... ON CONFLICT.
    key = next(iter(table.primary_key.columns))
    return insert(table).on_conflict_do_nothing().returning(key)


# Set on a compiled statement that looks rows up by a list of keys, or as an execution option by
# planned_per_call (see make_engine).
PLAN_PER_CALL = "taskgate_plan_per_call"


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


def is_postgresql(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


# PostgreSQL SQLSTATEs of an unreachable or unavailable server: connection exceptions (08...),
# shutdown and startup (57P01-57P03), too many connections, and no disk space.
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300", "53100")
_UNAVAILABLE_SQLITE = (
    "database is locked",
    "unable to open database file",
    "disk i/o error",
    "database is full",
)


def is_unavailable(error: BaseException) -> bool:
    """True if error means the database cannot be used right now (it may be later), as opposed to
    a statement that will fail again however often it is retried."""
    if isinstance(error, exc.TimeoutError | exc.DisconnectionError):
        return True
    if not isinstance(error, exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
    if isinstance(error, exc.OperationalError):
        message = str(error.orig).lower()
        # psycopg raises OperationalError without a SQLSTATE when it cannot connect at all.
        return error.orig.__class__.__module__.startswith("psycopg") or message.startswith(
            _UNAVAILABLE_SQLITE
        )
    return False


def serialize_on(session, *key: str) -> None:
    """Serialize this transaction with every other one that serializes on the same key.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: nothing to do, its writers already run
    one at a time (BEGIN IMMEDIATE).
    """
    serialize_on_many(session, [key])


def serialize_on_many(session, keys: list[tuple[str, ...]]) -> None:
    """serialize_on for each of keys, in one statement. The locks are taken in a fixed order (of
    their numbers), so two transactions serializing on overlapping keys cannot deadlock."""
    if not keys or dialect_name(session) != "postgresql":
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
    other transaction locking the same row waits its turn. SQLite's single writer already does that."""
    insert_ignoring_duplicates(session, table, key)
    if dialect_name(session) == "postgresql":
        session.execute(_lock_query(table, tuple(key)), key)


@functools.cache
def _lock_query(table, columns: tuple[str, ...]):
    """lock_row's SELECT ... FOR UPDATE, built once per table and key columns."""
    return (
        select(*table.primary_key.columns)
        .where(*(table.c[column] == bindparam(column) for column in columns))
        .with_for_update()
    )
