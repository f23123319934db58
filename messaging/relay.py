"""The relays that publish an outbox's messages.

The process that wrote the rows offers them to its relay once its transaction has committed; the
relay publishes them from memory and deletes them in batches. Rows nobody offered (their writer
died after its commit, or runs no relay) are swept from the table once they are a few seconds old.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from datetime import datetime, timedelta

from kombu import Connection, Producer
from sqlalchemy import Engine, Table, any_, bindparam, case, delete, func, select, update
from sqlalchemy.orm import Session

from messaging import topology
from messaging.broker import BatchConfirms
from messaging.db import UtcDateTime, backend, utcnow
from messaging.envelope import CONTENT_TYPE
from messaging.outbox import PERSISTENT, Offered
from messaging.tracing import tracer
from messaging.wakeup import Wakeup

log = logging.getLogger(__name__)

PURGE_INTERVAL_SECONDS = 60
# How long the in-process broker's messages are kept in the outbox to be published again after a
# crash; a message still unhandled that long after its publication is not expected.
KEEP_PUBLISHED = timedelta(hours=1)
# A relay sweeps only rows at least this old: younger ones are being published by their writer.
SWEEP_AFTER = timedelta(seconds=5)
# How long a relay keeps the ids of what it published before deleting their rows in one statement.
FORGET_AFTER_SECONDS = 1.0


def _take_statement(table: Table, batch_size: int, *, keep: bool, locking: bool):
    """The oldest batch_size pending rows of table written before :before, deleted (or, with
    keep, marked published) and returned in one statement. locking: several relays may run at
    once (PostgreSQL), and each row goes to one of them."""
    oldest = (
        select(table.c.id)
        .where(table.c.published_at.is_(None), table.c.created_at < bindparam("before", type_=UtcDateTime))
        .order_by(table.c.id)
        .limit(batch_size)
    )
    if locking:
        # PostgreSQL: the batch's ids as an array, taken once. As `IN (subquery)` it planned the
        # subquery into a join that ran it again for every row taken whenever its statistics
        # said the outbox was nearly empty (they do while a backlog builds).
        chosen = table.c.id == any_(func.array(oldest.with_for_update(skip_locked=True).scalar_subquery()))
    else:
        chosen = table.c.id.in_(oldest.scalar_subquery())
    taken = update(table).values(published_at=bindparam("now", type_=UtcDateTime)) if keep else delete(table)
    return taken.where(chosen).returning(*table.columns)


def _forget_statement(table: Table, *, keep: bool):
    """Delete (or, with keep, mark published as of :since, or of their writing if that was later:
    the batch went out between the two) the rows of the given message ids."""
    published = table.c.message_id.in_(bindparam("ids", expanding=True))
    if keep:
        since = bindparam("since", type_=UtcDateTime)
        return (
            update(table)
            .where(published)
            .values(published_at=case((table.c.created_at > since, table.c.created_at), else_=since))
        )
    return delete(table).where(published)


class OutboxRelay:
    """Publishes an outbox's messages with one confirm wait per batch, then deletes their rows:
    those offered by this process from memory, and those nobody offered (older than sweep_after;
    None: never) from the table. Give it a connection made with confirm_each=False.

    keep_published (a broker that forgets on a crash, like the in-process one): rows are marked
    published, kept that long and published again at start; the inboxes absorb the repeats.
    """

    def __init__(
        self,
        engine: Engine,
        table: Table,
        broker: Connection,
        wakeup: Wakeup | None = None,
        *,
        batch_size: int = 100,
        idle_interval: float = 1.0,
        keep_published: timedelta | None = None,
        sweep_after: timedelta | None = SWEEP_AFTER,
    ):
        self.engine = engine
        self.table = table
        self.broker = broker
        self.wakeup = wakeup or Wakeup()
        self.batch_size = batch_size
        self.idle_interval = idle_interval
        self.keep_published = keep_published
        self.sweep_after = sweep_after
        # A row nobody offered is swept between sweep_after and one and a half sweep_after after its writing.
        self.sweep_every = (
            max(idle_interval, sweep_after.total_seconds() / 2) if sweep_after else idle_interval
        )
        self._confirms = BatchConfirms(broker)
        self._declared_on = None  # the channel the exchanges in _declared were declared on
        self._declared: set[str] = set()
        self._take = _take_statement(
            table, batch_size, keep=bool(keep_published), locking=backend(engine).shares_rows
        )
        self._forget = _forget_statement(table, keep=bool(keep_published))
        self._lock = threading.Lock()
        self._offered: list[dict] = []
        self._offers: list[Offered] = []  # one per offer of the rows in _offered
        self._publishing: Offered | None = None  # the oldest offer of those being published
        self._published: list = []  # message ids published whose rows are still to be deleted
        self._published_since: datetime | None = None  # when the first of them was published
        self._forget_at = float("inf")

    def offer(self, rows: list[dict]) -> Offered | None:
        """Rows this process has just committed to the outbox (see add_to_outbox): publish them."""
        if not rows:
            return None
        offered = Offered(threading.Event(), time.monotonic())
        with self._lock:
            self._offered += rows
            self._offers.append(offered)
            oldest = self._offers[0] if self._publishing is None else self._publishing
        self.wakeup.notify()
        return dataclasses.replace(offered, since=oldest.since)

    def run(self, stop: threading.Event) -> None:
        """Relay until stop is set; waits for an offer (or the next sweep) when there is nothing to do."""
        try:
            self._relay_until(stop)
        finally:
            try:
                self.forget_published()
            except Exception:  # the sweep will publish them again; the inboxes absorb that
                log.warning("could not delete published outbox rows", extra={"outbox": self.table.name})

    def _relay_until(self, stop: threading.Event) -> None:
        if self.keep_published:
            self.republish_kept()
        backoff = 0.5
        next_sweep = time.monotonic() if self.sweep_after is not None else float("inf")
        next_purge = time.monotonic() + PURGE_INTERVAL_SECONDS
        while not stop.is_set():
            try:
                self.publish_offered()
                if time.monotonic() >= next_sweep:
                    swept = self.relay_batch(self.sweep_after)
                    next_sweep = time.monotonic() + (0.0 if swept == self.batch_size else self.sweep_every)
                if time.monotonic() >= self._forget_at or len(self._published) >= self.batch_size:
                    self.forget_published()
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
            # What is offered while a batch waits for its confirms goes out together in the next.
            pause = min(next_sweep, self._forget_at, time.monotonic() + self.idle_interval) - time.monotonic()
            self.wakeup.wait(max(0.0, pause))

    def publish_offered(self) -> int:
        """Publish what was offered, wait for the broker's confirms, and note the message ids for
        forget_published; returns how many were published. If the broker fails, what was offered
        goes first in the next try (a sweep may publish it meanwhile: the inboxes absorb that)."""
        with self._lock:
            rows, self._offered = self._offered, []
            offers, self._offers = self._offers, []
            self._publishing = offers[0] if offers else None
        if not rows:
            return 0
        started = utcnow()
        try:
            for start in range(0, len(rows), self.batch_size):
                self._publish_confirmed(rows[start : start + self.batch_size])
        except BaseException:
            with self._lock:
                self._offered[:0] = rows
                self._offers[:0] = offers
                self._publishing = None
            raise
        with self._lock:
            self._publishing = None
        for offered in offers:
            offered.done.set()
        if not self._published:
            self._published_since = started
            self._forget_at = time.monotonic() + FORGET_AFTER_SECONDS
        self._published += [row["message_id"] for row in rows]
        return len(rows)

    def forget_published(self) -> None:
        """Delete (or mark published) the rows of what publish_offered published, in one statement."""
        ids, self._published, self._forget_at = self._published, [], float("inf")
        if ids:
            with self.engine.begin() as connection:
                connection.execute(self._forget, {"ids": ids, "since": self._published_since})

    def purge_kept(self) -> int:
        """Forget kept rows published longer than keep_published ago."""
        table = self.table
        with Session(self.engine) as session, session.begin():
            return session.execute(
                delete(table).where(table.c.published_at < utcnow() - self.keep_published)
            ).rowcount

    def republish_kept(self) -> int:
        """Mark every kept row pending again, however long ago it was published: the process that
        kept it forgot rows keep_published after their publication while it ran, and the time since
        it stopped says nothing of whether a row's message was handled (the inboxes absorb those
        that were)."""
        table = self.table
        with Session(self.engine) as session, session.begin():
            again = session.execute(
                update(table).where(table.c.published_at.is_not(None)).values(published_at=None)
            ).rowcount
        if again:
            log.info("publishing %d kept messages again", again, extra={"outbox": table.name})
        return again

    def relay_batch(self, older_than: timedelta = timedelta(0)) -> int:
        """Publish up to batch_size pending messages written at least older_than ago, wait for the
        broker to confirm them all, then commit their rows' deletion (or marking); returns how
        many were published. If the broker does not confirm, the transaction rolls back and the
        batch is published again (consumers' inboxes make the repeats harmless)."""
        with self.engine.begin() as connection:
            # Taking the rows and deleting them is one statement; the commit waits for the confirms.
            now = utcnow()
            taken = connection.execute(self._take, {"now": now, "before": now - older_than})
            rows = sorted((row._asdict() for row in taken), key=lambda row: row["id"])
            if rows:
                self._publish_confirmed(rows)
        return len(rows)

    def _publish_confirmed(self, rows: list[dict]) -> None:
        channel = self._confirms.channel()
        producer = Producer(channel)
        with tracer().publishing(rows):
            for row in rows:
                self._declare(channel, row["exchange"])
                self._publish(producer, row)
                self._confirms.published()
            self._confirms.wait()

    def _declare(self, channel, exchange: str) -> None:
        """Declare exchange on channel unless done already: once per connection, as a publish to an
        exchange that is not there closes the channel. (Producer.publish's declare= does the same
        for every message, at most of a publish's cost.)"""
        if channel is not self._declared_on:
            self._declared_on, self._declared = channel, set()
        if exchange not in self._declared:
            topology.EXCHANGES[exchange](channel).declare()
            self._declared.add(exchange)

    def _publish(self, producer: Producer, row: dict) -> None:
        body = row["body"]
        producer.publish(
            json.dumps(body, separators=(",", ":")).encode(),
            exchange=topology.EXCHANGES[row["exchange"]],
            routing_key=row["routing_key"],
            content_type=CONTENT_TYPE,
            content_encoding="utf-8",
            delivery_mode=PERSISTENT,
            message_id=body["message_id"],  # the row's own, but for a dead letter staged again
            correlation_id=body["task_uuid"],
            headers=dict(row["headers"]),
        )
        if not log.isEnabledFor(logging.DEBUG):
            return
        log.debug(
            "published %s to %s",
            body["type"],
            row["exchange"],
            extra={
                "task_id": body["task_id"],
                "task_uuid": body["task_uuid"],
                "message_id": body["message_id"],
            },
        )
