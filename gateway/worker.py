"""What the gateway consumes: result and status messages from every context, and the steps of a
visit between the contexts (for the task's timeline)."""

from __future__ import annotations

from collections.abc import Mapping

from gateway import results, steps, tables
from messaging import topology, vocabulary
from messaging.context import ContextSpec

NAME = "gateway"
# Each context's results and statuses (those recorded where they were decided are not published:
# see messaging.nearby), and the visits' steps.
QUEUE = topology.queue(
    "gateway.results",
    [*((topology.results, f"{context}.#") for context in vocabulary.CONTEXTS), (topology.events, "visit.#")],
)
# Bindings of earlier releases, removed when the topology is declared: every result ("#"), also
# those published under "handled." once recorded in place (left in an outbox at an upgrade).
RETIRED_BINDINGS = [(topology.results, "#")]
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
