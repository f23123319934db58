"""Customer read models: applied by version, idempotent, whatever the delivery order."""

import uuid

import pytest
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
