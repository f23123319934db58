"""What the delivery tests share: a task with results recorded, and a delivery's row."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.config import DEFAULT_NAMESPACE
from gateway.identity import task_uuid
from gateway.intake import accept_task
from gateway.results import record_result
from gateway.tables import results
from messaging import vocabulary
from messaging.envelope import Envelope
from tests.factories import upsert_task


def results_for(engine, client_id: str, task_id: str, count: int = 1) -> list[uuid.UUID]:
    """Accept a task of client_id and record count results for it, oldest first."""
    identity = task_uuid(DEFAULT_NAMESPACE, client_id, task_id)
    cause = Envelope("customer.upsert", task_id, identity, client_id, {})
    made = []
    with Session(engine) as session, session.begin():
        accept_task(session, client_id, identity, upsert_task(task_id))
        for number in range(count):
            result = vocabulary.result(
                cause, context="customers", outcome=f"step.{number}", status="succeeded"
            )
            record_result(session, result)
            made.append(uuid.UUID(result.payload["result_id"]))
    return made


def delivery(engine, result_id):
    """The result's delivery: its status (as `status`), attempts and when it is due."""
    with Session(engine) as session:
        return session.execute(
            select(
                results.c.delivery_status.label("status"),
                results.c.attempts,
                results.c.replayed_after_attempts,
                results.c.next_attempt_at,
                results.c.last_status_code,
                results.c.last_error,
                results.c.delivered_at,
            ).where(results.c.result_id == result_id)
        ).one()
