"""A callback receiver for trying taskgate out: prints each result callback, signature checked."""

from __future__ import annotations

import http.server
import json
import time
from collections.abc import Callable

from gateway import signatures


def make_server(port: int, secret: str | None, echo: Callable[[str], None]) -> http.server.HTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            verdict = "unchecked (no --secret)"
            if secret:
                try:
                    signatures.verify([secret], self.headers, body, now=time.time())
                    verdict = "signature ok"
                except signatures.SignatureError as error:
                    verdict = f"BAD SIGNATURE: {error}"
            try:
                data = json.loads(body)["data"]
                summary = f"{data['task_id']} {data['context']} {data['outcome']} {data['status']}"
            except (ValueError, KeyError, TypeError):
                summary = body[:200].decode(errors="replace")
            echo(f"{self.headers.get('webhook-id')}  {summary}  [{verdict}]")
            self.send_response(401 if verdict.startswith("BAD") else 204)
            self.end_headers()

        def log_message(self, *args):
            pass

    return http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
