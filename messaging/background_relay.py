"""The relay of a process that writes an outbox but runs no workers (each gunicorn worker)."""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable

from messaging.outbox import Offered
from messaging.relay import OutboxRelay


class BackgroundRelay:
    """The relay of a process that writes an outbox but runs no workers (the webhook's, under
    gunicorn): publishes what is offered, in a thread started on the first offer of each process
    (so after a fork), which first runs prepare (e.g. declaring the topology), and stops at exit
    with what it published forgotten. It sweeps nothing."""

    def __init__(self, make_relay: Callable[[], OutboxRelay], prepare: Callable[[], None] = lambda: None):
        self.make_relay = make_relay
        self.prepare = prepare
        self._lock = threading.Lock()
        self._pid = None
        self._relay: OutboxRelay | None = None

    def offer(self, rows: list[dict]) -> Offered | None:
        """OutboxRelay.offer, in this process's relay."""
        if self._pid != os.getpid():
            self._start()
        return self._relay.offer(rows)

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            relay, stop = self.make_relay(), threading.Event()

            def run() -> None:
                self.prepare()
                relay.run(stop)

            thread = threading.Thread(target=run, name="outbox-relay", daemon=True)
            thread.start()
            atexit.register(lambda: (stop.set(), relay.wakeup.close(), thread.join(5.0)))
            self._relay, self._pid = relay, os.getpid()
