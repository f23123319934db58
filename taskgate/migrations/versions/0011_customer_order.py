"""per-customer order: places of accepted tasks, places in the customers' copies, waits with reasons

The gateway numbers each customer's tasks as it accepts them (gateway_customer_order, and each
task's customer_seq); the customers context and every copy of a customer keep the place of the
upsert their state comes from (seq); parked tasks say what they wait for (needs, waiting_for) and
why (reason); the appointment context remembers which schedules it decided, so that a cancel of
an undecided one can wait for it. Schedules booked before this revision count as decided.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 18:00:00
"""

import sqlalchemy as sa
from alembic import op

from messaging.db import UtcDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

REPLICAS = ("survey", "appointment", "maintenance")


def upgrade() -> None:
    op.create_table(
        "gateway_customer_order",
        sa.Column("client_id", sa.String(length=63), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("last_upsert_seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "customer_id"),
    )
    with op.batch_alter_table("gateway_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("customer_seq", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("waiting_reason", sa.String(length=32), nullable=True))
    for owner in ("customers", *REPLICAS):
        with op.batch_alter_table(f"{owner}_customers", schema=None) as batch_op:
            batch_op.add_column(sa.Column("seq", sa.Integer(), nullable=False, server_default="0"))
    for context in REPLICAS:
        with op.batch_alter_table(f"{context}_parked", schema=None) as batch_op:
            batch_op.add_column(sa.Column("waiting_for", sa.String(length=200), nullable=True))
            batch_op.add_column(sa.Column("needs", sa.Integer(), nullable=False, server_default="0"))
            batch_op.add_column(
                sa.Column("reason", sa.String(length=32), nullable=False, server_default="unknown_customer")
            )
            batch_op.create_index(f"ix_{context}_parked_waiting_for", ["client_id", "waiting_for"], unique=False)
    op.create_table(
        "appointment_decided_schedules",
        sa.Column("client_id", sa.String(length=63), nullable=False),
        sa.Column("task_id", sa.String(length=128), nullable=False),
        sa.Column("decided_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "task_id"),
    )
    op.execute(
        "INSERT INTO appointment_decided_schedules (client_id, task_id, decided_at) "
        "SELECT client_id, task_id, created_at FROM appointment_appointments"
    )


def downgrade() -> None:
    op.drop_table("appointment_decided_schedules")
    for context in REPLICAS:
        with op.batch_alter_table(f"{context}_parked", schema=None) as batch_op:
            batch_op.drop_index(f"ix_{context}_parked_waiting_for")
            batch_op.drop_column("reason")
            batch_op.drop_column("needs")
            batch_op.drop_column("waiting_for")
    for owner in ("customers", *REPLICAS):
        with op.batch_alter_table(f"{owner}_customers", schema=None) as batch_op:
            batch_op.drop_column("seq")
    with op.batch_alter_table("gateway_tasks", schema=None) as batch_op:
        batch_op.drop_column("waiting_reason")
        batch_op.drop_column("customer_seq")
    op.drop_table("gateway_customer_order")
