"""survey, appointment and maintenance contexts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 05:37:32.907596
"""

from alembic import op
import sqlalchemy as sa
from messaging.db import JsonDocument, UtcDateTime

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('survey_customers',
    sa.Column('client_id', sa.String(length=63), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('updated_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('client_id', 'customer_id')
    )
    op.create_table('survey_inbox',
    sa.Column('message_id', sa.Uuid(), nullable=False),
    sa.Column('message_type', sa.String(length=100), nullable=False),
    sa.Column('processed_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('message_id')
    )
    op.create_table('survey_invitations',
    sa.Column('invitation_id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.String(length=63), nullable=False),
    sa.Column('task_id', sa.String(length=128), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('survey_id', sa.String(length=128), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('invitation_id'),
    sa.UniqueConstraint('client_id', 'task_id', name='uq_survey_invitations_task')
    )
    op.create_table('survey_outbox',
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
    with op.batch_alter_table('survey_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_survey_outbox_pending', ['published_at', 'id'], unique=False)

    op.create_table('survey_parked',
    sa.Column('message_id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.String(length=63), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('envelope', JsonDocument, nullable=False),
    sa.Column('parked_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('message_id')
    )
    with op.batch_alter_table('survey_parked', schema=None) as batch_op:
        batch_op.create_index('ix_survey_parked_at', ['parked_at'], unique=False)
        batch_op.create_index('ix_survey_parked_customer', ['client_id', 'customer_id'], unique=False)

    op.create_table('appointment_appointments',
    sa.Column('appointment_id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.String(length=63), nullable=False),
    sa.Column('task_id', sa.String(length=128), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('resource_id', sa.String(length=128), nullable=False),
    sa.Column('starts_at', UtcDateTime(), nullable=False),
    sa.Column('ends_at', UtcDateTime(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('canceled_by_task_id', sa.String(length=128), nullable=True),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('appointment_id'),
    sa.UniqueConstraint('client_id', 'task_id', name='uq_appointment_appointments_task')
    )
    with op.batch_alter_table('appointment_appointments', schema=None) as batch_op:
        batch_op.create_index('ix_appointment_appointments_customer', ['client_id', 'customer_id', 'starts_at'], unique=False)
        batch_op.create_index('ix_appointment_appointments_resource', ['client_id', 'resource_id', 'starts_at'], unique=False)

    op.create_table('appointment_customers',
    sa.Column('client_id', sa.String(length=63), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('updated_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('client_id', 'customer_id')
    )
    op.create_table('appointment_inbox',
    sa.Column('message_id', sa.Uuid(), nullable=False),
    sa.Column('message_type', sa.String(length=100), nullable=False),
    sa.Column('processed_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('message_id')
    )
    op.create_table('appointment_outbox',
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
    with op.batch_alter_table('appointment_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_appointment_outbox_pending', ['published_at', 'id'], unique=False)

    op.create_table('appointment_parked',
    sa.Column('message_id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.String(length=63), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('envelope', JsonDocument, nullable=False),
    sa.Column('parked_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('message_id')
    )
    with op.batch_alter_table('appointment_parked', schema=None) as batch_op:
        batch_op.create_index('ix_appointment_parked_at', ['parked_at'], unique=False)
        batch_op.create_index('ix_appointment_parked_customer', ['client_id', 'customer_id'], unique=False)

    op.create_table('appointment_resources',
    sa.Column('client_id', sa.String(length=63), nullable=False),
    sa.Column('resource_id', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('client_id', 'resource_id')
    )
    op.create_table('maintenance_customers',
    sa.Column('client_id', sa.String(length=63), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('updated_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('client_id', 'customer_id')
    )
    op.create_table('maintenance_inbox',
    sa.Column('message_id', sa.Uuid(), nullable=False),
    sa.Column('message_type', sa.String(length=100), nullable=False),
    sa.Column('processed_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('message_id')
    )
    op.create_table('maintenance_jobs',
    sa.Column('job_id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.String(length=63), nullable=False),
    sa.Column('task_id', sa.String(length=128), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('vin', sa.String(length=17), nullable=False),
    sa.Column('position', sa.String(length=64), nullable=False),
    sa.Column('starts_at', UtcDateTime(), nullable=False),
    sa.Column('ends_at', UtcDateTime(), nullable=False),
    sa.Column('appointment_task_id', sa.String(length=128), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('canceled_by_task_id', sa.String(length=128), nullable=True),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('job_id'),
    sa.UniqueConstraint('client_id', 'task_id', name='uq_maintenance_jobs_task')
    )
    with op.batch_alter_table('maintenance_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_maintenance_jobs_appointment', ['client_id', 'appointment_task_id'], unique=False)
        batch_op.create_index('ix_maintenance_jobs_position', ['client_id', 'position', 'starts_at'], unique=False)

    op.create_table('maintenance_outbox',
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
    with op.batch_alter_table('maintenance_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_maintenance_outbox_pending', ['published_at', 'id'], unique=False)

    op.create_table('maintenance_parked',
    sa.Column('message_id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.String(length=63), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('envelope', JsonDocument, nullable=False),
    sa.Column('parked_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('message_id')
    )
    with op.batch_alter_table('maintenance_parked', schema=None) as batch_op:
        batch_op.create_index('ix_maintenance_parked_at', ['parked_at'], unique=False)
        batch_op.create_index('ix_maintenance_parked_customer', ['client_id', 'customer_id'], unique=False)

    op.create_table('maintenance_positions',
    sa.Column('client_id', sa.String(length=63), nullable=False),
    sa.Column('position', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('client_id', 'position')
    )

    no_double_booking()


def downgrade() -> None:
    drop_no_double_booking()
    op.drop_table('maintenance_positions')
    with op.batch_alter_table('maintenance_parked', schema=None) as batch_op:
        batch_op.drop_index('ix_maintenance_parked_customer')
        batch_op.drop_index('ix_maintenance_parked_at')

    op.drop_table('maintenance_parked')
    with op.batch_alter_table('maintenance_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_maintenance_outbox_pending')

    op.drop_table('maintenance_outbox')
    with op.batch_alter_table('maintenance_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_maintenance_jobs_position')
        batch_op.drop_index('ix_maintenance_jobs_appointment')

    op.drop_table('maintenance_jobs')
    op.drop_table('maintenance_inbox')
    op.drop_table('maintenance_customers')
    op.drop_table('appointment_resources')
    with op.batch_alter_table('appointment_parked', schema=None) as batch_op:
        batch_op.drop_index('ix_appointment_parked_customer')
        batch_op.drop_index('ix_appointment_parked_at')

    op.drop_table('appointment_parked')
    with op.batch_alter_table('appointment_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_appointment_outbox_pending')

    op.drop_table('appointment_outbox')
    op.drop_table('appointment_inbox')
    op.drop_table('appointment_customers')
    with op.batch_alter_table('appointment_appointments', schema=None) as batch_op:
        batch_op.drop_index('ix_appointment_appointments_resource')
        batch_op.drop_index('ix_appointment_appointments_customer')

    op.drop_table('appointment_appointments')
    with op.batch_alter_table('survey_parked', schema=None) as batch_op:
        batch_op.drop_index('ix_survey_parked_customer')
        batch_op.drop_index('ix_survey_parked_at')

    op.drop_table('survey_parked')
    with op.batch_alter_table('survey_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_survey_outbox_pending')

    op.drop_table('survey_outbox')
    op.drop_table('survey_invitations')
    op.drop_table('survey_inbox')
    op.drop_table('survey_customers')


# The last line behind the calendar rules: the database itself refuses two active bookings that
# overlap ([starts_at, ends_at) half-open) on one appointment resource, one customer, or one
# maintenance position, whatever the code above it does.
NO_OVERLAP = {
    # name: (table, primary key, key columns)
    "appointment_resource_no_overlap": ("appointment_appointments", "appointment_id", ("client_id", "resource_id")),
    "appointment_customer_no_overlap": ("appointment_appointments", "appointment_id", ("client_id", "customer_id")),
    "maintenance_position_no_overlap": ("maintenance_jobs", "job_id", ("client_id", "position")),
}


def no_double_booking() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        for name, (table, _, keys) in NO_OVERLAP.items():
            equal = ", ".join(f"{key} WITH =" for key in keys)
            op.execute(
                f"ALTER TABLE {table} ADD CONSTRAINT {name} EXCLUDE USING gist "
                f"({equal}, tstzrange(starts_at, ends_at, '[)') WITH &&) WHERE (status = 'active')"
            )
    elif dialect == "sqlite":
        for name, (table, key, keys) in NO_OVERLAP.items():
            same = " AND ".join(f"other.{column} = NEW.{column}" for column in keys)
            for event in ("INSERT", "UPDATE"):
                op.execute(
                    f"CREATE TRIGGER {name}_{event.lower()} BEFORE {event} ON {table} "
                    f"WHEN NEW.status = 'active' AND EXISTS (SELECT 1 FROM {table} AS other "
                    f"WHERE {same} AND other.status = 'active' AND other.{key} != NEW.{key} "
                    f"AND other.starts_at < NEW.ends_at AND NEW.starts_at < other.ends_at) "
                    f"BEGIN SELECT RAISE(ABORT, '{name}'); END"
                )


def drop_no_double_booking() -> None:
    dialect = op.get_bind().dialect.name
    for name, (table, _, _) in NO_OVERLAP.items():
        if dialect == "postgresql":
            op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
        elif dialect == "sqlite":
            for event in ("insert", "update"):
                op.execute(f"DROP TRIGGER IF EXISTS {name}_{event}")
