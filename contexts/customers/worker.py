"""How the customers context is wired to the broker."""

from __future__ import annotations

from collections.abc import Mapping

from contexts.customers import handlers, tables
from messaging import topology
from messaging.context import ContextSpec

NAME = "customers"
QUEUE = topology.queue(NAME, [(topology.tasks, "customer.upsert")])
METADATA = tables.metadata


def spec(environ: Mapping[str, str] | None = None) -> ContextSpec:
    return ContextSpec(
        NAME,
        QUEUE,
        handlers.HANDLERS,
        inbox=tables.inbox,
        outbox=tables.outbox,
        batch_handlers=handlers.BATCH_HANDLERS,
    )
