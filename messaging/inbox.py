"""The processed-message table: a consumer records each message id in the same transaction as
the message's effects, so a redelivered message is recognised and has no second effect. A row is
kept for days (InboxPruner), long past any redelivery: a message comes again within minutes (its
consumer died before the ack), or within the hour the in-process broker keeps what it published."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy import Column, Engine, MetaData, String, Table, Uuid, delete, select

from messaging.db import (
    Transaction,
    UtcDateTime,
    backend,
    insert_ignoring_duplicates,
    insert_many_ignoring_duplicates,
    utcnow,
)

log = logging.getLogger(__name__)

# How often an InboxPruner looks, and how many rows one of its transactions deletes at most.
PRUNE_EVERY_SECONDS = 3600
PRUNE_BATCH = 1000


def make_inbox_table(metadata: MetaData, owner: str) -> Table:
    return Table(
        f"{owner}_inbox",
        metadata,
        Column("message_id", Uuid, primary_key=True),
        Column("message_type", String(100), nullable=False),
        Column("processed_at", UtcDateTime, nullable=False, index=True),
    )


def first_delivery(session: Transaction, table: Table, message_id, message_type: str) -> bool:
    """Record message_id as processed; False if it already was (a redelivery)."""
    return insert_ignoring_duplicates(
        session,
        table,
        {"message_id": message_id, "message_type": message_type, "processed_at": utcnow()},
    )


def first_deliveries(
    session: Transaction,
    table: Table,
    messages: list[tuple[object, str]],
    own_inbox: frozenset[str] = frozenset(),
) -> list[bool]:
    """first_delivery for many (message_id, message_type) in one statement: for each, in order,
    whether this is its first delivery (a message id twice in the list is first only once). A type
    in own_inbox gets no row and counts as first: its handler tells repeats itself."""
    now = utcnow()
    recorded = [
        {"message_id": message_id, "message_type": kind, "processed_at": now}
        for message_id, kind in messages
        if kind not in own_inbox
    ]
    inserted = insert_many_ignoring_duplicates(session, table, recorded) if recorded else set()
    firsts = []
    for message_id, kind in messages:
        firsts.append(kind in own_inbox or message_id in inserted)
        inserted.discard(message_id)
    return firsts


def prune(
    engine: Engine,
    table: Table,
    keep: timedelta,
    batch: int = PRUNE_BATCH,
    stop: threading.Event | None = None,
) -> int:
    """Delete table's rows processed longer than keep ago, batch rows per transaction (on SQLite,
    a short turn at the writer each) until none is left or stop is set; how many. Rows another
    process is deleting are skipped."""
    before, pruned = utcnow() - keep, 0
    oldest = select(table.c.message_id).where(table.c.processed_at < before).limit(batch)
    statement = delete(table).where(
        table.c.message_id.in_(backend(engine).skipping_locked(oldest).scalar_subquery())
    )
    while True:
        with engine.begin() as connection:
            deleted = connection.execute(statement).rowcount
        pruned += deleted
        if deleted < batch or (stop is not None and stop.is_set()):
            return pruned


class InboxPruner:
    """Prunes a process's inboxes (prune) first_after seconds after it starts (not at start-up,
    when the process has more pressing things to do), then every PRUNE_EVERY_SECONDS."""

    def __init__(self, engine: Engine, tables: list[Table], keep: timedelta, first_after: float = 60.0):
        self.engine = engine
        self.tables = tables
        self.keep = keep
        self.first_after = first_after

    def run(self, stop: threading.Event) -> None:
        wait = self.first_after
        while not stop.wait(wait):
            for table in self.tables:
                try:
                    pruned = prune(self.engine, table, self.keep, stop=stop)
                except Exception as error:  # the rows stay until the next look
                    log.warning("inbox %s not pruned: %s", table.name, type(error).__name__)
                    continue
                if pruned:
                    log.info("pruned %d rows from inbox %s", pruned, table.name)
            wait = PRUNE_EVERY_SECONDS
