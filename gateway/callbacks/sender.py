"""Sending one callback attempt: the signed body, a POST to a checked address within one
deadline, and what came back."""

from __future__ import annotations

import dataclasses
import http.cookiejar
import json
import logging
import os
import re
import threading
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import requests

from gateway import callback_http, signatures
from gateway.clients import CLIENT_COLUMNS, Client
from gateway.urls import UnsafeURL, resolve_callback_target
from messaging.db import utcnow

log = logging.getLogger(__name__)

RESPONSE_BODY_LIMIT = 4096


def callback_body(row, now: datetime) -> bytes:
    body = {
        "type": "task.result",
        "timestamp": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": {
            "result_id": str(row.result_id),
            "task_id": row.task_id,
            "task_uuid": str(row.task_uuid),
            "context": row.context,
            "outcome": row.outcome,
            "status": row.status,
            "result": row.result,
        },
    }
    return json.dumps(body, separators=(",", ":")).encode()


@dataclasses.dataclass
class Attempt:
    attempted_at: datetime
    status_code: int | None = None
    retry_after: str | None = None
    response_body: str | None = None
    error: str | None = None
    duration_ms: int = 0

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class CallbackSender:
    """Attempts callbacks, each thread on its own keep-alive connections."""

    def __init__(self, timeout: float, allow_private: bool = False):
        self.timeout = timeout
        self.allow_private = allow_private
        self._sessions = threading.local()

    def _http(self) -> requests.Session:
        if not hasattr(self._sessions, "http"):
            session = requests.Session()
            session.mount("http://", callback_http.CallbackAdapter())
            session.mount("https://", callback_http.CallbackAdapter())
            read_environment_once(session)
            self._sessions.http = session
        return self._sessions.http

    def _post(
        self, url: str, addresses: list[str], body: bytes, headers: dict[str, str]
    ) -> requests.Response:
        """POST body to url on this thread's keep-alive connection, not following redirects; to the
        first of the addresses checked for url (none: private targets are allowed, nothing to pin)."""
        session = self._http()
        address = addresses[0] if addresses else None
        # A proxy (from the environment: see read_environment_once) connects to the host by its
        # name, so the connection cannot be pinned to the checked address: the operator's proxy
        # must keep callbacks out of the internal network.
        if (
            address
            and session.trust_env
            and requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
        ):
            address = None
        with callback_http.pinned(address):
            return session.post(
                url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False, stream=True
            )

    def attempt(self, row, trace_headers: dict[str, str] | None = None) -> Attempt:
        """One attempt of the delivery row: whatever happens, an Attempt says what. trace_headers
        (traceparent…) go with the request."""
        now = utcnow()
        client = Client(*(getattr(row, column.name) for column in CLIENT_COLUMNS))
        body = callback_body(row, now)
        headers = signatures.signed_headers(
            client.secrets(now), str(row.result_id), int(now.timestamp()), body
        )
        headers["Content-Type"] = "application/json"
        headers["User-Agent"] = "taskgate"
        headers.update(trace_headers or {})
        attempt = Attempt(attempted_at=now)
        self._send(row, body, headers, attempt)
        return attempt

    def _send(self, row, body: bytes, headers: dict[str, str], attempt: Attempt) -> None:
        """Post body to the row's callback URL; attempt says what came of it and how long it took."""
        started = time.monotonic()
        deadline = started + self.timeout
        try:
            # Looked up once per attempt, and the connection goes to an address checked here.
            addresses = resolve_callback_target(row.callback_url, allow_private=self.allow_private)
            with (
                callback_http.deadline(deadline),
                self._post(row.callback_url, addresses, body, headers) as response,
            ):
                attempt.status_code = response.status_code
                attempt.retry_after = response.headers.get("Retry-After")
                attempt.response_body = _read_some(response)
        except UnsafeURL as error:
            attempt.error = str(error)
        except requests.RequestException as error:
            if time.monotonic() >= deadline:  # whatever broke off, the deadline did
                attempt.error = f"the attempt took longer than {self.timeout:g} s"
            else:
                attempt.error = _redact(f"{type(error).__name__}: {error}", row.callback_url)[:1000]
        except Exception as error:  # whatever happened, the attempt is recorded and the schedule moves on
            log.exception(
                "callback attempt broke", extra={"task_id": row.task_id, "task_uuid": str(row.task_uuid)}
            )
            attempt.error = f"{type(error).__name__}: {error}"[:1000]
        attempt.duration_ms = int((time.monotonic() - started) * 1000)


def span_attributes(row) -> dict:
    """What a trace shows of a callback attempt: the URL without credentials or query (either may
    hold a secret), and none of it if it does not parse (the attempt records why it failed)."""
    attributes = {
        "http.request.method": "POST",
        "taskgate.task_id": row.task_id,
        "taskgate.task_uuid": str(row.task_uuid),
        "taskgate.client_id": row.client_id,
        "taskgate.result_id": str(row.result_id),
        "taskgate.attempt": row.attempts + 1,
    }
    try:
        url = urlsplit(row.callback_url)
        netloc = url.hostname + (f":{url.port}" if url.port else "")
        attributes["url.full"] = urlunsplit((url.scheme, netloc, url.path, "", ""))
        attributes["server.address"] = url.hostname
    except (TypeError, ValueError):
        pass
    return attributes


def read_environment_once(session: requests.Session, environ=None) -> None:
    """Apply to session what requests would otherwise look up in the environment on every request
    (trust_env), which costs more than the rest of an attempt's client side: the CA bundle
    (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE). Proxy settings are left to requests, which applies
    no_proxy per URL (no_proxy alone needs none of that); .netrc credentials are never sent to
    callback URLs, and cookies are never kept."""
    environ = os.environ if environ is None else environ
    # Whatever requests reads from the environment, it neither keeps an endpoint's cookies (a
    # callback is a signed message, not a browsing session) nor adds .netrc credentials.
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    session.auth = _as_is
    proxies = (name for name, value in environ.items() if value and name.lower().endswith("_proxy"))
    if any(name.lower() != "no_proxy" for name in proxies):
        return
    session.trust_env = False
    bundle = environ.get("REQUESTS_CA_BUNDLE") or environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle


def _as_is(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """No authentication: as a session's auth, it keeps requests from adding .netrc credentials."""
    return request


def _read_some(response: requests.Response) -> str:
    """Up to RESPONSE_BODY_LIMIT bytes of the answer (the attempt's deadline bounds the reading)."""
    body = next(response.iter_content(chunk_size=RESPONSE_BODY_LIMIT), b"")
    return storable(body.decode("utf-8", errors="replace"))


def storable(text: str) -> str:
    """No database stores NUL in text."""
    return text.replace("\x00", "\ufffd")


_QUERY = re.compile(r"\?\S*")


def _redact(text: str, url: str) -> str:
    """text without the URL's query or credentials, which may hold secrets: any query in it, as the
    libraries may have quoted the URL's anew."""
    parts = urlsplit(url)
    for secret in (parts.query, parts.password):
        if secret:
            text = text.replace(secret, "[redacted]")
    return _QUERY.sub("?[redacted]", text) if parts.query else text
