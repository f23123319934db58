"""customers remember the task of each version

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 05:57:12.397555
"""

from alembic import op
import sqlalchemy as sa
from messaging.db import JsonDocument, UtcDateTime


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('customers_customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_task_id', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('last_task_uuid', sa.Uuid(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('customers_customers', schema=None) as batch_op:
        batch_op.drop_column('last_task_uuid')
        batch_op.drop_column('last_task_id')

