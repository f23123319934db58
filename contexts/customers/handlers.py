"""Message handlers of the customers context: (session, envelope) -> messages to publish."""

from __future__ import annotations

from sqlalchemy import insert, select, update
from uuid6 import uuid7

from contexts.customers import model
from contexts.customers.tables import customers
from messaging import vocabulary
from messaging.db import Transaction, dialect_name, utcnow
from messaging.envelope import Envelope

CONTEXT = "customers"


def upsert_customer(session: Transaction, task: Envelope) -> list[Envelope]:
    """customer.upsert: store the master record; publish its change and the task's result."""
    customer_id = task.payload["customer_id"]
    existing = _load_for_update(session, task.client_id, customer_id)
    decision = model.upsert(existing, customer_id, task.payload["name"], task.payload["email"])
    customer = decision.customer
    if decision.changed:
        _save(session, task, customer, is_new=existing is None)
    messages = []
    if decision.changed:
        messages.append(
            task.caused(
                decision.outcome,
                {
                    "customer_id": customer.customer_id,
                    "name": customer.name,
                    "email": customer.email,
                    "version": customer.version,
                },
            )
        )
    messages.append(
        vocabulary.result(
            task,
            context=CONTEXT,
            outcome=decision.outcome,
            status=vocabulary.SUCCEEDED,
            result={"customer_id": customer.customer_id, "version": customer.version},
        )
    )
    return messages


def _load_for_update(session: Transaction, client_id: str, customer_id: str) -> model.Customer | None:
    query = select(customers.c.customer_id, customers.c.name, customers.c.email, customers.c.version).where(
        customers.c.client_id == client_id, customers.c.customer_id == customer_id
    )
    if dialect_name(session) == "postgresql":
        # Two workers upserting one customer must not both derive version n+1.
        query = query.with_for_update()
    row = session.execute(query).one_or_none()
    return model.Customer(*row) if row else None


def _save(session: Transaction, task: Envelope, customer: model.Customer, *, is_new: bool) -> None:
    client_id = task.client_id
    values = {
        "name": customer.name,
        "email": customer.email,
        "version": customer.version,
        "updated_at": utcnow(),
        "last_task_id": task.task_id,
        "last_task_uuid": task.task_uuid,
    }
    if is_new:
        # A concurrent first upsert of the same customer fails here on the primary key and is retried.
        session.execute(
            insert(customers).values(client_id=client_id, customer_id=customer.customer_id, **values)
        )
    else:
        session.execute(
            update(customers)
            .where(customers.c.client_id == client_id, customers.c.customer_id == customer.customer_id)
            .values(**values)
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
            },
        )
        for row in rows
    ]


HANDLERS = {"customer.upsert": upsert_customer}
