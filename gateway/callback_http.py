"""HTTP for callbacks: an attempt connects to the address its URL was checked for, and ends by one
deadline however slowly the endpoint answers.

Both are set per thread around an attempt (`pinned`, `deadline`): each callback thread has its own
session and makes one attempt at a time. CallbackAdapter, mounted on such a session, applies them
through requests' and urllib3's extension points; it leaves send() alone, which the tests' stubs
(the responses library) replace.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import requests
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_attempt = threading.local()


@contextlib.contextmanager
def deadline(at: float) -> Iterator[None]:
    """Within it, this thread's callback connections connect, send and read by at (time.monotonic())."""
    _attempt.deadline = at
    try:
        yield
    finally:
        _attempt.deadline = None


@contextlib.contextmanager
def pinned(address: str | None) -> Iterator[None]:
    """Within it, this thread's callback requests connect to address (None: to what the host
    resolves to at connect time)."""
    _attempt.address = address
    try:
        yield
    finally:
        _attempt.address = None


def _time_left() -> float | None:
    """Seconds left until this thread's deadline (None: no deadline); TimeoutError once it passed."""
    at = getattr(_attempt, "deadline", None)
    if at is None:
        return None
    left = at - time.monotonic()
    if left <= 0:
        raise TimeoutError("the attempt's deadline passed")
    return left


class CallbackAdapter(requests.adapters.HTTPAdapter):
    """Pools whose connections keep to the deadline, keyed on the pinned address when there is one."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        # The pool classes a PoolManager makes pools of, by scheme: its own attribute, meant to be set.
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools have connection classes of their own
            manager.pool_classes_by_scheme = _POOL_CLASSES
        return manager

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        address = getattr(_attempt, "address", None)
        if address is not None:
            # Connect to the checked address; TLS still sends the host name (SNI) and checks the
            # certificate against it. The name stays in the pool's key for plain http as well
            # (urllib3 leaves it out of http pools themselves), so a connection kept alive for
            # one host is never used for another host with the same address.
            pool_kwargs["server_hostname"] = host_params["host"]
            host_params["host"] = address
        return host_params, pool_kwargs

    def add_headers(self, request, **kwargs) -> None:
        if getattr(_attempt, "address", None) is not None:  # else http.client names the address
            request.headers["Host"] = _host_header(request.url)


def _host_header(url: str) -> str:
    parts = urlsplit(url)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default_port = 443 if parts.scheme == "https" else 80
    return host if parts.port in (None, default_port) else f"{host}:{parts.port}"


class _KeepsToDeadline:
    """A urllib3 connection whose connecting, TLS handshake, sending and reading end by the deadline."""

    def _new_conn(self):
        # urllib3's one place that opens the socket, before any TLS (a private method, alike in
        # urllib3 1.26 and 2.x). The TCP connect gets what is left, then the TLS handshake on the
        # socket returned gets what is left after it (CPython bounds a whole handshake by the
        # socket's timeout).
        if _time_left() is None:
            return super()._new_conn()
        self.timeout = _time_left()
        sock = super()._new_conn()
        try:
            sock.settimeout(_time_left())
        except TimeoutError:
            sock.close()
            raise
        return sock

    def connect(self) -> None:
        super().connect()
        self.sock = _SocketKeepingToDeadline(self.sock)


class _DeadlineHTTPConnection(_KeepsToDeadline, HTTPConnection):
    pass


class _DeadlineHTTPSConnection(_KeepsToDeadline, HTTPSConnection):
    pass


class _DeadlineHTTPPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


_POOL_CLASSES = {"http": _DeadlineHTTPPool, "https": _DeadlineHTTPSPool}


class _SocketKeepingToDeadline:
    """A connected socket (plain or TLS) whose every read and write waits only for what is left
    until this thread's deadline: a per-operation timeout alone lets an endpoint that sends a byte
    now and then hold the attempt for ever. Anything else is the socket's own."""

    def __init__(self, sock):
        self._sock = sock
        self._readers = 0
        self._closing = False

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def _bounded(self):
        left = _time_left()
        if left is not None:
            self._sock.settimeout(left)
        return self._sock

    def recv(self, *args):
        return self._bounded().recv(*args)

    def recv_into(self, *args):
        return self._bounded().recv_into(*args)

    def send(self, *args):
        return self._bounded().send(*args)

    def sendall(self, data) -> None:
        # A piece at a time, each within what is left (SSLSocket.sendall gives each piece the
        # socket's whole timeout).
        view = memoryview(data).cast("B")
        while view:
            view = view[self._bounded().send(view) :]

    def makefile(self, mode: str = "rb", *args, **kwargs):
        """A buffered reader over this socket, so that http.client's reading of the response keeps to
        the deadline too."""
        if mode != "rb":
            raise ValueError(f"only 'rb' is supported, not {mode!r}")
        self._readers += 1
        return io.BufferedReader(_Reader(self))

    def close(self) -> None:
        # Like a socket's close: the connection goes once the response's reader is closed too
        # (http.client closes the connection before reading a response that ends it).
        self._closing = True
        if not self._readers:
            self._sock.close()

    def _reader_closed(self) -> None:
        self._readers -= 1
        if self._closing and not self._readers:
            self._sock.close()


class _Reader(io.RawIOBase):
    def __init__(self, sock: _SocketKeepingToDeadline):
        self._socket = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._socket.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._socket._reader_closed()
