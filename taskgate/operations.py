"""Operator actions that span contexts; only the composition root may reach into several of them."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from contexts.customers import handlers as customers
from contexts.customers import tables as customers_tables
from messaging.outbox import add_to_outbox
from taskgate import registry


def replicating_contexts() -> list[str]:
    """The contexts that keep a replica of the customers."""
    return [name for name in registry.NAMES if registry.spec(name, {}).read_model is not None]


def rebuild_read_models(engine: Engine, contexts: Iterable[str]) -> dict:
    """Empty the customer replicas of contexts and have the customers context publish every
    customer's current state again, in one transaction; the replicas refill as the events arrive."""
    with Session(engine) as session, session.begin():
        cleared = {name: registry.spec(name, {}).read_model.clear(session) for name in contexts}
        snapshots = customers.current_state(session)
        # On PostgreSQL the outbox's trigger wakes the relay; SQLite's relay polls.
        add_to_outbox(session, customers_tables.outbox, snapshots)
    return {"cleared": cleared, "published": len(snapshots)}
