"""task status and received_at index

Backpressure counts the tasks still in progress that arrived recently (status, then received_at);
the index on status alone is replaced by one on both, which serves lookups by status as well.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-21 14:00:00
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_tasks", schema=None) as batch_op:
        batch_op.create_index("ix_gateway_tasks_status_received", ["status", "received_at"], unique=False)
        batch_op.drop_index("ix_gateway_tasks_status")


def downgrade() -> None:
    with op.batch_alter_table("gateway_tasks", schema=None) as batch_op:
        batch_op.create_index("ix_gateway_tasks_status", ["status"], unique=False)
        batch_op.drop_index("ix_gateway_tasks_status_received")
