"""The gateway's writes and reads: accepting tasks with their outbox event, recording results."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from datetime import datetime

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    delete,
    exists,
    insert,
    literal,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from gateway.clients import CLIENT_COLUMNS, Client
from gateway.metrics import RESULTS_RECORDED
from gateway.tables import ACCEPTED, clients, deliveries, outbox, results, tasks, webhook_ids
from messaging import vocabulary
from messaging.db import (
    Among,
    Precompiled,
    Transaction,
    dialect_name,
    insert_ignoring_duplicates,
    insert_many,
    insert_many_ignoring_duplicates,
    utcnow,
)
from messaging.envelope import Envelope
from messaging.outbox import add_to_outbox, outbox_row


class TaskConflict(Exception):
    """The task-id was already used for a task with different content."""


class UnknownTask(LookupError):
    """A result arrived for a task the gateway never accepted."""


@dataclasses.dataclass(frozen=True)
class Acceptance:
    task_uuid: uuid.UUID
    created: bool
    # The task an earlier request with the same webhook-id led to: this one was not processed.
    replay_of: uuid.UUID | None = None
    # False if the sender's secrets were not (or no longer) those the request was verified with.
    sender_current: bool = True


def content_digest(task: dict) -> str:
    canonical = json.dumps(task, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def accept_task(
    connection: Connection | Session,
    client_id: str,
    task_uuid: uuid.UUID,
    task: dict,
    *,
    webhook_id: str | None = None,
    sender: Client | None = None,
) -> Acceptance:
    """Store the task and its routed message, and remember the request's webhook_id, if given, as
    leading to this task; in the caller's transaction (the caller commits) or, on PostgreSQL, on a
    connection in autocommit, for it is all one statement (one round trip).

    Nothing is stored (and the Acceptance says why) if the webhook_id was seen before (replay_of),
    or if sender, the client as the request was verified against, is no longer the stored one
    (sender_current: e.g. its secret was rotated since it was read).

    A task-id seen before with the same content is an idempotent replay (created=False); with
    other content it is a TaskConflict. The unique (client_id, task_id) constraint decides races.
    """
    digest = content_digest(task)
    now = utcnow()
    row = {
        "task_uuid": task_uuid,
        "client_id": client_id,
        "task_id": task["task_id"],
        "type": task["type"],
        "customer_id": task["customer_id"],
        "payload": task["payload"],
        "content_sha256": digest,
        "status": ACCEPTED,
        "received_at": now,
        "updated_at": now,
    }
    routed = Envelope(
        type=task["type"],
        task_id=task["task_id"],
        task_uuid=task_uuid,
        client_id=client_id,
        payload={"customer_id": task["customer_id"], **task["payload"]},
    )
    on_postgresql = dialect_name(connection) == "postgresql"
    if on_postgresql:
        parameters = {**row, **{f"outbox_{name}": value for name, value in outbox_row(routed).items()}}
        if webhook_id is not None:
            parameters["webhook_id"] = webhook_id
        if sender is not None:
            parameters.update({f"sender_{name}": getattr(sender, name) for name in SENDER_SECRETS})
        statement = _ACCEPT[webhook_id is not None, sender is not None]
        outcome = statement.execute(connection, parameters).one()
        if not outcome.sender_current:
            return Acceptance(task_uuid, created=False, sender_current=False)
        if outcome.seen is not None:
            return Acceptance(task_uuid, created=False, replay_of=outcome.seen)
        inserted = outcome.created is not None
    else:
        if sender is not None or webhook_id is not None:
            stored, seen = sender_and_replay(connection, client_id, webhook_id or "")
            if sender is not None and not _same_secrets(stored, sender):
                return Acceptance(task_uuid, created=False, sender_current=False)
            if seen is not None:
                return Acceptance(task_uuid, created=False, replay_of=seen)
        inserted = insert_ignoring_duplicates(connection, tasks, row)
        if inserted:
            add_to_outbox(connection, outbox, [routed])
    if not inserted:
        existing = connection.scalar(
            select(tasks.c.content_sha256).where(
                tasks.c.client_id == client_id, tasks.c.task_id == task["task_id"]
            )
        )
        if existing != digest:
            raise TaskConflict(task["task_id"])
    # On PostgreSQL the statement remembered the webhook-id of a new task; that of an idempotent
    # replay is remembered here (only now is the other content ruled out).
    if webhook_id is not None and (not inserted or not on_postgresql):
        remember_webhook_id(connection, client_id, webhook_id, task_uuid)
    return Acceptance(task_uuid, created=inserted)


# The client's columns a request's signature was verified with.
SENDER_SECRETS = ("signing_secret", "previous_signing_secret", "previous_secret_expires_at")


def _same_secrets(stored: Client | None, sender: Client) -> bool:
    return stored is not None and all(
        getattr(stored, name) == getattr(sender, name) for name in SENDER_SECRETS
    )


def _accept_statement(with_webhook_id: bool, with_sender: bool):
    """accept_task on PostgreSQL as one statement of data-modifying CTEs: the task row, and if it
    was new its outbox row and the webhook-id; none of it if the webhook-id was seen before or the
    sender's secrets changed. Returns the new task's uuid (created), the task the webhook-id led to
    before (seen) and whether the sender's secrets are those given (sender_current)."""
    allowed = []
    outcome = []
    if with_sender:
        sender = (
            select(clients.c.client_id)
            .where(
                clients.c.client_id == bindparam("client_id"),
                *(
                    clients.c[name].is_not_distinct_from(
                        bindparam(f"sender_{name}", type_=clients.c[name].type)
                    )
                    for name in SENDER_SECRETS
                ),
            )
            .cte("sender")
        )
        allowed.append(exists(sender.select()))
        outcome.append(exists(sender.select()).label("sender_current"))
    else:
        outcome.append(literal(True).label("sender_current"))
    if with_webhook_id:
        seen = (
            select(webhook_ids.c.task_uuid)
            .where(
                webhook_ids.c.client_id == bindparam("client_id"),
                webhook_ids.c.webhook_id == bindparam("webhook_id"),
            )
            .cte("seen")
        )
        allowed.append(~exists(seen.select()))
        outcome.append(seen.select().scalar_subquery().label("seen"))
    else:
        outcome.append(null().label("seen"))
    accepted = (
        postgresql.insert(tasks)
        .from_select(
            [column.name for column in tasks.columns],
            select(*(bindparam(column.name, type_=column.type) for column in tasks.columns)).where(*allowed),
        )
        .on_conflict_do_nothing()
        .returning(tasks.c.task_uuid)
        .cte("accepted")
    )
    routed_columns = ["message_id", "exchange", "routing_key", "body", "headers", "created_at"]
    routed = (
        insert(outbox)
        .from_select(
            routed_columns,
            select(
                *(bindparam(f"outbox_{name}", type_=outbox.c[name].type) for name in routed_columns)
            ).select_from(accepted),
        )
        .cte("routed")
    )
    statement = select(accepted.select().scalar_subquery().label("created"), *outcome).add_cte(routed)
    if with_webhook_id:
        remembered = (
            postgresql.insert(webhook_ids)
            .from_select(
                ["client_id", "webhook_id", "task_uuid", "received_at"],
                select(
                    bindparam("client_id"),
                    bindparam("webhook_id"),
                    bindparam("task_uuid", type_=tasks.c.task_uuid.type),
                    bindparam("received_at", type_=tasks.c.received_at.type),
                ).select_from(accepted),
            )
            .on_conflict_do_nothing()
            .cte("remembered")
        )
        statement = statement.add_cte(remembered)
    return statement


_ACCEPT = {
    (with_webhook_id, with_sender): Precompiled(_accept_statement(with_webhook_id, with_sender))
    for with_webhook_id in (False, True)
    for with_sender in (False, True)
}


# Who sends a request, and the task an earlier request with its webhook-id led to: one round trip.
_SENDER_AND_REPLAY = (
    select(*CLIENT_COLUMNS, webhook_ids.c.task_uuid)
    .select_from(
        clients.outerjoin(
            webhook_ids,
            and_(
                webhook_ids.c.client_id == clients.c.client_id,
                webhook_ids.c.webhook_id == bindparam("webhook_id"),
            ),
        )
    )
    .where(clients.c.client_id == bindparam("client_id"))
)


def sender_and_replay(
    connection: Connection, client_id: str, webhook_id: str
) -> tuple[Client | None, uuid.UUID | None]:
    """The client, and the task a request with this webhook-id created or replayed, if one was
    seen recently (None for a client that does not exist)."""
    row = connection.execute(_SENDER_AND_REPLAY, {"client_id": client_id, "webhook_id": webhook_id}).first()
    if row is None:
        return None, None
    *client, replayed = row
    return Client(*client), replayed


def remember_webhook_id(
    connection: Connection | Session, client_id: str, webhook_id: str, task_uuid: uuid.UUID
) -> None:
    insert_ignoring_duplicates(
        connection,
        webhook_ids,
        {"client_id": client_id, "webhook_id": webhook_id, "task_uuid": task_uuid, "received_at": utcnow()},
    )


def forget_webhook_ids(session: Session, older_than: datetime) -> int:
    return session.execute(delete(webhook_ids).where(webhook_ids.c.received_at < older_than)).rowcount


def record_result(session: Transaction, envelope: Envelope) -> list[Envelope]:
    """Handler for result messages: store the result, move the task's status, queue the callback."""
    return record_results(session, [envelope])


def record_results(session: Transaction, envelopes: list[Envelope]) -> list[Envelope]:
    """record_result for many result messages in a few statements, whatever their number."""
    uuids = list({envelope.task_uuid for envelope in envelopes})
    known = {task.task_uuid: task for task in session.execute(_TASKS_OF, {"uuids": uuids})}
    for envelope in envelopes:
        if envelope.task_uuid not in known:
            raise UnknownTask(f"result for unknown task {envelope.task_uuid}")
    rows = [
        {
            "result_id": uuid.UUID(result["result_id"]),
            "task_uuid": envelope.task_uuid,
            "context": result["context"],
            "outcome": result["outcome"],
            "status": result["status"],
            "result": result.get("result") or {},
            "occurred_at": datetime.fromisoformat(result["occurred_at"]),
        }
        for envelope in envelopes
        for result in (envelope.payload,)
    ]
    stored = insert_many_ignoring_duplicates(session, results, rows)
    now = utcnow()
    decided: dict[uuid.UUID, str] = {}
    queued = []
    for row in rows:
        if row["result_id"] not in stored:  # a result recorded before
            continue
        stored.discard(row["result_id"])  # twice in these messages: recorded once
        task = known[row["task_uuid"]]
        RESULTS_RECORDED.labels(row["context"], row["status"]).inc()
        if vocabulary.PRIMARY_CONTEXT.get(task.type) == row["context"]:
            decided.setdefault(task.task_uuid, row["status"])
        queued.append(
            {
                "result_id": row["result_id"],
                "client_id": task.client_id,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
        )
    # The first result of the primary context decides; none may overturn a final status.
    by_status: dict[str, list[uuid.UUID]] = {}
    for task_uuid, status in decided.items():
        by_status.setdefault(status, []).append(task_uuid)
    for status, task_uuids in by_status.items():
        session.execute(_DECIDE, {"uuids": task_uuids, "decided": status, "now": now})
    insert_many(session, deliveries, queued)
    return []


# record_results' statements, built once: only the parameters change from batch to batch.
_TASKS_OF = select(tasks.c.task_uuid, tasks.c.type, tasks.c.client_id).where(
    Among(tasks.c.task_uuid, "uuids")
)
_DECIDE = (
    update(tasks)
    .where(
        Among(tasks.c.task_uuid, "uuids"),
        tasks.c.status.in_((ACCEPTED, vocabulary.WAITING)),
    )
    .values(status=bindparam("decided"), updated_at=bindparam("now"))
)


def record_status(session: Transaction, envelope: Envelope) -> list[Envelope]:
    """Handler for status messages: a task its primary context parked is `waiting`."""
    context, status = envelope.payload["context"], envelope.payload["status"]
    if status != vocabulary.WAITING:
        raise ValueError(f"unknown task status {status!r}")
    task_type = session.scalar(select(tasks.c.type).where(tasks.c.task_uuid == envelope.task_uuid))
    if task_type is None:
        raise UnknownTask(f"status for unknown task {envelope.task_uuid}")
    if vocabulary.PRIMARY_CONTEXT.get(task_type) == context:
        # Only from `accepted`: a result that overtook this message has the last word.
        session.execute(
            update(tasks)
            .where(tasks.c.task_uuid == envelope.task_uuid, tasks.c.status == ACCEPTED)
            .values(status=status, updated_at=utcnow())
        )
    return []


def find_task(session: Session, client_id: str, task_id: str | None = None, *, task_uuid=None) -> dict | None:
    """The task's representation per CONTRACT §4 (by task_id or task_uuid), or None."""
    query = select(tasks).where(tasks.c.client_id == client_id)
    query = (
        query.where(tasks.c.task_uuid == task_uuid) if task_uuid else query.where(tasks.c.task_id == task_id)
    )
    row = session.execute(query).one_or_none()
    return _with_results(session, [row])[0] if row else None


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
    return _with_results(session, page), more


def _with_results(session: Session, rows) -> list[dict]:
    uuids = [row.task_uuid for row in rows]
    by_task: dict[uuid.UUID, list] = {u: [] for u in uuids}
    result_rows = session.execute(
        select(
            results,
            deliveries.c.status.label("delivery_status"),
            deliveries.c.attempts,
            deliveries.c.last_status_code,
            deliveries.c.next_attempt_at,
        )
        .join(deliveries, deliveries.c.result_id == results.c.result_id, isouter=True)
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
                if r.delivery_status is not None
            ],
        }
        for row in rows
    ]


def tasks_with_results(session: Session, rows) -> list[dict]:
    """Rows of the tasks table as find_task describes them (results and deliveries included)."""
    return _with_results(session, rows)
