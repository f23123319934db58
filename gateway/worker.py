"""What the gateway consumes: result and status messages from every context, and the steps of a
visit between the contexts (for the task's timeline)."""

from __future__ import annotations

from collections.abc import Mapping

from gateway import results, steps, tables
from messaging import topology, vocabulary
from messaging.context import ContextSpec

NAME = "gateway"
QUEUE = topology.queue("gateway.results", [(topology.results, "#"), (topology.events, "visit.#")])
METADATA = tables.metadata
HANDLERS = {
    vocabulary.TASK_RESULT: results.record_result,
    vocabulary.TASK_STATUS: results.record_status,
    **dict.fromkeys(steps.STEP_TYPES, steps.record_step),
}
BATCH_HANDLERS = {
    vocabulary.TASK_RESULT: results.record_results,
    **dict.fromkeys(steps.STEP_TYPES, steps.record_steps),
}


# A result's id is its message's id, and the results table keeps each once: it is their inbox.
OWN_INBOX = frozenset({vocabulary.TASK_RESULT})


def spec(environ: Mapping[str, str] | None = None) -> ContextSpec:
    return ContextSpec(
        NAME,
        QUEUE,
        HANDLERS,
        inbox=tables.inbox,
        outbox=tables.outbox,
        batch_handlers=BATCH_HANDLERS,
        own_inbox=OWN_INBOX,
    )
