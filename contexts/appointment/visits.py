"""The desk's side of a visit: a slot held for it, confirmed or given up (contexts.reservations)."""

from __future__ import annotations

import uuid

from sqlalchemy import update
from uuid6 import uuid7

from contexts.appointment import model
from contexts.appointment.handlers import BOOK, refusal, requested_slot
from contexts.appointment.tables import ACTIVE, HELD, RELEASED, TAKEN, appointments, resources
from messaging.db import Transaction, lock_row, utcnow
from messaging.envelope import Envelope


class VisitSlots:
    """The desk's side of a visit (contexts.reservations.Booking): a held appointment."""

    def __init__(self, limits: model.Limits):
        self.limits = limits

    def hold(self, session: Transaction, request: Envelope):
        payload, requested = request.payload, requested_slot(request)
        lock_row(session, resources, client_id=request.client_id, resource_id=payload["resource_id"])
        reason = refusal(
            session, request.client_id, payload["customer_id"], payload["resource_id"], requested, self.limits
        )
        if reason is not None:
            return None, reason
        appointment_id = uuid7()
        session.execute(
            BOOK,
            {
                "appointment_id": appointment_id,
                "client_id": request.client_id,
                "task_id": request.task_id,
                "customer_id": payload["customer_id"],
                "resource_id": payload["resource_id"],
                "starts_at": requested.starts_at,
                "ends_at": requested.ends_at,
                "status": HELD,
                "created_at": utcnow(),
                "visit_id": uuid.UUID(payload["visit_id"]),
            },
        )
        return appointment_id, None

    def confirm(self, session: Transaction, appointment_id) -> None:
        _set_status(session, appointment_id, HELD, ACTIVE)

    def give_up(self, session: Transaction, appointment_id) -> None:
        _set_status(session, appointment_id, TAKEN, RELEASED)


def _set_status(session: Transaction, appointment_id, before, after: str) -> None:
    statuses = (before,) if isinstance(before, str) else before
    session.execute(
        update(appointments)
        .where(appointments.c.appointment_id == appointment_id, appointments.c.status.in_(statuses))
        .values(status=after)
    )
