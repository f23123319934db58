"""How the survey context is wired to the broker."""

from __future__ import annotations

from collections.abc import Mapping

from contexts.replica.sweeper import parking_loop
from contexts.survey import handlers, tables
from messaging import topology
from messaging.context import ContextSpec, wait_timeout

NAME = "survey"
QUEUE = topology.queue(NAME, [(topology.tasks, "survey.assign"), (topology.events, "customer.*")])
METADATA = tables.metadata


def spec(environ: Mapping[str, str] | None = None) -> ContextSpec:
    return ContextSpec(
        NAME,
        QUEUE,
        handlers.HANDLERS,
        inbox=tables.inbox,
        outbox=tables.outbox,
        read_model=tables.replica,
        own_inbox=tables.replica.own_inbox,
        batch_handlers=handlers.BATCH_HANDLERS,
        loops=(parking_loop(tables.replica, tables.outbox, wait_timeout(environ)),),
    )
