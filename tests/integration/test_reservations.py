"""One side of a visit (contexts.reservations) on SQLite and PostgreSQL: every step is idempotent,
a hold counts like a booking, expires by itself, and a confirm after the expiry is refused."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from contexts import reservations
from contexts.appointment import handlers as desk
from contexts.appointment.model import Limits
from contexts.appointment.tables import appointments, visit_holds
from contexts.appointment.tables import outbox as desk_outbox
from contexts.appointment.visits import VisitSlots
from contexts.replica import Customer
from messaging import vocabulary
from messaging.db import make_engine
from messaging.envelope import Envelope
from messaging.wakeup import Wakeup
from tests.factories import wait_for

MONDAY = "2027-03-01T09:00:00+00:00"


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def side(ttl=timedelta(minutes=2)) -> reservations.ReservationSide:
    return reservations.ReservationSide("appointment", visit_holds, VisitSlots(Limits()), ttl, Wakeup())


def step(kind: str, visit_id: uuid.UUID, task_id="V-1", customer_id="C-42", **payload) -> Envelope:
    body = {"visit_id": str(visit_id)}
    if kind == vocabulary.VISIT_HOLD:
        body |= {
            "customer_id": customer_id,
            "resource_id": "desk-1",
            "position": "bay-1",
            "vin": "WVWZZZ1JZXW000001",
            "starts_at": MONDAY,
            "duration_minutes": 60,
            **payload,
        }
    return Envelope(kind, task_id, uuid.uuid4(), "acme", body)


def answer(engine, handler, message: Envelope) -> dict:
    with engine.begin() as connection:
        [said] = handler(connection, message)
    assert said.type == vocabulary.VISIT_ANSWER
    return said.payload


def status(engine, task_id: str):
    with engine.connect() as connection:
        return connection.scalar(select(appointments.c.status).where(appointments.c.task_id == task_id))


def test_hold_confirm_release_each_answer_again_when_repeated(engine):
    desk_side, visit = side(), uuid.uuid4()
    held = answer(engine, desk_side.hold, step(vocabulary.VISIT_HOLD, visit))
    assert (held["side"], held["step"]) == ("appointment", "held") and held["booking_id"]
    assert answer(engine, desk_side.hold, step(vocabulary.VISIT_HOLD, visit)) == held
    assert status(engine, "V-1") == "held"
    confirmed = answer(engine, desk_side.confirm, step(vocabulary.VISIT_CONFIRM, visit))
    assert confirmed["step"] == "confirmed" and confirmed["booking_id"] == held["booking_id"]
    assert answer(engine, desk_side.confirm, step(vocabulary.VISIT_CONFIRM, visit)) == confirmed
    assert status(engine, "V-1") == "active"
    assert answer(engine, desk_side.release, step(vocabulary.VISIT_RELEASE, visit))["step"] == "released"
    assert answer(engine, desk_side.release, step(vocabulary.VISIT_RELEASE, visit))["step"] == "released"
    assert status(engine, "V-1") == "released"


def test_a_hold_counts_like_a_booking(engine):
    desk_side = side()
    assert answer(engine, desk_side.hold, step(vocabulary.VISIT_HOLD, uuid.uuid4()))["step"] == "held"
    refused = answer(
        engine, desk_side.hold, step(vocabulary.VISIT_HOLD, uuid.uuid4(), task_id="V-2", customer_id="C-43")
    )
    assert refused == {**refused, "step": "refused", "reason": "resource_busy"}
    # An appointment.schedule on the held slot is refused too.
    schedule, _ = desk.make_schedule(Limits())
    task = Envelope(
        "appointment.schedule",
        "A-1",
        uuid.uuid4(),
        "acme",
        {"customer_id": "C-44", "resource_id": "desk-1", "starts_at": MONDAY, "duration_minutes": 30},
    )
    with engine.begin() as connection:
        [result] = schedule(connection, task, Customer("acme", "C-44", "Ada", "ada@example.com", 1, 1))
    assert result.payload["result"] == {"reason": "resource_busy"}


def test_a_release_before_its_hold_leaves_nothing_held(engine):
    desk_side, visit = side(), uuid.uuid4()
    assert answer(engine, desk_side.release, step(vocabulary.VISIT_RELEASE, visit))["step"] == "released"
    assert answer(engine, desk_side.hold, step(vocabulary.VISIT_HOLD, visit))["step"] == "released"
    assert status(engine, "V-1") is None


def test_a_hold_expires_by_itself_and_a_late_confirm_is_refused(engine):
    desk_side, visit = side(ttl=timedelta(seconds=0.3)), uuid.uuid4()
    published: list[dict] = []
    sweeper = reservations.hold_sweeper(engine, desk_side, desk_outbox, published.extend)
    stop = threading.Event()
    thread = threading.Thread(target=sweeper.run, args=(stop,), daemon=True)
    thread.start()
    try:
        answer(engine, desk_side.hold, step(vocabulary.VISIT_HOLD, visit))
        desk_side.wakeup.notify()  # as the hold's commit does in a worker
        wait_for(lambda: published, timeout=10, message="the hold to expire")
    finally:
        stop.set()
        desk_side.wakeup.close()
        thread.join(10)
    [expired] = published
    assert expired["body"]["payload"] == {"visit_id": str(visit), "side": "appointment", "step": "expired"}
    assert status(engine, "V-1") == "released"
    assert answer(engine, desk_side.confirm, step(vocabulary.VISIT_CONFIRM, visit))["step"] == "expired"
    assert status(engine, "V-1") == "released"


def test_a_confirm_past_the_expiry_expires_the_hold_itself(engine):
    desk_side, visit = side(ttl=timedelta(0)), uuid.uuid4()
    answer(engine, desk_side.hold, step(vocabulary.VISIT_HOLD, visit))
    assert answer(engine, desk_side.confirm, step(vocabulary.VISIT_CONFIRM, visit))["step"] == "expired"
    assert status(engine, "V-1") == "released"
