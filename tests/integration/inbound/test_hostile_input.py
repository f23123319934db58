"""Hostile input on every route: a clear 4xx, never a 500 (the webhook, the API, the console, serve's
HTTP server)."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading

import pytest

from gateway.console import COOKIE
from taskgate.http_server import MAX_HEADER_BYTES, http_server
from tests.factories import signed, upsert_task
from tests.integration.inbound.support import URL, assert_problem, post


def nested(depth: int, inner: object = 1) -> object:
    value = inner
    for _ in range(depth):
        value = [value]
    return value


# --- never a 500 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {**upsert_task(), "payload": {"name": nested(330), "email": "ada@example.com"}},
        {**upsert_task(), "extra": nested(40)},
        nested(330),
        json.loads("[" * 900 + "]" * 900),
    ],
    ids=["payload-field", "top-level-field", "body-list", "near-the-parser-limit"],
)
def test_a_signed_body_nested_deeply_at_any_level_is_400(app, credentials, body, caplog):
    with caplog.at_level(logging.INFO):
        problem = assert_problem(post(app.test_client(), credentials["signing_secret"], body), 400)
    assert "nested" in problem["detail"]
    assert not [record for record in caplog.records if record.exc_info]


def test_a_body_nested_past_the_parser_is_400_not_a_traceback(app, credentials, caplog):
    raw = b"[" * 30_000 + b"]" * 30_000
    with caplog.at_level(logging.INFO):
        problem = assert_problem(post(app.test_client(), credentials["signing_secret"], raw), 400)
    assert "nested too deeply" in problem["detail"]
    assert not [record for record in caplog.records if record.exc_info]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_a_signed_body_in_another_encoding_than_utf_8_is_400(app, credentials, encoding):
    raw = json.dumps(upsert_task()).encode(encoding)
    problem = assert_problem(post(app.test_client(), credentials["signing_secret"], raw), 400)
    assert "malformed JSON" in problem["detail"]


def test_a_method_a_route_does_not_take_is_405_naming_those_it_does(app):
    problem = app.test_client().delete(f"{URL}/T-1")
    assert_problem(problem, 405)
    assert "GET" in problem.headers["Allow"]


def test_a_cursor_of_nested_lists_is_401_unauthenticated_and_400_authenticated(app, credentials, caplog):
    import base64

    cursor = base64.urlsafe_b64encode(b"[" * 1000 + b"]" * 1000).decode().rstrip("=")
    http = app.test_client()
    with caplog.at_level(logging.INFO):
        assert_problem(http.get(f"{URL}?cursor={cursor}"), 401)
        bearer = {"Authorization": f"Bearer {credentials['api_token']}"}
        problem = assert_problem(http.get(f"{URL}?cursor={cursor}", headers=bearer), 400)
    assert "cursor" in problem["errors"]
    assert not [record for record in caplog.records if record.exc_info]


def test_a_console_cookie_with_a_huge_number_is_no_session(app):
    http = app.test_client(use_cookies=False)  # else its cookie jar replaces the Cookie header
    response = http.get("/console/", headers={"Cookie": f"{COOKIE}={'9' * 5000}.abc"})
    assert response.status_code == 302 and "/console/login" in response.headers["Location"]
    assert http.get("/console/", headers={"Authorization": "Bearer " + "9" * 5000}).status_code == 401


def test_a_task_id_with_a_trailing_newline_is_invalid(app, credentials):
    for field, body in [
        ("task_id", upsert_task(task_id="T-1\n")),
        ("payload.appointment_task_id", {**upsert_task(), "type": "appointment.cancel",
                                         "payload": {"appointment_task_id": "T-1\n"}}),
    ]:  # fmt: skip
        problem = assert_problem(post(app.test_client(), credentials["signing_secret"], body), 422)
        assert field in problem["errors"]


@pytest.mark.parametrize("timestamp", ["+{now}", " {now}", "{now}.0", "1_{now}", "٣"])
def test_a_timestamp_that_is_not_plain_digits_is_401(app, credentials, timestamp):
    import time

    raw, headers = signed(credentials["signing_secret"], upsert_task())
    now = headers["webhook-timestamp"]
    from gateway import signatures

    headers["webhook-timestamp"] = timestamp.format(now=now)
    headers["webhook-signature"] = signatures.sign(
        credentials["signing_secret"], headers["webhook-id"], headers["webhook-timestamp"], raw
    )
    assert int(time.time()) - int(now) < 60
    assert_problem(app.test_client().post(URL, data=raw, headers=headers), 401)


# --- serve's HTTP server ---------------------------------------------------------------------------


@pytest.fixture
def served(app):
    server = http_server(app, app.extensions["taskgate"].settings, "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield server.effective_port
    server.close()
    thread.join(timeout=5)


def answer_to(port: int, request: bytes) -> tuple[int, dict]:
    """Send request; the answer's status code and problem (the server closes the connection after it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        # Until the server closes the connection (a reset, if it closed with our request unread).
        with contextlib.suppress(ConnectionResetError):
            while chunk := connection.recv(65536):
                answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Content-Type: application/problem+json" in head
    return int(answer.split(b" ", 2)[1]), json.loads(body)


def test_serve_refuses_a_body_over_the_limit_before_reading_it(served):
    # Ten megabytes announced, none sent: the answer comes without waiting for the body.
    head = f"POST {URL} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    status, problem = answer_to(served, f"{head}Content-Length: 10000000\r\n\r\n".encode())
    assert (status, problem["status"]) == (413, 413)
    assert problem["detail"] == "the body is larger than 65536 bytes"


def test_serve_refuses_oversized_headers(served):
    head = f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * MAX_HEADER_BYTES}\r\n\r\n"
    status, problem = answer_to(served, head.encode())
    assert (status, problem["status"]) == (431, 431)
