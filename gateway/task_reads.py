"""Reading tasks back as the API shows them: with their results and the results' deliveries."""

from __future__ import annotations

import uuid

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from gateway.tables import results, tasks
from messaging import vocabulary


def find_task(session: Session, client_id: str, task_id: str | None = None, *, task_uuid=None) -> dict | None:
    """The task's representation per CONTRACT §4 (by task_id or task_uuid), or None."""
    key = tasks.c.task_uuid == task_uuid if task_uuid else tasks.c.task_id == task_id
    row = session.execute(select(tasks).where(tasks.c.client_id == client_id, key)).one_or_none()
    return tasks_with_results(session, [row])[0] if row else None


def list_tasks(
    session: Session, client_id: str, *, status: str | None, limit: int, after: tuple | None
) -> tuple[list[dict], tuple | None]:
    """A page of tasks, oldest first; returns (items, key of the last item if more follow)."""
    query = select(tasks).where(tasks.c.client_id == client_id)
    if status:
        query = query.where(tasks.c.status == status)
    if after:
        received_at, task_uuid = after
        query = query.where(
            or_(
                tasks.c.received_at > received_at,
                and_(tasks.c.received_at == received_at, tasks.c.task_uuid > task_uuid),
            )
        )
    rows = session.execute(query.order_by(tasks.c.received_at, tasks.c.task_uuid).limit(limit + 1)).all()
    page = rows[:limit]
    more = (page[-1].received_at, page[-1].task_uuid) if len(rows) > limit else None
    return tasks_with_results(session, page), more


def tasks_with_results(session: Session, rows) -> list[dict]:
    """Rows of the tasks table as find_task describes them (results and deliveries included)."""
    uuids = [row.task_uuid for row in rows]
    by_task: dict[uuid.UUID, list] = {u: [] for u in uuids}
    result_rows = session.execute(
        select(results)
        .where(results.c.task_uuid.in_(uuids))
        .order_by(results.c.occurred_at, results.c.result_id)
    ).all()
    for r in result_rows:
        by_task[r.task_uuid].append(r)
    return [
        {
            "task_id": row.task_id,
            "task_uuid": row.task_uuid,
            "content_sha256": row.content_sha256,
            "type": row.type,
            "customer_id": row.customer_id,
            "status": row.status,
            "waiting_reason": row.waiting_reason if row.status == vocabulary.WAITING else None,
            "received_at": row.received_at,
            "results": [
                {
                    "result_id": r.result_id,
                    "context": r.context,
                    "outcome": r.outcome,
                    "status": r.status,
                    "result": r.result,
                    "occurred_at": r.occurred_at,
                }
                for r in by_task[row.task_uuid]
            ],
            "deliveries": [
                {
                    "result_id": r.result_id,
                    "status": r.delivery_status,
                    "attempts": r.attempts,
                    "last_status_code": r.last_status_code,
                    "next_attempt_at": r.next_attempt_at if r.delivery_status == "pending" else None,
                }
                for r in by_task[row.task_uuid]
            ],
        }
        for row in rows
    ]
