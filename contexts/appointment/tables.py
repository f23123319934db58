"""The appointment context's own tables, including its replica of the customers.

On PostgreSQL, exclusion constraints (migrations 0002, 0014) refuse two active or held
appointments that overlap on one resource or one customer, whatever the code does; SQLite gets
triggers to the same effect.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, MetaData, PrimaryKeyConstraint, String, Table, UniqueConstraint, Uuid

from contexts.replica import CustomerReplica
from contexts.reservations import make_holds_table
from messaging.db import UtcDateTime
from messaging.inbox import make_inbox_table
from messaging.outbox import make_outbox_table

metadata = MetaData()

ACTIVE = "active"
CANCELED = "canceled"
HELD = "held"  # a visit's hold: counts like an active appointment until confirmed or released
RELEASED = "released"  # a visit's hold or booking given up
TAKEN = (ACTIVE, HELD)  # what occupies a slot

appointments = Table(
    "appointment_appointments",
    metadata,
    Column("appointment_id", Uuid, primary_key=True),
    Column("client_id", String(63), nullable=False),
    Column("task_id", String(128), nullable=False),
    Column("customer_id", String(128), nullable=False),
    Column("resource_id", String(128), nullable=False),
    Column("starts_at", UtcDateTime, nullable=False),
    Column("ends_at", UtcDateTime, nullable=False),
    Column("status", String(16), nullable=False),
    Column("canceled_by_task_id", String(128)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("visit_id", Uuid),  # set for a visit's slot (task_id is then the visit.book's)
    UniqueConstraint("client_id", "task_id", name="uq_appointment_appointments_task"),
    Index("ix_appointment_appointments_resource", "client_id", "resource_id", "starts_at"),
    Index("ix_appointment_appointments_customer", "client_id", "customer_id", "starts_at"),
)

# One row per resource, locked (SELECT ... FOR UPDATE) by every booking of that resource, so
# that decisions on one resource are taken one after the other.
resources = Table(
    "appointment_resources",
    metadata,
    Column("client_id", String(63), nullable=False),
    Column("resource_id", String(128), nullable=False),
    PrimaryKeyConstraint("client_id", "resource_id"),
)

# Every appointment.schedule decided here (booked or rejected): a cancel of a schedule that is
# accepted but not in this table yet waits for it.
decided_schedules = Table(
    "appointment_decided_schedules",
    metadata,
    Column("client_id", String(63), nullable=False),
    Column("task_id", String(128), nullable=False),
    Column("decided_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("client_id", "task_id"),
)

replica = CustomerReplica(metadata, "appointment")
visit_holds = make_holds_table(metadata, "appointment")
inbox = make_inbox_table(metadata, "appointment")
outbox = make_outbox_table(metadata, "appointment")
