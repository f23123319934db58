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
    _position_no_overlap()


def _position_no_overlap() -> None:
    """Recreate migration 0014's no-overlap triggers on maintenance_jobs: SQLite dropped them with
    the table batch mode copied (PostgreSQL's exclusion constraint survives DROP COLUMN)."""
    if op.get_bind().dialect.name != "sqlite":
        return
    name, statuses = "maintenance_position_no_overlap", "('active', 'held')"
    for event in ("INSERT", "UPDATE"):
        op.execute(f"DROP TRIGGER IF EXISTS {name}_{event.lower()}")
        op.execute(
            f"CREATE TRIGGER {name}_{event.lower()} BEFORE {event} ON maintenance_jobs "
            f"WHEN NEW.status IN {statuses} AND EXISTS (SELECT 1 FROM maintenance_jobs AS other "
            f"WHERE other.client_id = NEW.client_id AND other.position = NEW.position "
            f"AND other.status IN {statuses} AND other.job_id != NEW.job_id "
            f"AND other.starts_at < NEW.ends_at AND NEW.starts_at < other.ends_at) "
            f"BEGIN SELECT RAISE(ABORT, '{name}'); END"
        )
