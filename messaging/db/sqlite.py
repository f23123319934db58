"""SQLite as taskgate uses it: WAL, and one writer at a time (BEGIN IMMEDIATE behind a lock of
this process, so threads take turns rather than sleep in SQLite's busy handler)."""

from __future__ import annotations

import sqlite3
import threading

from sqlalchemy import Engine, event, exc

SQLITE_BUSY_TIMEOUT = 30  # seconds a writer waits for the write lock
# Set on a transaction that only reads: on SQLite it neither waits for the write lock nor holds it.
READ_ONLY = "taskgate_read_only"


def serialize_sqlite_writers(engine: Engine) -> None:
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
    # In case a connection goes without ending its transaction.
    for name in ("checkin", "invalidate", "close"):
        event.listen(engine, name, lambda dbapi_connection, *_: writers.release(dbapi_connection))


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
            # As SQLAlchemy would have wrapped SQLite's own: callers tell an unavailable database
            # by it (messaging.db.is_unavailable), e.g. the webhook's 503.
            locked = sqlite3.OperationalError("database is locked")
            raise exc.OperationalError("BEGIN IMMEDIATE", None, locked)
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
