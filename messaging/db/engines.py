"""Engines: one per database URL, with what each backend needs; a read-only view of an engine."""

from __future__ import annotations

import weakref

from sqlalchemy import Engine, create_engine, make_url

from messaging.db.sqlite import READ_ONLY, SQLITE_BUSY_TIMEOUT, serialize_sqlite_writers

CONNECT_TIMEOUT_SECONDS = 5


def make_engine(url: str, **options) -> Engine:
    """An engine for url; SQLite gets WAL, a busy timeout and one writer at a time."""
    if url.startswith("sqlite"):
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT, "check_same_thread": False}
        engine = create_engine(url, connect_args=connect_args, **options)
        serialize_sqlite_writers(engine)
        return engine
    # No ping before every checkout: it costs a round trip per transaction. A connection the server
    # dropped fails its first statement instead; SQLAlchemy then sees a disconnect and invalidates
    # every pooled connection older than it, so an outage costs each process one failed
    # transaction, which callers treat like any other unavailability (retry, or 503 on the webhook).
    options.setdefault("pool_pre_ping", False)
    if "poolclass" not in options:
        options.setdefault("pool_size", 5)
        options.setdefault("max_overflow", 10)
    # Every statement is planned for its parameters and the tables as they are: a prepared
    # statement's generic plan, made while a table was small, keeps scanning all of it as it grows.
    query = make_url(url).query
    connect_args = options.setdefault("connect_args", {})
    connect_args.setdefault(
        "options", f"{query.get('options', '')} -c plan_cache_mode=force_custom_plan".strip()
    )
    # A server that does not answer at all (a dropped route, not a refused connection) fails a
    # connection after this many seconds, as the broker's does, rather than the system's minutes.
    if "connect_timeout" not in query:
        connect_args.setdefault("connect_timeout", CONNECT_TIMEOUT_SECONDS)
    return create_engine(url, **options)


# The read-only engine derived from an engine (sharing its pool), made once per engine.
_read_only_engines: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def read_only(engine: Engine) -> Engine:
    """engine for transactions that only read, each from one snapshot of the database (a task
    read with its results never shows a result its status does not yet know of). On SQLite they
    neither wait for the write lock nor hold it (so they must not write: that would bypass the
    writers' queue), and WAL gives each its snapshot; on PostgreSQL they are REPEATABLE READ."""
    if engine not in _read_only_engines:
        options = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
        _read_only_engines[engine] = engine.execution_options(**{READ_ONLY: True}, **options)
    return _read_only_engines[engine]
