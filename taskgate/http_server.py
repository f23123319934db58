"""serve's HTTP server (waitress). It refuses a body over the limit (413) and headers over
MAX_HEADER_BYTES (431) before reading them, where waitress would otherwise buffer up to 1 GiB
before the app could answer; its own refusals are problem+json, like the app's."""

from __future__ import annotations

import json

from waitress.channel import HTTPChannel
from waitress.server import create_server
from waitress.task import ErrorTask

from gateway.config import Settings
from gateway.problems import PROBLEM_JSON

MAX_HEADER_BYTES = 32 * 1024


def http_server(app, settings: Settings, host: str, port: int):
    listening: dict = {}  # waitress registers each listening socket's server here
    server = create_server(
        app,
        map=listening,
        host=host,
        port=port,
        threads=8,
        ident="taskgate",
        max_request_body_size=settings.max_body_bytes + 1,  # refused from this size on
        max_request_header_size=MAX_HEADER_BYTES,
    )
    details = {
        413: f"the body is larger than {settings.max_body_bytes} bytes",
        431: f"the request's headers are larger than {MAX_HEADER_BYTES} bytes",
    }

    class Refusal(ErrorTask):
        def execute(self):
            error = self.request.error
            problem = {
                "type": "about:blank",
                "title": error.reason,
                "status": error.code,
                "detail": details.get(error.code, error.body),
            }
            body = json.dumps(problem).encode()
            self.status = f"{error.code} {error.reason}"
            self.response_headers.append(("Content-Type", PROBLEM_JSON))
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)

    class Channel(HTTPChannel):
        error_task_class = Refusal  # waitress's hook for the answer to a request it refuses

    for listener in listening.values():
        listener.channel_class = Channel
    return server
