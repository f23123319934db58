"""A callback receiver for trying taskgate out: hands on each result callback, signature checked."""

from __future__ import annotations

import dataclasses
import http.server
import json
import time
from collections.abc import Callable

from gateway import signatures


@dataclasses.dataclass(frozen=True)
class Callback:
    """One POST the receiver got: its webhook-id, the body's `data` (None if unreadable) and the
    verdict on its signature."""

    webhook_id: str | None
    data: dict | None
    verdict: str
    body: bytes

    @property
    def verified(self) -> bool:
        return self.verdict == "signature ok"

    def line(self) -> str:
        try:
            summary = " ".join(str(self.data[key]) for key in ("task_id", "context", "outcome", "status"))
        except (KeyError, TypeError):
            summary = self.body[:200].decode(errors="replace")
        return f"{self.webhook_id}  {summary}  [{self.verdict}]"


def make_server(
    port: int, secret: str | Callable[[], str | None] | None, on_callback: Callable[[Callback], None]
) -> http.server.HTTPServer:
    """An HTTP server on 127.0.0.1:port (0: any free port) calling on_callback for each POST.
    secret may be a function, for a receiver that must listen before its client is registered."""
    secret_now = secret if callable(secret) else (lambda: secret)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            key = secret_now()
            verdict = "unchecked (no --secret)"
            if key:
                try:
                    signatures.verify([key], self.headers, body, now=time.time())
                    verdict = "signature ok"
                except signatures.SignatureError as error:
                    verdict = f"BAD SIGNATURE: {error}"
            try:
                data = json.loads(body)["data"]
                if not isinstance(data, dict):
                    data = None
            except (ValueError, KeyError, TypeError):
                data = None
            on_callback(Callback(self.headers.get("webhook-id"), data, verdict, body))
            self.send_response(401 if verdict.startswith("BAD") else 204)
            self.end_headers()

        def log_message(self, *args):
            pass

    return http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
