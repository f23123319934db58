"""visits: the visits context, the sides' holds, and holds counted by the no-overlap constraints

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 19:18:53.519500
"""

from alembic import op
import sqlalchemy as sa
from messaging.db import JsonDocument, UtcDateTime

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('appointment_visit_holds',
    sa.Column('client_id', sa.String(length=63), nullable=False),
    sa.Column('visit_id', sa.Uuid(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('booking_id', sa.Uuid(), nullable=True),
    sa.Column('reason', sa.String(length=64), nullable=True),
    sa.Column('expires_at', UtcDateTime(), nullable=True),
    sa.Column('request', JsonDocument, nullable=False),
    sa.Column('updated_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('client_id', 'visit_id')
    )
    with op.batch_alter_table('appointment_visit_holds', schema=None) as batch_op:
        batch_op.create_index('ix_appointment_visit_holds_expiry', ['state', 'expires_at'], unique=False)

    op.create_table('maintenance_visit_holds',
    sa.Column('client_id', sa.String(length=63), nullable=False),
    sa.Column('visit_id', sa.Uuid(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('booking_id', sa.Uuid(), nullable=True),
    sa.Column('reason', sa.String(length=64), nullable=True),
    sa.Column('expires_at', UtcDateTime(), nullable=True),
    sa.Column('request', JsonDocument, nullable=False),
    sa.Column('updated_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('client_id', 'visit_id')
    )
    with op.batch_alter_table('maintenance_visit_holds', schema=None) as batch_op:
        batch_op.create_index('ix_maintenance_visit_holds_expiry', ['state', 'expires_at'], unique=False)

    op.create_table('visits_customers',
    sa.Column('client_id', sa.String(length=63), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('updated_at', UtcDateTime(), nullable=False),
    sa.Column('seq', sa.Integer(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('client_id', 'customer_id')
    )
    op.create_table('visits_inbox',
    sa.Column('message_id', sa.Uuid(), nullable=False),
    sa.Column('message_type', sa.String(length=100), nullable=False),
    sa.Column('processed_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('message_id')
    )
    op.create_table('visits_outbox',
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
    with op.batch_alter_table('visits_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_visits_outbox_pending', ['published_at', 'id'], unique=False)

    op.create_table('visits_parked',
    sa.Column('message_id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.String(length=63), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('envelope', JsonDocument, nullable=False),
    sa.Column('parked_at', UtcDateTime(), nullable=False),
    sa.Column('waiting_for', sa.String(length=200), nullable=True),
    sa.Column('needs', sa.Integer(), server_default='0', nullable=False),
    sa.Column('reason', sa.String(length=32), server_default='unknown_customer', nullable=False),
    sa.PrimaryKeyConstraint('message_id')
    )
    with op.batch_alter_table('visits_parked', schema=None) as batch_op:
        batch_op.create_index('ix_visits_parked_at', ['parked_at'], unique=False)
        batch_op.create_index('ix_visits_parked_customer', ['client_id', 'customer_id'], unique=False)
        batch_op.create_index('ix_visits_parked_waiting_for', ['client_id', 'waiting_for'], unique=False)

    op.create_table('visits_visits',
    sa.Column('visit_id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.String(length=63), nullable=False),
    sa.Column('task_id', sa.String(length=128), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('appointment', sa.String(length=16), nullable=False),
    sa.Column('maintenance', sa.String(length=16), nullable=False),
    sa.Column('appointment_id', sa.Uuid(), nullable=True),
    sa.Column('job_id', sa.Uuid(), nullable=True),
    sa.Column('reason', sa.String(length=64), nullable=True),
    sa.Column('book_task', JsonDocument, nullable=False),
    sa.Column('cancel_task', JsonDocument, nullable=True),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.Column('updated_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('visit_id'),
    sa.UniqueConstraint('client_id', 'task_id', name='uq_visits_visits_task')
    )
    with op.batch_alter_table('visits_visits', schema=None) as batch_op:
        batch_op.create_index('ix_visits_visits_state', ['state', 'updated_at'], unique=False)

    op.create_table('gateway_task_steps',
    sa.Column('message_id', sa.Uuid(), nullable=False),
    sa.Column('task_uuid', sa.Uuid(), nullable=False),
    sa.Column('context', sa.String(length=32), nullable=False),
    sa.Column('step', sa.String(length=32), nullable=False),
    sa.Column('detail', JsonDocument, nullable=False),
    sa.Column('occurred_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('message_id')
    )
    with op.batch_alter_table('gateway_task_steps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_gateway_task_steps_task_uuid'), ['task_uuid'], unique=False)

    with op.batch_alter_table('appointment_appointments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('visit_id', sa.Uuid(), nullable=True))

    with op.batch_alter_table('maintenance_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('visit_id', sa.Uuid(), nullable=True))

    _no_overlap("('active', 'held')")


def downgrade() -> None:
    with op.batch_alter_table('maintenance_jobs', schema=None) as batch_op:
        batch_op.drop_column('visit_id')

    with op.batch_alter_table('appointment_appointments', schema=None) as batch_op:
        batch_op.drop_column('visit_id')

    # After the batch copies: SQLite drops a table's triggers with the table copied.
    _no_overlap("('active')")

    with op.batch_alter_table('visits_visits', schema=None) as batch_op:
        batch_op.drop_index('ix_visits_visits_state')

    op.drop_table('visits_visits')
    with op.batch_alter_table('gateway_task_steps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_gateway_task_steps_task_uuid'))

    op.drop_table('gateway_task_steps')
    with op.batch_alter_table('visits_parked', schema=None) as batch_op:
        batch_op.drop_index('ix_visits_parked_waiting_for')
        batch_op.drop_index('ix_visits_parked_customer')
        batch_op.drop_index('ix_visits_parked_at')

    op.drop_table('visits_parked')
    with op.batch_alter_table('visits_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_visits_outbox_pending')

    op.drop_table('visits_outbox')
    op.drop_table('visits_inbox')
    op.drop_table('visits_customers')
    with op.batch_alter_table('maintenance_visit_holds', schema=None) as batch_op:
        batch_op.drop_index('ix_maintenance_visit_holds_expiry')

    op.drop_table('maintenance_visit_holds')
    with op.batch_alter_table('appointment_visit_holds', schema=None) as batch_op:
        batch_op.drop_index('ix_appointment_visit_holds_expiry')

    op.drop_table('appointment_visit_holds')


# The database's own last line against double booking (migration 0002) counts visits' holds too.
NO_OVERLAP = {
    # name: (table, primary key, key columns)
    "appointment_resource_no_overlap": ("appointment_appointments", "appointment_id", ("client_id", "resource_id")),
    "appointment_customer_no_overlap": ("appointment_appointments", "appointment_id", ("client_id", "customer_id")),
    "maintenance_position_no_overlap": ("maintenance_jobs", "job_id", ("client_id", "position")),
}


def _no_overlap(statuses: str) -> None:
    """Recreate the no-overlap constraints (PostgreSQL) or triggers (SQLite) for rows whose status
    is among statuses."""
    dialect = op.get_bind().dialect.name
    for name, (table, key, keys) in NO_OVERLAP.items():
        if dialect == "postgresql":
            equal = ", ".join(f"{column} WITH =" for column in keys)
            op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
            op.execute(
                f"ALTER TABLE {table} ADD CONSTRAINT {name} EXCLUDE USING gist "
                f"({equal}, tstzrange(starts_at, ends_at, '[)') WITH &&) WHERE (status IN {statuses})"
            )
        elif dialect == "sqlite":
            same = " AND ".join(f"other.{column} = NEW.{column}" for column in keys)
            for event in ("INSERT", "UPDATE"):
                op.execute(f"DROP TRIGGER IF EXISTS {name}_{event.lower()}")
                op.execute(
                    f"CREATE TRIGGER {name}_{event.lower()} BEFORE {event} ON {table} "
                    f"WHEN NEW.status IN {statuses} AND EXISTS (SELECT 1 FROM {table} AS other "
                    f"WHERE {same} AND other.status IN {statuses} AND other.{key} != NEW.{key} "
                    f"AND other.starts_at < NEW.ends_at AND NEW.starts_at < other.ends_at) "
                    f"BEGIN SELECT RAISE(ABORT, '{name}'); END"
                )
