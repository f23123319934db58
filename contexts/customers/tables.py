"""The customers context's own tables."""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, PrimaryKeyConstraint, String, Table, Uuid

from messaging.db import UtcDateTime
from messaging.inbox import make_inbox_table
from messaging.outbox import make_outbox_table

metadata = MetaData()

customers = Table(
    "customers_customers",
    metadata,
    Column("client_id", String(63), nullable=False),
    Column("customer_id", String(128), nullable=False),
    Column("name", String(200), nullable=False),
    Column("email", String(320), nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # The place of the upsert whose state this is, in the customer's order of accepted tasks.
    Column("seq", Integer, nullable=False, server_default="0"),
    # The task that made this version: snapshots of the customer are tagged with it.
    Column("last_task_id", String(128)),
    Column("last_task_uuid", Uuid),
    PrimaryKeyConstraint("client_id", "customer_id"),
)

inbox = make_inbox_table(metadata, "customers")
outbox = make_outbox_table(metadata, "customers")
