"""What the operator console reads beyond the overview: recent tasks across clients, parked tasks,
and one task's timeline from the webhook to the last callback attempt."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.deliveries import find_delivery
from gateway.steps import steps_of
from gateway.tables import outbox, tasks
from gateway.tables import results as results_table
from gateway.task_reads import tasks_with_results
from messaging import vocabulary


@dataclasses.dataclass(frozen=True)
class TaskFilter:
    client_id: str | None = None
    status: str | None = None
    search: str | None = None  # a task-id prefix or a task_uuid
    limit: int = 50


def recent_tasks(session: Session, task_filter: TaskFilter) -> list[dict]:
    """The newest tasks matching task_filter, each with its results and deliveries."""
    query = select(tasks)
    if task_filter.client_id:
        query = query.where(tasks.c.client_id == task_filter.client_id)
    if task_filter.status:
        query = query.where(tasks.c.status == task_filter.status)
    if task_filter.search:
        try:
            query = query.where(tasks.c.task_uuid == uuid.UUID(task_filter.search))
        except ValueError:
            query = query.where(tasks.c.task_id.startswith(task_filter.search, autoescape=True))
    rows = session.execute(
        query.order_by(tasks.c.received_at.desc(), tasks.c.task_uuid.desc()).limit(task_filter.limit)
    ).all()
    return [
        {**described, "client_id": row.client_id}
        for row, described in zip(rows, tasks_with_results(session, rows), strict=True)
    ]


# What a parked task waits for, by the reason its context gave.
WHY_WAITING = {
    vocabulary.UNKNOWN_CUSTOMER: (
        "the customer is not known there yet; the task goes on when the customer's event arrives, "
        "or fails (unknown_customer) when the wait times out"
    ),
    vocabulary.CUSTOMER_OUTDATED: (
        "its copy of the customer is older than a customer.upsert accepted before the task; the task "
        "goes on when the copy catches up, or fails (customer_outdated) when the wait times out"
    ),
    vocabulary.TARGET_UNDECIDED: (
        "the task it cancels is accepted but not decided yet; the cancel applies once it is, or is "
        "not_found when the wait times out"
    ),
}


def parked_tasks(session: Session, limit: int = 200) -> list[dict]:
    """Tasks waiting (for their customer, or a cancel for its target), longest waiting first."""
    rows = session.execute(
        select(tasks)
        .where(tasks.c.status == vocabulary.WAITING)
        .order_by(tasks.c.updated_at, tasks.c.task_uuid)
        .limit(limit)
    ).all()
    return [
        {
            "task_uuid": row.task_uuid,
            "task_id": row.task_id,
            "client_id": row.client_id,
            "type": row.type,
            "customer_id": row.customer_id,
            "context": vocabulary.PRIMARY_CONTEXT.get(row.type),
            "received_at": row.received_at,
            "waiting_since": row.updated_at,
            "reason": row.waiting_reason or vocabulary.UNKNOWN_CUSTOMER,
        }
        for row in rows
    ]


@dataclasses.dataclass(frozen=True)
class Event:
    """One line of a task's timeline. at is None when the time was not kept."""

    at: datetime | None
    kind: str  # received, routed, parked, step, result, attempt, retried, delivered, failed, scheduled
    title: str
    detail: str = ""
    status: str | None = None  # shown as a badge
    data: dict | None = None  # shown as JSON
    result_id: uuid.UUID | None = None  # a failed delivery's, for the retry button
    exact: bool = True  # False: `at` is the latest it can have happened (the time itself is not kept)


@dataclasses.dataclass(frozen=True)
class Timeline:
    task: dict
    deliveries: list[dict]  # with their attempt_log
    events: list[Event]

    @property
    def settling(self) -> bool:
        """Whether something is still expected to happen soon (the page then refreshes itself)."""
        return self.task["status"] == "accepted" or any(d["status"] == "pending" for d in self.deliveries)


def task_timeline(session: Session, task_uuid: uuid.UUID) -> Timeline | None:
    row = session.execute(select(tasks).where(tasks.c.task_uuid == task_uuid)).one_or_none()
    if row is None:
        return None
    [task] = tasks_with_results(session, [row])
    task = {**task, "client_id": row.client_id, "payload": row.payload, "updated_at": row.updated_at}
    deliveries = [find_delivery(session, row.client_id, d["result_id"]) for d in task["deliveries"]]
    deliveries = [d for d in deliveries if d is not None]

    events = [Event(row.received_at, "received", f"received from {row.client_id}", data=row.payload)]
    events += _routing(session, row)
    if row.status == vocabulary.WAITING:
        context = vocabulary.PRIMARY_CONTEXT.get(row.type, "its context")
        reason = row.waiting_reason or vocabulary.UNKNOWN_CUSTOMER
        events.append(
            Event(
                row.updated_at,
                "parked",
                f"parked by {context}: {reason}",
                WHY_WAITING[reason],
                status="waiting",
            )
        )
    for step in steps_of(session, task_uuid):
        events.append(_step_event(step))
    for result in task["results"]:
        events.append(
            Event(
                result["occurred_at"],
                "result",
                f"{result['context']}: {result['outcome']}",
                status=result["status"],
                data=result["result"],
            )
        )
    replays = dict(
        session.execute(
            select(results_table.c.result_id, results_table.c.replayed_after_attempts).where(
                results_table.c.result_id.in_([d["result_id"] for d in deliveries])
            )
        ).all()
    )
    for delivery in deliveries:
        events += _delivery_events(delivery, replays.get(delivery["result_id"], 0))
    # Python's sort is stable: events at the same instant keep the order they were added in.
    return Timeline(task, deliveries, sorted(events, key=lambda event: event.at or row.received_at))


_ASKED = {
    "hold": "asked the desk and the workshop to hold the visit's slots",
    "confirm": "asked both sides to confirm their holds",
    "release": "asked both sides to release what they hold",
}
_SAID = {
    "held": "holds the slot",
    "refused": "refused",
    "confirmed": "booked the slot",
    "expired": "released its hold: it expired unconfirmed",
    "released": "holds nothing for the visit",
}


def _step_event(step) -> Event:
    """A visit's step: what visits asked, or what a side answered."""
    detail = dict(step.detail)
    if step.context == "visits":
        title, text = f"visits: {step.step}", _ASKED.get(step.step, step.step)
    else:
        title = f"{step.context}: {step.step}"
        text = _SAID.get(step.step, step.step)
        if "reason" in detail:
            text = f"{text}: {detail['reason']}"
    return Event(step.occurred_at, "step", title, text, data=detail)


def _routing(session: Session, row) -> list[Event]:
    """The task's message in the gateway's outbox: still there (pending, or published and kept on a
    volatile broker), or removed by the relay once the broker confirmed it."""
    messages = session.execute(
        select(outbox.c.exchange, outbox.c.routing_key, outbox.c.created_at, outbox.c.published_at)
        .where(outbox.c.body["task_uuid"].as_string() == str(row.task_uuid))
        .order_by(outbox.c.id)
    ).all()
    if not messages:
        return [
            Event(
                None,
                "routed",
                "routed",
                f"published to {vocabulary.TASKS_EXCHANGE} as {row.type} "
                "(the relay removed it from the outbox; the time is not kept)",
                exact=False,
            )
        ]
    events = []
    for message in messages:
        where = f"{message.exchange} as {message.routing_key}"
        if message.published_at is None:
            events.append(
                Event(
                    message.created_at,
                    "routed",
                    "in the outbox",
                    f"waiting to be published to {where}",
                    "pending",
                )
            )
        else:
            events.append(Event(message.published_at, "routed", "routed", f"published to {where}"))
    return events


def _delivery_events(delivery: dict, replayed_after_attempts: int) -> list[Event]:
    """Each attempt, then where the delivery stands; a replay shows before the first attempt after it
    (only the latest replay is known, and not when it happened)."""
    about = f"{delivery['context']} result"
    events = []
    for number, attempt in enumerate(delivery["attempt_log"], start=1):
        if replayed_after_attempts and number == replayed_after_attempts + 1:
            events.append(
                Event(
                    attempt["attempted_at"],
                    "retried",
                    f"retried: {about}",
                    f"put back in line after {replayed_after_attempts} attempts",
                    exact=False,
                )
            )
        code = attempt["status_code"]
        succeeded = code is not None and 200 <= code < 300
        outcome = f"HTTP {code}" if code is not None else (attempt["error"] or "no answer")
        detail = f"{outcome} in {attempt['duration_ms']} ms"
        if attempt["error"] and code is not None:
            detail += f" — {attempt['error']}"
        if attempt["response_body"]:
            detail += f" — answered: {attempt['response_body'][:200]}"
        events.append(
            Event(
                attempt["attempted_at"],
                "attempt",
                f"callback attempt {number}: {about}",
                detail,
                status="delivered" if succeeded else "failed",
            )
        )
    last_attempt = delivery["attempt_log"][-1]["attempted_at"] if delivery["attempt_log"] else None
    if replayed_after_attempts and replayed_after_attempts >= len(delivery["attempt_log"]):
        events.append(
            Event(
                delivery["next_attempt_at"] or last_attempt,  # a replay sets it to now
                "retried",
                f"retried: {about}",
                f"put back in line after {replayed_after_attempts} attempts",
                exact=False,
            )
        )
    if delivery["status"] == "delivered":
        events.append(Event(delivery["delivered_at"] or last_attempt, "delivered", f"delivered: {about}"))
    elif delivery["status"] == "failed":
        events.append(
            Event(
                last_attempt or delivery["created_at"],
                "failed",
                f"delivery failed: {about}",
                f"gave up after {delivery['attempts']} attempts; "
                "a retry sends it again with the same webhook-id",
                status="failed",
                result_id=delivery["result_id"],
            )
        )
    else:
        events.append(
            Event(
                delivery["next_attempt_at"] or delivery["created_at"],
                "scheduled",
                f"next callback attempt: {about}",
                status="pending",
            )
        )
    return events
