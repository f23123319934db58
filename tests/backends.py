"""Test backends: SQLite and PostgreSQL, the in-process broker and RabbitMQ.

PostgreSQL and RabbitMQ are used when TASKGATE_TEST_POSTGRES_URL / TASKGATE_TEST_RABBITMQ_URL are
set; otherwise their tests are skipped, unless TASKGATE_TEST_REQUIRE_SERVICES=1 (as in CI), where a
missing service fails the test.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text

from messaging import broker, inproc, topology
from taskgate import database
from taskgate.registry import METADATA, QUEUES

POSTGRES_URL = os.environ.get("TASKGATE_TEST_POSTGRES_URL")
RABBITMQ_URL = os.environ.get("TASKGATE_TEST_RABBITMQ_URL")
REQUIRE_SERVICES = os.environ.get("TASKGATE_TEST_REQUIRE_SERVICES") == "1"


def require(url: str | None, variable: str) -> str:
    if url:
        return url
    message = f"{variable} is not set"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (TASKGATE_TEST_REQUIRE_SERVICES=1)")
    pytest.skip(message)


class PostgresDatabase:
    """A throwaway database for the test session, migrated once, emptied before each test."""

    def __init__(self, server_url: str):
        self.server_url = server_url
        name = f"taskgate_test_{uuid.uuid4().hex[:8]}"
        self._admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
        with self._admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        self.name = name
        self.url = str(create_engine(server_url).url.set(database=name).render_as_string(hide_password=False))
        database.upgrade(self.url)
        self._engine = create_engine(self.url)

    def empty(self) -> None:
        tables = ", ".join(table.name for metadata in METADATA for table in metadata.sorted_tables)
        with self._engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))

    def drop(self) -> None:
        self._engine.dispose()
        with self._admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self._admin.dispose()


def sqlite_url(directory) -> str:
    url = f"sqlite:///{directory / 'taskgate.db'}"
    database.upgrade(url)
    return url


def empty_broker(url: str) -> None:
    """Start a test from empty queues."""
    if url.startswith("memory://"):
        inproc.reset()
        return
    with broker.connect(url) as connection:
        channel = connection.default_channel
        for queue in [*QUEUES, topology.dead_letters]:
            bound = queue(channel)
            bound.declare()
            bound.purge()
