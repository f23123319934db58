"""Message handlers of the survey context."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from uuid6 import uuid7

from contexts.replica import Customer
from contexts.survey.tables import invitations, replica
from messaging import vocabulary
from messaging.db import Transaction, both_of, in_both, insert_many_ignoring_duplicates, utcnow
from messaging.envelope import Envelope

CONTEXT = "survey"


def assign_survey(session: Transaction, task: Envelope, customer: Customer) -> list[Envelope]:
    """survey.assign: invite the customer at the email replicated right now."""
    return assign_surveys(session, [(task, customer)])


def assign_surveys(session: Transaction, ready: list[tuple[Envelope, Customer]]) -> list[Envelope]:
    """assign_survey for many tasks: one insert of their invitations, which leaves out those made
    before (a task sent again); only if there were such, one query for those."""
    invited: dict[tuple[str, str], tuple] = {}  # (client, task-id) -> (invitation-id, email)
    new_rows = []
    for task, customer in ready:
        key = (task.client_id, task.task_id)
        if key in invited:  # a repeat within this batch
            continue
        invited[key] = (uuid7(), customer.email)
        due_date = task.payload.get("due_date")
        new_rows.append(
            {
                "invitation_id": invited[key][0],
                "client_id": task.client_id,
                "task_id": task.task_id,
                "customer_id": customer.customer_id,
                "survey_id": task.payload["survey_id"],
                "due_date": date.fromisoformat(due_date) if due_date else None,
                "email": customer.email,
                "created_at": utcnow(),
            }
        )
    new_rows.sort(key=lambda row: (row["client_id"], row["task_id"]))  # a fixed order of row locks
    made = insert_many_ignoring_duplicates(session, invitations, new_rows)
    before = {(row["client_id"], row["task_id"]) for row in new_rows if row["invitation_id"] not in made}
    if before:
        found = set()
        for row in session.execute(_INVITATIONS_MADE, both_of(before)):
            if (row.client_id, row.task_id) in before:
                invited[(row.client_id, row.task_id)] = (row.invitation_id, row.email)
                found.add((row.client_id, row.task_id))
        if found != before:  # left out for another reason than being made before: never answer it
            raise RuntimeError(f"invitations neither made nor found: {sorted(before - found)}")
    results = []
    for task, _ in ready:
        invitation_id, email = invited[(task.client_id, task.task_id)]
        results.append(
            vocabulary.result(
                task,
                context=CONTEXT,
                outcome="survey.assigned",
                status=vocabulary.SUCCEEDED,
                result={"invitation_id": str(invitation_id), "email": email},
            )
        )
    return results


# Built once: only the parameters change from batch to batch.
_INVITATIONS_MADE = select(
    invitations.c.client_id, invitations.c.task_id, invitations.c.invitation_id, invitations.c.email
).where(*in_both(invitations.c.client_id, invitations.c.task_id))


TASK_HANDLERS = {"survey.assign": replica.needs_customer(assign_survey)}
BATCH_HANDLERS = {"survey.assign": replica.needs_customers(assign_surveys), **replica.event_batch_handlers()}
HANDLERS = {**TASK_HANDLERS, **replica.event_handlers()}
