"""The maintenance context's own tables, including its replica of the customers.

On PostgreSQL an exclusion constraint (migrations 0002, 0014) refuses two active or held jobs that
overlap on one position; SQLite gets a trigger to the same effect.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
    Uuid,
)

from contexts.replica import CustomerReplica
from contexts.reservations import make_holds_table
from messaging.db import UtcDateTime
from messaging.inbox import make_inbox_table
from messaging.outbox import make_outbox_table

metadata = MetaData()

ACTIVE = "active"
CANCELED = "canceled"
HELD = "held"  # a visit's hold: counts like an active job until confirmed or released
RELEASED = "released"  # a visit's hold or booking given up
TAKEN = (ACTIVE, HELD)  # what occupies a position

jobs = Table(
    "maintenance_jobs",
    metadata,
    Column("job_id", Uuid, primary_key=True),
    Column("client_id", String(63), nullable=False),
    Column("task_id", String(128), nullable=False),
    Column("customer_id", String(128), nullable=False),
    Column("vin", String(17), nullable=False),
    Column("position", String(64), nullable=False),
    Column("starts_at", UtcDateTime, nullable=False),
    Column("ends_at", UtcDateTime, nullable=False),
    Column("appointment_task_id", String(128)),
    Column("status", String(16), nullable=False),
    Column("canceled_by_task_id", String(128)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("visit_id", Uuid),  # set for a visit's position (task_id is then the visit.book's)
    # The task's place in its customer's order (NULL before 0017): a cancel of the linked
    # appointment cancels the job only if it was accepted after the job.
    Column("customer_seq", Integer),
    UniqueConstraint("client_id", "task_id", name="uq_maintenance_jobs_task"),
    Index("ix_maintenance_jobs_position", "client_id", "position", "starts_at"),
    Index("ix_maintenance_jobs_appointment", "client_id", "appointment_task_id"),
)

# One row per position, locked by every booking of it (see appointment_resources).
positions = Table(
    "maintenance_positions",
    metadata,
    Column("client_id", String(63), nullable=False),
    Column("position", String(64), nullable=False),
    PrimaryKeyConstraint("client_id", "position"),
)

# Appointments canceled so far (from appointment.canceled events): a job linked to one of them is
# refused even if its task arrives, or waits for its customer, until after the cancel.
canceled_appointments = Table(
    "maintenance_canceled_appointments",
    metadata,
    Column("client_id", String(63), nullable=False),
    Column("appointment_task_id", String(128), nullable=False),
    Column("canceled_by_task_id", String(128), nullable=False),
    Column("canceled_at", UtcDateTime, nullable=False),
    # The cancel: its task's uuid, customer and place in that customer's order (NULL before 0017).
    Column("canceled_by_task_uuid", Uuid),
    Column("customer_id", String(128)),
    Column("canceled_by_seq", Integer),
    PrimaryKeyConstraint("client_id", "appointment_task_id"),
)

replica = CustomerReplica(metadata, "maintenance")
visit_holds = make_holds_table(metadata, "maintenance")
inbox = make_inbox_table(metadata, "maintenance")
outbox = make_outbox_table(metadata, "maintenance")
