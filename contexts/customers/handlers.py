"""Message handlers of the customers context: (session, envelope) -> messages to publish."""

from __future__ import annotations

from sqlalchemy import bindparam, select, update
from uuid6 import uuid7

from contexts.customers import model
from contexts.customers.tables import customers
from messaging import vocabulary
from messaging.db import Transaction, both_of, in_both, insert_many, utcnow
from messaging.envelope import Envelope

CONTEXT = "customers"


def upsert_customer(session: Transaction, task: Envelope) -> list[Envelope]:
    """customer.upsert: store the master record; publish its change and the task's result."""
    return upsert_customers(session, [task])


def upsert_customers(session: Transaction, batch: list[Envelope]) -> list[Envelope]:
    """upsert_customer for many tasks, in their order, with the effects of one by one: the
    customers they name locked in one statement (in a fixed order, so that batches of two
    workers cannot deadlock), then one insert of the new ones and one update per changed one.

    An upsert accepted before the one whose state is stored changes nothing (its result says
    `superseded`); every other one is published with its place in the customer's order, also
    when the data stay the same, so that the other contexts' copies know they are current."""
    keys = {(task.client_id, task.payload["customer_id"]) for task in batch}
    stored = _load_for_update(session, keys)
    current = dict(stored)
    changed_by: dict[tuple[str, str], Envelope] = {}  # the task that made the newest state
    messages = []
    for task in batch:
        key = (task.client_id, task.payload["customer_id"])
        seq, _ = vocabulary.customer_order(task)
        decision = model.upsert(current.get(key), key[1], task.payload["name"], task.payload["email"], seq)
        customer = decision.customer
        if customer != current.get(key):
            current[key] = customer
            changed_by[key] = task
            messages.append(
                task.caused(
                    decision.outcome,
                    {
                        "customer_id": customer.customer_id,
                        "name": customer.name,
                        "email": customer.email,
                        "version": customer.version,
                        "seq": customer.seq,
                    },
                )
            )
        result = {"customer_id": customer.customer_id, "version": customer.version}
        if decision.superseded:
            result["superseded"] = True
        messages.append(
            vocabulary.result(
                task, context=CONTEXT, outcome=decision.outcome, status=vocabulary.SUCCEEDED, result=result
            )
        )
    _save(session, changed_by, current, new={key for key in changed_by if key not in stored})
    return messages


def _load_for_update(
    session: Transaction, keys: set[tuple[str, str]]
) -> dict[tuple[str, str], model.Customer]:
    """The stored customers of keys, their rows locked until the transaction ends (PostgreSQL):
    two workers upserting one customer must not both derive version n+1. The lock may also take
    other rows of the batch's clients and customer-ids (see in_both), always in one order."""
    found = {}
    for row in session.execute(_LOCKED, both_of(keys)):
        if (row.client_id, row.customer_id) in keys:
            found[row.client_id, row.customer_id] = model.Customer(
                row.customer_id, row.name, row.email, row.version, row.seq
            )
    return found


def _save(
    session: Transaction,
    changed_by: dict[tuple[str, str], Envelope],
    current: dict[tuple[str, str], model.Customer],
    *,
    new: set[tuple[str, str]],
) -> None:
    now = utcnow()
    rows = [
        {
            "client_id": client_id,
            "customer_id": customer_id,
            "name": current[client_id, customer_id].name,
            "email": current[client_id, customer_id].email,
            "version": current[client_id, customer_id].version,
            "seq": current[client_id, customer_id].seq,
            "updated_at": now,
            "last_task_id": task.task_id,
            "last_task_uuid": task.task_uuid,
        }
        for (client_id, customer_id), task in sorted(changed_by.items())
    ]
    # A concurrent first upsert of the same customer fails the insert on the primary key; the
    # batch is then handled again one by one, and a retry finds the row.
    insert_many(session, customers, [row for row in rows if (row["client_id"], row["customer_id"]) in new])
    updated = [
        {
            "key_client_id": row["client_id"],
            "key_customer_id": row["customer_id"],
            **{name: row[name] for name in _UPDATED},
        }
        for row in rows
        if (row["client_id"], row["customer_id"]) not in new
    ]
    if updated:
        session.execute(_UPDATE, updated)


# Built once: only the parameters change from batch to batch. SQLite renders no FOR UPDATE (its
# writers run one at a time anyway).
_LOCKED = (
    select(
        customers.c.client_id,
        customers.c.customer_id,
        customers.c.name,
        customers.c.email,
        customers.c.version,
        customers.c.seq,
    )
    .where(*in_both(customers.c.client_id, customers.c.customer_id))
    .order_by(customers.c.client_id, customers.c.customer_id)
    .with_for_update()
)
_UPDATED = ("name", "email", "version", "seq", "updated_at", "last_task_id", "last_task_uuid")
_UPDATE = (
    update(customers)
    .where(
        customers.c.client_id == bindparam("key_client_id"),
        customers.c.customer_id == bindparam("key_customer_id"),
    )
    .values({name: bindparam(name) for name in _UPDATED})
)


def current_state(session: Transaction) -> list[Envelope]:
    """Every customer's current state as a customer.snapshot event, tagged with the task that made
    that version (or, for customers stored before taskgate recorded it, with one id for this rebuild).

    Other contexts rebuild their read models from these; applied by version, they change nothing
    where a copy is already current.
    """
    rebuild = uuid7()
    rows = session.execute(select(customers).order_by(customers.c.client_id, customers.c.customer_id))
    return [
        Envelope(
            type=vocabulary.CUSTOMER_SNAPSHOT,
            task_id=row.last_task_id or f"rebuild-{rebuild}",
            task_uuid=row.last_task_uuid or rebuild,
            client_id=row.client_id,
            payload={
                "customer_id": row.customer_id,
                "name": row.name,
                "email": row.email,
                "version": row.version,
                "seq": row.seq,
            },
        )
        for row in rows
    ]


HANDLERS = {"customer.upsert": upsert_customer}
BATCH_HANDLERS = {"customer.upsert": upsert_customers}
