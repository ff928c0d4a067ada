"""reconciliation: what each platform said it did with a request's events

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-06 08:00:00.000000

Per Exchange (one outgoing request): how many events it carried, how many the platform
accepted and rejected (by its own count where it gives one, else from the per-event
outcomes), the platform's request id and its reasons. `sst report reconciliation` and
/admin/reconciliation sum them per destination and day.
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('tracks') as batch:
        batch.add_column(sa.Column('events_sent', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('events_accepted', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('events_rejected', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('platform_request_id', sa.String(length=255), nullable=True))
        batch.add_column(sa.Column('platform_reasons', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('tracks') as batch:
        for name in ('platform_reasons', 'platform_request_id', 'events_rejected',
                     'events_accepted', 'events_sent'):
            batch.drop_column(name)
