"""context outboxes without NOTIFY triggers (PostgreSQL)

Only the gateway's outbox is written by other processes (the webhook's); a context's outbox is
written by its own worker process, which wakes its relay in memory after the commit. Every NOTIFY
also woke every listening connection of the database, each in a transaction of its own: about
nine of the fourteen commits PostgreSQL counted per task at 100 tasks/s.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 17:40:00
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

CONTEXT_OUTBOXES = ("customers_outbox", "survey_outbox", "appointment_outbox", "maintenance_outbox")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in CONTEXT_OUTBOXES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_notify_relay ON {table}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in CONTEXT_OUTBOXES:
        op.execute(
            f"CREATE TRIGGER {table}_notify_relay AFTER INSERT ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION taskgate_notify_relay('taskgate_{table}')"
        )
