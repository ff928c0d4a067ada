"""utm_touches: every UTM touch of a visitor, so attribution never credits one after the
conversion

Revision ID: 0009_rightdata
Revises: 0008
Create Date: 2026-12-06 19:40:00.000000

Backfilled from visitors.first_touch / latest_touch (the only UTM history kept before).
"""

import json

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = '0009_rightdata'
down_revision = '0008'
branch_labels = None
depends_on = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        'utm_touches',
        sa.Column('id', BigId, primary_key=True, autoincrement=True),
        sa.Column('anonymous_id', sa.String(length=128), nullable=False),
        sa.Column('at', Timestamp, nullable=False),
        sa.Column('utm_source', sa.String(length=255), nullable=True),
        sa.Column('utm_campaign', sa.String(length=255), nullable=True),
        sa.Column('utm', sa.JSON(), nullable=True),
        mysql_charset='utf8mb4', mysql_collate='utf8mb4_bin')
    op.create_index('ix_utm_touches_visitor_at', 'utm_touches', ['anonymous_id', 'at'])
    _backfill()


def _backfill():
    from datetime import UTC, datetime

    bind = op.get_bind()
    visitors = sa.table('visitors', sa.column('anonymous_id'), sa.column('first_touch', sa.JSON),
                        sa.column('latest_touch', sa.JSON))
    touches = sa.table('utm_touches', sa.column('anonymous_id'), sa.column('at'),
                       sa.column('utm_source'), sa.column('utm_campaign'),
                       sa.column('utm', sa.JSON))
    rows = []
    for anon, first, latest in bind.execute(sa.select(
            visitors.c.anonymous_id, visitors.c.first_touch, visitors.c.latest_touch)):
        seen = set()
        for doc in (first, latest):
            if isinstance(doc, str):
                doc = json.loads(doc)
            utm = (doc or {}).get("utm") if isinstance(doc, dict) else None
            if not utm or not isinstance(utm, dict):
                continue
            try:
                at = datetime.fromisoformat(doc["at"].replace("Z", "+00:00"))
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
            at = at.astimezone(UTC).replace(tzinfo=None)
            if at in seen:
                continue
            seen.add(at)
            rows.append({"anonymous_id": anon, "at": at,
                         "utm_source": str(utm.get("utm_source") or "")[:255] or None,
                         "utm_campaign": str(utm.get("utm_campaign") or "")[:255] or None,
                         "utm": utm})
        if len(rows) >= 1000:
            bind.execute(touches.insert(), rows)
            rows = []
    if rows:
        bind.execute(touches.insert(), rows)


def downgrade():
    op.drop_index('ix_utm_touches_visitor_at', table_name='utm_touches')
    op.drop_table('utm_touches')
