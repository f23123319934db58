"""maintenance remembers canceled appointments

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 06:05:28.513124
"""

from alembic import op
import sqlalchemy as sa
from messaging.db import JsonDocument, UtcDateTime


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('maintenance_canceled_appointments',
    sa.Column('client_id', sa.String(length=63), nullable=False),
    sa.Column('appointment_task_id', sa.String(length=128), nullable=False),
    sa.Column('canceled_by_task_id', sa.String(length=128), nullable=False),
    sa.Column('canceled_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('client_id', 'appointment_task_id')
    )


def downgrade() -> None:
    op.drop_table('maintenance_canceled_appointments')
