"""Customer events in the contexts' copies: each copy is the events' inbox (an event it holds
already changes nothing), so they get no inbox row, and a repeat is harmless and logged as such."""

from __future__ import annotations

import logging
import uuid

from kombu import Producer
from sqlalchemy import select

from contexts.appointment import tables as appointment
from contexts.maintenance import tables as maintenance
from contexts.survey import tables as survey
from contexts.visits import tables as visits
from messaging import broker, topology, vocabulary
from messaging.envelope import Envelope
from messaging.outbox import outbox_row
from tests.factories import wait_for

COPIES = {"survey": survey, "appointment": appointment, "maintenance": maintenance, "visits": visits}
UPDATED, NOTHING = "customer copy updated", "customer event changed nothing"


def _publish(broker_url: str, event: Envelope, copies: int) -> None:
    row = outbox_row(event)
    with broker.connect(broker_url) as connection:
        producer = Producer(connection.default_channel)
        for _ in range(copies):
            producer.publish(
                row["body"],
                exchange=topology.EXCHANGES[row["exchange"]],
                routing_key=row["routing_key"],
                headers=row["headers"],
            )


def _said(caplog, event: Envelope) -> dict[str, list[str]]:
    """What each context said of the event, by context."""
    said: dict[str, list[str]] = {}
    for record in caplog.records:
        if record.__dict__.get("message_id") == str(event.message_id) and "context" in record.__dict__:
            said.setdefault(record.__dict__["context"], []).append(record.getMessage())
    return said


def test_a_customer_event_delivered_again_changes_no_copy_and_leaves_no_inbox_row(stack, gateway, caplog):
    caplog.set_level(logging.INFO)
    engine = gateway.extensions["taskgate"].engine
    payload = {"customer_id": "C-1", "name": "Ada", "email": "ada@example.com", "version": 1, "seq": 1}
    event = Envelope(vocabulary.CUSTOMER_REGISTERED, "T-1", uuid.uuid4(), "acme", payload)

    _publish(stack[1], event, copies=2)  # two copies at once: often one batch
    wait_for(lambda: sum(map(len, _said(caplog, event).values())) == 2 * len(COPIES))
    _publish(stack[1], event, copies=1)  # and once more after, as a redelivery brings it
    wait_for(lambda: sum(map(len, _said(caplog, event).values())) == 3 * len(COPIES))

    said = _said(caplog, event)
    assert {context: sorted(lines) for context, lines in said.items()} == {
        context: sorted([UPDATED, NOTHING, NOTHING]) for context in COPIES
    }
    with engine.connect() as connection:
        for context, tables in COPIES.items():
            assert tables.replica.find(connection, "acme", "C-1").email == "ada@example.com", context
            kinds = connection.scalars(select(tables.inbox.c.message_type)).all()
            assert vocabulary.CUSTOMER_REGISTERED not in kinds, context
