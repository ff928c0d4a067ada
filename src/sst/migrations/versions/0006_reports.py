"""reports: covering indexes for `sst report` and /admin/reports

Revision ID: 0006
Revises: 0007
Create Date: 2026-11-26 14:42:00.000000

Each report reads one index instead of fetching wide rows (events carry the message and
request JSON, tracks the request and answer bodies); see docs/benchmarks.md, "Reports".

- ix_events_time_name: events by day and name, a range of event_time.
- ix_events_type_event_time: conversions (named track events in a window) with the device
  and user they need; ix_events_type_event is now a prefix of it.
- ix_tracks_created_report: requests by destination, outcome and duration in a window.
- ix_links_value: a Person's devices (links by value), for cross-device attribution.

down_revision is 0007 because 0007_privacy was written against 0005 before this file
existed: one head, whatever order the numbers suggest.
"""

from alembic import op

revision = '0006'
down_revision = '0007'
branch_labels = None
depends_on = None

INDEXES = [
    ('events', 'ix_events_time_name', ['event_time', 'type', 'event', 'source', 'is_bot']),
    ('events', 'ix_events_type_event_time',
     ['type', 'event', 'event_time', 'is_bot', 'source', 'anonymous_id', 'user_id']),
    ('tracks', 'ix_tracks_created_report', ['created_at', 'destination', 'outcome', 'duration_ms']),
    ('links', 'ix_links_value', ['value', 'kind', 'anonymous_id']),
]


def upgrade():
    for table, name, columns in INDEXES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(name, columns, unique=False)


def downgrade():
    for table, name, _columns in reversed(INDEXES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(name)
