"""Broker connections: RabbitMQ for amqp:// URLs, the in-process transport for memory://."""

from __future__ import annotations

import contextlib
import os
import time
import weakref

from kombu import Connection

from messaging import inproc

# What taskgate runs on: RabbitMQ, or its in-process broker.
SCHEMES = ("amqp", "amqps", "pyamqp", "memory")


def check_url(url: str) -> None:
    """Raise ValueError (saying what is wrong) unless url names a broker taskgate runs on."""
    scheme, separator, _ = url.partition("://")
    if not separator or scheme.lower() not in SCHEMES:
        raise ValueError("expected amqp:// or amqps:// (RabbitMQ), or memory:// (in-process)")
    Connection(url)  # connects to nothing; raises ValueError for a port that is not a number


def connect(url: str, *, heartbeat: int = 0, confirm_each: bool = True) -> Connection:
    """A new (lazy) connection. On RabbitMQ each publish waits for its publisher confirm, unless
    confirm_each is False: then the caller confirms batches itself (see BatchConfirms)."""
    if url.startswith("memory://"):
        return Connection(transport=inproc.Transport)
    return Connection(
        url,
        heartbeat=heartbeat,
        connect_timeout=5,
        transport_options={"confirm_publish": confirm_each},
    )


class BrokerRefused(Exception):
    """The broker nacked a message, or did not confirm it in time: the batch must be published again."""


class BatchConfirms:
    """Publisher confirms per batch rather than per message: publish a batch, then wait once.

    RabbitMQ numbers the messages published on a confirm-mode channel 1, 2, … and acks them, one at
    a time or many at once (`multiple`). The in-process broker is synchronous, and a connection made
    with confirm_each has each publish confirmed already: neither needs any of this.
    """

    def __init__(self, connection: Connection):
        self.connection = connection
        self._enabled = False
        self._channel = None
        self._published = 0
        self._unconfirmed: set[int] = set()
        self._refused = False

    def channel(self):
        """The connection's channel, in confirm mode (again, after a reconnection)."""
        channel = self.connection.default_channel
        if channel is not self._channel:
            self._channel, self._published, self._unconfirmed, self._refused = channel, 0, set(), False
            confirmed_each = self.connection.transport_options.get("confirm_publish")
            self._enabled = hasattr(channel, "confirm_select") and not confirmed_each
            if self._enabled:
                channel.confirm_select()
                channel.events["basic_ack"].add(self._on_ack)
                channel.events["basic_nack"].add(self._on_nack)
        return channel

    def published(self) -> None:
        """Count one message published on channel()."""
        if self._enabled:
            self._published += 1
            self._unconfirmed.add(self._published)

    def wait(self, timeout: float = 10.0) -> None:
        """Return once the broker has confirmed every message published; raise BrokerRefused if it
        refused one or did not confirm them all within timeout."""
        deadline = time.monotonic() + timeout
        while self._unconfirmed and not self._refused:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                self.connection.drain_events(timeout=remaining)
            except TimeoutError:
                break
        if self._refused or self._unconfirmed:
            missing = len(self._unconfirmed)
            self._unconfirmed.clear()
            self._refused = False
            raise BrokerRefused(f"{missing} message(s) not confirmed by the broker")

    def _on_ack(self, tag: int, multiple: bool) -> None:
        self._settle(tag, multiple)

    def _on_nack(self, tag: int, multiple: bool) -> None:
        self._refused = True
        self._settle(tag, multiple)

    def _settle(self, tag: int, multiple: bool) -> None:
        if multiple:
            self._unconfirmed = {t for t in self._unconfirmed if t > tag}
        else:
            self._unconfirmed.discard(tag)


def is_volatile(url: str) -> bool:
    """True if the broker loses its messages when this process dies (the in-process one)."""
    return url.startswith("memory://")


def is_reachable(url: str, timeout: float = 2.0) -> bool:
    """True if the broker answers a connection opened now (and closed again)."""
    liveness = Liveness(url, timeout)
    try:
        return liveness.answers()
    finally:
        liveness.close()


class Liveness:
    """Whether the broker answers now, asked on one connection kept open between the questions: a
    process that asks every few seconds does not have the broker open and close a connection each
    time. A kept connection the broker has dropped meanwhile (say it restarted) is replaced at once.
    It is closed by close(), or when this object goes."""

    def __init__(self, url: str, timeout: float = 1.0):
        self.url = url
        self.timeout = timeout
        self._kept: list[Connection] = []  # the kept connection, if any
        self._pid: int | None = None
        weakref.finalize(self, _release, self._kept)

    def answers(self) -> bool:
        """Not thread-safe: the caller takes turns."""
        if self.url.startswith("memory://"):
            return True
        if self._pid != os.getpid():  # forked: the connection is the parent's
            self._kept.clear()
            self._pid = os.getpid()
        for fresh in (False, True) if self._kept else (True,):
            try:
                if fresh:
                    self._kept.append(_probing(self.url, self.timeout))
                    self._kept[0].ensure_connection(max_retries=0, timeout=self.timeout)
                self._kept[0].default_channel.basic_qos(0, 0, False)  # a round trip
                return True
            except Exception:
                self.close()
        return False

    def close(self) -> None:
        _release(self._kept)


def _release(kept: list[Connection]) -> None:
    while kept:
        with contextlib.suppress(Exception):  # it may be broken already: that is why it goes
            kept.pop().release()


def _probing(url: str, timeout: float) -> Connection:
    # Read and write timeouts too: a broker that is shutting down may accept the TCP connection and
    # then never answer the handshake.
    options = {"read_timeout": timeout, "write_timeout": timeout, "max_retries": 0}
    return Connection(url, connect_timeout=timeout, transport_options=options)
