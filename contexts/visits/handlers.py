"""Message handlers of the visits context: visit.book and visit.cancel, and the sides' answers."""

from __future__ import annotations

import uuid

from sqlalchemy import bindparam, select, update
from uuid6 import uuid7

from contexts.replica import Customer
from contexts.visits import model
from contexts.visits.tables import replica, visits
from messaging import vocabulary
from messaging.db import Transaction, insert_ignoring_duplicates, serialize_on, utcnow
from messaging.envelope import Envelope
from messaging.handling import Handler

CONTEXT = "visits"


def book_visit(session: Transaction, task: Envelope, customer: Customer) -> list[Envelope]:
    """visit.book: ask both sides to hold the visit's slot (one message each reaches them)."""
    serialize_on(session, CONTEXT, "visit", task.client_id, task.task_id)
    if _visit_of(session, task.client_id, task.task_id) is not None:  # the same task again
        return []
    visit_id = _add_visit(session, task, customer.customer_id, model.HOLDING)
    payload = {
        key: task.payload[key] for key in ("vin", "resource_id", "position", "starts_at", "duration_minutes")
    }
    hold = task.caused(
        vocabulary.VISIT_HOLD, {"visit_id": str(visit_id), "customer_id": customer.customer_id, **payload}
    )
    # Decided once the visit is booked or rejected: a visit.cancel accepted before that waits.
    return [hold]


def when_answered(session: Transaction, answer: Envelope) -> list[Envelope]:
    """A side's answer: move the visit on (see contexts.visits.model)."""
    row = _locked(session, answer.client_id, uuid.UUID(answer.payload["visit_id"]))
    if row is None:
        raise LookupError(f"an answer for unknown visit {answer.payload['visit_id']}")
    side, step = answer.payload["side"], answer.payload["step"]
    visit, action = _visit(row).answered(side, step, answer.payload.get("reason"))
    changes = {}
    if step in (vocabulary.HELD, vocabulary.CONFIRMED) and "booking_id" in answer.payload:
        changes["appointment_id" if side == "appointment" else "job_id"] = uuid.UUID(
            answer.payload["booking_id"]
        )
    _save(session, row, visit, **changes)
    return _act(session, row, visit, action, answer, changes)


def cancel_visit(session: Transaction, task: Envelope) -> list[Envelope]:
    """visit.cancel: release both sides of the booked visit that visit_task_id asked for. If that
    visit.book was accepted (the gateway says) but is not decided yet, the cancel waits for it."""
    target = task.payload["visit_task_id"]
    serialize_on(session, CONTEXT, "visit", task.client_id, target)
    row = _visit_of(session, task.client_id, target, lock=True)
    if row is None or row.customer_id != task.payload["customer_id"]:
        if row is None and task.payload.get("target_accepted"):
            return [replica.park_until(session, task, _waiting_for(target), vocabulary.TARGET_UNDECIDED)]
        return [_not_found(task)]
    visit = _visit(row)
    if visit.state not in model.DECIDED and not visit.canceling:
        return [replica.park_until(session, task, _waiting_for(target), vocabulary.TARGET_UNDECIDED)]
    visit, action = visit.cancel()
    if action is None:
        return [_not_found(task)]
    _save(session, row, visit, cancel_task=task.to_body())
    return _act(session, row, visit, action, task, {})


def _act(
    session: Transaction, row, visit: model.Visit, action: str | None, cause: Envelope, changes
) -> list[Envelope]:
    """The messages of what the visit does next."""
    visit_id = str(row.visit_id)
    if action == model.CONFIRM:
        return [cause.caused(vocabulary.VISIT_CONFIRM, {"visit_id": visit_id})]
    if action == model.RELEASE:
        return [cause.caused(vocabulary.VISIT_RELEASE, {"visit_id": visit_id})]
    if action != model.ANSWER:
        return []
    book = Envelope.from_body(row.book_task)
    if visit.state == model.BOOKED:
        ids = {"appointment_id": row.appointment_id, "job_id": row.job_id, **changes}
        result = vocabulary.result(
            book,
            context=CONTEXT,
            outcome="visit.booked",
            status=vocabulary.SUCCEEDED,
            result={key: str(value) for key, value in ids.items()},
        )
    elif visit.state == model.REJECTED:
        result = vocabulary.result(
            book,
            context=CONTEXT,
            outcome="visit.rejected",
            status=vocabulary.REJECTED,
            result={"reason": visit.reason},
        )
    else:  # canceled
        cancel = Envelope.from_body(row.cancel_task) if row.cancel_task else cause
        result = vocabulary.result(
            cancel, context=CONTEXT, outcome="visit.canceled", status=vocabulary.SUCCEEDED
        )
    resumed = (
        replica.resume(session, {(row.client_id, _waiting_for(row.task_id)): result})
        if visit.state in model.DECIDED
        else []
    )
    return [result, *resumed]


def _not_found(task: Envelope) -> Envelope:
    return vocabulary.result(
        task,
        context=CONTEXT,
        outcome="visit.rejected",
        status=vocabulary.REJECTED,
        result={"reason": "not_found"},
    )


def _waiting_for(task_id: str) -> str:
    return f"visit:{task_id}"


def _add_visit(session: Transaction, book: Envelope, customer_id: str, state: str) -> uuid.UUID:
    """The visit a visit.book asks for, in state, no side asked yet; its id."""
    visit_id, now = uuid7(), utcnow()
    insert_ignoring_duplicates(
        session,
        visits,
        {
            "visit_id": visit_id,
            "client_id": book.client_id,
            "task_id": book.task_id,
            "customer_id": customer_id,
            "state": state,
            **dict(model.Visit().sides),
            "appointment_id": None,
            "job_id": None,
            "reason": None,
            "book_task": book.to_body(),
            "cancel_task": None,
            "created_at": now,
            "updated_at": now,
        },
    )
    return visit_id


def _visit(row) -> model.Visit:
    return model.Visit(
        state=row.state,
        sides=tuple((side, getattr(row, side)) for side in model.SIDES),
        reason=row.reason,
        canceling=row.cancel_task is not None,
    )


def _save(session: Transaction, row, visit: model.Visit, **changes) -> None:
    session.execute(
        update(visits)
        .where(visits.c.visit_id == row.visit_id)
        .values(state=visit.state, reason=visit.reason, updated_at=utcnow(), **dict(visit.sides), **changes)
    )


def _visit_of(session: Transaction, client_id: str, task_id: str, *, lock: bool = False):
    query = select(visits).where(
        visits.c.client_id == bindparam("client_id"), visits.c.task_id == bindparam("task_id")
    )
    if lock:
        query = query.with_for_update()
    return session.execute(query, {"client_id": client_id, "task_id": task_id}).one_or_none()


def _locked(session: Transaction, client_id: str, visit_id: uuid.UUID):
    """The visit's row, locked: its answers are taken one at a time."""
    return session.execute(
        select(visits).where(visits.c.client_id == client_id, visits.c.visit_id == visit_id).with_for_update()
    ).one_or_none()


# A cancel still waiting for its visit when the wait times out: nothing to cancel.
replica.on_expiry(vocabulary.TARGET_UNDECIDED, _not_found)


def _failed_for_want_of_customer(session: Transaction, books: list[Envelope]) -> list[Envelope]:
    """visit.book tasks the sweeper failed are decided: kept as failed visits (no side was asked),
    so that a visit.cancel of one, waiting or sent later, is not_found at once."""
    resumed = []
    for task in sorted(books, key=lambda book: (book.client_id, book.task_id)):
        serialize_on(session, CONTEXT, "visit", task.client_id, task.task_id)
        _add_visit(session, task, task.payload["customer_id"], model.FAILED)
        resumed += replica.resume(session, {(task.client_id, _waiting_for(task.task_id)): task})
    return resumed


replica.on_failed("visit.book", _failed_for_want_of_customer)

HANDLERS: dict[str, Handler] = {
    "visit.book": replica.needs_customer(book_visit),
    "visit.cancel": cancel_visit,
    vocabulary.VISIT_ANSWER: when_answered,
    **replica.event_handlers(),
}
BATCH_HANDLERS = replica.event_batch_handlers()
