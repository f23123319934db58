"""Wake-ups between a writer that committed work and the loop that handles it.

In one process a threading.Event is enough. On PostgreSQL, NOTIFY (sent at commit) reaches the
loops of every process, so a relay in a worker process learns about a task the HTTP process
accepted without polling. The listening connection is SQLAlchemy's (psycopg 3) driver connection.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

# How often the listener thread looks whether it should stop.
LISTEN_POLL_SECONDS = 0.5


class Wakeup:
    """In-process wake-up."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def notify(self, session: Session | Connection | None = None) -> None:
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
    """Cross-process wake-up over LISTEN/NOTIFY on one channel.

    A listener thread holds the LISTEN connection and sets the in-process event on every
    notification, so a waiter wakes at once for a NOTIFY from any process and for notify() from its
    own (e.g. a finished callback attempt), whichever comes first.
    """

    def __init__(
        self, engine: Engine, channel: str, retry_interval: float = 1.0, *, notified_by_database: bool = False
    ) -> None:
        super().__init__()
        self.engine = engine
        self.channel = channel
        # True where the database itself notifies the channel of every write that matters (the
        # outboxes' triggers): notify(session) then has nothing to send.
        self.notified_by_database = notified_by_database
        self.retry_interval = retry_interval
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: threading.Thread | None = None
        self.listening = threading.Event()  # set while LISTEN is in effect

    def notify(self, session: Session | Connection | None = None) -> None:
        if session is None:
            self._event.set()
            return
        if self.notified_by_database:
            return
        # Delivered when (and only if) the session's transaction commits.
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": self.channel})

    def wait(self, timeout: float) -> bool:
        self._start_listening()
        return super().wait(timeout)

    def close(self) -> None:
        self._stopping.set()
        super().close()

    def release(self) -> None:
        self._stopping.set()
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None and listener is not threading.current_thread():
            listener.join(LISTEN_POLL_SECONDS + 1.0)

    def _start_listening(self) -> None:
        with self._lock:
            if self._listener is None and not self._stopping.is_set():
                self._listener = threading.Thread(
                    target=self._listen, name=f"listen-{self.channel}", daemon=True
                )
                self._listener.start()

    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                with self._connect() as connection:
                    self.listening.set()
                    # Whatever was notified while nobody listened is looked for once now.
                    self._event.set()
                    while not self._stopping.is_set():
                        for _ in connection.notifies(timeout=LISTEN_POLL_SECONDS):
                            self._event.set()
            except Exception:
                self.listening.clear()
                log.warning("LISTEN %s failed; polling until it works again", self.channel, exc_info=True)
                self._stopping.wait(self.retry_interval)

    def _connect(self):
        """A driver (psycopg) connection of its own, outside the pool, listening on the channel."""
        args, kwargs = self.engine.dialect.create_connect_args(self.engine.url)
        connection = self.engine.dialect.connect(*args, **kwargs)
        connection.autocommit = True
        connection.execute(f'LISTEN "{self.channel}"')
        return connection


def make_wakeup(engine: Engine, channel: str, *, notified_by_database: bool = False) -> Wakeup:
    """The wake-up for channel: across processes on PostgreSQL, in memory otherwise.

    notified_by_database: the database notifies channel itself on every write a waiter looks for
    (see messaging.outbox.relay_wakeup), so writers' notify(session) sends nothing.
    """
    if engine.dialect.name == "postgresql":
        return PostgresWakeup(engine, channel, notified_by_database=notified_by_database)
    return Wakeup()
