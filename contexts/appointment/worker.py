"""How the appointment context is wired to the broker."""

from __future__ import annotations

from collections.abc import Mapping

from contexts.appointment import handlers, model, tables
from messaging import topology
from messaging.context import ContextSpec, env_int, wait_timeout

NAME = "appointment"
QUEUE = topology.queue(NAME, [(topology.tasks, "appointment.*"), (topology.events, "customer.*")])
METADATA = tables.metadata


def limits(environ: Mapping[str, str] | None) -> model.Limits:
    return model.Limits(
        weekly=env_int(environ, "TASKGATE_APPOINTMENT_WEEKLY_LIMIT", 40),
        monthly=env_int(environ, "TASKGATE_APPOINTMENT_MONTHLY_LIMIT", 160),
    )


def spec(environ: Mapping[str, str] | None = None) -> ContextSpec:
    handlers_of, batch_handlers = handlers.build_handlers(limits(environ))
    return ContextSpec(
        NAME,
        QUEUE,
        handlers_of,
        inbox=tables.inbox,
        outbox=tables.outbox,
        replica=tables.replica,
        wait_timeout=wait_timeout(environ),
        batch_handlers=batch_handlers,
    )
