"""The workshop's side of a visit: a position held for it, confirmed or given up
(contexts.reservations)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import update
from uuid6 import uuid7

from contexts.maintenance import model
from contexts.maintenance.handlers import refusal
from contexts.maintenance.tables import ACTIVE, HELD, RELEASED, TAKEN, jobs
from messaging.db import Transaction, utcnow
from messaging.envelope import Envelope


class VisitPositions:
    """The workshop's side of a visit (contexts.reservations.Booking): a held job."""

    def hold(self, session: Transaction, request: Envelope):
        payload = request.payload
        requested = model.Booking.of(
            datetime.fromisoformat(payload["starts_at"]), payload["duration_minutes"]
        )
        reason = refusal(session, request.client_id, payload["position"], requested)
        if reason is not None:
            return None, reason
        job_id = uuid7()
        session.execute(
            jobs.insert().values(
                job_id=job_id,
                client_id=request.client_id,
                task_id=request.task_id,
                customer_id=payload["customer_id"],
                vin=payload["vin"].upper(),
                position=payload["position"],
                starts_at=requested.starts_at,
                ends_at=requested.ends_at,
                status=HELD,
                created_at=utcnow(),
                visit_id=uuid.UUID(payload["visit_id"]),
            )
        )
        return job_id, None

    def confirm(self, session: Transaction, job_id) -> None:
        session.execute(
            update(jobs).where(jobs.c.job_id == job_id, jobs.c.status == HELD).values(status=ACTIVE)
        )

    def give_up(self, session: Transaction, job_id) -> None:
        session.execute(
            update(jobs).where(jobs.c.job_id == job_id, jobs.c.status.in_(TAKEN)).values(status=RELEASED)
        )
