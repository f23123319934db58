"""Taking tasks in: each accepted task with its place in its customer's order and its routed
message, in the webhook's transaction; replays answered, not processed."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import uuid

from sqlalchemy import Boolean, Connection, Integer, bindparam, case, exists, literal, select, true, update
from sqlalchemy.orm import Session

from gateway.clients import Client
from gateway.tables import ACCEPTED, clients, customer_order, outbox, tasks
from messaging.db import backend, insert_ignoring_duplicates, utcnow
from messaging.envelope import Envelope
from messaging.outbox import add_to_outbox
from messaging.tracing import tracer


class TaskConflict(Exception):
    """The task-id was already used for a task with different content."""


@dataclasses.dataclass(frozen=True)
class Acceptance:
    task_uuid: uuid.UUID
    created: bool
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
    sender: Client | None = None,
    trace: dict[str, str] | None = None,
) -> Acceptance:
    """Store the task with its place in its customer's order and its routed message, in the
    caller's transaction (the caller commits, which is when the place counts as taken).

    Nothing is stored if sender, the client as the request was verified against, is no longer the
    stored one (sender_current=False: e.g. its secret was rotated since it was read).

    A task-id seen before with the same content is an idempotent replay (created=False); with
    other content it is a TaskConflict. The unique (client_id, task_id) constraint decides races.
    trace: the W3C headers its message carries (by default the span current in this thread).
    """
    # The place is taken first: its row lock then orders every accept of this customer, the
    # new task's insert included. Its statement takes it only while the sender's secrets are the
    # client's. An idempotent replay leaves a gap in the places, which is harmless, but gives back
    # the upsert's place it took: no task may wait for an upsert that routes nothing.
    upsert = task["type"] == "customer.upsert"
    place = take_place(connection, client_id, task["customer_id"], upsert=upsert, sender=sender)
    if place is None:
        return Acceptance(task_uuid, created=False, sender_current=False)
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
        raise TaskConflict(task["task_id"])  # the caller's rollback gives the place back
    if upsert:
        connection.execute(_GIVE_BACK_UPSERT, {"of_client": client_id, "of_customer": task["customer_id"]})
    return Acceptance(task_uuid, created=False)


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


def take_place(
    connection, client_id: str, customer_id: str, *, upsert: bool, sender: Client | None = None
) -> Place | None:
    """The next place in the customer's order, held (row lock) until the transaction ends; None,
    and nothing taken, if sender is given and its secrets are no longer the client's."""
    parameters = {"client_id": client_id, "customer_id": customer_id, "upsert": upsert}
    if sender is not None:
        parameters.update({f"sender_{name}": getattr(sender, name) for name in SENDER_SECRETS})
    row = connection.execute(_take_place(backend(connection).name, sender is not None), parameters).first()
    return None if row is None else Place(row.last_seq, row.last_upsert_seq)


@functools.cache
def _take_place(dialect: str, with_sender: bool):
    insert = backend(dialect).insert
    upsert = bindparam("upsert", type_=Boolean)
    row = select(
        bindparam("client_id", type_=customer_order.c.client_id.type),
        bindparam("customer_id", type_=customer_order.c.customer_id.type),
        literal(1, Integer),
        case((upsert, 1), else_=0),
        literal(0, Integer),
    )
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
    statement = insert(customer_order).from_select(
        ["client_id", "customer_id", "last_seq", "last_upsert_seq", "previous_upsert_seq"], row
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
