"""How the maintenance context is wired to the broker."""

from __future__ import annotations

from collections.abc import Mapping

from contexts import reservations
from contexts.maintenance import handlers, tables, visits
from contexts.replica.sweeper import parking_loop
from messaging import topology, vocabulary
from messaging.context import ContextSpec, wait_timeout
from messaging.wakeup import Wakeup

NAME = "maintenance"
QUEUE = topology.queue(
    NAME,
    [
        (topology.tasks, "maintenance.schedule"),
        (topology.events, "customer.*"),
        (topology.events, vocabulary.APPOINTMENT_CANCELED),
        *((topology.events, step) for step in vocabulary.VISIT_STEPS),
    ],
)
METADATA = tables.metadata


def spec(environ: Mapping[str, str] | None = None) -> ContextSpec:
    workshop = reservations.ReservationSide(
        NAME, tables.visit_holds, visits.VisitPositions(), reservations.ttl(environ), Wakeup()
    )
    return ContextSpec(
        NAME,
        QUEUE,
        {**handlers.HANDLERS, **workshop.handlers()},
        inbox=tables.inbox,
        outbox=tables.outbox,
        read_model=tables.replica,
        own_inbox=tables.replica.own_inbox,
        batch_handlers=handlers.BATCH_HANDLERS,
        loops=(
            parking_loop(tables.replica, tables.outbox, wait_timeout(environ)),
            lambda engine, publish: reservations.hold_sweeper(engine, workshop, tables.outbox, publish).run,
        ),
    )
