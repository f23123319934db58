"""How the appointment context is wired to the broker."""

from __future__ import annotations

from collections.abc import Mapping

from contexts import reservations
from contexts.appointment import handlers, model, tables, visits
from contexts.replica.sweeper import parking_loop
from messaging import topology, vocabulary
from messaging.context import ContextSpec, env_int, wait_timeout
from messaging.wakeup import Wakeup

NAME = "appointment"
QUEUE = topology.queue(
    NAME,
    [
        (topology.tasks, "appointment.*"),
        (topology.events, "customer.*"),
        *((topology.events, step) for step in vocabulary.VISIT_STEPS),
    ],
)
METADATA = tables.metadata


def limits(environ: Mapping[str, str] | None) -> model.Limits:
    return model.Limits(
        weekly=env_int(environ, "TASKGATE_APPOINTMENT_WEEKLY_LIMIT", 40),
        monthly=env_int(environ, "TASKGATE_APPOINTMENT_MONTHLY_LIMIT", 160),
    )


def spec(environ: Mapping[str, str] | None = None) -> ContextSpec:
    desk = reservations.ReservationSide(
        NAME,
        tables.visit_holds,
        visits.VisitSlots(limits(environ)),
        reservations.ttl(environ),
        Wakeup(),
    )
    handlers_of, batch_handlers = handlers.build_handlers(limits(environ), desk)
    return ContextSpec(
        NAME,
        QUEUE,
        handlers_of,
        inbox=tables.inbox,
        outbox=tables.outbox,
        read_model=tables.replica,
        own_inbox=tables.replica.own_inbox,
        batch_handlers=batch_handlers,
        loops=(
            parking_loop(tables.replica, tables.outbox, wait_timeout(environ)),
            lambda engine, publish: reservations.hold_sweeper(engine, desk, tables.outbox, publish).run,
        ),
    )
