"""GET /v1/clients/{client_id}/tasks[/{task_id}]: a client reads its own tasks, by bearer token."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
import uuid
from datetime import UTC, datetime

from flask import Blueprint, request, url_for
from sqlalchemy.orm import Session

from gateway import schemas
from gateway.clients import token_matches
from gateway.deliveries import find_delivery
from gateway.problems import Problem
from gateway.representations import task_representation
from gateway.schemas import CLIENT_ID, TASK_ID
from gateway.state import current_state
from gateway.task_reads import find_task, list_tasks
from gateway.timeline import task_timeline

bp = Blueprint("tasks", __name__)

TASK_STATUSES = ("accepted", "waiting", "succeeded", "rejected", "failed")
MAX_LIMIT = 100


def _authorize(session: Session, client_id: str) -> None:
    """Only with this client's API token. While the source or client id has failed too often, a
    wrong token gets 429 rather than 401; the right one still goes (a 256-bit token is not to be
    guessed at any rate, and nobody can lock a client out by flooding wrong ones)."""
    failures = current_state().auth_failures
    valid_id = client_id if re.fullmatch(CLIENT_ID, client_id) else None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if (
        scheme.lower() != "bearer"
        or not token
        or valid_id is None
        or not token_matches(session, client_id, token.strip())
    ):
        wait = failures.wait_seconds(request.remote_addr, valid_id)
        if wait is not None:
            raise Problem(429, "too many failed authentications", headers={"Retry-After": str(wait)})
        failures.failed(request.remote_addr, valid_id)
        raise Problem(
            401,
            "a valid bearer token of this client is required",
            headers={"WWW-Authenticate": 'Bearer realm="taskgate"'},
        )


@bp.get("/v1/clients/<client_id>/tasks/<task_id>")
def get_task(client_id: str, task_id: str):
    with Session(current_state().reader) as session:
        _authorize(session, client_id)
        task = find_task(session, client_id, task_id) if re.fullmatch(TASK_ID, task_id) else None
    if task is None:
        raise Problem(404, f"no task {task_id!r}")
    return task_representation(task, request.path)


@bp.get("/v1/clients/<client_id>/tasks/<task_id>/timeline")
def get_timeline(client_id: str, task_id: str):
    """What happened to the task, in time order: received, routed, parked, each step between the
    contexts (a visit's holds), each result and each callback attempt (as the console shows it)."""
    with Session(current_state().reader) as session:
        _authorize(session, client_id)
        task = find_task(session, client_id, task_id) if re.fullmatch(TASK_ID, task_id) else None
        timeline = task_timeline(session, task["task_uuid"]) if task else None
    if timeline is None:
        raise Problem(404, f"no task {task_id!r}")
    return schemas.Timeline().dump(
        {
            "task_id": task["task_id"],
            "task_uuid": task["task_uuid"],
            "status": task["status"],
            "events": [dataclasses.asdict(event) for event in timeline.events],
        }
    )


@bp.get("/v1/clients/<client_id>/tasks")
def get_tasks(client_id: str):
    with Session(current_state().reader) as session:
        _authorize(session, client_id)  # first: another client learns nothing, not even of its query
        status, limit = _status_and_limit()
        after = _decode_cursor(request.args.get("cursor"))
        items, last = list_tasks(session, client_id, status=status, limit=limit, after=after)
    next_cursor = _encode_cursor(last) if last else None
    page = {
        "items": [
            task_representation(item, url_for("tasks.get_task", client_id=client_id, task_id=item["task_id"]))
            for item in items
        ],
        "next_cursor": next_cursor,
        "links": {"self": request.full_path.rstrip("?")},
    }
    if next_cursor:
        page["links"]["next"] = url_for(
            "tasks.get_tasks", client_id=client_id, status=status, limit=limit, cursor=next_cursor
        )
    return page


@bp.get("/v1/clients/<client_id>/deliveries/<result_id>")
def get_delivery(client_id: str, result_id: str):
    with Session(current_state().reader) as session:
        _authorize(session, client_id)
        try:
            delivery = find_delivery(session, client_id, uuid.UUID(result_id))
        except ValueError:
            delivery = None
    if delivery is None:
        raise Problem(404, f"no delivery {result_id!r}")
    return schemas.DeliveryDetail().dump(delivery)


def _status_and_limit() -> tuple[str | None, int]:
    status = request.args.get("status") or None
    if status is not None and status not in TASK_STATUSES:
        raise Problem(422, "invalid query", errors={"status": [f"must be one of {', '.join(TASK_STATUSES)}"]})
    try:
        limit = int(request.args.get("limit") or 50)  # left empty (`?limit=`): the default
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError
    except ValueError:
        raise Problem(
            422, "invalid query", errors={"limit": [f"must be an integer from 1 to {MAX_LIMIT}"]}
        ) from None
    return status, limit


def _encode_cursor(key: tuple) -> str:
    received_at, task_uuid = key
    raw = json.dumps([received_at.isoformat(), str(task_uuid)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> tuple | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        received_at, task_uuid = json.loads(raw)
        received_at = datetime.fromisoformat(received_at)
        if received_at.tzinfo is None:
            raise ValueError("naive time")
        return received_at.astimezone(UTC), uuid.UUID(task_uuid)  # OverflowError: out of UTC's range
    except (ValueError, TypeError, AttributeError, RecursionError, OverflowError, binascii.Error):
        raise Problem(
            400, "invalid query", errors={"cursor": ["is not a cursor this API returned"]}
        ) from None
