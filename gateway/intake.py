"""Taking tasks in: each accepted task with its place in its customer's order and its routed
message, in the webhook's transaction; replays and reused webhook-ids answered, not processed."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    Connection,
    and_,
    bindparam,
    case,
    delete,
    exists,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session

from gateway.clients import CLIENT_COLUMNS, Client
from gateway.tables import (
    ACCEPTED,
    clients,
    customer_order,
    outbox,
    tasks,
    webhook_ids,
)
from messaging.db import (
    backend,
    insert_ignoring_duplicates,
    utcnow,
)
from messaging.envelope import Envelope
from messaging.outbox import add_to_outbox
from messaging.tracing import tracer


class TaskConflict(Exception):
    """The task-id was already used for a task with different content."""


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
    trace: dict[str, str] | None = None,
) -> Acceptance:
    """Store the task with its place in its customer's order and its routed message, and remember
    the request's webhook_id, if given, as leading to this task; in the caller's transaction (the
    caller commits, which is when the place counts as taken).

    Nothing is stored (and the Acceptance says why) if the webhook_id was seen before (replay_of),
    or if sender, the client as the request was verified against, is no longer the stored one
    (sender_current: e.g. its secret was rotated since it was read).

    A task-id seen before with the same content is an idempotent replay (created=False); with
    other content it is a TaskConflict. The unique (client_id, task_id) constraint decides races.
    trace: the W3C headers its message carries (by default the span current in this thread).
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
    # new task's insert included. An idempotent replay leaves a gap in the places, which is
    # harmless, but gives back the upsert's place it took: no task may wait for an upsert that
    # routes nothing.
    upsert = task["type"] == "customer.upsert"
    place = take_place(connection, client_id, task["customer_id"], upsert=upsert)
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
        routed = _routed(connection, client_id, task_uuid, task, place, trace)
        written = add_to_outbox(connection, outbox, [routed])
        return Acceptance(task_uuid, created=True, messages=written)
    existing = connection.scalar(
        select(tasks.c.content_sha256).where(
            tasks.c.client_id == client_id, tasks.c.task_id == task["task_id"]
        )
    )
    if existing != digest:
        raise TaskConflict(task["task_id"])  # the caller's rollback forgets the webhook-id too
    if upsert:
        connection.execute(_GIVE_BACK_UPSERT, {"of_client": client_id, "of_customer": task["customer_id"]})
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
    statement = _remember_statement(backend(connection).name, sender is not None)
    return connection.execute(statement, parameters).first() is not None


@functools.cache
def _remember_statement(dialect: str, with_sender: bool):
    insert = backend(dialect).insert
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


def _routed(connection, client_id: str, task_uuid: uuid.UUID, task: dict, place: Place, trace) -> Envelope:
    """The task as its context gets it: with its place in the customer's order and, for a
    cancel, whether the task it cancels was accepted before it."""
    payload = {"customer_id": task["customer_id"], **task["payload"], "order": place.as_payload()}
    if task["type"] in CANCELS:
        target_key, target_type = CANCELS[task["type"]]
        payload["target_accepted"] = _accepted_before(
            connection, client_id, task["payload"][target_key], target_type
        )
    return Envelope(
        type=task["type"],
        task_id=task["task_id"],
        task_uuid=task_uuid,
        client_id=client_id,
        payload=payload,
        trace=tracer().current() if trace is None else trace,  # the webhook request's span, if traced
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
    statement = _take_place(backend(connection).name)
    row = connection.execute(
        statement, {"client_id": client_id, "customer_id": customer_id, "upsert": upsert}
    ).one()
    return Place(row.last_seq, row.last_upsert_seq)


@functools.cache
def _take_place(dialect: str):
    insert = backend(dialect).insert
    upsert = bindparam("upsert", type_=Boolean)
    statement = insert(customer_order).values(
        client_id=bindparam("client_id"),
        customer_id=bindparam("customer_id"),
        last_seq=1,
        last_upsert_seq=case((upsert, 1), else_=0),
        previous_upsert_seq=0,
    )
    following = customer_order.c.last_seq + 1
    return statement.on_conflict_do_update(
        index_elements=[customer_order.c.client_id, customer_order.c.customer_id],
        set_={
            "last_seq": following,
            "last_upsert_seq": case((upsert, following), else_=customer_order.c.last_upsert_seq),
            "previous_upsert_seq": customer_order.c.last_upsert_seq,
        },
    ).returning(customer_order.c.last_seq, customer_order.c.last_upsert_seq)


# An upsert whose place was just taken (the row lock is still held) turned out to be a replay:
# the customer's last upsert is again the one before it.
_GIVE_BACK_UPSERT = (
    update(customer_order)
    .where(
        customer_order.c.client_id == bindparam("of_client"),
        customer_order.c.customer_id == bindparam("of_customer"),
    )
    .values(last_upsert_seq=customer_order.c.previous_upsert_seq)
)


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
