"""each inbox indexed by when its messages were processed, for the pruning of old rows

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 16:45:00.000000
"""

from alembic import op

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None

INBOXES = ('gateway', 'customers', 'survey', 'appointment', 'maintenance', 'visits')


def upgrade() -> None:
    for owner in INBOXES:
        op.create_index(f'ix_{owner}_inbox_processed_at', f'{owner}_inbox', ['processed_at'])


def downgrade() -> None:
    for owner in INBOXES:
        op.drop_index(f'ix_{owner}_inbox_processed_at', table_name=f'{owner}_inbox')
