"""A callback endpoint on 127.0.0.1 that answers a byte at a time, for as long as the caller listens."""

from __future__ import annotations

import select
import socket
import threading
import time

# (sent at once, then trickled): the status line and a header line that does not end, or
# the headers, then a body that does not end.
SLOW_HEADERS = (b"", b"HTTP/1.1 200 OK\r\nX-Trickle: " + b"a" * 100_000)
SLOW_BODY = (b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", b"x" * 100_000)


class TricklingReceiver:
    """Reads each request, then sends answer[0] at once and answer[1] a byte every `interval`
    seconds until the caller hangs up (or `give_up` seconds pass). `events` tells what happened, in
    order: ("request", n) when request n had arrived, then ("hung up", n) when its caller went
    away, or ("gave up", n) after give_up seconds."""

    def __init__(
        self, answer: tuple[bytes, bytes] = SLOW_HEADERS, interval: float = 0.05, give_up: float = 60.0
    ):
        self.answer = answer
        self.interval = interval
        self.give_up = give_up
        self.events: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/callbacks"

    def __enter__(self):
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *_):
        self._closed.set()
        self._listener.close()

    def count(self, kind: str) -> int:
        with self._lock:
            return sum(1 for event, _ in self.events if event == kind)

    def _note(self, kind: str, number: int) -> None:
        with self._lock:
            self.events.append((kind, number))

    def _accept(self) -> None:
        number = 0
        while not self._closed.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # closed
            number += 1
            threading.Thread(target=self._serve, args=(connection, number), daemon=True).start()

    def _serve(self, connection: socket.socket, number: int) -> None:
        with connection:
            if not _read_request(connection):
                return
            self._note("request", number)
            at_once, trickled = self.answer
            connection.sendall(at_once)
            ends = time.monotonic() + self.give_up
            outcome = "answered"
            for byte in trickled:
                # Wait out the interval, or notice the caller hang up (the socket reads as ended).
                readable, _, _ = select.select([connection], [], [], self.interval)
                if self._closed.is_set():
                    outcome = "closed"
                    break
                if readable and not _recv_or_nothing(connection):
                    outcome = "hung up"
                    break
                if time.monotonic() > ends:
                    outcome = "gave up"
                    break
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    outcome = "hung up"
                    break
            self._note(outcome, number)


def _read_request(connection: socket.socket) -> bool:
    """Read one request (headers, then a body of Content-Length); False if the caller went away."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = _recv_or_nothing(connection)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        chunk = _recv_or_nothing(connection)
        if not chunk:
            return False
        body += chunk
    return True


def _recv_or_nothing(connection: socket.socket) -> bytes:
    try:
        return connection.recv(65536)
    except OSError:
        return b""
