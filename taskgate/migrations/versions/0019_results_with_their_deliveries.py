"""a result and its delivery are one row: gateway_results gains the delivery's columns,
gateway_deliveries goes, and the attempt log refers to the result

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 07:00:00.000000
"""

from alembic import op
import sqlalchemy as sa
from messaging.db import JsonDocument, UtcDateTime

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None

# Columns the delivery brings: (name, type, required once filled in).
DELIVERY_COLUMNS = [
    ('client_id', sa.String(length=63), True),
    ('delivery_status', sa.String(length=16), True),
    ('attempts', sa.Integer(), True),
    ('replayed_after_attempts', sa.Integer(), True),
    ('last_status_code', sa.Integer(), False),
    ('last_error', sa.Text(), False),
    ('next_attempt_at', UtcDateTime(), False),
    ('delivered_at', UtcDateTime(), False),
    ('created_at', UtcDateTime(), True),
    ('trace', JsonDocument, False),
]
PENDING = sa.text("delivery_status = 'pending'")
# Names of the attempt log's foreign key: PostgreSQL's own, or as batch mode names SQLite's.
NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def _attempts_foreign_key(referred: str) -> str:
    if op.get_bind().dialect.name == 'postgresql':
        return 'gateway_delivery_attempts_result_id_fkey'
    return f'fk_gateway_delivery_attempts_result_id_{referred}'


def upgrade() -> None:
    with op.batch_alter_table('gateway_results', schema=None) as batch_op:
        for name, type_, _ in DELIVERY_COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))
    columns = [name for name, _, _ in DELIVERY_COLUMNS if name != 'delivery_status']
    op.execute(
        'UPDATE gateway_results SET delivery_status = d.status, '
        + ', '.join(f'{name} = d.{name}' for name in columns)
        + ' FROM gateway_deliveries AS d WHERE d.result_id = gateway_results.result_id'
    )
    # A result every release recorded with its delivery; were one without, it is called back now.
    op.execute(
        "UPDATE gateway_results SET delivery_status = 'pending', attempts = 0,"
        " replayed_after_attempts = 0, next_attempt_at = occurred_at, created_at = occurred_at,"
        " client_id = (SELECT t.client_id FROM gateway_tasks AS t WHERE t.task_uuid = gateway_results.task_uuid)"
        " WHERE delivery_status IS NULL"
    )
    with op.batch_alter_table('gateway_results', schema=None) as batch_op:
        for name, type_, required in DELIVERY_COLUMNS:
            if required:
                batch_op.alter_column(name, existing_type=type_, nullable=False)
        batch_op.alter_column(
            'replayed_after_attempts', existing_type=sa.Integer(), existing_nullable=False, server_default='0'
        )
        batch_op.create_foreign_key(
            'fk_gateway_results_client_id_gateway_clients', 'gateway_clients', ['client_id'], ['client_id']
        )
        batch_op.create_index('ix_gateway_results_due', ['delivery_status', 'next_attempt_at'], unique=False)
        batch_op.create_index(
            'ix_gateway_results_pending_client', ['client_id'], postgresql_where=PENDING, sqlite_where=PENDING
        )
    with op.batch_alter_table('gateway_delivery_attempts', naming_convention=NAMING) as batch_op:
        batch_op.drop_constraint(_attempts_foreign_key('gateway_deliveries'), type_='foreignkey')
        batch_op.create_foreign_key(
            'fk_gateway_delivery_attempts_result_id_gateway_results',
            'gateway_results',
            ['result_id'],
            ['result_id'],
        )
    op.drop_table('gateway_deliveries')


def downgrade() -> None:
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
    sa.Column('replayed_after_attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('trace', JsonDocument, nullable=True),
    sa.ForeignKeyConstraint(['client_id'], ['gateway_clients.client_id'], ),
    sa.ForeignKeyConstraint(['result_id'], ['gateway_results.result_id'], ),
    sa.PrimaryKeyConstraint('result_id')
    )
    op.create_index('ix_gateway_deliveries_due', 'gateway_deliveries', ['status', 'next_attempt_at'])
    pending = sa.text("status = 'pending'")
    op.create_index(
        'ix_gateway_deliveries_pending_client', 'gateway_deliveries', ['client_id'],
        postgresql_where=pending, sqlite_where=pending,
    )
    columns = [name for name, _, _ in DELIVERY_COLUMNS if name != 'delivery_status']
    op.execute(
        f"INSERT INTO gateway_deliveries (result_id, status, {', '.join(columns)})"
        f" SELECT result_id, delivery_status, {', '.join(columns)} FROM gateway_results"
    )
    with op.batch_alter_table('gateway_delivery_attempts', naming_convention=NAMING) as batch_op:
        batch_op.drop_constraint(
            'fk_gateway_delivery_attempts_result_id_gateway_results', type_='foreignkey'
        )
        batch_op.create_foreign_key(
            _attempts_foreign_key('gateway_deliveries'), 'gateway_deliveries', ['result_id'], ['result_id']
        )
    with op.batch_alter_table('gateway_results', schema=None) as batch_op:
        batch_op.drop_index('ix_gateway_results_pending_client')
        batch_op.drop_index('ix_gateway_results_due')
        batch_op.drop_constraint('fk_gateway_results_client_id_gateway_clients', type_='foreignkey')
        for name, _, _ in reversed(DELIVERY_COLUMNS):
            batch_op.drop_column(name)
