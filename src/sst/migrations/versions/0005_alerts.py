"""alerts: alert_state, deliveries (state, updated_at) index

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 10:12:05.118402
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('alert_state',
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('last_sent_at', sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mariadb').with_variant(mysql.DATETIME(fsp=6), 'mysql'), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_alert_state')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_bin'
    )
    # Deliveries finished in a recent window (alerts, metrics, the sweep's stale "queued"
    # rows) are read by (state, updated_at): a range scan instead of a full table scan.
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_state_updated', ['state', 'updated_at'], unique=False)


def downgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_state_updated')

    op.drop_table('alert_state')
