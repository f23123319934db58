"""Appointments and customer events handled a batch at a time have the effects of one by one."""

import dataclasses
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from contexts.appointment import handlers, model
from contexts.appointment import worker as appointment_worker
from contexts.appointment.tables import appointments, replica
from messaging import vocabulary
from messaging.db import make_engine
from messaging.envelope import Envelope
from messaging.handling import Handling

HANDLERS, BATCH_HANDLERS = handlers.build_handlers(model.Limits(weekly=40, monthly=160))


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def customer_event(client_id, customer_id):
    payload = {"customer_id": customer_id, "name": customer_id, "email": f"{customer_id}@example.com"}
    return Envelope(vocabulary.CUSTOMER_REGISTERED, "T-0", uuid.uuid4(), client_id, {**payload, "version": 1})


def schedule(client_id, task_id, customer_id, resource_id, starts_at):
    return Envelope(
        "appointment.schedule",
        task_id,
        uuid.uuid4(),
        client_id,
        {
            "customer_id": customer_id,
            "resource_id": resource_id,
            "starts_at": starts_at,
            "duration_minutes": 60,
        },
    )


def messages(client_id):
    """Known and unknown customers, two resources, a double booking and a task sent twice."""
    first = schedule(client_id, "A-1", "C-1", "R-2", "2030-12-02T09:00:00+00:00")
    return [
        first,
        schedule(client_id, "A-2", "C-2", "R-1", "2030-12-02T09:00:00+00:00"),
        schedule(client_id, "A-3", "C-3", "R-1", "2030-12-02T09:30:00+00:00"),  # R-1 is taken then
        schedule(client_id, "A-4", "C-unknown", "R-1", "2030-12-02T11:00:00+00:00"),
        dataclasses.replace(first, message_id=uuid.uuid4()),
    ]


def outcome(engine, client_id, caused):
    """What handling left behind, without the ids that differ from run to run."""
    with Session(engine) as session:
        booked = sorted(
            tuple(row)
            for row in session.execute(
                select(appointments.c.task_id, appointments.c.resource_id).where(
                    appointments.c.client_id == client_id
                )
            )
        )
        parked = sorted(
            session.scalars(
                select(replica.parked.c.customer_id).where(replica.parked.c.client_id == client_id)
            )
        )
    described = sorted(
        (message.type, message.task_id, message.payload.get("outcome"), message.payload.get("status"))
        for message in caused
    )
    return described, booked, parked


def test_a_batch_has_the_effects_of_one_by_one(engine):
    for client_id in ("batch", "single"):
        with Session(engine) as session, session.begin():
            BATCH_HANDLERS[vocabulary.CUSTOMER_REGISTERED](
                session, [customer_event(client_id, customer) for customer in ("C-1", "C-2", "C-3")]
            )

    with Session(engine) as session, session.begin():
        caused_together = BATCH_HANDLERS["appointment.schedule"](session, messages("batch"))
    caused_alone = []
    for message in messages("single"):
        with Session(engine) as session, session.begin():
            caused_alone += HANDLERS["appointment.schedule"](session, message)

    together, alone = outcome(engine, "batch", caused_together), outcome(engine, "single", caused_alone)
    assert together == alone
    described, booked, parked = together
    assert booked == [("A-1", "R-2"), ("A-2", "R-1")]
    assert parked == ["C-unknown"]
    assert ("task.result", "A-3", "appointment.rejected", vocabulary.REJECTED) in described
    assert [d[2] for d in described if d[1] == "A-1" and d[0] == "task.result"] == [
        "appointment.scheduled"
    ] * 2


def test_a_cancel_a_schedule_in_a_batch_resumes_is_decided_before_the_next_schedule(engine):
    """Accepted for C-1 in this order: S-1, K (cancel of S-1), S-2 (the same hour, another
    resource). K reached the context first and waits for S-1; S-1 and S-2 then arrive together:
    K cancels S-1 before S-2 is decided, so S-2 gets the customer's hour."""
    spec = appointment_worker.spec({})
    written = []
    handling = Handling(
        engine,
        spec.queue.name,
        spec.handlers,
        inbox=spec.inbox,
        outbox=spec.outbox,
        publish=written.extend,
        own_inbox=spec.own_inbox,
        batch_handlers=spec.batch_handlers,
    )
    at = "2030-12-02T09:00:00+00:00"
    cancel = Envelope(
        "appointment.cancel",
        "K",
        uuid.uuid4(),
        "acme",
        {"customer_id": "C-1", "appointment_task_id": "S-1", "target_accepted": True},
    )
    for message in (customer_event("acme", "C-1"), cancel):
        handling.once(message)  # K waits for S-1
    together = [schedule("acme", "S-1", "C-1", "R-1", at), schedule("acme", "S-2", "C-1", "R-2", at)]
    handling.together(together)
    decided = [
        Envelope.from_body(row["body"]) for row in written if row["body"]["type"] == vocabulary.TASK_RESULT
    ]
    assert [(result.task_id, result.payload["outcome"]) for result in decided] == [
        ("S-1", "appointment.scheduled"),
        ("K", "appointment.canceled"),
        ("S-2", "appointment.scheduled"),
    ]
    with Session(engine) as session:
        assert session.scalars(
            select(appointments.c.task_id).where(appointments.c.status == "active")
        ).all() == ["S-2"]
