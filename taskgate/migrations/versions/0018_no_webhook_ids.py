"""the gateway no longer remembers webhook-ids: a request sent again is a task sent again (200 by
its task_id), and the client's secrets are checked as its place is taken

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 02:40:00.000000
"""

from alembic import op
import sqlalchemy as sa
from messaging.db import UtcDateTime

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('gateway_webhook_ids', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_gateway_webhook_ids_received_at'))
    op.drop_table('gateway_webhook_ids')


def downgrade() -> None:
    op.create_table('gateway_webhook_ids',
    sa.Column('client_id', sa.String(length=63), nullable=False),
    sa.Column('webhook_id', sa.String(length=255), nullable=False),
    sa.Column('task_uuid', sa.Uuid(), nullable=False),
    sa.Column('received_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('client_id', 'webhook_id')
    )
    with op.batch_alter_table('gateway_webhook_ids', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_gateway_webhook_ids_received_at'), ['received_at'], unique=False)
