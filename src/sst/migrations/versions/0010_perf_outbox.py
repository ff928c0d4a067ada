"""perf outbox: the event row is the outbox of its deliveries

Revision ID: 0010_perf
Revises: 0009_rightdata
Create Date: 2026-12-06 18:40:00.000000

events.fanout = 1 marks an event committed at ingest whose deliveries the relay has not
made yet; the relay fans such events out in batches and sets it back to NULL. Ingest then
writes one row per event whatever the number of destinations (issue #15).
"""

import sqlalchemy as sa
from alembic import op

revision = '0010_perf'
down_revision = '0009_rightdata'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('events') as batch:
        batch.add_column(sa.Column('fanout', sa.SmallInteger(), nullable=True))
        batch.create_index('ix_events_fanout', ['fanout', 'id'])


def downgrade():
    with op.batch_alter_table('events') as batch:
        batch.drop_index('ix_events_fanout')
        batch.drop_column('fanout')
