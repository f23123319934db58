"""POST /v1/clients/{client_id}/tasks: verify, validate, accept in one transaction, answer 202."""

from __future__ import annotations

import json
import logging
import re
import time

from flask import Blueprint, current_app, g, request, url_for
from marshmallow import ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from gateway import signatures
from gateway.clients import Client, find_client
from gateway.identity import task_uuid as make_task_uuid
from gateway.intake import Acceptance, TaskConflict, content_digest
from gateway.metrics import TASKS_RECEIVED
from gateway.problems import Problem
from gateway.representations import task_representation
from gateway.schemas import CLIENT_ID, unstorable_text, validate_task
from gateway.state import current_state
from gateway.task_reads import find_task
from messaging.db import read_only, utcnow
from messaging.tracing import tracer

log = logging.getLogger(__name__)
bp = Blueprint("webhook", __name__)

# How long a 202 waits for the broker to confirm its task's messages. Waiting keeps the order of
# acceptance on the broker, whichever webhook process accepted each task: a client that sends its
# next task after this 202 has it published after this one. Past the wait (the broker failing or
# blocking publishers), the task is still accepted, and published once the broker takes it; the
# wait counts from the oldest offer the relay has not published, so a stuck relay delays the
# first requests only.
PUBLISH_WAIT_SECONDS = 5.0


@bp.post("/v1/clients/<client_id>/tasks")
def submit_task(client_id: str):
    state = current_state()
    if request.mimetype != "application/json":
        raise Problem(415, "Content-Type must be application/json")
    raw = _body()
    client, verify = _authenticated(state, client_id, raw)
    g.known_client = client_id
    body = _parsed(raw)
    try:
        task = validate_task(body)
    except ValidationError as error:
        raise Problem(422, "the task is invalid", errors=error.messages) from None

    g.task_type = task["type"]
    task_uuid = make_task_uuid(state.settings.namespace, client_id, task["task_id"])
    fields = {"task_id": task["task_id"], "task_uuid": str(task_uuid), "client_id": client_id}
    if tracer().enabled:  # on the request's span
        tracer().describe({f"taskgate.{name}": value for name, value in fields.items()})
    self_url = url_for("tasks.get_task", client_id=client_id, task_id=task["task_id"])
    refusal = _refusal(state, client_id)
    if refusal:
        # A task sent again is answered all the same (its client may be retrying a timeout): it is
        # not a new task (CONTRACT §3: 200), once the request verifies against the stored client.
        with read_only(state.engine).connect() as connection:
            stored = find_client(connection, client_id)
        if stored is None:
            raise _unauthenticated(state, client_id)
        if stored != client:
            _signed_by(state, client_id, verify, fresh=True)
        with state.reader.connect() as connection:
            existing = find_task(connection, client_id, task_uuid=task_uuid)
        if existing is not None and existing["content_sha256"] == content_digest(task):
            log.info("task replayed", extra=fields)
            return task_representation(existing, self_url), 200
        if existing is not None:
            raise _conflict(task, fields)
        raise refusal
    try:
        acceptance = _accept(state, client, verify, task_uuid, task)
    except TaskConflict:
        raise _conflict(task, fields) from None
    if not acceptance.created:
        log.info("task replayed", extra=fields)
        with state.reader.connect() as connection:
            return task_representation(find_task(connection, client_id, task["task_id"]), self_url), 200
    log.info("task accepted", extra={**fields, "type": task["type"]})
    body = {
        "task_id": task["task_id"],
        "task_uuid": str(task_uuid),
        "status": "accepted",
        "links": {"self": self_url},
    }
    return body, 202, {"Location": self_url}


def _body() -> bytes:
    """The raw body, 413 past MAX_CONTENT_LENGTH before more is read. One of no stated length
    (chunked, as gunicorn hands it on) is read to one byte past the limit: Werkzeug's capped
    stream would end it at the limit without a word, and the signature check would refuse it."""
    if request.content_length is not None or "wsgi.input_terminated" not in request.environ:
        return request.get_data(cache=False)
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    raw = request.environ["wsgi.input"].read(limit + 1)
    if len(raw) > limit:
        raise RequestEntityTooLarge()
    return raw


def _accept(state, client: Client, verify, task_uuid, task: dict) -> Acceptance:
    """accept_task for a request verified against client, committed (with the requests that
    reach the database meanwhile: gateway.accepting). If the client's secrets changed since it was
    read, the request is verified again against the stored client, and accepted if it still verifies."""
    for _ in range(3):
        acceptance = state.accepting.accept(client.client_id, task_uuid, task, sender=client)
        if acceptance.created:
            _published(state, acceptance.messages, {"task_id": task["task_id"], "task_uuid": str(task_uuid)})
        if acceptance.sender_current:
            return acceptance
        client = _signed_by(state, client.client_id, verify, fresh=True)
    raise Problem(503, "the client's secrets keep changing; try again", headers=_retry_after(state))


def _conflict(task: dict, fields: dict) -> Problem:
    log.info("task-id reused with other content", extra=fields)
    return Problem(409, f"task {task['task_id']!r} was already submitted with different content")


def _published(state, messages: list[dict], fields: dict) -> None:
    """Hand an accepted task's messages to this process's relay and wait until the broker has them."""
    published = state.publish(messages)
    if published is not None and not published.wait(PUBLISH_WAIT_SECONDS):
        log.warning("a task's messages are not published yet; answering without waiting longer", extra=fields)


def _authenticated(state, client_id: str, raw: bytes):
    """The client the request is signed by, its webhook-id, and the check of the request against a
    client's secrets. Answers 401 alike whether the client exists or not. While its source or
    client id has failed too often, a request is checked against the client as read at most a few
    seconds ago (KnownClients.recent: no more than one database read per id in that time) and
    answered 429 unless it verifies: someone who floods bad signatures for a client's id cannot
    lock the client out (its 256-bit secrets are not to be guessed at any rate)."""
    valid_id = client_id if re.fullmatch(CLIENT_ID, client_id) else None
    wait = state.auth_failures.wait_seconds(request.remote_addr, valid_id)
    tolerance = state.settings.signature_tolerance_seconds
    headers = request.headers

    def verify(secrets_: list[str]) -> str:
        return signatures.verify(secrets_, headers, raw, now=time.time(), tolerance=tolerance)

    if wait is not None:
        known = state.clients.recent(valid_id) if valid_id else None
        try:
            verify(known.secrets(utcnow()) if known else [])
        except signatures.SignatureError:
            raise Problem(
                429, "too many failed authentications", headers={"Retry-After": str(wait)}
            ) from None
        return known, verify

    if valid_id is None:
        try:
            verify([])  # checked like a client's request, so that the answer does not tell them apart
        except signatures.SignatureError as error:
            raise _unauthenticated(state, None, str(error)) from None
    return _signed_by(state, client_id, verify), verify


def _signed_by(state, client_id: str, verify, *, fresh: bool = False) -> Client:
    """The client KnownClients.signed_by finds the request signed by; a 401 (counted) if none."""
    try:
        client, _ = state.clients.signed_by(client_id, verify, fresh=fresh)
        return client
    except signatures.SignatureError as error:
        raise _unauthenticated(state, client_id, str(error)) from None


def _unauthenticated(state, client_id: str | None, detail: str = "no valid signature") -> Problem:
    """A 401 for this request, counted against its source and client id."""
    state.auth_failures.failed(request.remote_addr, client_id)
    return Problem(401, detail)


def _refusal(state, client_id: str) -> Problem | None:
    """Why a new task of this client cannot be taken now, if it cannot."""
    if not state.broker_probe.is_up():
        return Problem(503, "the broker is unavailable", headers=_retry_after(state))
    reason = state.backpressure.reason_to_refuse()
    if reason:
        return Problem(503, reason, headers=_retry_after(state))
    reason = state.backpressure.client_reason_to_refuse(client_id)
    if reason:
        return Problem(429, reason, headers=_retry_after(state))
    wait = state.intake.take(client_id)
    if wait is not None:
        return Problem(
            429, "this client sends tasks faster than its rate limit", headers={"Retry-After": str(wait)}
        )
    return None


def _parsed(raw: bytes) -> object:
    """The body as JSON in UTF-8 (400 if it is not), if its text can be stored (422 naming the field
    if not). Python's json would also take UTF-16 and UTF-32; RFC 8259 has UTF-8 alone between
    systems."""
    try:
        body = json.loads(raw.decode("utf-8-sig"), parse_constant=_not_json)
        unstorable = unstorable_text(body)
    except (ValueError, UnicodeDecodeError) as error:  # and TooDeep
        raise Problem(400, f"malformed JSON: {error}") from None
    except RecursionError:
        raise Problem(400, "malformed JSON: nested too deeply") from None
    if unstorable:
        raise Problem(422, "the task is invalid", errors=unstorable)
    return body


def _not_json(constant: str):
    """NaN and Infinity, which Python's json reads but JSON (RFC 8259) does not have."""
    raise ValueError(f"{constant} is not JSON")


def _retry_after(state) -> dict[str, str]:
    return {"Retry-After": str(state.settings.retry_after_seconds)}


@bp.after_request
def count(response):
    # Label values come only from known clients and valid types, so a caller cannot blow up cardinality.
    TASKS_RECEIVED.labels(
        g.get("known_client", "unknown"), g.get("task_type", "invalid"), str(response.status_code)
    ).inc()
    return response
