"""A context's copy of the customers, fed by the customers context's events. The methods of
CustomerReplica (which owns the tables), mixed in: they use self.customers, self.context and the
parking's self._unpark."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable

from sqlalchemy import Table, and_, delete, or_

from contexts.replica.parking import CustomerKey, resumed_task
from messaging import resuming, vocabulary
from messaging.after_commit import after_commit
from messaging.db import Transaction, backend, serialize_on_many, utcnow
from messaging.envelope import Envelope
from messaging.handling import BatchHandler, Handler

log = logging.getLogger(__name__)


class CustomerEvents:
    """Applying customer events to a context's copy, mixed into CustomerReplica."""

    # The customer events are their own inbox (the context's ContextSpec.own_inbox): a copy applies
    # an event only if it is newer than what it holds, and resumes only tasks parked for what it
    # then holds, so an event delivered again changes nothing and needs no inbox row to tell.
    own_inbox = frozenset(vocabulary.CUSTOMER_EVENTS)

    def event_handlers(self) -> dict[str, Handler]:
        """Handlers for the customer events, one at a time (see when_customers_changed)."""

        def when_customer_changed(session: Transaction, event: Envelope) -> list[Envelope]:
            return self.when_customers_changed(session, [event])

        return dict.fromkeys(vocabulary.CUSTOMER_EVENTS, when_customer_changed)

    def event_batch_handlers(self) -> dict[str, BatchHandler]:
        """Batch handlers for the customer events, with the same effects as event_handlers."""
        return dict.fromkeys(vocabulary.CUSTOMER_EVENTS, self.when_customers_changed)

    def when_customers_changed(self, session: Transaction, events: list[Envelope]) -> list[Envelope]:
        """Apply the events to the replica, then resume the tasks parked for their customers.

        A resumed task (caused by the last of the events about its customer) is decided in the
        same transaction, before any later task of its customer, where a consumer decides it
        (messaging.resuming); on a retry of the events it travels as a message instead, so one that
        fails cannot take the events down with it. A few statements, however many events there are.
        """
        last = {(event.client_id, event.payload["customer_id"]): event for event in events}
        serialize_on_many(session, [(self.context, "customer", *key) for key in last])
        written = self.apply_many(session, events)
        after_commit(session, lambda: self._report(events, written))
        resumed = [resumed_task(task, last[key]) for key, task in self._unpark(session, last)]
        return resuming.decided_here(resumed)

    def _report(self, events: list[Envelope], written: list[Envelope]) -> None:
        """Say what became of each event (their transaction has committed). Of two copies of one
        event in a batch, the one written updated the copy, the other changed nothing."""
        for event in events:
            updated = any(event is each for each in written)
            said = "customer copy updated" if updated else "customer event changed nothing"
            log.info(said, extra={**event.log_fields, "context": self.context})

    def apply(self, session: Transaction, event: Envelope) -> None:
        """Insert or update the customer unless the replica already has this version or a newer one."""
        self.apply_many(session, [event])

    def apply_many(self, session: Transaction, events: Iterable[Envelope]) -> list[Envelope]:
        """apply for each event, in one statement (which, on PostgreSQL, may touch a row only
        once: of several events about one customer, only the newest version is written); returns
        the events written."""
        newest: dict[CustomerKey, Envelope] = {}
        for event in events:
            key = (event.client_id, event.payload["customer_id"])
            if key not in newest or _place(newest[key]) < _place(event):
                newest[key] = event
        if not newest:
            return []
        now = utcnow()
        rows = [
            {
                "client_id": client_id,
                "customer_id": customer_id,
                "name": event.payload["name"],
                "email": event.payload["email"],
                "version": event.payload["version"],
                "seq": event.payload.get("seq", 0),
                "updated_at": now,
            }
            for (client_id, customer_id), event in newest.items()
        ]
        # Executed with many parameter sets, the statement (built once) becomes one INSERT of
        # many rows (SQLAlchemy's "insertmanyvalues", which RETURNING enables).
        written = session.execute(_upsert_newer(backend(session).name, self.customers), rows).all()
        return [newest[(row.client_id, row.customer_id)] for row in written]

    def clear(self, session: Transaction) -> int:
        """Forget every replicated customer (before rebuilding from the customers' current state)."""
        return session.execute(delete(self.customers)).rowcount


def _place(event: Envelope) -> tuple[int, int]:
    """Which of two customer events is newer: the later place in the order, then the later version."""
    return event.payload.get("seq", 0), event.payload["version"]


@functools.cache
def _upsert_newer(dialect: str, table: Table):
    """INSERT ... ON CONFLICT DO UPDATE for a replica's customers: a row is overwritten only by a
    newer one (see _place)."""
    insert = backend(dialect).insert
    statement = insert(table)
    new = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[table.c.client_id, table.c.customer_id],
        set_={name: new[name] for name in ("name", "email", "version", "seq", "updated_at")},
        where=or_(table.c.seq < new.seq, and_(table.c.seq == new.seq, table.c.version < new.version)),
    ).returning(table.c.client_id, table.c.customer_id)
