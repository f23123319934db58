"""The transactional outbox: messages are written with the state change that causes them and
published afterwards by a relay, so a commit and its messages can never part."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from datetime import datetime, timedelta

from kombu import Connection, Producer
from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
    any_,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection as DatabaseConnection
from sqlalchemy.orm import Session
from uuid6 import uuid7

from messaging import topology, vocabulary
from messaging.broker import BatchConfirms
from messaging.db import JsonDocument, UtcDateTime, insert_many, is_postgresql, utcnow
from messaging.envelope import CONTENT_TYPE, Envelope
from messaging.wakeup import Wakeup, make_wakeup

log = logging.getLogger(__name__)

PERSISTENT = 2
PURGE_INTERVAL_SECONDS = 60


def make_outbox_table(metadata: MetaData, owner: str) -> Table:
    """The outbox of one owner (the gateway or a context): ``<owner>_outbox``."""
    return Table(
        f"{owner}_outbox",
        metadata,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("message_id", Uuid, nullable=False, unique=True),
        Column("exchange", String(100), nullable=False),
        Column("routing_key", String(255), nullable=False),
        Column("body", JsonDocument, nullable=False),
        Column("headers", JsonDocument, nullable=False),
        Column("created_at", UtcDateTime, nullable=False),
        # Set instead of deleting the row when the broker is volatile (see OutboxRelay).
        Column("published_at", UtcDateTime, nullable=True),
        Index(f"ix_{owner}_outbox_pending", "published_at", "id"),
    )


def wakeup_channel(table: Table) -> str:
    """The name writers notify and the table's relay waits on."""
    return f"taskgate_{table.name}"


def relay_wakeup(engine: Engine, table: Table) -> Wakeup:
    """The wake-up of the relay of an outbox that other processes write to (the gateway's: the
    webhook's). On PostgreSQL an insert into it notifies its channel at commit (a trigger,
    migrations 0008 and 0012), so a writer's notify(session) costs nothing; in one process (SQLite)
    it wakes the relay in memory. An outbox written only by its relay's own process needs none of
    this: a Wakeup notified after each commit is enough (each NOTIFY wakes every listening
    connection of the database, each in a transaction of its own)."""
    return make_wakeup(engine, wakeup_channel(table), notified_by_database=True)


@dataclasses.dataclass(frozen=True)
class Backlog:
    """Messages of an outbox not yet published, and when the oldest of them was written."""

    pending: int
    oldest_created_at: datetime | None

    def oldest_age_seconds(self, now: datetime) -> float:
        return max(0.0, (now - self.oldest_created_at).total_seconds()) if self.oldest_created_at else 0.0


def backlog(connection: DatabaseConnection, table: Table) -> Backlog:
    """What table's relay has still to publish (uses the pending index)."""
    pending = table.c.published_at.is_(None)
    count = connection.execute(select(func.count()).select_from(table).where(pending)).scalar_one()
    oldest = connection.execute(
        select(table.c.created_at).where(pending).order_by(table.c.id).limit(1)
    ).scalar_one_or_none()
    return Backlog(count, oldest)


def add_to_outbox(connection: DatabaseConnection | Session, table: Table, envelopes: list[Envelope]) -> None:
    """Stage envelopes for publication in the caller's transaction."""
    if not envelopes:
        return
    insert_many(connection, table, [outbox_row(envelope) for envelope in envelopes])


def outbox_row(envelope: Envelope) -> dict:
    """The outbox row (without its id) that publishes envelope where the vocabulary routes it."""
    exchange, routing_key = vocabulary.route(envelope)
    return {
        "message_id": envelope.message_id,
        "exchange": exchange,
        "routing_key": routing_key,
        "body": envelope.to_body(),
        "headers": envelope.headers,
        "created_at": utcnow(),
    }


def add_raw_to_outbox(
    session: Session, table: Table, exchange: str, routing_key: str, envelope: Envelope
) -> None:
    """Stage envelope for one given exchange and routing key (replaying a dead letter), as a new
    broker message: the outbox row gets a fresh id, the body keeps the envelope's message_id."""
    session.execute(
        insert(table).values(
            message_id=uuid7(),
            exchange=exchange,
            routing_key=routing_key,
            body=envelope.to_body(),
            headers=envelope.headers,
            created_at=utcnow(),
        )
    )


def _take_statement(table: Table, batch_size: int, *, keep: bool, locking: bool):
    """The oldest batch_size pending rows of table, deleted (or, with keep, marked published)
    and returned in one statement. locking: several relays may run at once (PostgreSQL), and
    each row goes to one of them."""
    oldest = select(table.c.id).where(table.c.published_at.is_(None)).order_by(table.c.id).limit(batch_size)
    if locking:
        # PostgreSQL: the batch's ids as an array, taken once. As `IN (subquery)` it planned the
        # subquery into a join that ran it again for every row taken whenever its statistics
        # said the outbox was nearly empty (they do while a backlog builds): 40 µs per row.
        chosen = table.c.id == any_(func.array(oldest.with_for_update(skip_locked=True).scalar_subquery()))
    else:
        chosen = table.c.id.in_(oldest.scalar_subquery())
    taken = update(table).values(published_at=bindparam("now", type_=UtcDateTime)) if keep else delete(table)
    return taken.where(chosen).returning(*table.columns)


class OutboxRelay:
    """Publishes an outbox's rows in order, with publisher confirms per batch, then deletes them.

    Give it a connection made with `broker.connect(url, confirm_each=False)`: it confirms whole
    batches itself rather than waiting for the broker after every message.

    With keep_published (for a broker that loses what it holds when the process dies, like the
    in-process one) rows are marked published and kept that long instead, and published again
    when the relay starts: consumers' inboxes make the replays harmless.
    """

    def __init__(
        self,
        engine: Engine,
        table: Table,
        broker: Connection,
        wakeup: Wakeup,
        *,
        batch_size: int = 100,
        idle_interval: float = 1.0,
        linger: float = 0.0,
        keep_published: timedelta | None = None,
    ):
        self.engine = engine
        self.table = table
        self.broker = broker
        self.wakeup = wakeup
        self.batch_size = batch_size
        self.idle_interval = idle_interval
        self.linger = linger
        self.keep_published = keep_published
        self._confirms = BatchConfirms(broker)
        self._declared_on = None  # the channel the exchanges in _declared were declared on
        self._declared: set[str] = set()
        self._take = _take_statement(
            table, batch_size, keep=bool(keep_published), locking=is_postgresql(engine)
        )

    def run(self, stop: threading.Event) -> None:
        """Relay until stop is set; waits for a wake-up (or idle_interval) when the outbox is empty."""
        try:
            self._relay_until(stop)
        finally:
            self.wakeup.release()

    def _relay_until(self, stop: threading.Event) -> None:
        if self.keep_published:
            self.republish_kept()
        backoff = 0.5
        next_purge = time.monotonic() + PURGE_INTERVAL_SECONDS
        while not stop.is_set():
            try:
                published = self.relay_batch()
                if self.keep_published and time.monotonic() >= next_purge:
                    self.purge_kept()
                    next_purge = time.monotonic() + PURGE_INTERVAL_SECONDS
                backoff = 0.5
            except Exception:
                log.exception("outbox relay failed; retrying", extra={"outbox": self.table.name})
                self.broker.collect()  # start over on a fresh connection and channel
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if published < self.batch_size and self.wakeup.wait(self.idle_interval) and published > 1:
                stop.wait(self.linger)  # under load: what the next moments bring goes in one batch

    def purge_kept(self) -> int:
        """Forget kept rows published longer than keep_published ago."""
        table = self.table
        with Session(self.engine) as session, session.begin():
            return session.execute(
                delete(table).where(table.c.published_at < utcnow() - self.keep_published)
            ).rowcount

    def republish_kept(self) -> int:
        """Mark every kept row pending again, forgetting those older than keep_published."""
        self.purge_kept()
        table = self.table
        with Session(self.engine) as session, session.begin():
            again = session.execute(
                update(table).where(table.c.published_at.is_not(None)).values(published_at=None)
            ).rowcount
        if again:
            log.info("publishing %d kept messages again", again, extra={"outbox": table.name})
        return again

    def relay_batch(self) -> int:
        """Publish up to batch_size pending messages, wait for the broker to confirm them all, then
        commit their rows' deletion (or marking); returns how many were published. If the broker
        does not confirm, the transaction rolls back and the batch is published again (consumers'
        inboxes make the repeats harmless)."""
        with self.engine.begin() as connection:
            # Taking the rows and deleting them is one statement; the commit waits for the confirms.
            taken = connection.execute(self._take, {"now": utcnow()} if self.keep_published else {})
            rows = sorted(taken.all(), key=lambda row: row.id)
            if not rows:
                return 0
            channel = self._confirms.channel()
            producer = Producer(channel)
            for row in rows:
                self._declare(channel, row.exchange)
                self._publish(producer, row)
                self._confirms.published()
            self._confirms.wait()
        return len(rows)

    def _declare(self, channel, exchange: str) -> None:
        """Declare exchange on channel unless done already: once per connection, as a publish to an
        exchange that is not there closes the channel. (Producer.publish's declare= does the same
        per message, which cost 90 µs of CPU each, two thirds of publishing one.)"""
        if channel is not self._declared_on:
            self._declared_on, self._declared = channel, set()
        if exchange not in self._declared:
            topology.EXCHANGES[exchange](channel).declare()
            self._declared.add(exchange)

    def _publish(self, producer: Producer, row) -> None:
        body = row.body
        producer.publish(
            json.dumps(body, separators=(",", ":")).encode(),
            exchange=topology.EXCHANGES[row.exchange],
            routing_key=row.routing_key,
            content_type=CONTENT_TYPE,
            content_encoding="utf-8",
            delivery_mode=PERSISTENT,
            message_id=str(row.message_id),
            correlation_id=body["task_uuid"],
            headers=dict(row.headers),
        )
        if not log.isEnabledFor(logging.DEBUG):
            return
        log.debug(
            "published %s to %s",
            body["type"],
            row.exchange,
            extra={
                "task_id": body["task_id"],
                "task_uuid": body["task_uuid"],
                "message_id": body["message_id"],
            },
        )
