"""A real HTTP endpoint on 127.0.0.1 playing the client's callback URL, scriptable per request."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable


class Receiver:
    """Records every POST. answer(request, number) -> status decides each response (default 204);
    while hold() is in effect, requests wait until release() (an endpoint that hangs)."""

    def __init__(self, answer: Callable[[dict, int], int] | None = None):
        self.requests: list[dict] = []
        self.answer = answer or (lambda request, number: 204)
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._released.set()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = {"headers": dict(self.headers), "body": body, "path": self.path}
                with receiver._lock:
                    receiver.requests.append(request)
                    number = len(receiver.requests)
                    receiver.in_flight += 1
                    receiver.max_in_flight = max(receiver.max_in_flight, receiver.in_flight)
                try:
                    receiver._released.wait(60)
                    self.send_response(receiver.answer(request, number))
                    self.end_headers()
                finally:
                    with receiver._lock:
                        receiver.in_flight -= 1

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/callbacks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def hold(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def bodies(self) -> list[dict]:
        return [json.loads(request["body"]) for request in self.requests]

    def webhook_ids(self) -> list[str]:
        return [request["headers"]["webhook-id"] for request in self.requests]
