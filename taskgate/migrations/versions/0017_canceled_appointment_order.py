"""maintenance remembers of each appointment's cancel its task, customer and place in that
customer's order, and of each job its place: a cancel cancels the linked jobs of its customer
accepted before it, whichever of the two maintenance decides first

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 02:20:00.000000
"""

from alembic import op
import sqlalchemy as sa

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('maintenance_canceled_appointments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('canceled_by_task_uuid', sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column('customer_id', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('canceled_by_seq', sa.Integer(), nullable=True))
    with op.batch_alter_table('maintenance_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('customer_seq', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('maintenance_jobs', schema=None) as batch_op:
        batch_op.drop_column('customer_seq')
    with op.batch_alter_table('maintenance_canceled_appointments', schema=None) as batch_op:
        batch_op.drop_column('canceled_by_seq')
        batch_op.drop_column('customer_id')
        batch_op.drop_column('canceled_by_task_uuid')
