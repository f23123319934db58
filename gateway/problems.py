"""RFC 9457 problem details for every error the HTTP API returns."""

from __future__ import annotations

from http import HTTPStatus

from flask import Response, json

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """An error the client should see as problem+json."""

    def __init__(self, status: int, detail: str, *, errors=None, headers=None, title=None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.title = title or HTTPStatus(status).phrase


def problem_response(problem: Problem) -> Response:
    body = {
        "type": "about:blank",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    if problem.errors is not None:
        body["errors"] = problem.errors
    response = Response(json.dumps(body), status=problem.status, mimetype=PROBLEM_JSON)
    response.headers.update(problem.headers)
    return response
