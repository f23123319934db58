"""delivery trace: the W3C trace context a delivery's attempts continue

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 22:40:00.000000
"""

from alembic import op
import sqlalchemy as sa
from messaging.db import JsonDocument

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('gateway_deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('trace', JsonDocument, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('gateway_deliveries', schema=None) as batch_op:
        batch_op.drop_column('trace')
