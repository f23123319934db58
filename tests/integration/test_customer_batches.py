"""customer.upsert handled a batch at a time has the effects of handling the tasks one by one."""

import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from contexts.customers import handlers
from contexts.customers.tables import customers
from messaging.db import make_engine
from messaging.envelope import Envelope


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def upsert(client_id, task_id, customer_id, email):
    payload = {"customer_id": customer_id, "name": customer_id.lower(), "email": email}
    return Envelope("customer.upsert", task_id, uuid.uuid4(), client_id, payload)


def messages(client_id):
    """The same mix for each client, after C-1, C-2 and C-5 were registered: new customers (one
    changed again within the batch, then repeated without a change), stored ones updated (one
    twice) and one left as it was: several rows to insert and several to update."""
    return [
        upsert(client_id, "T-3", "C-3", "c3@example.com"),
        upsert(client_id, "T-4", "C-1", "c1-new@example.com"),
        upsert(client_id, "T-5", "C-3", "c3-new@example.com"),
        upsert(client_id, "T-6", "C-2", "c-2@example.com"),
        upsert(client_id, "T-7", "C-3", "c3-new@example.com"),
        upsert(client_id, "T-8", "C-4", "c4@example.com"),
        upsert(client_id, "T-9", "C-5", "c-5@example.com"),
        upsert(client_id, "T-10", "C-5", "c5-new@example.com"),
    ]


def register_first(engine, client_id):
    with Session(engine) as session, session.begin():
        for task_id, customer_id in (("T-1", "C-1"), ("T-2", "C-2"), ("T-0", "C-5")):
            handlers.upsert_customer(
                session, upsert(client_id, task_id, customer_id, f"{customer_id.lower()}@example.com")
            )


def outcome(engine, client_id, caused):
    """What handling left behind, without what differs from run to run (uuids, times)."""
    with Session(engine) as session:
        stored = [
            tuple(row)
            for row in session.execute(
                select(
                    customers.c.customer_id,
                    customers.c.email,
                    customers.c.version,
                    customers.c.last_task_id,
                )
                .where(customers.c.client_id == client_id)
                .order_by(customers.c.customer_id)
            )
        ]
    described = [
        (
            message.type,
            message.task_id,
            message.payload.get("version"),
            message.payload.get("outcome"),
            message.payload.get("result"),
        )
        for message in caused
    ]
    return described, stored


def test_a_batch_has_the_effects_of_one_by_one(engine):
    register_first(engine, "batch")
    register_first(engine, "single")

    with Session(engine) as session, session.begin():
        caused_together = handlers.BATCH_HANDLERS["customer.upsert"](session, messages("batch"))
    caused_alone = []
    for message in messages("single"):
        with Session(engine) as session, session.begin():
            caused_alone += handlers.HANDLERS["customer.upsert"](session, message)

    together, alone = outcome(engine, "batch", caused_together), outcome(engine, "single", caused_alone)
    assert together == alone
    described, stored = together
    assert stored == [
        ("C-1", "c1-new@example.com", 2, "T-4"),
        ("C-2", "c-2@example.com", 1, "T-2"),
        ("C-3", "c3-new@example.com", 2, "T-5"),
        ("C-4", "c4@example.com", 1, "T-8"),
        ("C-5", "c5-new@example.com", 2, "T-10"),
    ]
    events = [(kind, task_id, version) for kind, task_id, version, _, _ in described if version]
    assert events == [
        ("customer.registered", "T-3", 1),
        ("customer.updated", "T-4", 2),
        ("customer.updated", "T-5", 2),
        ("customer.registered", "T-8", 1),
        ("customer.updated", "T-10", 2),
    ]  # T-6, T-7 and T-9 changed nothing: no event
    results = [
        (task_id, outcome, result) for _, task_id, version, outcome, result in described if not version
    ]
    assert results == [
        ("T-3", "customer.registered", {"customer_id": "C-3", "version": 1}),
        ("T-4", "customer.updated", {"customer_id": "C-1", "version": 2}),
        ("T-5", "customer.updated", {"customer_id": "C-3", "version": 2}),
        ("T-6", "customer.updated", {"customer_id": "C-2", "version": 1}),
        ("T-7", "customer.updated", {"customer_id": "C-3", "version": 2}),
        ("T-8", "customer.registered", {"customer_id": "C-4", "version": 1}),
        ("T-9", "customer.updated", {"customer_id": "C-5", "version": 1}),
        ("T-10", "customer.updated", {"customer_id": "C-5", "version": 2}),
    ]


def test_a_batch_locks_the_stored_customers_it_upserts(postgres_database):
    postgres_database.empty()
    engine = make_engine(postgres_database.url)  # SQLite serializes every writer already
    register_first(engine, "acme")
    try:
        with Session(engine) as holder, holder.begin():
            handlers.upsert_customers(
                holder,
                [
                    upsert("acme", "T-8", "C-2", "c-2@example.com"),
                    upsert("acme", "T-9", "C-1", "x@example.com"),
                ],
            )
            for customer_id in ("C-1", "C-2"):
                with Session(engine) as other, other.begin():
                    other.connection().exec_driver_sql("SET LOCAL lock_timeout = '50ms'")
                    with pytest.raises(OperationalError, match="lock timeout"):
                        handlers.upsert_customer(other, upsert("acme", "T-10", customer_id, "y@example.com"))
    finally:
        engine.dispose()
