"""The gateway's writes and reads: accepting tasks with their outbox event, recording results."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import datetime
from types import SimpleNamespace

from sqlalchemy import (
    Boolean,
    Connection,
    and_,
    bindparam,
    case,
    delete,
    exists,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gateway.clients import CLIENT_COLUMNS, Client
from gateway.metrics import RESULTS_RECORDED
from gateway.tables import (
    ACCEPTED,
    clients,
    customer_order,
    deliveries,
    outbox,
    results,
    tasks,
    webhook_ids,
)
from messaging import vocabulary
from messaging.db import (
    Among,
    Transaction,
    dialect_name,
    insert_ignoring_duplicates,
    insert_many,
    insert_many_ignoring_duplicates,
    utcnow,
)
from messaging.envelope import Envelope
from messaging.outbox import add_to_outbox


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
    # The outbox rows written, to publish once the transaction has committed.
    messages: list[dict] = dataclasses.field(default_factory=list)


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
    """Store the task with its place in its customer's order and its routed message, and remember
    the request's webhook_id, if given, as leading to this task; in the caller's transaction (the
    caller commits, which is when the place counts as taken).

    Nothing is stored (and the Acceptance says why) if the webhook_id was seen before (replay_of),
    or if sender, the client as the request was verified against, is no longer the stored one
    (sender_current: e.g. its secret was rotated since it was read).

    A task-id seen before with the same content is an idempotent replay (created=False); with
    other content it is a TaskConflict. The unique (client_id, task_id) constraint decides races.
    """
    # The common case in one statement: the webhook-id is new and the sender's secrets are those
    # the request was verified with. Only when it is not is there more to read.
    remembered = webhook_id is not None and _remember(connection, client_id, webhook_id, task_uuid, sender)
    if not remembered and (sender is not None or webhook_id is not None):
        stored, seen = sender_and_replay(connection, client_id, webhook_id or "")
        if sender is not None and not _same_secrets(stored, sender):
            return Acceptance(task_uuid, created=False, sender_current=False)
        if seen is not None:
            return Acceptance(task_uuid, created=False, replay_of=seen)
        if webhook_id is not None:  # what held it back is gone (a concurrent request rolled back)
            remember_webhook_id(connection, client_id, webhook_id, task_uuid)
    digest = content_digest(task)
    # The place is taken first: its row lock then orders every accept of this customer, the
    # new task's insert included. An idempotent replay leaves a gap in the places, which is harmless.
    place = take_place(connection, client_id, task["customer_id"], upsert=task["type"] == "customer.upsert")
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
        "customer_seq": place.seq,
        "waiting_reason": None,
    }
    inserted = insert_ignoring_duplicates(connection, tasks, row)
    if inserted:
        written = add_to_outbox(connection, outbox, [_routed(connection, client_id, task_uuid, task, place)])
        return Acceptance(task_uuid, created=True, messages=written)
    existing = connection.scalar(
        select(tasks.c.content_sha256).where(
            tasks.c.client_id == client_id, tasks.c.task_id == task["task_id"]
        )
    )
    if existing != digest:
        raise TaskConflict(task["task_id"])  # the caller's rollback forgets the webhook-id too
    return Acceptance(task_uuid, created=False)


def _remember(
    connection, client_id: str, webhook_id: str, task_uuid: uuid.UUID, sender: Client | None
) -> bool:
    """Remember webhook_id as leading to task_uuid if it is new and (given a sender) the client's
    secrets are the sender's; whether it was."""
    parameters = {
        "client_id": client_id,
        "webhook_id": webhook_id,
        "task_uuid": task_uuid,
        "received_at": utcnow(),
    }
    if sender is not None:
        parameters.update({f"sender_{name}": getattr(sender, name) for name in SENDER_SECRETS})
    statement = _remember_statement(dialect_name(connection), sender is not None)
    return connection.execute(statement, parameters).first() is not None


@functools.cache
def _remember_statement(dialect: str, with_sender: bool):
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    columns = ("client_id", "webhook_id", "task_uuid", "received_at")
    row = select(*(bindparam(name, type_=webhook_ids.c[name].type) for name in columns))
    if with_sender:
        current = select(clients.c.client_id).where(
            clients.c.client_id == bindparam("client_id"),
            *(
                clients.c[name].is_not_distinct_from(bindparam(f"sender_{name}", type_=clients.c[name].type))
                for name in SENDER_SECRETS
            ),
        )
        row = row.where(exists(current))
    else:
        row = row.where(true())  # SQLite reads ON CONFLICT after a SELECT only behind a WHERE
    return (
        insert(webhook_ids)
        .from_select(list(columns), row)
        .on_conflict_do_nothing()
        .returning(webhook_ids.c.webhook_id)
    )


def _routed(connection, client_id: str, task_uuid: uuid.UUID, task: dict, place: Place) -> Envelope:
    """The task as its context gets it: with its place in the customer's order and, for a
    cancel, whether the task it cancels was accepted before it."""
    payload = {"customer_id": task["customer_id"], **task["payload"], "order": place.as_payload()}
    if task["type"] in CANCELS:
        target_key, target_type = CANCELS[task["type"]]
        payload["target_accepted"] = _accepted_before(
            connection, client_id, task["payload"][target_key], target_type
        )
    return Envelope(
        type=task["type"], task_id=task["task_id"], task_uuid=task_uuid, client_id=client_id, payload=payload
    )


# A cancel: the payload key naming the task it cancels, and that task's type.
CANCELS = {
    "appointment.cancel": ("appointment_task_id", "appointment.schedule"),
    "visit.cancel": ("visit_task_id", "visit.book"),
}


def _accepted_before(connection, client_id: str, task_id: str, task_type: str) -> bool:
    found = connection.scalar(
        select(tasks.c.task_uuid).where(
            tasks.c.client_id == client_id, tasks.c.task_id == task_id, tasks.c.type == task_type
        )
    )
    return found is not None


@dataclasses.dataclass(frozen=True)
class Place:
    """A task's place in its customer's order: its own number, and that of the last
    customer.upsert accepted up to it (itself, for an upsert; 0 if none yet)."""

    seq: int
    upserts: int

    def as_payload(self) -> dict[str, int]:
        return {"seq": self.seq, "upserts": self.upserts}


def take_place(connection, client_id: str, customer_id: str, *, upsert: bool) -> Place:
    """The next place in the customer's order, held (row lock) until the transaction ends."""
    statement = _take_place(dialect_name(connection))
    row = connection.execute(
        statement, {"client_id": client_id, "customer_id": customer_id, "upsert": upsert}
    ).one()
    return Place(row.last_seq, row.last_upsert_seq)


@functools.cache
def _take_place(dialect: str):
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    upsert = bindparam("upsert", type_=Boolean)
    statement = insert(customer_order).values(
        client_id=bindparam("client_id"),
        customer_id=bindparam("customer_id"),
        last_seq=1,
        last_upsert_seq=case((upsert, 1), else_=0),
    )
    following = customer_order.c.last_seq + 1
    return statement.on_conflict_do_update(
        index_elements=[customer_order.c.client_id, customer_order.c.customer_id],
        set_={
            "last_seq": following,
            "last_upsert_seq": case((upsert, following), else_=customer_order.c.last_upsert_seq),
        },
    ).returning(customer_order.c.last_seq, customer_order.c.last_upsert_seq)


# The client's columns a request's signature was verified with.
SENDER_SECRETS = ("signing_secret", "previous_signing_secret", "previous_secret_expires_at")


def _same_secrets(stored: Client | None, sender: Client) -> bool:
    return stored is not None and all(
        getattr(stored, name) == getattr(sender, name) for name in SENDER_SECRETS
    )


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


# A dispatcher's offer to take fresh deliveries at once (CallbackDispatcher.offer).
Offer = Callable[[Transaction, list], dict]


def record_result(session: Transaction, envelope: Envelope, offer: Offer | None = None) -> list[Envelope]:
    """Handler for result messages: store the result, move the task's status, queue the callback."""
    return record_results(session, [envelope], offer)


def record_results(
    session: Transaction, envelopes: list[Envelope], offer: Offer | None = None
) -> list[Envelope]:
    """record_result for many result messages in a few statements, whatever their number. With
    offer, the deliveries a dispatcher of this process takes at once are recorded leased to it."""
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
    if offer is not None:
        leases = offer(session, _fresh(rows, {row["result_id"] for row in queued}, known), len(queued))
        for row in queued:
            row["next_attempt_at"] = leases.get(row["result_id"], now)
    # The first result of the primary context decides; none may overturn a final status.
    by_status: dict[str, list[uuid.UUID]] = {}
    for task_uuid, status in decided.items():
        by_status.setdefault(status, []).append(task_uuid)
    for status, task_uuids in by_status.items():
        session.execute(_DECIDE, {"uuids": task_uuids, "decided": status, "now": now})
    insert_many(session, deliveries, queued)
    return []


def _fresh(rows: list[dict], queued: set, known: dict) -> list[SimpleNamespace]:
    """The deliveries just queued that may go out at once, as a dispatcher attempts them: of each
    task the earliest new result, if no earlier one of it is still pending."""
    first: dict[uuid.UUID, dict] = {}
    for row in rows:
        earliest = first.get(row["task_uuid"])
        if row["result_id"] in queued and (earliest is None or row["occurred_at"] < earliest["occurred_at"]):
            first[row["task_uuid"]] = row
    return [
        SimpleNamespace(
            **{name: row[name] for name in ("result_id", "context", "outcome", "status", "result")},
            **{name: getattr(task, name) for name in _ATTEMPT_COLUMNS},
            attempts=0,
            replayed_after_attempts=0,
        )
        for task_uuid, row in first.items()
        if not (task := known[task_uuid]).pending
    ]


# record_results' statements, built once: only the parameters change from batch to batch.
_ATTEMPT_COLUMNS = ("task_uuid", "task_id", "received_at", *(column.name for column in CLIENT_COLUMNS))
_PENDING = (
    select(deliveries.c.result_id)
    .join(results, results.c.result_id == deliveries.c.result_id)
    .where(results.c.task_uuid == tasks.c.task_uuid, deliveries.c.status == "pending")
    .exists()
)
_TASKS_OF = (
    select(tasks.c.task_uuid, tasks.c.type, tasks.c.task_id, tasks.c.received_at, *CLIENT_COLUMNS)
    .add_columns(_PENDING.label("pending"))
    .join(clients, clients.c.client_id == tasks.c.client_id)
    .where(Among(tasks.c.task_uuid, "uuids"))
)
UNDECIDED = (ACCEPTED, vocabulary.WAITING)
_DECIDE = (
    update(tasks)
    .where(
        Among(tasks.c.task_uuid, "uuids"),
        tasks.c.status.in_(UNDECIDED),
    )
    .values(status=bindparam("decided"), updated_at=bindparam("now"), waiting_reason=None)
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
        # Only while undecided: a result that overtook this message has the last word.
        session.execute(
            update(tasks)
            .where(tasks.c.task_uuid == envelope.task_uuid, tasks.c.status.in_(UNDECIDED))
            .values(status=status, waiting_reason=envelope.payload.get("reason"), updated_at=utcnow())
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
                if r.delivery_status is not None
            ],
        }
        for row in rows
    ]


def tasks_with_results(session: Session, rows) -> list[dict]:
    """Rows of the tasks table as find_task describes them (results and deliveries included)."""
    return _with_results(session, rows)
