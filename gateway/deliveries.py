"""Reading deliveries with their attempt log, and putting dead ones back in line."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gateway.tables import delivery_attempts, results, tasks
from messaging.db import utcnow

STATUSES = ("pending", "delivered", "failed")


def find_delivery(session: Session, client_id: str, result_id: uuid.UUID) -> dict | None:
    """A delivery of client_id's with every attempt, oldest first."""
    row = session.execute(
        select(results, tasks.c.task_id)
        .join(tasks, tasks.c.task_uuid == results.c.task_uuid)
        .where(results.c.result_id == result_id, results.c.client_id == client_id)
    ).one_or_none()
    if row is None:
        return None
    attempts = session.execute(
        select(delivery_attempts)
        .where(delivery_attempts.c.result_id == result_id)
        .order_by(delivery_attempts.c.attempted_at, delivery_attempts.c.id)
    ).all()
    return {
        **_summary(row),
        "attempt_log": [
            {
                "attempted_at": attempt.attempted_at,
                "duration_ms": attempt.duration_ms,
                "status_code": attempt.status_code,
                "error": attempt.error,
                "response_body": attempt.response_body,
            }
            for attempt in attempts
        ],
    }


def list_deliveries(
    session: Session, *, client_id: str | None = None, status: str | None = None, limit: int = 100
) -> list[dict]:
    query = (
        select(results, tasks.c.task_id)
        .join(tasks, tasks.c.task_uuid == results.c.task_uuid)
        .order_by(results.c.created_at.desc())
        .limit(limit)
    )
    if client_id:
        query = query.where(results.c.client_id == client_id)
    if status:
        query = query.where(results.c.delivery_status == status)
    return [_summary(row) for row in session.execute(query)]


def _summary(row) -> dict:
    return {
        "result_id": row.result_id,
        "client_id": row.client_id,
        "task_id": row.task_id,
        "task_uuid": row.task_uuid,
        "context": row.context,
        "outcome": row.outcome,
        "status": row.delivery_status,
        "attempts": row.attempts,
        "last_status_code": row.last_status_code,
        "last_error": row.last_error,
        "next_attempt_at": row.next_attempt_at if row.delivery_status == "pending" else None,
        "delivered_at": row.delivered_at,
        "created_at": row.created_at,
    }


def replay(
    session: Session,
    *,
    result_id: uuid.UUID | None = None,
    client_id: str | None = None,
    since: datetime | None = None,
) -> list[uuid.UUID]:
    """Put deliveries back in line now, with a fresh retry schedule and the same webhook-id: one
    delivery by result_id (unless it is pending), or every failed one of client_id (since a time)."""
    if result_id is not None:
        condition = [results.c.result_id == result_id, results.c.delivery_status != "pending"]
    elif client_id is not None:
        condition = [results.c.client_id == client_id, results.c.delivery_status == "failed"]
        if since is not None:
            condition.append(results.c.created_at >= since)
    else:
        raise ValueError("replay needs a result_id or a client_id")
    rows = session.execute(
        update(results)
        .where(*condition)
        .values(
            delivery_status="pending", next_attempt_at=utcnow(), replayed_after_attempts=results.c.attempts
        )
        .returning(results.c.result_id)
    ).all()
    return [row.result_id for row in rows]
