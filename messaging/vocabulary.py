"""What the gateway and the contexts say to each other: message types and where they are routed.

This is the only knowledge the parts share; it lives here so that no part imports another.
"""

from __future__ import annotations

import dataclasses

from messaging.envelope import Envelope

TASKS_EXCHANGE = "taskgate.tasks"
EVENTS_EXCHANGE = "taskgate.events"
RESULTS_EXCHANGE = "taskgate.results"
DEAD_LETTER_EXCHANGE = "taskgate.dead-letter"

# Task type -> the context whose outcome decides the task's status.
PRIMARY_CONTEXT = {
    "customer.upsert": "customers",
    "survey.assign": "survey",
    "appointment.schedule": "appointment",
    "appointment.cancel": "appointment",
    "maintenance.schedule": "maintenance",
    "visit.book": "visits",
    "visit.cancel": "visits",
}
TASK_TYPES = frozenset(PRIMARY_CONTEXT)
# Every context that reports on tasks: its results and statuses are routed under its name.
CONTEXTS = tuple(dict.fromkeys(PRIMARY_CONTEXT.values()))

CUSTOMER_REGISTERED = "customer.registered"
CUSTOMER_UPDATED = "customer.updated"
# The current state of a customer, published again to rebuild other contexts' read models.
CUSTOMER_SNAPSHOT = "customer.snapshot"
CUSTOMER_EVENTS = (CUSTOMER_REGISTERED, CUSTOMER_UPDATED, CUSTOMER_SNAPSHOT)
APPOINTMENT_SCHEDULED = "appointment.scheduled"
APPOINTMENT_CANCELED = "appointment.canceled"
# A visit's reservation steps, between the visits context and the two sides that hold for it
# (appointment: the desk slot; maintenance: the workshop position). visits asks both sides at once
# (one message each step, payload {"visit_id", ...}); each side answers with VISIT_ANSWER
# {"visit_id", "side", "step": held | refused | confirmed | expired | released, ...}.
VISIT_HOLD = "visit.hold"  # hold the slot (carries what to hold)
VISIT_CONFIRM = "visit.confirm"  # make the hold a booking, unless it has expired
VISIT_RELEASE = "visit.release"  # give up whatever is held, and never hold for this visit again
VISIT_ANSWER = "visit.answer"
VISIT_STEPS = (VISIT_HOLD, VISIT_CONFIRM, VISIT_RELEASE)
HELD, REFUSED, CONFIRMED, EXPIRED, RELEASED = "held", "refused", "confirmed", "expired", "released"
RESERVATION_EXPIRED = "reservation_expired"
EVENT_TYPES = frozenset(
    {*CUSTOMER_EVENTS, APPOINTMENT_SCHEDULED, APPOINTMENT_CANCELED, *VISIT_STEPS, VISIT_ANSWER}
)

TASK_RESULT = "task.result"
# A context's word on a task that is not a result: e.g. it is parked until its customer is known.
TASK_STATUS = "task.status"
WAITING = "waiting"
# Why a task waits (and, if it waits too long, why it fails).
UNKNOWN_CUSTOMER = "unknown_customer"  # the context has not seen the customer yet
CUSTOMER_OUTDATED = "customer_outdated"  # its copy is older than an upsert accepted before the task
TARGET_UNDECIDED = "target_undecided"  # a cancel whose target task is accepted but not yet decided

SUCCEEDED = "succeeded"
REJECTED = "rejected"
FAILED = "failed"
RESULT_STATUSES = frozenset({SUCCEEDED, REJECTED, FAILED})


def route(envelope: Envelope) -> tuple[str, str]:
    """The (exchange, routing key) an envelope is published to."""
    if envelope.type in TASK_TYPES:
        return TASKS_EXCHANGE, envelope.type
    if envelope.type == VISIT_ANSWER:
        return EVENTS_EXCHANGE, f"{VISIT_ANSWER}.{envelope.payload['side']}"
    if envelope.type in EVENT_TYPES:
        return EVENTS_EXCHANGE, envelope.type
    if envelope.type == TASK_RESULT:
        return RESULTS_EXCHANGE, f"{envelope.payload['context']}.{envelope.payload['outcome']}"
    if envelope.type == TASK_STATUS:
        return RESULTS_EXCHANGE, f"{envelope.payload['context']}.status.{envelope.payload['status']}"
    raise ValueError(f"no route for message type {envelope.type!r}")


def result(
    cause: Envelope, *, context: str, outcome: str, status: str, result: dict | None = None
) -> Envelope:
    """A result message about cause's task, as every context reports its decisions."""
    if status not in RESULT_STATUSES:
        raise ValueError(f"unknown result status {status!r}")
    message = cause.caused(TASK_RESULT, {})
    payload = {
        "result_id": str(message.message_id),
        "context": context,
        "outcome": outcome,
        "status": status,
        "result": result or {},
        "occurred_at": message.occurred_at.isoformat(),
    }
    return dataclasses.replace(message, payload=payload)


def failure(cause: Envelope, *, context: str, reason: str) -> Envelope:
    """The result of a task a context could not carry out: outcome <context>.failed."""
    return result(
        cause, context=context, outcome=f"{context}.failed", status=FAILED, result={"reason": reason}
    )


def task_status(cause: Envelope, *, context: str, status: str, reason: str | None = None) -> Envelope:
    """Tell the gateway where a task stands (e.g. waiting, and why) without producing a result."""
    payload = {"context": context, "status": status}
    if reason is not None:
        payload["reason"] = reason
    return cause.caused(TASK_STATUS, payload)


def customer_order(task: Envelope) -> tuple[int, int]:
    """A task's place in its customer's order as the gateway accepted it: (its own number, the
    number of the last customer.upsert up to it); (0, 0) for a task routed without one."""
    order = task.payload.get("order") or {}
    return order.get("seq", 0), order.get("upserts", 0)
