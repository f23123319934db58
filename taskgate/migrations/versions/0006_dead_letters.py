"""dead letters kept in the database

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21 06:18:10.692082
"""

from alembic import op
import sqlalchemy as sa
from messaging.db import JsonDocument, UtcDateTime

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('gateway_dead_letters',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('queue', sa.String(length=255), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('exchange', sa.String(length=255), nullable=True),
    sa.Column('routing_key', sa.String(length=255), nullable=True),
    sa.Column('message_id', sa.String(length=64), nullable=True),
    sa.Column('task_id', sa.String(length=128), nullable=True),
    sa.Column('headers', JsonDocument, nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('dead_lettered_at', UtcDateTime(), nullable=False),
    sa.Column('replayed_at', UtcDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('gateway_dead_letters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_gateway_dead_letters_dead_lettered_at'), ['dead_lettered_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('gateway_dead_letters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_gateway_dead_letters_dead_lettered_at'))

    op.drop_table('gateway_dead_letters')
