"""initial schema: gateway and customers

Revision ID: 0001
Revises: 
Create Date: 2026-11-21 05:20:13.240455
"""

from alembic import op
import sqlalchemy as sa
from messaging.db import JsonDocument, UtcDateTime

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('gateway_clients',
    sa.Column('client_id', sa.String(length=63), nullable=False),
    sa.Column('callback_url', sa.String(length=2048), nullable=False),
    sa.Column('signing_secret', sa.String(length=200), nullable=False),
    sa.Column('api_token_sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('client_id'),
    sa.UniqueConstraint('api_token_sha256')
    )
    op.create_table('gateway_inbox',
    sa.Column('message_id', sa.Uuid(), nullable=False),
    sa.Column('message_type', sa.String(length=100), nullable=False),
    sa.Column('processed_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('message_id')
    )
    op.create_table('gateway_outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('message_id', sa.Uuid(), nullable=False),
    sa.Column('exchange', sa.String(length=100), nullable=False),
    sa.Column('routing_key', sa.String(length=255), nullable=False),
    sa.Column('body', JsonDocument, nullable=False),
    sa.Column('headers', JsonDocument, nullable=False),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.Column('published_at', UtcDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('message_id')
    )
    with op.batch_alter_table('gateway_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_gateway_outbox_pending', ['published_at', 'id'], unique=False)
    op.create_table('gateway_tasks',
    sa.Column('task_uuid', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.String(length=63), nullable=False),
    sa.Column('task_id', sa.String(length=128), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('payload', JsonDocument, nullable=False),
    sa.Column('content_sha256', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('received_at', UtcDateTime(), nullable=False),
    sa.Column('updated_at', UtcDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['gateway_clients.client_id'], ),
    sa.PrimaryKeyConstraint('task_uuid'),
    sa.UniqueConstraint('client_id', 'task_id', name='uq_gateway_tasks_client_task')
    )
    with op.batch_alter_table('gateway_tasks', schema=None) as batch_op:
        batch_op.create_index('ix_gateway_tasks_client_received', ['client_id', 'received_at', 'task_uuid'], unique=False)

    op.create_table('gateway_results',
    sa.Column('result_id', sa.Uuid(), nullable=False),
    sa.Column('task_uuid', sa.Uuid(), nullable=False),
    sa.Column('context', sa.String(length=32), nullable=False),
    sa.Column('outcome', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('result', JsonDocument, nullable=False),
    sa.Column('occurred_at', UtcDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['task_uuid'], ['gateway_tasks.task_uuid'], ),
    sa.PrimaryKeyConstraint('result_id')
    )
    with op.batch_alter_table('gateway_results', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_gateway_results_task_uuid'), ['task_uuid'], unique=False)

    op.create_table('gateway_deliveries',
    sa.Column('result_id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.String(length=63), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_status_code', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('next_attempt_at', UtcDateTime(), nullable=True),
    sa.Column('delivered_at', UtcDateTime(), nullable=True),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['gateway_clients.client_id'], ),
    sa.ForeignKeyConstraint(['result_id'], ['gateway_results.result_id'], ),
    sa.PrimaryKeyConstraint('result_id')
    )
    with op.batch_alter_table('gateway_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_gateway_deliveries_due', ['status', 'next_attempt_at'], unique=False)

    op.create_table('gateway_delivery_attempts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('result_id', sa.Uuid(), nullable=False),
    sa.Column('attempted_at', UtcDateTime(), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('response_body', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['result_id'], ['gateway_deliveries.result_id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('gateway_delivery_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_gateway_delivery_attempts_result_id'), ['result_id'], unique=False)

    op.create_table('customers_customers',
    sa.Column('client_id', sa.String(length=63), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('updated_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('client_id', 'customer_id')
    )
    op.create_table('customers_inbox',
    sa.Column('message_id', sa.Uuid(), nullable=False),
    sa.Column('message_type', sa.String(length=100), nullable=False),
    sa.Column('processed_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('message_id')
    )
    op.create_table('customers_outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('message_id', sa.Uuid(), nullable=False),
    sa.Column('exchange', sa.String(length=100), nullable=False),
    sa.Column('routing_key', sa.String(length=255), nullable=False),
    sa.Column('body', JsonDocument, nullable=False),
    sa.Column('headers', JsonDocument, nullable=False),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.Column('published_at', UtcDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('message_id')
    )
    with op.batch_alter_table('customers_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_customers_outbox_pending', ['published_at', 'id'], unique=False)


def downgrade() -> None:
    op.drop_table('customers_outbox')
    op.drop_table('customers_inbox')
    op.drop_table('customers_customers')
    with op.batch_alter_table('gateway_delivery_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_gateway_delivery_attempts_result_id'))

    op.drop_table('gateway_delivery_attempts')
    with op.batch_alter_table('gateway_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_gateway_deliveries_due')

    op.drop_table('gateway_deliveries')
    with op.batch_alter_table('gateway_results', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_gateway_results_task_uuid'))

    op.drop_table('gateway_results')
    with op.batch_alter_table('gateway_tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_gateway_tasks_client_received')

    op.drop_table('gateway_tasks')
    op.drop_table('gateway_outbox')
    op.drop_table('gateway_inbox')
    op.drop_table('gateway_clients')
