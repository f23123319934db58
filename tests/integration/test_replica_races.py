"""Parking against the sweeper, and snapshots of customers stored before tasks were recorded."""

import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from contexts.customers import handlers as customers
from contexts.customers.tables import customers as customers_table
from contexts.survey.tables import replica
from messaging import vocabulary
from messaging.db import make_engine, utcnow
from messaging.envelope import Envelope


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def survey(customer_id="C-9"):
    return Envelope(
        "survey.assign", "S-1", uuid.uuid4(), "acme", {"customer_id": customer_id, "survey_id": "X"}
    )


def registered(customer_id="C-9"):
    payload = {"customer_id": customer_id, "name": "Ada", "email": "ada@example.com", "version": 1}
    return Envelope(vocabulary.CUSTOMER_REGISTERED, "T-1", uuid.uuid4(), "acme", payload)


def test_a_task_the_sweeper_fails_is_not_also_resumed(engine):
    handle = replica.needs_customer(lambda session, task, customer: [])
    with Session(engine) as session, session.begin():
        handle(session, survey())
        session.execute(update(replica.parked).values(parked_at=utcnow() - timedelta(hours=2)))

    sweeper = Session(engine)
    sweeper.begin()
    failures = replica.fail_expired(sweeper, timedelta(hours=1))  # not committed yet
    assert [f.payload["result"] for f in failures] == [{"reason": "unknown_customer"}]

    resumed = []

    def customer_arrives():
        with Session(engine) as session, session.begin():
            resumed.extend(replica.event_handlers()[vocabulary.CUSTOMER_REGISTERED](session, registered()))

    arrival = threading.Thread(target=customer_arrives)
    arrival.start()
    arrival.join(0.5)  # it waits for the sweeper's transaction (row lock / SQLite's single writer)
    sweeper.commit()
    sweeper.close()
    arrival.join(10)
    assert not arrival.is_alive()
    assert resumed == []  # failed once, not resumed as well


def test_resumed_tasks_are_sent_again_as_new_messages_caused_by_the_event(engine):
    handle = replica.needs_customer(lambda session, task, customer: [])
    first, second = survey(), survey()
    with Session(engine) as session, session.begin():
        assert handle(session, first)[0].type == vocabulary.TASK_STATUS
    with Session(engine) as session, session.begin():
        handle(session, second)
    event = registered()
    with Session(engine) as session, session.begin():
        resumed = replica.event_handlers()[vocabulary.CUSTOMER_REGISTERED](session, event)
    assert [task.task_uuid for task in resumed] == [first.task_uuid, second.task_uuid]
    assert all(task.causation_id == event.message_id for task in resumed)
    assert {task.message_id for task in resumed}.isdisjoint({first.message_id, second.message_id})
    assert [vocabulary.route(task)[0] for task in resumed] == ["taskgate.tasks"] * 2


def test_a_customer_without_a_recorded_task_still_gets_a_valid_snapshot(engine):
    with Session(engine) as session, session.begin():
        session.execute(
            customers_table.insert().values(
                client_id="acme",
                customer_id="C-1",
                name="Ada",
                email="a@example.com",
                version=3,
                updated_at=utcnow(),
            )
        )
    with Session(engine) as session:
        [snapshot] = customers.current_state(session)
    assert Envelope.from_body(snapshot.to_body()) == snapshot
    assert snapshot.task_id.startswith("rebuild-")
    assert snapshot.payload["version"] == 3
