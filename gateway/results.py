"""Results coming back from the contexts: stored once each, the task's status moved, the callback
queued (and offered to this process's dispatcher); a context's word that a task waits."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from types import SimpleNamespace

from sqlalchemy import bindparam, select, update

from gateway.callbacks.lease import pending_result_of
from gateway.clients import CLIENT_COLUMNS
from gateway.metrics import RESULTS_RECORDED
from gateway.tables import ACCEPTED, clients, results, tasks
from messaging import vocabulary
from messaging.after_commit import after_commit
from messaging.db import Transaction, insert_many_ignoring_duplicates, utcnow
from messaging.envelope import Envelope
from messaging.tracing import tracer

log = logging.getLogger(__name__)


class UnknownTask(LookupError):
    """A result arrived for a task the gateway never accepted."""


# A dispatcher's offer to take fresh deliveries at once: their leases, and the hand-over to call
# with those the transaction stored (CallbackDispatcher.offer).
Offer = Callable[[list], tuple[dict, Callable[[Transaction, set], None]]]


def record_result(session: Transaction, envelope: Envelope, offer: Offer | None = None) -> list[Envelope]:
    """Handler for result messages: store the result, move the task's status, queue the callback."""
    return record_results(session, [envelope], offer)


def record_results(
    session: Transaction, envelopes: list[Envelope], offer: Offer | None = None
) -> list[Envelope]:
    """record_result for many result messages in a few statements, whatever their number. With
    offer, the deliveries a dispatcher of this process takes at once are recorded leased to it."""
    known = _tasks_of(session, envelopes)
    for envelope in envelopes:
        if envelope.task_uuid not in known:
            raise UnknownTask(f"result for unknown task {envelope.task_uuid}")
    _record(session, envelopes, known, offer)
    return []


def record_in_place(
    session: Transaction, caused: list[Envelope], offer: Offer | None = None
) -> set[uuid.UUID]:
    """In a context's transaction, in a process that also runs the gateway on the same database:
    record_results for the results among the messages it caused whose tasks the gateway knows (the
    others take the way through the broker); the message ids of those recorded."""
    found = [envelope for envelope in caused if envelope.type == vocabulary.TASK_RESULT]
    known = _tasks_of(session, found) if found else {}
    recorded = [envelope for envelope in found if envelope.task_uuid in known]
    if recorded:
        _record(session, recorded, known, offer)
    return {envelope.message_id for envelope in recorded}


def _tasks_of(session: Transaction, envelopes: list[Envelope]) -> dict:
    uuids = list({envelope.task_uuid for envelope in envelopes})
    return {task.task_uuid: task for task in session.execute(_TASKS_OF, {"uuids": uuids})}


def _record(session: Transaction, envelopes: list[Envelope], known: dict, offer: Offer | None) -> None:
    now = utcnow()
    rows = [
        {
            "result_id": uuid.UUID(result["result_id"]),
            "task_uuid": envelope.task_uuid,
            "context": result["context"],
            "outcome": result["outcome"],
            "status": result["status"],
            "result": result.get("result") or {},
            "occurred_at": datetime.fromisoformat(result["occurred_at"]),
            "client_id": known[envelope.task_uuid].client_id,
            "delivery_status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            **({"trace": tracer().context_of(envelope)} if tracer().enabled else {}),
        }
        for envelope in envelopes
        for result in (envelope.payload,)
    ]
    if offer is not None:  # those a dispatcher of this process takes are recorded leased to it
        leases, hand_over = offer(_fresh(rows, known))
        for row in rows:
            row["next_attempt_at"] = leases.get(row["result_id"], now)
    stored = insert_many_ignoring_duplicates(session, results, rows)
    if offer is not None:
        hand_over(session, stored)
    decided: dict[uuid.UUID, str] = {}
    said = []  # what became of each message, logged and counted once the transaction committed
    for envelope, row in zip(envelopes, rows, strict=True):
        if row["result_id"] not in stored:  # recorded before: the message is a repeat
            said.append(("duplicate result ignored", envelope, None))
            continue
        stored.discard(row["result_id"])  # twice in these messages: recorded once
        said.append(("result recorded", envelope, (row["context"], row["status"])))
        task = known[row["task_uuid"]]
        if vocabulary.PRIMARY_CONTEXT.get(task.type) == row["context"]:
            decided.setdefault(task.task_uuid, row["status"])
    # The first result of the primary context decides; none may overturn a final status.
    by_status: dict[str, list[uuid.UUID]] = {}
    for task_uuid, status in decided.items():
        by_status.setdefault(status, []).append(task_uuid)
    for status, task_uuids in by_status.items():
        session.execute(_DECIDE, {"uuids": task_uuids, "decided": status, "now": now})
    after_commit(session, lambda: _report(said))


def _report(said: list[tuple]) -> None:
    for line, envelope, labels in said:
        log.info(line, extra=envelope.log_fields)
        if labels is not None:
            RESULTS_RECORDED.labels(*labels).inc()


def _fresh(rows: list[dict], known: dict) -> list[SimpleNamespace]:
    """The deliveries about to be recorded that may go out at once, as a dispatcher attempts them:
    of each task the earliest result, if no earlier one of it is still pending."""
    first: dict[uuid.UUID, dict] = {}
    # In the order the lease gives a task's results: by occurrence, then by result_id.
    for row in sorted(rows, key=lambda row: (row["occurred_at"], row["result_id"])):
        first.setdefault(row["task_uuid"], row)
    return [
        SimpleNamespace(
            **{
                name: row[name]
                for name in ("result_id", "context", "outcome", "status", "result", "attempts")
            },
            **{name: getattr(task, name) for name in _ATTEMPT_COLUMNS},
            trace=row.get("trace"),
            replayed_after_attempts=0,
        )
        for task_uuid, row in first.items()
        if not (task := known[task_uuid]).pending
    ]


# record_results' statements, built once: only the parameters change from batch to batch.
_ATTEMPT_COLUMNS = ("task_uuid", "task_id", "received_at", *(column.name for column in CLIENT_COLUMNS))
_TASKS_OF = (
    select(tasks.c.task_uuid, tasks.c.type, tasks.c.task_id, tasks.c.received_at, *CLIENT_COLUMNS)
    .add_columns(pending_result_of(tasks.c.task_uuid).label("pending"))
    .join(clients, clients.c.client_id == tasks.c.client_id)
    .where(tasks.c.task_uuid.in_(bindparam("uuids", expanding=True)))
)
UNDECIDED = (ACCEPTED, vocabulary.WAITING)
_DECIDE = (
    update(tasks)
    .where(
        tasks.c.task_uuid.in_(bindparam("uuids", expanding=True)),
        tasks.c.status.in_(UNDECIDED),
    )
    .values(status=bindparam("decided"), updated_at=bindparam("now"), waiting_reason=None)
)


def record_status(session: Transaction, envelope: Envelope) -> list[Envelope]:
    """Handler for status messages: a task its primary context parked is `waiting`."""
    context, status = envelope.payload["context"], envelope.payload["status"]
    if status != vocabulary.WAITING:
        raise ValueError(f"unknown task status {status!r}")
    task_type = session.scalar(select(tasks.c.type).where(tasks.c.task_uuid == envelope.task_uuid))
    if task_type is None:
        raise UnknownTask(f"status for unknown task {envelope.task_uuid}")
    if vocabulary.PRIMARY_CONTEXT.get(task_type) == context:
        # Only while undecided: a result that overtook this message has the last word.
        session.execute(
            update(tasks)
            .where(tasks.c.task_uuid == envelope.task_uuid, tasks.c.status.in_(UNDECIDED))
            .values(status=status, waiting_reason=envelope.payload.get("reason"), updated_at=utcnow())
        )
    return []
