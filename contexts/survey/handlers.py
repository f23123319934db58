"""Message handlers of the survey context."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session
from uuid6 import uuid7

from contexts.survey.tables import invitations, replica
from messaging import vocabulary
from messaging.db import utcnow
from messaging.envelope import Envelope
from messaging.replica import Customer

CONTEXT = "survey"


def assign_survey(session: Session, task: Envelope, customer: Customer) -> list[Envelope]:
    """survey.assign: invite the customer at the email replicated right now."""
    existing = session.execute(
        select(invitations.c.invitation_id, invitations.c.email).where(
            invitations.c.client_id == task.client_id, invitations.c.task_id == task.task_id
        )
    ).one_or_none()
    if existing is None:
        due_date = task.payload.get("due_date")
        invitation_id, email = uuid7(), customer.email
        session.execute(
            invitations.insert().values(
                invitation_id=invitation_id,
                client_id=task.client_id,
                task_id=task.task_id,
                customer_id=customer.customer_id,
                survey_id=task.payload["survey_id"],
                due_date=date.fromisoformat(due_date) if due_date else None,
                email=email,
                created_at=utcnow(),
            )
        )
    else:
        invitation_id, email = existing
    return [
        vocabulary.result(
            task,
            context=CONTEXT,
            outcome="survey.assigned",
            status=vocabulary.SUCCEEDED,
            result={"invitation_id": str(invitation_id), "email": email},
        )
    ]


TASK_HANDLERS = {"survey.assign": replica.needs_customer(assign_survey)}
HANDLERS = {**TASK_HANDLERS, **replica.event_handlers()}
