"""Customer read models: applied by version, idempotent, whatever the delivery order."""

import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from contexts.survey.tables import replica
from messaging.db import make_engine
from messaging.envelope import Envelope


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def event(version, email, type_="customer.updated"):
    return Envelope(
        type=type_,
        task_id=f"T-{version}",
        task_uuid=uuid.uuid4(),
        client_id="acme",
        payload={"customer_id": "C-1", "name": "Ada", "email": email, "version": version},
    )


def apply_all(engine, events):
    for each in events:
        with Session(engine) as session, session.begin():
            replica.apply(session, each)
    with Session(engine) as session:
        return replica.find(session, "acme", "C-1")


@pytest.mark.parametrize(
    "order",
    [(1, 2, 3), (3, 2, 1), (2, 3, 1), (1, 3, 3, 2, 1)],
    ids=["in order", "reversed", "shuffled", "duplicated"],
)
def test_the_newest_version_wins_whatever_the_order(engine, order):
    customer = apply_all(engine, [event(version, f"v{version}@example.com") for version in order])
    assert (customer.version, customer.email) == (3, "v3@example.com")


def test_an_event_of_the_same_version_changes_nothing(engine):
    customer = apply_all(engine, [event(1, "first@example.com"), event(1, "other@example.com")])
    assert customer.email == "first@example.com"


def test_clear_forgets_every_customer(engine):
    apply_all(engine, [event(1, "a@example.com")])
    with Session(engine) as session, session.begin():
        assert replica.clear(session) == 1
    with Session(engine) as session:
        assert replica.find(session, "acme", "C-1") is None


def test_find_many_returns_exactly_the_keys_asked_for(engine):
    for client_id, customer_id in [("acme", "C-1"), ("acme", "C-2"), ("other", "C-2")]:
        with Session(engine) as session, session.begin():
            payload = {"customer_id": customer_id, "name": "Ada", "email": "ada@example.com", "version": 1}
            replica.apply(session, Envelope("customer.updated", "T-1", uuid.uuid4(), client_id, payload))
    with Session(engine) as session:
        found = replica.find_many(session, [("acme", "C-1"), ("other", "C-2"), ("other", "C-9")])
    assert sorted(found) == [("acme", "C-1"), ("other", "C-2")]  # not ("acme", "C-2")


@pytest.mark.parametrize(
    "order", [(1, 2, 3), (3, 1, 2), (2, 2, 1)], ids=["in order", "newest first", "duplicated"]
)
def test_a_batch_of_events_keeps_the_newest_version(engine, order):
    with Session(engine) as session, session.begin():
        replica.apply_many(session, [event(version, f"v{version}@example.com") for version in order])
    with Session(engine) as session:
        customer = replica.find(session, "acme", "C-1")
    newest = max(order)
    assert (customer.version, customer.email) == (newest, f"v{newest}@example.com")


def customer_event(client_id, customer_id, version):
    payload = {"customer_id": customer_id, "name": customer_id, "email": f"{customer_id}@example.com"}
    return Envelope(
        "customer.updated", f"T-{version}", uuid.uuid4(), client_id, {**payload, "version": version}
    )


def park(engine, client_id, customer_id, task_id):
    task = Envelope(
        "survey.assign",
        task_id,
        uuid.uuid4(),
        client_id,
        {"customer_id": customer_id, "survey_id": "SRV-1", "due_date": "2030-12-31"},
    )
    with Session(engine) as session, session.begin():
        replica.needs_customer(lambda *_: [])(session, task)
    return task


def test_a_batch_of_events_resumes_the_tasks_parked_for_exactly_its_customers(engine):
    first = park(engine, "acme", "C-1", "S-1")
    second = park(engine, "other", "C-2", "S-2")
    unrelated = park(engine, "acme", "C-2", "S-3")  # client of one key, customer of the other
    events = [
        customer_event("acme", "C-1", 1),
        customer_event("other", "C-2", 1),
        customer_event("acme", "C-1", 2),
    ]

    with Session(engine) as session, session.begin():
        resumed = replica.when_customers_changed(session, events)

    assert [task.task_id for task in resumed] == ["S-1", "S-2"]  # oldest first
    assert {task.message_id for task in resumed}.isdisjoint({first.message_id, second.message_id})
    # Each is caused by the batch's last event about its customer.
    assert [task.causation_id for task in resumed] == [events[2].message_id, events[1].message_id]
    with Session(engine) as session:
        still_parked = session.execute(select(replica.parked.c.message_id)).scalars().all()
        assert still_parked == [unrelated.message_id]
        assert replica.find(session, "acme", "C-1").version == 2
        assert replica.find(session, "other", "C-2").version == 1
