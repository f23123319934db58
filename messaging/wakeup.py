"""Wake-ups between a writer that committed work and the loop that handles it.

In one process a threading.Event is enough. On PostgreSQL, NOTIFY (sent at commit) reaches the
loops of every process, so a relay in a worker process learns about a task the HTTP process
accepted without polling. The listening connection is SQLAlchemy's (psycopg 3) driver connection.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)


class Wakeup:
    """In-process wake-up."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def notify(self, session: Session | None = None) -> None:
        """Signal new work. With a session: as part of its transaction, else at once."""
        self._event.set()

    def wait(self, timeout: float) -> bool:
        """Block until notified or timeout; True if notified."""
        notified = self._event.wait(timeout)
        self._event.clear()
        return notified

    def close(self) -> None:
        """Wake the waiter for good (it is shutting down)."""
        self._event.set()

    def release(self) -> None:
        """Called by the waiting thread when it stops waiting for good: frees what waiting holds."""


class PostgresWakeup(Wakeup):
    """Cross-process wake-up over LISTEN/NOTIFY on one channel."""

    def __init__(self, engine: Engine, channel: str) -> None:
        super().__init__()
        self.engine = engine
        self.channel = channel
        self._listener = None  # the driver's (psycopg) connection while listening

    def notify(self, session: Session | None = None) -> None:
        if session is None:
            self._event.set()
            return
        # Delivered when (and only if) the session's transaction commits.
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": self.channel})

    def wait(self, timeout: float) -> bool:
        if self._event.is_set():
            self._event.clear()
            return True
        try:
            notified = any(True for _ in self._listen().notifies(timeout=timeout, stop_after=1))
        except Exception:
            log.warning("LISTEN %s failed; polling until it works again", self.channel, exc_info=True)
            self._drop_listener()
            return super().wait(timeout)
        return notified

    def release(self) -> None:
        self._drop_listener()

    def _listen(self):
        """The driver (psycopg) connection listening on the channel."""
        if self._listener is None:
            # A connection of its own, outside the pool: it stays checked out as long as we listen.
            args, kwargs = self.engine.dialect.create_connect_args(self.engine.url)
            self._listener = self.engine.dialect.connect(*args, **kwargs)
            self._listener.autocommit = True
            self._listener.execute(f'LISTEN "{self.channel}"')
        return self._listener

    def _drop_listener(self) -> None:
        if self._listener is not None:
            try:
                self._listener.close()
            finally:
                self._listener = None


def make_wakeup(engine: Engine, channel: str) -> Wakeup:
    if engine.dialect.name == "postgresql":
        return PostgresWakeup(engine, channel)
    return Wakeup()
