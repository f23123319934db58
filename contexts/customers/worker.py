"""How the customers context is wired to the broker."""

from __future__ import annotations

from contexts.customers import handlers, tables
from messaging import topology
from messaging.context import ContextSpec

SPEC = ContextSpec(
    name="customers",
    queue=topology.queue("customers", [(topology.tasks, "customer.upsert")]),
    handlers=handlers.HANDLERS,
    inbox=tables.inbox,
    outbox=tables.outbox,
    metadata=tables.metadata,
)
