"""The transactional outbox: messages are written with the state change that causes them and
published afterwards (messaging.relay), so a commit and its messages can never part."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Uuid, func, insert, select
from sqlalchemy.engine import Connection as DatabaseConnection
from sqlalchemy.orm import Session
from uuid6 import uuid7

from messaging import vocabulary
from messaging.db import JsonDocument, UtcDateTime, insert_many, utcnow
from messaging.envelope import Envelope

log = logging.getLogger(__name__)

PERSISTENT = 2


@dataclasses.dataclass(frozen=True)
class Offered:
    """Rows offered to a relay (OutboxRelay.offer): done once the broker has confirmed them."""

    done: threading.Event
    since: float  # time.monotonic() of the oldest offer the relay had not finished by then

    def wait(self, timeout: float) -> bool:
        """Wait until done, but no longer than timeout after since: a relay that has been stuck that
        long (a broker blocking its publishers, say) keeps nobody waiting any more."""
        return self.done.wait(max(0.0, self.since + timeout - time.monotonic()))


# Who publishes rows just committed to an outbox: OutboxRelay.offer, or nobody (the sweep will).
Publish = Callable[[list[dict]], Offered | None]


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


def add_to_outbox(
    connection: DatabaseConnection | Session, table: Table, envelopes: list[Envelope]
) -> list[dict]:
    """Stage envelopes for publication in the caller's transaction; the rows written, to offer to
    the relay once the transaction has committed."""
    rows = [outbox_row(envelope) for envelope in envelopes]
    insert_many(connection, table, rows)
    return rows


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
    """Stage envelope for one given exchange and routing key (replaying a dead letter) again: the
    outbox row gets a fresh id (the original's may still be kept), the message published keeps
    the envelope's message_id."""
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
