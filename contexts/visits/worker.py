"""How the visits context is wired to the broker."""

from __future__ import annotations

from collections.abc import Mapping

from contexts.visits import handlers, tables
from messaging import topology, vocabulary
from messaging.context import ContextSpec, wait_timeout

NAME = "visits"
QUEUE = topology.queue(
    NAME,
    [
        (topology.tasks, "visit.*"),
        (topology.events, "customer.*"),
        (topology.events, f"{vocabulary.VISIT_ANSWER}.*"),
    ],
)
METADATA = tables.metadata


def spec(environ: Mapping[str, str] | None = None) -> ContextSpec:
    return ContextSpec(
        NAME,
        QUEUE,
        handlers.HANDLERS,
        inbox=tables.inbox,
        outbox=tables.outbox,
        replica=tables.replica,
        wait_timeout=wait_timeout(environ),
        batch_handlers=handlers.BATCH_HANDLERS,
    )
