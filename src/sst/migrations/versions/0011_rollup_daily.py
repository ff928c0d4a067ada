"""rollup daily: the tables `sst report` reads instead of scanning raw rows, backfilled

Revision ID: 0011_rollup
Revises: 0010_perf
Create Date: 2026-12-06 21:00:00.000000

Daily counters of events, final deliveries and answered requests, one row per conversion
with its attribution, the open lists (rows below a watermark not final yet) and the
watermarks (sst.rollups). The upgrade rolls up every stored row (sst.rollups.passes.rebuild);
the worker keeps them current from there.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = '0011_rollup'
down_revision = '0010_perf'
branch_labels = None
depends_on = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
OPTS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
TABLES = ('rollup_attribution', 'rollup_conversions', 'rollup_reasons', 'rollup_open_tracks', 'rollup_requests',
          'rollup_open_deliveries', 'rollup_deliveries', 'rollup_events', 'rollup_state')


def upgrade():
    op.create_table(
        'rollup_state',
        sa.Column('name', sa.String(32), primary_key=True),
        sa.Column('last_id', sa.BigInteger(), nullable=False),
        sa.Column('horizon', sa.BigInteger(), nullable=True),
        sa.Column('horizon_at', Timestamp, nullable=True),
        sa.Column('info', sa.JSON(), nullable=True),
        sa.Column('updated_at', Timestamp, nullable=True), **OPTS)
    op.create_table(
        'rollup_events',
        sa.Column('id', BigId, primary_key=True, autoincrement=True),
        sa.Column('k', sa.String(40), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('source', sa.String(64), nullable=False),
        sa.Column('name', sa.String(255), nullable=True),
        sa.Column('events', sa.BigInteger(), nullable=False),
        sa.Column('bots', sa.BigInteger(), nullable=False), **OPTS)
    op.create_index('uq_rollup_events_k', 'rollup_events', ['k'], unique=True)
    op.create_index('ix_rollup_events_day', 'rollup_events', ['day', 'source'])
    op.create_table(
        'rollup_deliveries',
        sa.Column('id', BigId, primary_key=True, autoincrement=True),
        sa.Column('k', sa.String(40), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('source', sa.String(64), nullable=False),
        sa.Column('destination', sa.String(64), nullable=False),
        sa.Column('state', sa.String(16), nullable=False),
        sa.Column('n', sa.BigInteger(), nullable=False), **OPTS)
    op.create_index('uq_rollup_deliveries_k', 'rollup_deliveries', ['k'], unique=True)
    op.create_index('ix_rollup_deliveries_day', 'rollup_deliveries', ['day', 'source'])
    op.create_table(
        'rollup_open_deliveries',
        sa.Column('delivery_id', sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column('source', sa.String(64), nullable=False), **OPTS)
    op.create_table(
        'rollup_requests',
        sa.Column('id', BigId, primary_key=True, autoincrement=True),
        sa.Column('k', sa.String(40), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('destination', sa.String(64), nullable=False),
        sa.Column('outcome', sa.String(16), nullable=False),
        sa.Column('ms', sa.Double(), nullable=True),
        *[sa.Column(c, sa.BigInteger(), nullable=False)
          for c in ('n', 'recon_n', 'sent', 'accepted', 'rejected')], **OPTS)
    op.create_index('uq_rollup_requests_k', 'rollup_requests', ['k'], unique=True)
    op.create_index('ix_rollup_requests_day', 'rollup_requests', ['day'])
    op.create_table(
        'rollup_open_tracks',
        sa.Column('track_id', sa.BigInteger(), primary_key=True, autoincrement=False), **OPTS)
    op.create_table(
        'rollup_reasons',
        sa.Column('track_id', sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column('destination', sa.String(64), nullable=False),
        sa.Column('created_at', Timestamp, nullable=False),
        sa.Column('reasons', sa.JSON(), nullable=True), **OPTS)
    op.create_index('ix_rollup_reasons_created', 'rollup_reasons', ['created_at'])
    op.create_table(
        'rollup_conversions',
        sa.Column('event_id', sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column('event_time', Timestamp, nullable=False),
        sa.Column('source', sa.String(64), nullable=False),
        sa.Column('name', sa.String(255), nullable=True),
        sa.Column('anonymous_id', sa.String(128), nullable=True),
        sa.Column('user_id', sa.String(255), nullable=True),
        sa.Column('first_platform', sa.String(32), nullable=True),
        sa.Column('last_platform', sa.String(32), nullable=True),
        sa.Column('verified', sa.Boolean(), nullable=False),
        *[sa.Column(f'utm_{w}_{k}', sa.String(255), nullable=True)
          for w in ('first', 'last') for k in ('source', 'campaign')],
        sa.Column('cross_platforms', sa.String(255), nullable=True), **OPTS)
    op.create_index('ix_rollup_conversions_time', 'rollup_conversions',
                    ['event_time', 'source'])
    op.create_index('ix_rollup_conversions_anonymous_id', 'rollup_conversions',
                    ['anonymous_id'])
    op.create_index('ix_rollup_conversions_user_id', 'rollup_conversions', ['user_id'])
    op.create_table(
        'rollup_attribution',
        sa.Column('id', BigId, primary_key=True, autoincrement=True),
        sa.Column('k', sa.String(40), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('source', sa.String(64), nullable=False),
        sa.Column('dim', sa.String(16), nullable=False),
        sa.Column('k1', sa.String(255), nullable=True),
        sa.Column('k2', sa.String(255), nullable=True),
        sa.Column('k3', sa.String(255), nullable=True),
        sa.Column('k4', sa.String(8), nullable=True),
        sa.Column('n', sa.BigInteger(), nullable=False), **OPTS)
    op.create_index('uq_rollup_attribution_k', 'rollup_attribution', ['k'], unique=True)
    op.create_index('ix_rollup_attribution_day', 'rollup_attribution', ['day', 'source'])
    _backfill()


def _backfill():
    """Roll up every stored row, with the configured conversion events when an app is
    running the upgrade (`sst db upgrade`), else the default ones (the worker's first pass
    works conversions out again if the configured ones differ)."""
    from sst import reports
    from sst.rollups import passes

    try:
        from flask import current_app

        names = reports.configured_conversion_events(current_app.config)
    except RuntimeError:  # no app context
        names = list(reports.DEFAULT_CONVERSION_EVENTS)
    # Ingest may still run (old code) during the upgrade: ids are read 5 s after they are
    # noted, so an ingest transaction in flight then (milliseconds) has committed.
    passes.rebuild(op.get_bind(), names, settle=5.0)


def downgrade():
    for table in TABLES:
        op.drop_table(table)
