"""Message handlers of the appointment context."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, select, update
from uuid6 import uuid7

from contexts.appointment import model
from contexts.appointment.tables import (
    ACTIVE,
    CANCELED,
    TAKEN,
    appointments,
    decided_schedules,
    replica,
    resources,
)
from contexts.replica import Customer, CustomerBatchHandler, CustomerTaskHandler
from contexts.reservations import ReservationSide
from messaging import vocabulary
from messaging.db import (
    Transaction,
    insert_many_ignoring_duplicates,
    lock_row,
    serialize_on,
    serialize_on_many,
    utcnow,
)
from messaging.envelope import Envelope
from messaging.handling import BatchHandler, Handler

CONTEXT = "appointment"


def _slots(session: Transaction, query, **parameters) -> list[model.Slot]:
    return [model.Slot(row.starts_at, row.ends_at) for row in session.execute(query, parameters)]


def _active_slots(column):
    """Active or held appointments of a client's given column value overlapping [since, until)."""
    return select(appointments.c.starts_at, appointments.c.ends_at).where(
        appointments.c.status.in_(TAKEN),
        appointments.c.client_id == bindparam("client_id"),
        column == bindparam("of"),
        appointments.c.starts_at < bindparam("until"),
        appointments.c.ends_at > bindparam("since"),
    )


_RESOURCE_SLOTS = _active_slots(appointments.c.resource_id)
_CUSTOMER_SLOTS = _active_slots(appointments.c.customer_id)
BOOK = appointments.insert()


def make_schedule(limits: model.Limits) -> tuple[CustomerTaskHandler, CustomerBatchHandler]:
    """appointment.schedule, for one task and for a batch (both run in needs_customer(s), which
    has serialized the customers already)."""

    def schedule_appointment(session: Transaction, task: Envelope, customer: Customer) -> list[Envelope]:
        """appointment.schedule: book the slot unless a rule forbids it."""
        return schedule_appointments(session, [(task, customer)])

    def schedule_appointments(session: Transaction, ready: list[tuple[Envelope, Customer]]) -> list[Envelope]:
        """appointment.schedule for a batch, in order, with the effects of one task at a time.
        Each decision resumes the cancels that wait for it, before the next task is decided (a
        cancel the client sent before a later schedule frees the hour for it)."""
        tasks = [task for task, _ in ready]
        _lock_resources(session, tasks)
        serialize_on_many(session, [_decision_key(task.client_id, task.task_id) for task in tasks])
        decided = sorted({(task.client_id, task.task_id) for task in tasks})
        insert_many_ignoring_duplicates(
            session,
            decided_schedules,
            [{"client_id": c, "task_id": t, "decided_at": utcnow()} for c, t in decided],
        )
        caused = []
        for task, customer in ready:
            caused += book(session, task, customer)
            caused += replica.resume(session, {(task.client_id, _waiting_for(task.task_id)): task})
        return caused

    def book(session: Transaction, task: Envelope, customer: Customer) -> list[Envelope]:
        existing = _appointment_of(session, task.client_id, task.task_id)
        if existing is not None:  # the same task again (e.g. resumed twice): same answer
            return [_scheduled(task, existing.appointment_id)]
        requested = requested_slot(task)
        resource_id = task.payload["resource_id"]
        reason = refusal(session, task.client_id, customer.customer_id, resource_id, requested, limits)
        if reason is not None:
            return [
                vocabulary.result(
                    task,
                    context=CONTEXT,
                    outcome="appointment.rejected",
                    status=vocabulary.REJECTED,
                    result={"reason": reason},
                )
            ]
        appointment_id = uuid7()
        session.execute(
            BOOK,
            {
                "appointment_id": appointment_id,
                "client_id": task.client_id,
                "task_id": task.task_id,
                "customer_id": customer.customer_id,
                "resource_id": resource_id,
                "starts_at": requested.starts_at,
                "ends_at": requested.ends_at,
                "status": ACTIVE,
                "created_at": utcnow(),
                "visit_id": None,
            },
        )
        event = task.caused(
            vocabulary.APPOINTMENT_SCHEDULED,
            {
                "appointment_id": str(appointment_id),
                "appointment_task_id": task.task_id,
                "customer_id": customer.customer_id,
                "resource_id": resource_id,
                "starts_at": requested.starts_at.isoformat(),
                "ends_at": requested.ends_at.isoformat(),
            },
        )
        return [event, _scheduled(task, appointment_id)]

    return schedule_appointment, schedule_appointments


def requested_slot(message: Envelope) -> model.Slot:
    return model.Slot.of(
        datetime.fromisoformat(message.payload["starts_at"]), message.payload["duration_minutes"]
    )


def refusal(
    session: Transaction, client_id: str, customer_id: str, resource_id: str, requested: model.Slot, limits
) -> str | None:
    """Why requested cannot be booked for the customer on the resource (whose row the caller has
    locked), counting active appointments and visits' holds alike; None if it can."""
    span = model.window(requested)
    resource_slots = _slots(
        session,
        _RESOURCE_SLOTS,
        client_id=client_id,
        of=resource_id,
        since=span.starts_at,
        until=span.ends_at,
    )
    customer_slots = _slots(
        session,
        _CUSTOMER_SLOTS,
        client_id=client_id,
        of=customer_id,
        since=requested.starts_at,
        until=requested.ends_at,
    )
    return model.rejection(requested, resource_slots, customer_slots, limits)


def _lock_resources(session: Transaction, tasks: list[Envelope]) -> None:
    """Hold the tasks' resources, one booking of each at a time. Taken in a fixed order (after the
    customers, which needs_customers locks first), so that two batches of schedules cannot
    deadlock. (A consumer's transaction can also hold runs of other message types, whose locks
    are not ordered with these; PostgreSQL then detects the deadlock, the batch rolls back and its
    messages are handled one by one.)"""
    for client_id, resource_id in sorted({(task.client_id, task.payload["resource_id"]) for task in tasks}):
        lock_row(session, resources, client_id=client_id, resource_id=resource_id)


def _scheduled(task: Envelope, appointment_id) -> Envelope:
    return vocabulary.result(
        task,
        context=CONTEXT,
        outcome="appointment.scheduled",
        status=vocabulary.SUCCEEDED,
        result={"appointment_id": str(appointment_id)},
    )


def _appointment_of(session: Transaction, client_id: str, task_id: str):
    return session.execute(_APPOINTMENT_OF, {"client_id": client_id, "task_id": task_id}).one_or_none()


_APPOINTMENT_OF = select(appointments).where(
    appointments.c.client_id == bindparam("client_id"), appointments.c.task_id == bindparam("task_id")
)


def _decision_key(client_id: str, task_id: str) -> tuple[str, ...]:
    """What a schedule's decision and a cancel of it serialize on (one waits for the other)."""
    return (CONTEXT, "schedule", client_id, task_id)


def _waiting_for(task_id: str) -> str:
    return f"task:{task_id}"


def cancel_appointment(session: Transaction, task: Envelope) -> list[Envelope]:
    """appointment.cancel: cancel the active appointment that appointment_task_id booked. If that
    schedule was accepted (the gateway says) but is not decided yet, the cancel waits for it."""
    target = task.payload["appointment_task_id"]
    serialize_on(session, *_decision_key(task.client_id, target))
    canceled = session.execute(
        update(appointments)
        .where(
            appointments.c.client_id == task.client_id,
            appointments.c.task_id == target,
            appointments.c.customer_id == task.payload["customer_id"],
            appointments.c.status == ACTIVE,
            appointments.c.visit_id.is_(None),  # a visit's slot is canceled by visit.cancel
        )
        .values(status=CANCELED, canceled_by_task_id=task.task_id)
        .returning(appointments.c.appointment_id)
    ).first()
    if canceled is None:
        if task.payload.get("target_accepted") and not _decided(session, task.client_id, target):
            return [replica.park_until(session, task, _waiting_for(target), vocabulary.TARGET_UNDECIDED)]
        return [_not_found(task)]
    appointment_id = str(canceled.appointment_id)
    event = task.caused(
        vocabulary.APPOINTMENT_CANCELED,
        {
            "appointment_id": appointment_id,
            "appointment_task_id": target,
            "customer_id": task.payload["customer_id"],
            # The cancel's place in its customer's order: a linked job accepted before the cancel
            # but decided after it is canceled all the same (contexts.maintenance.handlers).
            "order": task.payload.get("order") or {},
        },
    )
    result = vocabulary.result(
        task,
        context=CONTEXT,
        outcome="appointment.canceled",
        status=vocabulary.SUCCEEDED,
        result={"appointment_id": appointment_id},
    )
    return [event, result]


def _not_found(task: Envelope) -> Envelope:
    return vocabulary.result(
        task,
        context=CONTEXT,
        outcome="appointment.rejected",
        status=vocabulary.REJECTED,
        result={"reason": "not_found"},
    )


def _decided(session: Transaction, client_id: str, task_id: str) -> bool:
    return session.execute(_DECIDED, {"client_id": client_id, "task_id": task_id}).first() is not None


_DECIDED = select(decided_schedules.c.task_id).where(
    decided_schedules.c.client_id == bindparam("client_id"),
    decided_schedules.c.task_id == bindparam("task_id"),
)

# A cancel still waiting for its schedule when the wait times out: nothing to cancel.
replica.on_expiry(vocabulary.TARGET_UNDECIDED, _not_found)


def _failed_for_want_of_customer(session: Transaction, schedules: list[Envelope]) -> list[Envelope]:
    """Schedules the sweeper failed are decided: a cancel of one, waiting or sent later, finds
    nothing to cancel at once (`not_found`) instead of waiting out a timeout of its own."""
    keys = sorted({(task.client_id, task.task_id) for task in schedules})
    serialize_on_many(session, [_decision_key(*key) for key in keys])
    insert_many_ignoring_duplicates(
        session, decided_schedules, [{"client_id": c, "task_id": t, "decided_at": utcnow()} for c, t in keys]
    )
    return replica.resume(session, {(task.client_id, _waiting_for(task.task_id)): task for task in schedules})


replica.on_failed("appointment.schedule", _failed_for_want_of_customer)


def build_handlers(
    limits: model.Limits, visits: ReservationSide | None = None
) -> tuple[dict[str, Handler], dict[str, BatchHandler]]:
    """The handlers (with the visit steps of visits, if given), and the batch handlers of the
    message types that have them."""
    schedule_one, schedule_many = make_schedule(limits)
    handlers = {
        "appointment.schedule": replica.needs_customer(schedule_one),
        "appointment.cancel": cancel_appointment,
        **replica.event_handlers(),
        **(visits.handlers() if visits else {}),
    }
    batch_handlers = {
        "appointment.schedule": replica.needs_customers(schedule_many),
        **replica.event_batch_handlers(),
    }
    return handlers, batch_handlers
