"""Dead letters: sent with their reason, kept where an operator can see and replay them.

A worker sends what it cannot handle to the dead-letter exchange (send_to_dead_letters). Whatever
reaches `taskgate.dead-letters` (dead-lettered by a worker with its reason, by the broker
after too many deliveries, or unroutable) is stored by a keeper and acked. Replaying one puts the
original message back on its exchange through an outbox, so it is published like any other.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
import uuid
from typing import Any

from kombu import Connection, Producer
from sqlalchemy import Column, Engine, MetaData, String, Table, Text, Uuid, select, update
from sqlalchemy.orm import Session
from uuid6 import uuid7

from messaging import topology
from messaging.db import JsonDocument, UtcDateTime, is_unavailable, utcnow
from messaging.envelope import CONTENT_TYPE, Envelope, InvalidEnvelope
from messaging.outbox import PERSISTENT, add_raw_to_outbox
from messaging.stopping import StoppingConsumer

log = logging.getLogger(__name__)


def make_dead_letter_table(metadata: MetaData, owner: str) -> Table:
    return Table(
        f"{owner}_dead_letters",
        metadata,
        Column("id", Uuid, primary_key=True),
        Column("queue", String(255)),
        Column("reason", Text, nullable=False),
        Column("exchange", String(255)),
        Column("routing_key", String(255)),
        Column("message_id", String(64)),
        Column("task_id", String(128)),
        Column("headers", JsonDocument, nullable=False),
        Column("body", Text, nullable=False),
        Column("dead_lettered_at", UtcDateTime, nullable=False, index=True),
        Column("replayed_at", UtcDateTime),
    )


@dataclasses.dataclass(frozen=True)
class Origin:
    queue: str | None
    reason: str
    exchange: str | None
    routing_key: str | None


def send_to_dead_letters(message, queue: str, reason: str) -> None:
    """Republish a message a worker of queue cannot handle to the dead-letter exchange, with
    reason and where it came from in the headers origin_of reads, then ack it."""
    headers = dict(message.headers or {})
    headers.update(
        {
            "x-taskgate-reason": reason[:1000],
            "x-taskgate-queue": queue,
            "x-taskgate-original-exchange": message.delivery_info.get("exchange", ""),
            "x-taskgate-original-routing-key": message.delivery_info.get("routing_key", ""),
        }
    )
    properties = message.properties or {}
    Producer(message.channel).publish(
        message.body,
        exchange=topology.dead_letter,
        routing_key=queue,
        declare=[topology.dead_letter, topology.dead_letters],
        content_type=message.content_type or CONTENT_TYPE,
        content_encoding=message.content_encoding or "utf-8",
        delivery_mode=PERSISTENT,
        message_id=properties.get("message_id"),
        correlation_id=properties.get("correlation_id"),
        headers=headers,
    )
    message.ack()


def origin_of(headers: dict[str, Any], delivery_info: dict[str, Any]) -> Origin:
    """Where a dead letter came from and why: our own headers, else RabbitMQ's x-death, else unroutable."""
    if "x-taskgate-reason" in headers:
        return Origin(
            headers.get("x-taskgate-queue"),
            headers["x-taskgate-reason"],
            headers.get("x-taskgate-original-exchange"),
            headers.get("x-taskgate-original-routing-key"),
        )
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):  # as RabbitMQ writes it
        death = deaths[0]
        keys = death.get("routing-keys")
        key = keys[0] if isinstance(keys, list) and keys else None
        return Origin(death.get("queue"), f"broker: {death.get('reason')}", death.get("exchange"), key)
    return Origin(
        None, "unroutable: no queue takes it", delivery_info.get("exchange"), delivery_info.get("routing_key")
    )


class DeadLetterKeeper(StoppingConsumer):
    """Consumes taskgate.dead-letters into a table; acks only after the row is committed."""

    def __init__(self, broker: Connection, engine: Engine, table: Table):
        self.connection = broker
        self.engine = engine
        self.table = table

    def get_consumers(self, Consumer, channel):
        return [
            Consumer(queues=[topology.dead_letters], on_message=self.keep, accept=["json"], prefetch_count=10)
        ]

    def keep(self, message) -> None:
        """Store the dead letter, then ack. A failure to store leaves it unacked and is tried again
        in place (while the database is away, say) rather than ending the keeper. A failed ack (the
        broker's connection broke) is raised to kombu, which connects again; the broker then
        delivers the dead letter again, and it is kept a second time."""
        pause = 0.5
        while not self.should_stop:
            try:
                self._store(message)
            except Exception as error:
                if is_unavailable(error):
                    log.warning("database unavailable; holding a dead letter")
                else:
                    log.exception("could not keep a dead letter; it stays queued")
                time.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            message.ack()
            return
        message.requeue()

    def _store(self, message) -> None:
        headers = _jsonable(dict(message.headers or {}))
        origin = origin_of(headers, message.delivery_info or {})
        body = (
            message.body if isinstance(message.body, str) else message.body.decode("utf-8", errors="replace")
        )
        with Session(self.engine) as session, session.begin():
            session.execute(
                self.table.insert().values(
                    id=uuid7(),
                    queue=_text(origin.queue, 255),
                    reason=_text(origin.reason, 2000) or "unknown",
                    exchange=_text(origin.exchange, 255),
                    routing_key=_text(origin.routing_key, 255),
                    message_id=_text((message.properties or {}).get("message_id"), 64),
                    task_id=_text(headers.get("x-task-id"), 128),
                    headers=json.loads(_text(json.dumps(headers, allow_nan=False), None)),
                    body=_text(body, None),
                    dead_lettered_at=utcnow(),
                )
            )
        log.warning(
            "dead letter kept: %s",
            origin.reason,
            extra={
                "task_id": str(headers.get("x-task-id", "")),
                "task_uuid": str(headers.get("x-task-uuid", "")),
            },
        )


def _jsonable(value: Any) -> Any:
    """value as JSON can hold it, whatever a publisher put in a message's headers (py-amqp gives a
    key that is not UTF-8 as bytes, which JSON cannot name)."""
    if isinstance(value, dict):
        return {
            _jsonable(key) if isinstance(key, bytes) else str(key): _jsonable(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or Infinity (PostgreSQL's jsonb refuses them)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _text(value, limit: int | None) -> str | None:
    """value as text a database will store: no NUL characters, at most limit characters."""
    if value is None:
        return None
    text = str(value).replace("\x00", "\ufffd").replace("\\u0000", "\\ufffd")
    return text if limit is None else text[:limit]


def list_dead_letters(
    session: Session, table: Table, *, include_replayed: bool = False, limit: int = 100
) -> list[dict]:
    query = select(table).order_by(table.c.dead_lettered_at.desc()).limit(limit)
    if not include_replayed:
        query = query.where(table.c.replayed_at.is_(None))
    return [dict(row._mapping) for row in session.execute(query)]


class NotReplayable(ValueError):
    """The dead letter cannot be published again as it is (message safe to show)."""


def replay(session: Session, table: Table, outbox: Table, dead_letter_id: uuid.UUID) -> None:
    """Stage the dead letter's original message for publication on its original exchange."""
    row = session.execute(select(table).where(table.c.id == dead_letter_id).with_for_update()).one_or_none()
    if row is None:
        raise NotReplayable(f"no dead letter {dead_letter_id}")
    if row.replayed_at is not None:
        raise NotReplayable(f"dead letter {dead_letter_id} was already replayed")
    if row.exchange not in topology.EXCHANGES or not row.routing_key:
        raise NotReplayable(f"dead letter {dead_letter_id} has no known exchange to go back to")
    try:
        envelope = Envelope.from_body(json.loads(row.body))
    except (ValueError, InvalidEnvelope) as error:
        raise NotReplayable(
            f"dead letter {dead_letter_id} is not a message taskgate can read: {error}"
        ) from None
    # The same message again: its body and message id (consumers deduplicate on it) stay.
    add_raw_to_outbox(session, outbox, row.exchange, row.routing_key, envelope)
    session.execute(update(table).where(table.c.id == dead_letter_id).values(replayed_at=utcnow()))
