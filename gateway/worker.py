"""What the gateway consumes: result messages from every context."""

from __future__ import annotations

from gateway import store, tables
from messaging import topology, vocabulary
from messaging.context import ContextSpec

SPEC = ContextSpec(
    name="gateway",
    queue=topology.queue("gateway.results", [(topology.results, "#")]),
    handlers={vocabulary.TASK_RESULT: store.record_result},
    inbox=tables.inbox,
    outbox=tables.outbox,
    metadata=tables.metadata,
)
