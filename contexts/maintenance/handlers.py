"""Message handlers of the maintenance context."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from uuid6 import uuid7

from contexts.maintenance import model
from contexts.maintenance.tables import (
    ACTIVE,
    CANCELED,
    TAKEN,
    canceled_appointments,
    jobs,
    positions,
    replica,
)
from contexts.replica import Customer
from messaging import vocabulary
from messaging.db import Transaction, insert_ignoring_duplicates, lock_row, serialize_on, utcnow
from messaging.envelope import Envelope

CONTEXT = "maintenance"


def schedule_maintenance(session: Transaction, task: Envelope, customer: Customer) -> list[Envelope]:
    """maintenance.schedule: book the position for the car unless it is taken (or the linked
    appointment is already canceled)."""
    existing = session.scalar(
        select(jobs.c.job_id).where(jobs.c.client_id == task.client_id, jobs.c.task_id == task.task_id)
    )
    if existing is not None:
        return [_scheduled(task, existing)]
    appointment_task_id = task.payload.get("appointment_task_id")
    if appointment_task_id and _appointment_canceled(session, task.client_id, appointment_task_id):
        return [_rejected(task, model.APPOINTMENT_CANCELED)]
    requested = model.Booking.of(
        datetime.fromisoformat(task.payload["starts_at"]), task.payload["duration_minutes"]
    )
    position = task.payload["position"]
    reason = refusal(session, task.client_id, position, requested)
    if reason is not None:
        return [_rejected(task, reason)]
    job_id = uuid7()
    session.execute(
        jobs.insert().values(
            job_id=job_id,
            client_id=task.client_id,
            task_id=task.task_id,
            customer_id=customer.customer_id,
            vin=task.payload["vin"].upper(),
            position=position,
            starts_at=requested.starts_at,
            ends_at=requested.ends_at,
            appointment_task_id=appointment_task_id,
            status=ACTIVE,
            created_at=utcnow(),
        )
    )
    return [_scheduled(task, job_id)]


def refusal(session: Transaction, client_id: str, position: str, requested: model.Booking) -> str | None:
    """Why requested cannot be booked on position, counting active jobs and visits' holds alike
    (one booking of the position at a time: its row is locked until the transaction ends)."""
    lock_row(session, positions, client_id=client_id, position=position)
    rows = session.execute(
        select(jobs.c.starts_at, jobs.c.ends_at).where(
            jobs.c.client_id == client_id,
            jobs.c.position == position,
            jobs.c.status.in_(TAKEN),
            jobs.c.starts_at < requested.ends_at,
            jobs.c.ends_at > requested.starts_at,
        )
    )
    return model.rejection(requested, [model.Booking(row.starts_at, row.ends_at) for row in rows])


def _appointment_canceled(session: Transaction, client_id: str, appointment_task_id: str) -> bool:
    """Whether the linked appointment is canceled; serialized with that cancel's cascade, so a job
    is either refused here or canceled there, never missed."""
    serialize_on(session, CONTEXT, "appointment", client_id, appointment_task_id)
    canceled = session.scalar(
        select(canceled_appointments.c.appointment_task_id).where(
            canceled_appointments.c.client_id == client_id,
            canceled_appointments.c.appointment_task_id == appointment_task_id,
        )
    )
    return canceled is not None


def _scheduled(task: Envelope, job_id) -> Envelope:
    return vocabulary.result(
        task,
        context=CONTEXT,
        outcome="maintenance.scheduled",
        status=vocabulary.SUCCEEDED,
        result={"job_id": str(job_id)},
    )


def _rejected(task: Envelope, reason: str) -> Envelope:
    return vocabulary.result(
        task,
        context=CONTEXT,
        outcome="maintenance.rejected",
        status=vocabulary.REJECTED,
        result={"reason": reason},
    )


def when_appointment_canceled(session: Transaction, event: Envelope) -> list[Envelope]:
    """Cancel the jobs linked to the canceled appointment; each result is tagged with the cancel task."""
    appointment_task_id = event.payload["appointment_task_id"]
    serialize_on(session, CONTEXT, "appointment", event.client_id, appointment_task_id)
    insert_ignoring_duplicates(
        session,
        canceled_appointments,
        {
            "client_id": event.client_id,
            "appointment_task_id": appointment_task_id,
            "canceled_by_task_id": event.task_id,
            "canceled_at": utcnow(),
        },
    )
    canceled = session.execute(
        update(jobs)
        .where(
            jobs.c.client_id == event.client_id,
            jobs.c.appointment_task_id == appointment_task_id,
            jobs.c.status == ACTIVE,
        )
        .values(status=CANCELED, canceled_by_task_id=event.task_id)
        .returning(jobs.c.job_id, jobs.c.task_id)
    ).all()
    return [
        vocabulary.result(
            event,
            context=CONTEXT,
            outcome="maintenance.canceled",
            status=vocabulary.SUCCEEDED,
            result={"job_id": str(row.job_id), "maintenance_task_id": row.task_id},
        )
        for row in canceled
    ]


TASK_HANDLERS = {"maintenance.schedule": replica.needs_customer(schedule_maintenance)}
HANDLERS = {
    **TASK_HANDLERS,
    **replica.event_handlers(),
    vocabulary.APPOINTMENT_CANCELED: when_appointment_canceled,
}  # and the visit steps (see worker.spec)
# maintenance.schedule keeps to one task at a time: it takes two kinds of lock besides the customer's.
BATCH_HANDLERS = replica.event_batch_handlers()
