"""The sweeper of a context's parked tasks: fails those whose wait has run out."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import Engine, Table
from sqlalchemy.orm import Session

from contexts.replica import CustomerReplica
from messaging.outbox import Publish, add_to_outbox

log = logging.getLogger(__name__)


def parking_loop(
    replica: CustomerReplica, outbox: Table, timeout: timedelta
) -> Callable[[Engine, Publish], Callable[[threading.Event], None]]:
    """The sweeper as a context's loop (ContextSpec.loops)."""
    return lambda engine, publish: ParkingSweeper(engine, replica, outbox, publish, timeout).run


class ParkingSweeper:
    """Fails parked tasks whose customer did not arrive in time; sleeps until the next expiry."""

    def __init__(
        self,
        engine: Engine,
        replica: CustomerReplica,
        outbox: Table,
        publish: Publish,
        timeout: timedelta,
        max_sleep: float = 60.0,
    ):
        self.engine = engine
        self.replica = replica
        self.outbox = outbox
        self.publish = publish
        self.timeout = timeout
        self.max_sleep = max_sleep

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                pause = self.sweep()
            except Exception:
                log.exception("parking sweep failed; retrying", extra={"context": self.replica.context})
                pause = 5.0
            stop.wait(pause)

    def sweep(self) -> float:
        """Fail what has expired; returns seconds until the next sweep is due."""
        with Session(self.engine) as session, session.begin():
            failures = self.replica.fail_expired(session, self.timeout)
            written = add_to_outbox(session, self.outbox, failures)
            following = self.replica.seconds_to_next_expiry(session, self.timeout)
        if failures:
            self.publish(written)  # committed: the relay publishes them
            return 0.0
        return (
            min(self.max_sleep, self.timeout.total_seconds())
            if following is None
            else min(self.max_sleep, following + 0.01)
        )
