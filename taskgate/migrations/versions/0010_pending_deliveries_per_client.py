"""pending deliveries per client index

Backpressure counts each client's undelivered callbacks (its share); a partial index over the
pending deliveries keeps that count to the client's own rows.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 17:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_index(
        "ix_gateway_deliveries_pending_client",
        "gateway_deliveries",
        ["client_id"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_gateway_deliveries_pending_client", table_name="gateway_deliveries")
