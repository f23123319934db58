"""Surveys handled a batch at a time have the effects of handling them one by one."""

import dataclasses
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from contexts.survey import handlers
from contexts.survey.tables import invitations, replica
from messaging import vocabulary
from messaging.db import make_engine, serialize_on, serialize_on_many
from messaging.envelope import Envelope


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def survey(client_id, task_id, customer_id):
    return Envelope(
        "survey.assign",
        task_id,
        uuid.uuid4(),
        client_id,
        {"customer_id": customer_id, "survey_id": "SRV-1", "due_date": "2030-12-31"},
    )


def know(engine, client_id, *customer_ids):
    with Session(engine) as session, session.begin():
        for customer_id in customer_ids:
            payload = {
                "customer_id": customer_id,
                "name": customer_id,
                "email": f"{customer_id}@example.com",
                "version": 1,
            }
            replica.apply(
                session, Envelope(vocabulary.CUSTOMER_REGISTERED, "T-0", uuid.uuid4(), client_id, payload)
            )


def messages(client_id):
    """The same mix for each client: known and unknown customers, and one task sent twice."""
    first = survey(client_id, "S-1", "C-1")
    return [
        first,
        survey(client_id, "S-2", "C-unknown"),
        survey(client_id, "S-3", "C-2"),
        dataclasses.replace(first, message_id=uuid.uuid4()),
    ]


def outcome(engine, client_id, caused):
    """What handling left behind, without the ids that differ from run to run."""
    with Session(engine) as session:
        stored = {
            row.task_id: row.invitation_id
            for row in session.execute(
                select(invitations.c.task_id, invitations.c.invitation_id).where(
                    invitations.c.client_id == client_id
                )
            )
        }
        parked = session.scalars(
            select(replica.parked.c.customer_id).where(replica.parked.c.client_id == client_id)
        )
        parked = sorted(parked)
    described = sorted(
        (
            message.type,
            message.task_id,
            message.payload.get("status"),
            (message.payload.get("result") or {}).get("email"),
            (message.payload.get("result") or {}).get("invitation_id") == str(stored.get(message.task_id)),
        )
        for message in caused
    )
    return described, sorted(stored), parked


def test_a_batch_has_the_effects_of_one_by_one(engine):
    know(engine, "batch", "C-1", "C-2")
    know(engine, "single", "C-1", "C-2")

    with Session(engine) as session, session.begin():
        caused_together = handlers.BATCH_HANDLERS["survey.assign"](session, messages("batch"))
    caused_alone = []
    for message in messages("single"):
        with Session(engine) as session, session.begin():
            caused_alone += handlers.HANDLERS["survey.assign"](session, message)

    together, alone = outcome(engine, "batch", caused_together), outcome(engine, "single", caused_alone)
    assert together == alone
    described, invited, parked = together
    assert invited == ["S-1", "S-3"] and parked == ["C-unknown"]
    assert [d for d in described if d[1] == "S-1"] == [
        (vocabulary.TASK_RESULT, "S-1", vocabulary.SUCCEEDED, "C-1@example.com", True)
    ] * 2  # the repeated task is answered with the same invitation
    assert (vocabulary.TASK_STATUS, "S-2", vocabulary.WAITING, None, False) in described


def test_a_batch_answers_a_task_invited_in_an_earlier_batch_with_the_same_invitation(engine):
    know(engine, "acme", "C-1", "C-2")
    with Session(engine) as session, session.begin():
        (earlier,) = handlers.BATCH_HANDLERS["survey.assign"](session, [survey("acme", "S-1", "C-1")])
    with Session(engine) as session, session.begin():
        fresh, again = handlers.BATCH_HANDLERS["survey.assign"](
            session, [survey("acme", "S-2", "C-2"), survey("acme", "S-1", "C-1")]
        )
    assert again.payload["result"] == earlier.payload["result"]
    assert fresh.payload["result"]["email"] == "C-2@example.com"
    with Session(engine) as session:
        stored = dict(session.execute(select(invitations.c.task_id, invitations.c.invitation_id)).all())
    assert {task: str(invitation) for task, invitation in stored.items()} == {
        "S-1": earlier.payload["result"]["invitation_id"],
        "S-2": fresh.payload["result"]["invitation_id"],
    }


def test_serializing_on_many_keys_holds_each_of_them(postgres_database):
    postgres_database.empty()
    engine = make_engine(postgres_database.url)  # SQLite serializes every writer already
    keys = [("survey", "customer", "acme", f"C-{n}") for n in range(5)]
    with Session(engine) as holder, holder.begin():
        serialize_on_many(holder, keys)
        for key in keys:
            with Session(engine) as other, other.begin():
                other.execute(select(1))
                other.connection().exec_driver_sql("SET LOCAL lock_timeout = '50ms'")
                with pytest.raises(OperationalError, match="lock timeout"):
                    serialize_on(other, *key)
    with Session(engine) as other, other.begin():  # released with the transaction
        serialize_on_many(other, keys)
    engine.dispose()
