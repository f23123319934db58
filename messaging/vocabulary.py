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
}
TASK_TYPES = frozenset(PRIMARY_CONTEXT)

CUSTOMER_REGISTERED = "customer.registered"
CUSTOMER_UPDATED = "customer.updated"
EVENT_TYPES = frozenset({CUSTOMER_REGISTERED, CUSTOMER_UPDATED})

TASK_RESULT = "task.result"

SUCCEEDED = "succeeded"
REJECTED = "rejected"
FAILED = "failed"
RESULT_STATUSES = frozenset({SUCCEEDED, REJECTED, FAILED})


def route(envelope: Envelope) -> tuple[str, str]:
    """The (exchange, routing key) an envelope is published to."""
    if envelope.type in TASK_TYPES:
        return TASKS_EXCHANGE, envelope.type
    if envelope.type in EVENT_TYPES:
        return EVENTS_EXCHANGE, envelope.type
    if envelope.type == TASK_RESULT:
        return RESULTS_EXCHANGE, f"{envelope.payload['context']}.{envelope.payload['outcome']}"
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
