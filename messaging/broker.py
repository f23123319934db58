"""Broker connections: RabbitMQ for amqp:// URLs, the in-process transport for memory://."""

from __future__ import annotations

from kombu import Connection

from messaging import inproc


def connect(url: str, *, heartbeat: int = 0) -> Connection:
    """A new (lazy) connection; publisher confirms on for RabbitMQ."""
    if url.startswith("memory://"):
        return Connection(transport=inproc.Transport)
    return Connection(
        url,
        heartbeat=heartbeat,
        connect_timeout=5,
        transport_options={"confirm_publish": True},
    )


def is_volatile(url: str) -> bool:
    """True if the broker loses its messages when this process dies (the in-process one)."""
    return url.startswith("memory://")


def is_reachable(url: str, timeout: float = 2.0) -> bool:
    """True if a connection to the broker can be opened now."""
    if url.startswith("memory://"):
        return True
    # Read and write timeouts too: a broker that is shutting down may accept the TCP connection and
    # then never answer the handshake.
    options = {"read_timeout": timeout, "write_timeout": timeout}
    with Connection(url, connect_timeout=timeout, transport_options=options) as connection:
        try:
            connection.ensure_connection(max_retries=0, timeout=timeout)
        except Exception:
            return False
        return True
