"""A context's own copy of the customers it needs, fed only by the customers context's events.

Events are applied by their place in the customer's order (then version), so a late or repeated
event never overwrites a newer one. A task is decided only on a copy that reflects every
customer.upsert accepted before it: a task for a customer the context has not seen yet, or has
seen only at an older place, is parked (the gateway shows it as `waiting`, with the reason) and
resumed when the event it needs arrives (decided in the event's transaction, before any later task
of its customer); a sweeper fails it with `unknown_customer` or `customer_outdated` if that does
not happen in time.

The same parking serves other waits of a context (park_until / resume): e.g. a cancel waiting
for the task it cancels to be decided.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable

from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Uuid,
    bindparam,
    delete,
    select,
    tuple_,
)

from contexts.replica.events import CustomerEvents
from contexts.replica.parking import Parking
from messaging import vocabulary
from messaging.db import JsonDocument, Transaction, UtcDateTime, both_of, in_both, serialize_on_many
from messaging.envelope import Envelope
from messaging.handling import BatchHandler, Handler

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Customer:
    client_id: str
    customer_id: str
    name: str
    email: str
    version: int
    seq: int = 0  # the place of the customer.upsert this copy reflects (0: from before places)


CustomerTaskHandler = Callable[[Transaction, Envelope, Customer], list[Envelope]]
CustomerBatchHandler = Callable[[Transaction, list[tuple[Envelope, Customer]]], list[Envelope]]


class CustomerReplica(CustomerEvents, Parking):
    """The replicated customers of one context (`<context>_customers`) and its parked tasks."""

    def __init__(self, metadata: MetaData, context: str):
        self.context = context
        self.customers = Table(
            f"{context}_customers",
            metadata,
            Column("client_id", String(63), nullable=False),
            Column("customer_id", String(128), nullable=False),
            Column("name", String(200), nullable=False),
            Column("email", String(320), nullable=False),
            Column("version", Integer, nullable=False),
            Column("updated_at", UtcDateTime, nullable=False),
            Column("seq", Integer, nullable=False, server_default="0"),
            PrimaryKeyConstraint("client_id", "customer_id"),
        )
        self.parked = Table(
            f"{context}_parked",
            metadata,
            Column("message_id", Uuid, primary_key=True),
            Column("client_id", String(63), nullable=False),
            Column("customer_id", String(128), nullable=False),
            Column("envelope", JsonDocument, nullable=False),
            Column("parked_at", UtcDateTime, nullable=False),
            # What the task waits for: its customer's copy at place `needs` at least (waiting_for
            # NULL), or what waiting_for names (e.g. "task:<task-id>", decided).
            Column("waiting_for", String(200)),
            Column("needs", Integer, nullable=False, server_default="0"),
            Column("reason", String(32), nullable=False, server_default=vocabulary.UNKNOWN_CUSTOMER),
            Index(f"ix_{context}_parked_customer", "client_id", "customer_id"),
            Index(f"ix_{context}_parked_waiting_for", "client_id", "waiting_for"),
            Index(f"ix_{context}_parked_at", "parked_at"),
        )
        # What a task that waited too long for something else than its customer ends with, by reason.
        self._expiry_answers: dict[str, Callable[[Envelope], Envelope]] = {}
        self._failure_hooks: dict[str, Callable[[Transaction, list[Envelope]], list[Envelope]]] = {}
        # Built once: only the parameters change from call to call.
        customers, parked = self.customers, self.parked
        self._find = select(
            *(customers.c[name] for name in ("client_id", "customer_id", "name", "email", "version", "seq"))
        ).where(*in_both(customers.c.client_id, customers.c.customer_id))
        copy_at = (
            select(customers.c.seq)
            .where(
                customers.c.client_id == parked.c.client_id, customers.c.customer_id == parked.c.customer_id
            )
            .scalar_subquery()
        )
        self._unpark_statement = (
            delete(parked)
            # in_both lets the index find the rows; the pair condition keeps exactly the keys.
            .where(
                *in_both(parked.c.client_id, parked.c.customer_id),
                tuple_(parked.c.client_id, parked.c.customer_id).in_(bindparam("pairs", expanding=True)),
                parked.c.waiting_for.is_(None),
                parked.c.needs <= copy_at,  # the copy has caught up with what the task needs
            )
            .returning(parked.c.client_id, parked.c.customer_id, parked.c.envelope, parked.c.parked_at)
        )
        self._resume_statement = (
            delete(parked)
            .where(
                *in_both(parked.c.client_id, parked.c.waiting_for),
                tuple_(parked.c.client_id, parked.c.waiting_for).in_(bindparam("pairs", expanding=True)),
            )
            .returning(parked.c.client_id, parked.c.waiting_for, parked.c.envelope, parked.c.parked_at)
        )

    # -- reading -------------------------------------------------------------------------------

    def find(self, session: Transaction, client_id: str, customer_id: str) -> Customer | None:
        return self.find_many(session, [(client_id, customer_id)]).get((client_id, customer_id))

    def find_many(
        self, session: Transaction, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], Customer]:
        """The replicated customers of these (client_id, customer_id) keys, by key; one query."""
        keys = set(keys)
        if not keys:
            return {}
        rows = session.execute(self._find, both_of(keys))
        found = {(row.client_id, row.customer_id): Customer(*row) for row in rows}
        return {key: customer for key, customer in found.items() if key in keys}

    # -- task handlers -------------------------------------------------------------------------

    def needs_customer(self, handler: CustomerTaskHandler) -> Handler:
        """A task handler that runs with the task's customer, or parks the task until it is known."""

        def handle_many(session: Transaction, ready: list[tuple[Envelope, Customer]]) -> list[Envelope]:
            return [caused for task, customer in ready for caused in handler(session, task, customer)]

        handle_batch = self.needs_customers(handle_many)

        def handle(session: Transaction, task: Envelope) -> list[Envelope]:
            return handle_batch(session, [task])

        handle.__name__ = handler.__name__
        handle.__doc__ = handler.__doc__
        return handle

    def needs_customers(self, handler: CustomerBatchHandler) -> BatchHandler:
        """needs_customer for many tasks at once: the tasks whose customer is known go to handler
        together (in their order, with their customers), the others are parked.

        The customers are looked up in one statement, however many tasks there are. Only a task
        about to park needs to take turns with its customer's events (else an event committed
        between its look and its park would not find it parked): those customers are serialized
        with their events in one more statement and looked up again.
        """

        def ready_for(task: Envelope, known: dict) -> bool:
            customer = known.get((task.client_id, task.payload["customer_id"]))
            return customer is not None and customer.seq >= vocabulary.customer_order(task)[1]

        def handle(session: Transaction, tasks: list[Envelope]) -> list[Envelope]:
            known = self.find_many(session, {(task.client_id, task.payload["customer_id"]) for task in tasks})
            if unready := {
                (task.client_id, task.payload["customer_id"]) for task in tasks if not ready_for(task, known)
            }:
                serialize_on_many(session, [(self.context, "customer", *key) for key in unready])
                known.update(self.find_many(session, unready))
            ready, caused = [], []
            for task in tasks:
                customer = known.get((task.client_id, task.payload["customer_id"]))
                _, needs = vocabulary.customer_order(task)
                if customer is None:
                    caused.append(self._park(session, task, vocabulary.UNKNOWN_CUSTOMER, needs=needs))
                elif customer.seq < needs:
                    caused.append(self._park(session, task, vocabulary.CUSTOMER_OUTDATED, needs=needs))
                else:
                    ready.append((task, customer))
            return caused + (handler(session, ready) if ready else [])

        handle.__name__ = handler.__name__
        handle.__doc__ = handler.__doc__
        return handle
