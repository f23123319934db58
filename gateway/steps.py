"""A task's steps between the contexts that are not results (a visit's holds, confirms and
releases, and each side's answers), kept for its timeline."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.tables import task_steps
from messaging import vocabulary
from messaging.db import Transaction, insert_many_ignoring_duplicates
from messaging.envelope import Envelope

# What visits asks of both sides, by message type.
_ASKED = {
    vocabulary.VISIT_HOLD: "hold",
    vocabulary.VISIT_CONFIRM: "confirm",
    vocabulary.VISIT_RELEASE: "release",
}
STEP_TYPES = (*_ASKED, vocabulary.VISIT_ANSWER)


def record_steps(session: Transaction, envelopes: list[Envelope]) -> list[Envelope]:
    """Handler of the visit step messages: one row each (a redelivery adds none)."""
    rows = []
    for envelope in envelopes:
        payload = envelope.payload
        if envelope.type == vocabulary.VISIT_ANSWER:
            context, step = payload["side"], payload["step"]
            detail = {key: payload[key] for key in ("reason", "booking_id") if key in payload}
        else:
            context, step, detail = "visits", _ASKED[envelope.type], {}
        rows.append(
            {
                "message_id": envelope.message_id,
                "task_uuid": envelope.task_uuid,
                "context": context,
                "step": step,
                "detail": {"visit_id": payload["visit_id"], **detail},
                "occurred_at": envelope.occurred_at,
            }
        )
    insert_many_ignoring_duplicates(session, task_steps, rows)
    return []


def record_step(session: Transaction, envelope: Envelope) -> list[Envelope]:
    return record_steps(session, [envelope])


def steps_of(session: Session, task_uuid: uuid.UUID) -> list:
    """The task's steps, oldest first."""
    return session.execute(
        select(task_steps).where(task_steps.c.task_uuid == task_uuid).order_by(task_steps.c.occurred_at)
    ).all()
