"""Message handlers of the maintenance context."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from sqlalchemy import or_, select, update
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
    """maintenance.schedule: book the position for the car unless it is taken. If the linked
    appointment's cancel was accepted after this task and has been applied here already (this task
    waited, say, for its customer), the job is booked and at once canceled by that cancel, as it
    would have been had it been decided first."""
    existing = session.scalar(
        select(jobs.c.job_id).where(jobs.c.client_id == task.client_id, jobs.c.task_id == task.task_id)
    )
    if existing is not None:
        return [_scheduled(task, existing)]
    appointment_task_id = task.payload.get("appointment_task_id")
    cancel = _later_cancel(session, task, customer, appointment_task_id) if appointment_task_id else None
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
            status=ACTIVE if cancel is None else CANCELED,
            canceled_by_task_id=None if cancel is None else cancel.canceled_by_task_id,
            customer_seq=vocabulary.customer_order(task)[0] or None,
            created_at=utcnow(),
        )
    )
    if cancel is None or cancel.canceled_by_task_uuid is None:  # (None: recorded before 0017)
        return [_scheduled(task, job_id)]
    canceled = dataclasses.replace(  # tagged with the cancel, caused by this task's message
        _canceled(_task_of(cancel, task.client_id), job_id, task.task_id),
        causation_id=task.message_id,
        trace=task.trace,
    )
    return [_scheduled(task, job_id), canceled]


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


def _later_cancel(session: Transaction, task: Envelope, customer: Customer, appointment_task_id: str):
    """The recorded cancel of the linked appointment if it applies to this job (see _cancels),
    else None; serialized with that cancel's cascade, so a job is canceled there or here, never
    missed."""
    serialize_on(session, CONTEXT, "appointment", task.client_id, appointment_task_id)
    cancel = session.execute(
        select(canceled_appointments).where(
            canceled_appointments.c.client_id == task.client_id,
            canceled_appointments.c.appointment_task_id == appointment_task_id,
        )
    ).one_or_none()
    if cancel is None or not _cancels(cancel, customer.customer_id, vocabulary.customer_order(task)[0]):
        return None
    return cancel


def _cancels(cancel, customer_id: str | None, job_seq: int | None) -> bool:
    """Whether a cancel of the linked appointment cancels a job: one of the appointment's customer
    accepted before the cancel. A place unknown on either side (written by an earlier release)
    counts as before, as that release had no linked job stand after its appointment's cancel."""
    if cancel.canceled_by_seq is None:
        return True
    return customer_id == cancel.customer_id and (not job_seq or job_seq < cancel.canceled_by_seq)


def _task_of(cancel, client_id: str) -> Envelope:
    """The appointment.cancel a recorded cancel stands for, as results are tagged with it."""
    return Envelope(
        type="appointment.cancel",
        task_id=cancel.canceled_by_task_id,
        task_uuid=cancel.canceled_by_task_uuid,
        client_id=client_id,
        payload={},
    )


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
    """Cancel the jobs linked to the canceled appointment that the cancel applies to (see _cancels);
    each result is tagged with the cancel task. Jobs decided later look the cancel up (_later_cancel)."""
    appointment_task_id = event.payload["appointment_task_id"]
    seq = vocabulary.customer_order(event)[0] or None
    serialize_on(session, CONTEXT, "appointment", event.client_id, appointment_task_id)
    insert_ignoring_duplicates(
        session,
        canceled_appointments,
        {
            "client_id": event.client_id,
            "appointment_task_id": appointment_task_id,
            "canceled_by_task_id": event.task_id,
            "canceled_at": utcnow(),
            "canceled_by_task_uuid": event.task_uuid,
            "customer_id": event.payload.get("customer_id"),
            "canceled_by_seq": seq,
        },
    )
    # _cancels as a condition: with the cancel's place known, its customer's jobs accepted before it.
    applies = (
        []
        if seq is None
        else [
            jobs.c.customer_id == event.payload.get("customer_id"),
            or_(jobs.c.customer_seq.is_(None), jobs.c.customer_seq < seq),
        ]
    )
    canceled = session.execute(
        update(jobs)
        .where(
            jobs.c.client_id == event.client_id,
            jobs.c.appointment_task_id == appointment_task_id,
            jobs.c.status == ACTIVE,
            *applies,
        )
        .values(status=CANCELED, canceled_by_task_id=event.task_id)
        .returning(jobs.c.job_id, jobs.c.task_id)
    ).all()
    return [_canceled(event, row.job_id, row.task_id) for row in canceled]


def _canceled(cancel: Envelope, job_id, maintenance_task_id: str) -> Envelope:
    """The result, tagged with the appointment.cancel, of a job its cascade canceled."""
    return vocabulary.result(
        cancel,
        context=CONTEXT,
        outcome="maintenance.canceled",
        status=vocabulary.SUCCEEDED,
        result={"job_id": str(job_id), "maintenance_task_id": maintenance_task_id},
    )


TASK_HANDLERS = {"maintenance.schedule": replica.needs_customer(schedule_maintenance)}
HANDLERS = {
    **TASK_HANDLERS,
    **replica.event_handlers(),
    vocabulary.APPOINTMENT_CANCELED: when_appointment_canceled,
}  # and the visit steps (see worker.spec)
# maintenance.schedule keeps to one task at a time: it takes two kinds of lock besides the customer's.
BATCH_HANDLERS = replica.event_batch_handlers()
