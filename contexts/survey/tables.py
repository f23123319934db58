"""The survey context's own tables, including its replica of the customers."""

from __future__ import annotations

from sqlalchemy import Column, Date, MetaData, String, Table, UniqueConstraint, Uuid

from contexts.replica import CustomerReplica
from messaging.db import UtcDateTime
from messaging.inbox import make_inbox_table
from messaging.outbox import make_outbox_table

metadata = MetaData()

invitations = Table(
    "survey_invitations",
    metadata,
    Column("invitation_id", Uuid, primary_key=True),
    Column("client_id", String(63), nullable=False),
    Column("task_id", String(128), nullable=False),
    Column("customer_id", String(128), nullable=False),
    Column("survey_id", String(128), nullable=False),
    Column("due_date", Date),
    Column("email", String(320), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    # One invitation per task, however often the task arrives.
    UniqueConstraint("client_id", "task_id", name="uq_survey_invitations_task"),
)

replica = CustomerReplica(metadata, "survey")
inbox = make_inbox_table(metadata, "survey")
outbox = make_outbox_table(metadata, "survey")
