"""Liveness of the worker processes: each one keeps a heartbeat row fresh; `taskgate status` and
the metrics read them. A row whose beat is older than a few intervals belongs to a process that
died or hangs; a process that stops cleanly removes its row."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, delete, insert, select, update
from sqlalchemy.engine import Connection

from messaging.db import UtcDateTime, utcnow

log = logging.getLogger(__name__)

# A process is reported stale when its last beat is older than this many intervals.
STALE_AFTER_INTERVALS = 3
# Rows of processes that died without removing theirs are shown as stale this long, then dropped.
FORGET_AFTER = timedelta(days=1)


def make_process_table(metadata: MetaData) -> Table:
    return Table(
        "taskgate_processes",
        metadata,
        Column("process_id", String(100), primary_key=True),
        Column("host", String(255), nullable=False),
        Column("pid", Integer, nullable=False),
        Column("role", String(32), nullable=False),
        Column("contexts", String(255), nullable=False),
        Column("interval_seconds", Integer, nullable=False),
        Column("threads_down", String(255), nullable=False, default=""),
        Column("started_at", UtcDateTime, nullable=False),
        Column("beat_at", UtcDateTime, nullable=False),
    )


class Heartbeat:
    """Writes this process's row every interval until stopped, then deletes it."""

    def __init__(
        self,
        engine: Engine,
        table: Table,
        *,
        role: str,
        contexts: Sequence[str],
        interval: float = 5.0,
        threads_down: Callable[[], list[str]] = list,
    ):
        self.engine = engine
        self.table = table
        self.interval = interval
        self.threads_down = threads_down
        host = socket.gethostname()
        self.process_id = f"{host}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._row = {
            "process_id": self.process_id,
            "host": host[:255],
            "pid": os.getpid(),
            "role": role,
            "contexts": ",".join(contexts)[:255],
            "interval_seconds": max(1, round(interval)),
            "started_at": utcnow(),
        }

    def run(self, stop: threading.Event) -> None:
        try:
            with self.engine.begin() as connection:
                forget_processes(connection, self.table, FORGET_AFTER)
        except Exception as error:
            log.warning("old heartbeat rows not removed: %s", type(error).__name__)
        while True:
            try:
                self.beat()
            except Exception as error:  # a missed beat shows as staleness; the process goes on
                log.warning("heartbeat not written: %s", type(error).__name__)
            if stop.wait(self.interval):
                break
        try:
            with self.engine.begin() as connection:
                connection.execute(delete(self.table).where(self.table.c.process_id == self.process_id))
        except Exception as error:
            log.warning("heartbeat row not removed: %s", type(error).__name__)

    def beat(self) -> None:
        values = {"beat_at": utcnow(), "threads_down": ",".join(self.threads_down())[:255]}
        table = self.table
        with self.engine.begin() as connection:
            updated = connection.execute(
                update(table).where(table.c.process_id == self.process_id).values(**values)
            ).rowcount
            if not updated:
                connection.execute(insert(table).values(**self._row, **values))


@dataclasses.dataclass(frozen=True)
class ProcessStatus:
    process_id: str
    role: str
    contexts: tuple[str, ...]
    started_at: datetime
    beat_at: datetime
    threads_down: tuple[str, ...]
    last_beat_seconds: float
    alive: bool


def list_processes(connection: Connection, table: Table, now: datetime | None = None) -> list[ProcessStatus]:
    now = now or utcnow()
    statuses = []
    for row in connection.execute(select(table).order_by(table.c.role, table.c.started_at)):
        age = max(0.0, (now - row.beat_at).total_seconds())
        statuses.append(
            ProcessStatus(
                process_id=row.process_id,
                role=row.role,
                contexts=tuple(filter(None, row.contexts.split(","))),
                started_at=row.started_at,
                beat_at=row.beat_at,
                threads_down=tuple(filter(None, row.threads_down.split(","))),
                last_beat_seconds=age,
                alive=age <= STALE_AFTER_INTERVALS * row.interval_seconds and not row.threads_down,
            )
        )
    return statuses


def forget_processes(connection: Connection, table: Table, silent_for: timedelta) -> int:
    """Remove rows of processes that have not beaten for silent_for (long dead, reported enough)."""
    return connection.execute(delete(table).where(table.c.beat_at < utcnow() - silent_for)).rowcount
