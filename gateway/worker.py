"""What the gateway consumes: result and status messages from every context."""

from __future__ import annotations

from collections.abc import Mapping

from gateway import store, tables
from messaging import topology, vocabulary
from messaging.context import ContextSpec

NAME = "gateway"
QUEUE = topology.queue("gateway.results", [(topology.results, "#")])
METADATA = tables.metadata
HANDLERS = {vocabulary.TASK_RESULT: store.record_result, vocabulary.TASK_STATUS: store.record_status}
BATCH_HANDLERS = {vocabulary.TASK_RESULT: store.record_results}


def spec(environ: Mapping[str, str] | None = None) -> ContextSpec:
    return ContextSpec(
        NAME, QUEUE, HANDLERS, inbox=tables.inbox, outbox=tables.outbox, batch_handlers=BATCH_HANDLERS
    )
