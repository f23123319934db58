"""the gateway outbox without its NOTIFY trigger (PostgreSQL)

The webhook's process publishes what it accepts right after the commit (its own relay); rows it
left behind are swept by the workers' relay. Nobody LISTENs any more.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 20:00:00
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS gateway_outbox_notify_relay ON gateway_outbox")
    op.execute("DROP FUNCTION IF EXISTS taskgate_notify_relay()")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION taskgate_notify_relay() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify(TG_ARGV[0], '');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER gateway_outbox_notify_relay AFTER INSERT ON gateway_outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION taskgate_notify_relay('taskgate_gateway_outbox')"
    )
