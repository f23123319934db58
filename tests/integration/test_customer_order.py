"""Order per customer, piece by piece, on SQLite and PostgreSQL: the gateway numbers a customer's
tasks as it accepts them (race-safe), the customers context never lets an earlier upsert overwrite
a later one, a context's copy that is older than a task needs parks it until it catches up, and a
cancel waits for the schedule it cancels."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from contexts.appointment import handlers as appointment
from contexts.appointment.model import Limits
from contexts.appointment.tables import appointments
from contexts.appointment.tables import replica as appointment_replica
from contexts.customers.handlers import upsert_customers
from contexts.customers.tables import customers
from contexts.survey.tables import replica
from contexts.visits import handlers as visits
from contexts.visits.tables import replica as visits_replica
from gateway.config import DEFAULT_NAMESPACE
from gateway.identity import task_uuid
from gateway.intake import accept_task
from gateway.tables import outbox, tasks
from messaging import vocabulary
from messaging.db import make_engine, utcnow
from messaging.envelope import Envelope
from tests.factories import (
    cancel_task,
    register_client,
    schedule_task,
    survey_task,
    upsert_task,
    visit_cancel_task,
    visit_task,
)


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    register_client(engine)
    yield engine
    engine.dispose()


def accept(engine, task: dict) -> Envelope:
    """Accept task; its routed message."""
    with Session(engine) as session, session.begin():
        accept_task(session, "acme", task_uuid(DEFAULT_NAMESPACE, "acme", task["task_id"]), task)
        row = session.execute(select(outbox).order_by(outbox.c.id.desc())).first()
    return Envelope.from_body(row.body)


# --- the gateway's order ------------------------------------------------------------------------------


def test_each_task_gets_its_place_in_its_customers_order(engine):
    routed = [
        accept(engine, upsert_task("T-1", customer_id="C-1")),
        accept(engine, survey_task("S-1", customer_id="C-1")),
        accept(engine, upsert_task("T-2", customer_id="C-2")),  # another customer: its own order
        accept(engine, upsert_task("T-3", customer_id="C-1", email="new@example.com")),
        accept(engine, survey_task("S-2", customer_id="C-1")),
    ]
    assert [message.payload["order"] for message in routed] == [
        {"seq": 1, "upserts": 1},
        {"seq": 2, "upserts": 1},  # decided on the upsert accepted before it
        {"seq": 1, "upserts": 1},
        {"seq": 3, "upserts": 3},
        {"seq": 4, "upserts": 3},
    ]
    with Session(engine) as session:
        places = dict(session.execute(select(tasks.c.task_id, tasks.c.customer_seq)).all())
    assert places == {"T-1": 1, "S-1": 2, "T-2": 1, "T-3": 3, "S-2": 4}


def test_a_replayed_upsert_leaves_the_last_upsert_as_it_was(engine):
    # A client retrying an upsert it already sent must not make later tasks wait for a place no
    # task was routed with: they would wait for the customer's copy until the timeout, and fail.
    first, survey = upsert_task("T-1", customer_id="C-1"), survey_task("S-1", customer_id="C-1")
    accept(engine, first)
    accept(engine, upsert_task("T-2", customer_id="C-1", email="new@example.com"))
    accept(engine, first)  # retried: nothing is routed, its place (3) stays a gap
    assert accept(engine, survey).payload["order"] == {"seq": 4, "upserts": 2}
    accept(engine, survey)  # retried too (5)
    later = accept(engine, survey_task("S-2", customer_id="C-1"))
    assert later.payload["order"] == {"seq": 6, "upserts": 2}


def test_concurrent_accepts_of_one_customer_take_distinct_places(engine):
    def send(number):
        with Session(engine) as session, session.begin():
            task = upsert_task(f"T-{number}", customer_id="C-1", email=f"v{number}@example.com")
            accept_task(session, "acme", task_uuid(DEFAULT_NAMESPACE, "acme", task["task_id"]), task)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(24)))
    with Session(engine) as session:
        places = sorted(session.scalars(select(tasks.c.customer_seq)))
    assert places == list(range(1, 25))


def test_a_cancel_says_whether_its_schedule_was_accepted_before_it(engine):
    before = accept(engine, cancel_task("X-0", "A-1"))
    accept(engine, schedule_task("A-1", "2027-01-04T09:00:00Z"))
    after = accept(engine, cancel_task("X-1", "A-1"))
    assert (before.payload["target_accepted"], after.payload["target_accepted"]) == (False, True)


# --- the customers context ---------------------------------------------------------------------------


def test_an_upsert_accepted_earlier_never_overwrites_a_later_one(engine):
    first = accept(engine, upsert_task("T-1", customer_id="C-1", email="first@example.com"))
    second = accept(engine, upsert_task("T-2", customer_id="C-1", email="second@example.com"))
    with Session(engine) as session, session.begin():
        later = upsert_customers(session, [second])
    with Session(engine) as session, session.begin():
        earlier = upsert_customers(session, [first])  # redelivered late, or on a slower worker
    with Session(engine) as session:
        stored = session.execute(select(customers.c.email, customers.c.seq)).one()
    assert tuple(stored) == ("second@example.com", 2)
    assert [message.type for message in later] == ["customer.registered", vocabulary.TASK_RESULT]
    [result] = earlier  # no event: nothing changed
    assert result.payload["result"] == {"customer_id": "C-1", "version": 1, "superseded": True}


def test_an_upsert_that_changes_nothing_is_still_published_with_its_place(engine):
    first = accept(engine, upsert_task("T-1", customer_id="C-1"))
    again = accept(engine, upsert_task("T-2", customer_id="C-1"))  # the same data
    with Session(engine) as session, session.begin():
        upsert_customers(session, [first])
        event, _ = upsert_customers(session, [again])
    assert (event.type, event.payload["version"], event.payload["seq"]) == ("customer.updated", 1, 2)


# --- a context's copy ----------------------------------------------------------------------------------


def customer_event(seq: int, email: str, version: int | None = None) -> Envelope:
    payload = {"customer_id": "C-1", "name": "Ada", "email": email, "version": version or seq, "seq": seq}
    return Envelope("customer.updated", f"T-{seq}", uuid.uuid4(), "acme", payload)


def survey(needs: int, task_id: str = "S-1") -> Envelope:
    payload = {"customer_id": "C-1", "survey_id": "SRV-1", "order": {"seq": needs + 1, "upserts": needs}}
    return Envelope("survey.assign", task_id, uuid.uuid4(), "acme", payload)


def handle(engine, task: Envelope) -> tuple[list, list]:
    """needs_customer around a handler that answers with the email it was given."""
    decided = []

    def invite(session, task_, customer):
        decided.append(customer.email)
        return []

    with Session(engine) as session, session.begin():
        caused = replica.needs_customer(invite)(session, task)
    return decided, caused


def changed(engine, *events: Envelope) -> list[Envelope]:
    with Session(engine) as session, session.begin():
        return replica.when_customers_changed(session, list(events))


def test_a_copy_older_than_the_task_needs_parks_it_until_it_catches_up(engine):
    changed(engine, customer_event(1, "old@example.com"))
    decided, [status] = handle(engine, survey(needs=3))
    assert decided == []
    assert status.payload == {"context": "survey", "status": "waiting", "reason": "customer_outdated"}

    assert changed(engine, customer_event(2, "between@example.com")) == []  # still older than 3
    [resumed] = changed(engine, customer_event(3, "new@example.com"))
    assert handle(engine, resumed)[0] == ["new@example.com"]


def test_a_copy_newer_than_the_task_needs_decides_at_once(engine):
    changed(engine, customer_event(5, "newest@example.com"))
    assert handle(engine, survey(needs=3))[0] == ["newest@example.com"]


def test_events_apply_by_place_whatever_their_order(engine):
    changed(engine, customer_event(3, "third@example.com", version=2))
    changed(engine, customer_event(2, "second@example.com", version=2))  # older place, same version
    changed(engine, customer_event(4, "third@example.com", version=2))  # a later upsert, same data
    with Session(engine) as session:
        copy = replica.find(session, "acme", "C-1")
    assert (copy.email, copy.seq) == ("third@example.com", 4)


@pytest.mark.parametrize(
    ("known", "needs", "reason"),
    [
        (True, 2, "customer_outdated"),
        # CONTRACT: still behind an upsert accepted before it, though the context never had the
        # customer (its customers context lagging, or a rebuild emptied the copy): outdated.
        (False, 2, "customer_outdated"),
        (False, 0, "unknown_customer"),  # a customer never upserted
    ],
)
def test_a_task_whose_copy_does_not_catch_up_in_time_fails_saying_why(engine, known, needs, reason):
    if known:
        changed(engine, customer_event(1, "old@example.com"))
    handle(engine, survey(needs=needs))
    with Session(engine) as session, session.begin():
        session.execute(update(replica.parked).values(parked_at=utcnow() - timedelta(hours=2)))
    with Session(engine) as session, session.begin():
        [failure] = replica.fail_expired(session, timedelta(hours=1))
    assert failure.payload["result"] == {"reason": reason}


# --- a cancel waits for its schedule ---------------------------------------------------------------------


@pytest.fixture
def appointment_handlers():
    handlers, _ = appointment.build_handlers(Limits(weekly=40, monthly=160))
    return handlers


def run(engine, handler, message: Envelope) -> list[Envelope]:
    with Session(engine) as session, session.begin():
        return handler(session, message)


def test_a_cancel_before_its_schedule_is_decided_waits_and_then_cancels(engine, appointment_handlers):
    with Session(engine) as session, session.begin():
        appointment_replica.apply(session, customer_event(1, "ada@example.com"))
    schedule = accept(engine, schedule_task("A-1", "2027-01-04T09:00:00Z", customer_id="C-1"))
    cancel = accept(engine, cancel_task("X-1", "A-1", customer_id="C-1"))

    [status] = run(engine, appointment_handlers["appointment.cancel"], cancel)  # it overtook the schedule
    assert status.payload["reason"] == "target_undecided"
    caused = run(engine, appointment_handlers["appointment.schedule"], schedule)
    [resumed] = [message for message in caused if message.type == "appointment.cancel"]
    assert resumed.task_id == "X-1" and resumed.causation_id == schedule.message_id

    answer = run(engine, appointment_handlers["appointment.cancel"], resumed)
    assert [message.payload.get("outcome") for message in answer] == [None, "appointment.canceled"]
    with Session(engine) as session:
        assert session.scalar(select(appointments.c.status)) == "canceled"


def test_a_cancel_of_a_schedule_never_accepted_or_refused_is_not_found_at_once(engine, appointment_handlers):
    never = accept(engine, cancel_task("X-1", "A-404", customer_id="C-1"))
    [answer] = run(engine, appointment_handlers["appointment.cancel"], never)
    assert answer.payload["result"] == {"reason": "not_found"}


def test_a_cancel_still_waiting_after_the_timeout_is_not_found(engine, appointment_handlers):
    accept(engine, schedule_task("A-1", "2027-01-04T09:00:00Z", customer_id="C-1"))
    cancel = accept(engine, cancel_task("X-1", "A-1", customer_id="C-1"))
    run(engine, appointment_handlers["appointment.cancel"], cancel)
    with Session(engine) as session, session.begin():
        session.execute(update(appointment_replica.parked).values(parked_at=utcnow() - timedelta(hours=2)))
    with Session(engine) as session, session.begin():
        [answer] = appointment_replica.fail_expired(session, timedelta(hours=1))
    assert (answer.payload["outcome"], answer.payload["result"]) == (
        "appointment.rejected",
        {"reason": "not_found"},
    )


def expire_parked(engine) -> list[Envelope]:
    """The appointment sweeper, as if every parked task's wait had run out."""
    with Session(engine) as session, session.begin():
        session.execute(update(appointment_replica.parked).values(parked_at=utcnow() - timedelta(hours=2)))
    with Session(engine) as session, session.begin():
        return appointment_replica.fail_expired(session, timedelta(hours=1))


def expire_the_wait_of(parking, engine, task: Envelope) -> list[Envelope]:
    """The sweeper of parking's context, once task's wait (and only its) has run out."""
    with Session(engine) as session, session.begin():
        session.execute(
            update(parking.parked)
            .where(parking.parked.c.message_id == task.message_id)
            .values(parked_at=utcnow() - timedelta(hours=2))
        )
    with Session(engine) as session, session.begin():
        return parking.fail_expired(session, timedelta(hours=1))


def test_a_cancel_of_a_schedule_that_failed_waiting_for_its_customer_is_not_found_at_once(
    engine, appointment_handlers
):
    schedule = accept(engine, schedule_task("A-1", "2027-01-04T09:00:00Z", customer_id="C-404"))
    [waiting] = run(engine, appointment_handlers["appointment.schedule"], schedule)  # never upserted
    assert waiting.payload["reason"] == "unknown_customer"
    [failure] = expire_parked(engine)
    assert failure.payload["result"] == {"reason": "unknown_customer"}

    cancel = accept(engine, cancel_task("X-1", "A-1", customer_id="C-404"))  # sent after the failure
    [answer] = run(engine, appointment_handlers["appointment.cancel"], cancel)
    assert (answer.payload["outcome"], answer.payload["result"]) == (
        "appointment.rejected",
        {"reason": "not_found"},
    )


def test_a_cancel_waiting_for_a_schedule_the_sweeper_fails_is_resumed_and_not_found(
    engine, appointment_handlers
):
    schedule = accept(engine, schedule_task("A-1", "2027-01-04T09:00:00Z", customer_id="C-404"))
    cancel = accept(engine, cancel_task("X-1", "A-1", customer_id="C-404"))
    run(engine, appointment_handlers["appointment.schedule"], schedule)
    [status] = run(engine, appointment_handlers["appointment.cancel"], cancel)
    assert status.payload["reason"] == "target_undecided"
    failure, resumed = expire_the_wait_of(appointment_replica, engine, schedule)
    assert failure.payload["result"] == {"reason": "unknown_customer"}
    assert (resumed.type, resumed.task_id) == ("appointment.cancel", "X-1")
    [answer] = run(engine, appointment_handlers["appointment.cancel"], resumed)
    assert answer.payload["result"] == {"reason": "not_found"}


def test_a_visit_cancel_of_a_visit_that_failed_waiting_for_its_customer_is_not_found_at_once(engine):
    """Waiting when the book fails, or sent after: not_found at once, not after a timeout of its own."""
    book = accept(engine, visit_task("V-1", "2027-01-04T09:00:00Z", customer_id="C-404"))
    waiting = accept(engine, visit_cancel_task("X-1", "V-1", customer_id="C-404"))
    later = accept(engine, visit_cancel_task("X-2", "V-1", customer_id="C-404"))
    run(engine, visits.HANDLERS["visit.book"], book)  # never upserted: it waits
    [status] = run(engine, visits.HANDLERS["visit.cancel"], waiting)
    assert status.payload["reason"] == "target_undecided"
    failure, resumed = expire_the_wait_of(visits_replica, engine, book)
    assert (failure.payload["outcome"], failure.payload["result"]) == (
        "visits.failed",
        {"reason": "unknown_customer"},
    )
    assert (resumed.type, resumed.task_id) == ("visit.cancel", "X-1")
    for cancel in (resumed, later):
        [answer] = run(engine, visits.HANDLERS["visit.cancel"], cancel)
        assert (answer.payload["outcome"], answer.payload["result"]) == (
            "visit.rejected",
            {"reason": "not_found"},
        )
