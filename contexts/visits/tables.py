"""The visits context's own tables, including its replica of the customers."""

from __future__ import annotations

from sqlalchemy import Column, Index, MetaData, String, Table, UniqueConstraint, Uuid

from contexts.replica import CustomerReplica
from messaging.db import JsonDocument, UtcDateTime
from messaging.inbox import make_inbox_table
from messaging.outbox import make_outbox_table

metadata = MetaData()

# One row per visit.book task: where the visit stands (contexts.visits.model) and what each side
# last said of it.
visits = Table(
    "visits_visits",
    metadata,
    Column("visit_id", Uuid, primary_key=True),
    Column("client_id", String(63), nullable=False),
    Column("task_id", String(128), nullable=False),
    Column("customer_id", String(128), nullable=False),
    Column("state", String(16), nullable=False),
    Column("appointment", String(16), nullable=False),  # the desk's side: pending, held, ...
    Column("maintenance", String(16), nullable=False),  # the workshop's side
    Column("appointment_id", Uuid),
    Column("job_id", Uuid),
    Column("reason", String(64)),
    # The visit.book message, and the visit.cancel that is releasing it: their results are caused by them.
    Column("book_task", JsonDocument, nullable=False),
    Column("cancel_task", JsonDocument),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("client_id", "task_id", name="uq_visits_visits_task"),
    Index("ix_visits_visits_state", "state", "updated_at"),
)

replica = CustomerReplica(metadata, "visits")
inbox = make_inbox_table(metadata, "visits")
outbox = make_outbox_table(metadata, "visits")
