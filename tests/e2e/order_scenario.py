"""The order-per-customer scenario: a client sending tasks back to back, and deliveries that reach
the contexts reordered and duplicated, as a broker with many workers may deliver them."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from kombu import Producer
from sqlalchemy import delete
from sqlalchemy.orm import Session

from gateway.config import DEFAULT_NAMESPACE
from gateway.identity import task_uuid
from gateway.intake import accept_task
from gateway.tables import outbox
from messaging import broker, topology
from tests.factories import cancel_task, schedule_task, survey_task, upsert_task

PAIRS = 200  # upsert (a new email) then survey.assign, each pair its own customer
TRIPLES = 100  # customers with three upserts back to back
CANCELS = 200  # upsert, appointment.schedule then appointment.cancel, each on its own resource


def known_before() -> list[dict]:
    """Customers the contexts already know, with the email that is about to change (sent and
    settled before the sequence)."""
    return [
        upsert_task(f"P{n}-u0", customer_id=f"P-{n}", email=f"p{n}.old@example.com")
        for n in range(0, PAIRS, 2)
    ]


def client_sequence(rng: random.Random) -> list[dict]:
    """The tasks in the order the client sends them: each customer's in its own order, the
    customers interleaved."""
    by_customer = []
    for n in range(PAIRS):
        by_customer.append(
            [
                upsert_task(f"P{n}-u1", customer_id=f"P-{n}", email=f"p{n}.new@example.com"),
                survey_task(f"P{n}-s", customer_id=f"P-{n}"),
            ]
        )
    for n in range(TRIPLES):
        by_customer.append(
            [upsert_task(f"T{n}-u{k}", customer_id=f"T-{n}", email=f"t{n}.{k}@example.com") for k in range(3)]
        )
    monday = datetime(2027, 3, 1, 9, tzinfo=UTC)
    for n in range(CANCELS):
        starts_at = (monday + timedelta(days=n % 5, hours=n % 8)).isoformat()
        by_customer.append(
            [
                upsert_task(f"K{n}-u", customer_id=f"K-{n}", email=f"k{n}@example.com"),
                schedule_task(f"K{n}-a", starts_at, customer_id=f"K-{n}", resource_id=f"R-{n}"),
                cancel_task(f"K{n}-c", f"K{n}-a", customer_id=f"K-{n}"),
            ]
        )
    sequence = []
    while by_customer:
        tasks = rng.choice(by_customer)
        sequence.append(tasks.pop(0))
        if not tasks:
            by_customer.remove(tasks)
    return sequence


def accept_in_order(engine, sequence: list[dict], client_id: str = "acme") -> list:
    """Accept each task in a transaction of its own, in the client's order (as its 202s come),
    and take its routed message out of the outbox in the same transaction, for deliver_shuffled
    (no relay ever sees it); returns those messages' outbox rows."""
    messages = []
    for task in sequence:
        with Session(engine) as session, session.begin():
            accept_task(session, client_id, task_uuid(DEFAULT_NAMESPACE, client_id, task["task_id"]), task)
            messages += session.execute(delete(outbox).returning(*outbox.columns)).all()
    return messages


def deliver_shuffled(messages: list, broker_url: str, rng: random.Random, duplicated: float = 0.25) -> None:
    """Publish the messages in a random order, a share of them twice."""
    deliveries = messages + [row for row in messages if rng.random() < duplicated]
    rng.shuffle(deliveries)
    with broker.connect(broker_url) as connection:
        producer = Producer(connection.default_channel)
        for exchange in {row.exchange for row in deliveries}:
            topology.EXCHANGES[exchange](connection.default_channel).declare()
        for row in deliveries:
            producer.publish(
                json.dumps(row.body).encode(),
                exchange=topology.EXCHANGES[row.exchange],
                routing_key=row.routing_key,
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=2,
                message_id=str(row.message_id),
                correlation_id=row.body["task_uuid"],
                headers=dict(row.headers),
            )
