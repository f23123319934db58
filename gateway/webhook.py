"""POST /v1/clients/{client_id}/tasks: verify, validate, accept in one transaction, answer 202."""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import UTC, datetime

from flask import Blueprint, g, request, url_for
from marshmallow import ValidationError

from gateway import signatures
from gateway.identity import task_uuid as make_task_uuid
from gateway.metrics import TASKS_RECEIVED
from gateway.problems import Problem
from gateway.representations import task_representation
from gateway.schemas import CLIENT_ID, has_unstorable_text, validate_task
from gateway.state import current_state
from gateway.store import (
    TaskConflict,
    accept_task,
    content_digest,
    find_task,
    sender_and_replay,
)
from messaging.db import single_read

log = logging.getLogger(__name__)
bp = Blueprint("webhook", __name__)


@bp.post("/v1/clients/<client_id>/tasks")
def submit_task(client_id: str):
    state = current_state()
    if request.mimetype != "application/json":
        raise Problem(415, "Content-Type must be application/json")
    raw = request.get_data(cache=False)  # bounded by MAX_CONTENT_LENGTH: 413 before reading more

    # Who is asking, and whether this exact request was seen before: one statement, no transaction.
    if re.fullmatch(CLIENT_ID, client_id):
        with single_read(state.engine).connect() as connection:
            client, replayed = sender_and_replay(connection, client_id, request.headers.get("webhook-id", ""))
    else:
        client, replayed = None, None
    if client is None:
        raise Problem(401, "unknown client or invalid signature")
    g.known_client = client_id
    webhook_id, body = _verified_body(client, raw, state.settings.signature_tolerance_seconds)
    task = None
    if replayed:
        with state.reader.connect() as connection:
            task = find_task(connection, client_id, task_uuid=replayed)
    if task is not None:  # the same request again: answered, not processed
        if task["content_sha256"] != content_digest(body):
            raise Problem(409, "this webhook-id was already used for a request with other content")
        log.info("webhook-id replayed", extra={"task_id": task["task_id"], "task_uuid": str(replayed)})
        return task_representation(
            task, url_for("tasks.get_task", client_id=client_id, task_id=task["task_id"])
        ), 200
    try:
        task = validate_task(body)
    except ValidationError as error:
        raise Problem(422, "the task is invalid", errors=error.messages) from None

    g.task_type = task["type"]
    task_uuid = make_task_uuid(state.settings.namespace, client_id, task["task_id"])
    fields = {"task_id": task["task_id"], "task_uuid": str(task_uuid), "client_id": client_id}
    if not state.broker_probe.is_up():
        raise Problem(503, "the broker is unavailable", headers=_retry_after(state))
    if reason := state.backpressure.reason_to_refuse():
        raise Problem(503, reason, headers=_retry_after(state))
    try:
        with state.engine.begin() as connection:
            acceptance = accept_task(connection, client_id, task_uuid, task, webhook_id=webhook_id)
            if acceptance.created:
                state.outbox_wakeup.notify(connection)
    except TaskConflict:
        log.info("task-id reused with other content", extra=fields)
        raise Problem(409, f"task {task['task_id']!r} was already submitted with different content") from None

    self_url = url_for("tasks.get_task", client_id=client_id, task_id=task["task_id"])
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


def _verified_body(client, raw: bytes, tolerance: int) -> tuple[str, object]:
    """The request's webhook-id and parsed JSON body, once its signature checks out."""
    now = time.time()
    try:
        webhook_id = signatures.verify(
            client.secrets(datetime.fromtimestamp(now, UTC)),
            request.headers,
            raw,
            now=now,
            tolerance=tolerance,
        )
    except signatures.SignatureError as error:
        raise Problem(401, str(error)) from None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise Problem(400, f"malformed JSON: {error}") from None
    except RecursionError:
        raise Problem(400, "malformed JSON: nested too deeply") from None
    if has_unstorable_text(body):
        raise Problem(400, "the body holds a NUL character or an unpaired surrogate")
    return webhook_id, body


def _retry_after(state) -> dict[str, str]:
    return {"Retry-After": str(state.settings.retry_after_seconds)}


@bp.after_request
def count(response):
    # Label values come only from known clients and valid types, so a caller cannot blow up cardinality.
    TASKS_RECEIVED.labels(
        g.get("known_client", "unknown"), g.get("task_type", "invalid"), str(response.status_code)
    ).inc()
    return response
