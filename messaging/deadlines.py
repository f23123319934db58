"""A context's loop for what falls due with time (a parked task's wait, a hold's life): whatever
is due is settled in one transaction with the messages it causes, and the loop sleeps until the
next deadline."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine, Table

from messaging.db import Transaction
from messaging.envelope import Envelope
from messaging.outbox import Publish, add_to_outbox
from messaging.wakeup import Wakeup

log = logging.getLogger(__name__)

# After a failed sweep (e.g. the database is away), the next try.
RETRY_SECONDS = 5.0


class DeadlineSweeper:
    """Runs settle(transaction) -> messages and writes them to outbox in the same transaction, then
    offers them to publish once committed; again at once if it settled something, else after
    next_deadline(transaction) seconds (None: nothing pending) or max_sleep, whichever is sooner.

    With a wakeup, whoever adds something with an earlier deadline notifies it; without one,
    max_sleep is as long as anything new may wait past its deadline."""

    def __init__(
        self,
        engine: Engine,
        outbox: Table,
        publish: Publish,
        *,
        settle: Callable[[Transaction], list[Envelope]],
        next_deadline: Callable[[Transaction], float | None],
        name: str,
        wakeup: Wakeup | None = None,
        max_sleep: float = 60.0,
    ):
        self.engine = engine
        self.outbox = outbox
        self.publish = publish
        self.settle = settle
        self.next_deadline = next_deadline
        self.name = name
        self.wakeup = wakeup
        self.max_sleep = max_sleep

    def run(self, stop: threading.Event) -> None:
        if self.wakeup is not None:  # stopping ends its wait too
            wakeup = self.wakeup
            threading.Thread(target=lambda: (stop.wait(), wakeup.close()), daemon=True).start()
        while not stop.is_set():
            try:
                pause = self.sweep()
            except Exception:
                log.exception("%s failed; retrying", self.name)
                pause = RETRY_SECONDS
            if stop.is_set():
                break
            if self.wakeup is None:
                stop.wait(pause)
            else:
                self.wakeup.wait(pause)

    def sweep(self) -> float:
        """Settle what is due; returns seconds until the next sweep."""
        with self.engine.begin() as connection:
            messages = self.settle(connection)
            written = add_to_outbox(connection, self.outbox, messages)
            following = self.next_deadline(connection)
        if messages:
            self.publish(written)  # committed: the relay publishes them
            return 0.0
        return self.max_sleep if following is None else min(self.max_sleep, following + 0.01)
