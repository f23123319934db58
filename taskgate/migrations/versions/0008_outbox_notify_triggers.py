"""outbox notify triggers (PostgreSQL)

An insert into an outbox table notifies its relay's channel (``taskgate_<table>``), delivered at
commit like any NOTIFY. Writers then need no pg_notify round trip of their own.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21 10:40:00
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

OUTBOXES = ("gateway_outbox", "customers_outbox", "survey_outbox", "appointment_outbox", "maintenance_outbox")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite runs in one process: its relays are woken in memory
    op.execute(
        """
        CREATE FUNCTION taskgate_notify_relay() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify(TG_ARGV[0], '');
            RETURN NULL;
        END
        $$
        """
    )
    for table in OUTBOXES:
        op.execute(
            f"CREATE TRIGGER {table}_notify_relay AFTER INSERT ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION taskgate_notify_relay('taskgate_{table}')"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in OUTBOXES:
        op.execute(f"DROP TRIGGER {table}_notify_relay ON {table}")
    op.execute("DROP FUNCTION taskgate_notify_relay()")
