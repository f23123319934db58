"""customer order: what the last upsert's place was before the last place was taken, so that a
replayed customer.upsert gives back the place it took

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 21:30:00.000000
"""

from alembic import op
import sqlalchemy as sa

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('gateway_customer_order', schema=None) as batch_op:
        batch_op.add_column(sa.Column('previous_upsert_seq', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('gateway_customer_order', schema=None) as batch_op:
        batch_op.drop_column('previous_upsert_seq')
