"""The sweeper of a context's parked tasks: fails those whose wait has run out."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import Engine, Table

from contexts.replica import CustomerReplica
from messaging.deadlines import DeadlineSweeper
from messaging.outbox import Publish

MAX_SLEEP_SECONDS = 60.0


def parking_loop(
    replica: CustomerReplica, outbox: Table, timeout: timedelta
) -> Callable[[Engine, Publish], Callable[[threading.Event], None]]:
    """The sweeper as a context's loop (ContextSpec.loops)."""
    return lambda engine, publish: parking_sweeper(engine, replica, outbox, publish, timeout).run


def parking_sweeper(
    engine: Engine, replica: CustomerReplica, outbox: Table, publish: Publish, timeout: timedelta
) -> DeadlineSweeper:
    """Fails parked tasks whose customer did not arrive in time; sleeps until the next expiry. A
    task parked meanwhile wakes nobody, so it sleeps no longer than a wait lasts."""
    return DeadlineSweeper(
        engine,
        outbox,
        publish,
        settle=lambda connection: replica.fail_expired(connection, timeout),
        next_deadline=lambda connection: replica.seconds_to_next_expiry(connection, timeout),
        name=f"{replica.context} parking sweep",
        max_sleep=min(MAX_SLEEP_SECONDS, timeout.total_seconds()),
    )
