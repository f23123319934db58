"""delivery guarantees

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 06:01:14.117039
"""

from alembic import op
import sqlalchemy as sa
from messaging.db import JsonDocument, UtcDateTime


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('gateway_webhook_ids',
    sa.Column('client_id', sa.String(length=63), nullable=False),
    sa.Column('webhook_id', sa.String(length=255), nullable=False),
    sa.Column('task_uuid', sa.Uuid(), nullable=False),
    sa.Column('received_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('client_id', 'webhook_id')
    )
    with op.batch_alter_table('gateway_webhook_ids', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_gateway_webhook_ids_received_at'), ['received_at'], unique=False)

    with op.batch_alter_table('gateway_clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('previous_signing_secret', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('previous_secret_expires_at', UtcDateTime(), nullable=True))

    with op.batch_alter_table('gateway_deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('replayed_after_attempts', sa.Integer(), server_default='0', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('gateway_deliveries', schema=None) as batch_op:
        batch_op.drop_column('replayed_after_attempts')

    with op.batch_alter_table('gateway_clients', schema=None) as batch_op:
        batch_op.drop_column('previous_secret_expires_at')
        batch_op.drop_column('previous_signing_secret')

    with op.batch_alter_table('gateway_webhook_ids', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_gateway_webhook_ids_received_at'))

    op.drop_table('gateway_webhook_ids')
