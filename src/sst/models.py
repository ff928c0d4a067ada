"""Every table. The ingest hot path writes them with SQLAlchemy Core (sst.ingest.store);
the ORM classes serve the CLI, jobs and tests."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Double,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    insert,
)
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from sst.extensions import db

# Microsecond precision on MySQL (its DATETIME defaults to whole seconds).
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
# BIGINT ids on MySQL; SQLite only auto-increments INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")
LongText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")

# utf8mb4 for any text; binary collation because message ids and click ids are case-sensitive.
TABLE_OPTS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

ID_LEN = 128  # anonymousId / messageId limit: keeps composite unique keys under InnoDB's 3072 bytes


class Event(db.Model):
    """One accepted message, stored before sst answers."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(ID_LEN))
    type: Mapped[str] = mapped_column(String(16))
    event: Mapped[str | None] = mapped_column(String(255))  # track name or page/screen name
    anonymous_id: Mapped[str | None] = mapped_column(String(ID_LEN))  # the visitor (cookie) id
    client_anonymous_id: Mapped[str | None] = mapped_column(String(ID_LEN))  # message's, if other
    user_id: Mapped[str | None] = mapped_column(String(255))
    event_time: Mapped[object] = mapped_column(Timestamp)  # skew-corrected, UTC
    timestamp: Mapped[object | None] = mapped_column(Timestamp)  # as the client sent it, UTC
    sent_at: Mapped[object | None] = mapped_column(Timestamp)
    received_at: Mapped[object] = mapped_column(Timestamp)
    message: Mapped[dict] = mapped_column(JSON)  # the message as received (writeKey removed)
    request: Mapped[dict] = mapped_column(JSON)  # endpoint, auth, origin, content type, cookies
    response: Mapped[dict | None] = mapped_column(JSON)  # what sst answered for this message
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    page_url: Mapped[str | None] = mapped_column(Text)
    referrer: Mapped[str | None] = mapped_column(Text)
    is_bot: Mapped[bool] = mapped_column(Boolean, default=False)
    # 1: committed, its deliveries not made yet (the event row is the outbox: the relay fans
    # it out to one delivery per destination, then sets NULL). NULL: fanned out, or stored
    # when no destination was configured.
    fanout: Mapped[int | None] = mapped_column(SmallInteger)

    __table_args__ = (
        Index("uq_events_source_message_id", "source", "message_id", unique=True),
        Index("ix_events_fanout", "fanout", "id"),
        Index("ix_events_anonymous_id", "anonymous_id"),
        Index("ix_events_user_id", "user_id"),
        Index("ix_events_event_time", "event_time"),
        Index("ix_events_type_event", "type", "event"),
        # Covering indexes for the reports (migration 0006): GROUP BY without table reads.
        Index("ix_events_time_name", "event_time", "type", "event", "source", "is_bot"),
        Index("ix_events_type_event_time", "type", "event", "event_time", "is_bot", "source",
              "anonymous_id", "user_id"),
        TABLE_OPTS,
    )


class Visitor(db.Model):
    """An anonymous id (first-party cookie) with its first and latest touch."""

    __tablename__ = "visitors"
    __table_args__ = TABLE_OPTS
    anonymous_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    source: Mapped[str | None] = mapped_column(String(64))
    first_seen_at: Mapped[object] = mapped_column(Timestamp)
    last_seen_at: Mapped[object] = mapped_column(Timestamp)
    # {"at", "click_ids": {param: {"value", "seen_at"}}, "utm": {...}, "landing_page", "referrer"}
    first_touch: Mapped[dict | None] = mapped_column(JSON)
    latest_touch: Mapped[dict | None] = mapped_column(JSON)
    landing_page: Mapped[str | None] = mapped_column(Text)
    referrer: Mapped[str | None] = mapped_column(Text)
    cookies: Mapped[dict | None] = mapped_column(JSON)  # the AD_COOKIES, as last sent


class ClickId(db.Model):
    """Every ad click id a visitor arrived with, and when it was first and last seen."""

    __tablename__ = "click_ids"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    anonymous_id: Mapped[str] = mapped_column(String(ID_LEN))
    param: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(600))
    first_seen_at: Mapped[object] = mapped_column(Timestamp)  # Meta's fbc needs this, in ms
    last_seen_at: Mapped[object] = mapped_column(Timestamp)

    __table_args__ = (
        Index("uq_click_ids_visitor_param_value", "anonymous_id", "param", "value", unique=True),
        TABLE_OPTS,
    )


class UtmTouch(db.Model):
    """Every event that arrived with UTM parameters, per visitor: attribution picks the
    touches at or before each conversion (visitors.latest_touch may be after it)."""

    __tablename__ = "utm_touches"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    anonymous_id: Mapped[str] = mapped_column(String(ID_LEN))
    at: Mapped[object] = mapped_column(Timestamp)  # the event time of the touch
    utm_source: Mapped[str | None] = mapped_column(String(255))
    utm_campaign: Mapped[str | None] = mapped_column(String(255))
    utm: Mapped[dict | None] = mapped_column(JSON)  # every utm_* parameter of the touch

    __table_args__ = (
        Index("ix_utm_touches_visitor_at", "anonymous_id", "at"),
        TABLE_OPTS,
    )


class Link(db.Model):
    """An edge of the identity graph: a visitor id linked to another id of the same person."""

    __tablename__ = "links"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    anonymous_id: Mapped[str] = mapped_column(String(ID_LEN))
    kind: Mapped[str] = mapped_column(String(16))  # anonymous_id | user_id | person
    value: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[object] = mapped_column(Timestamp)

    __table_args__ = (
        Index("uq_links_anonymous_id_kind_value", "anonymous_id", "kind", "value", unique=True),
        Index("ix_links_kind_value", "kind", "value"),
        Index("ix_links_value", "value", "kind", "anonymous_id"),
        TABLE_OPTS,
    )


class RejectedPayload(db.Model):
    """A request or message sst refused, kept (capped) so an operator can see what broke."""

    __tablename__ = "rejected_payloads"
    __table_args__ = TABLE_OPTS
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    received_at: Mapped[object] = mapped_column(Timestamp, index=True)
    source: Mapped[str | None] = mapped_column(String(64))
    endpoint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    error: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict | None] = mapped_column(JSON)
    body: Mapped[str | None] = mapped_column(LongText)  # capped at REJECTED_BODY_MAX
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    origin: Mapped[str | None] = mapped_column(String(255))


class Delivery(db.Model):
    """One event x one destination: the outbox row that workers send and replay works from.

    state: pending (due at next_attempt_at) -> queued (a job holds it) -> sending (a worker
    claimed it, until locked_until) -> succeeded | failed | skipped, or back to pending for
    a retry.
    """

    __tablename__ = "deliveries"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(BigId, index=True)
    destination: Mapped[str] = mapped_column(String(64))
    connector: Mapped[str] = mapped_column(String(64))
    platform_event: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    retry_base: Mapped[int] = mapped_column(Integer, default=0)  # attempts before the last replay
    next_attempt_at: Mapped[object] = mapped_column(Timestamp)
    locked_until: Mapped[object | None] = mapped_column(Timestamp)
    claim: Mapped[str | None] = mapped_column(String(32))  # the worker that holds it
    job_id: Mapped[str | None] = mapped_column(String(128))
    consent: Mapped[str | None] = mapped_column(String(255))  # the consent decision
    reason: Mapped[str | None] = mapped_column(String(255))  # why skipped / failed, short
    last_error: Mapped[str | None] = mapped_column(Text)
    last_code: Mapped[str | None] = mapped_column(String(64))
    last_status: Mapped[int | None] = mapped_column(Integer)
    event_time: Mapped[object] = mapped_column(Timestamp)  # copied: replay filters on it
    created_at: Mapped[object] = mapped_column(Timestamp)
    updated_at: Mapped[object] = mapped_column(Timestamp)
    sent_at: Mapped[object | None] = mapped_column(Timestamp)  # when it succeeded

    __table_args__ = (
        Index("uq_deliveries_event_destination", "event_id", "destination", unique=True),
        Index("ix_deliveries_state_next", "state", "next_attempt_at"),
        Index("ix_deliveries_destination_state", "destination", "state", "event_time"),
        Index("ix_deliveries_claim", "claim"),
        Index("ix_deliveries_state_updated", "state", "updated_at"),
        TABLE_OPTS,
    )


class Exchange(db.Model):
    """One outgoing HTTP request and its answer (secrets masked): the delivery ledger.

    Named for what it is; the table keeps its old name, `tracks` (`sst tracks` lists it), so
    no data moves. "Track" elsewhere means Segment's track call."""

    __tablename__ = "tracks"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int | None] = mapped_column(BigId, index=True)
    incoming_id: Mapped[int | None] = mapped_column(BigId, index=True)  # events.id
    destination: Mapped[str] = mapped_column(String(64))
    connector: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))  # success | retryable | permanent | auth
    method: Mapped[str] = mapped_column(String(8))
    url: Mapped[str] = mapped_column(Text)
    request_headers: Mapped[dict | None] = mapped_column(JSON)
    request_body: Mapped[str | None] = mapped_column(LongText)
    status: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[dict | None] = mapped_column(JSON)
    response_body: Mapped[str | None] = mapped_column(LongText)
    error_class: Mapped[str | None] = mapped_column(String(128))
    error_message: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float | None] = mapped_column(db.Float)
    created_at: Mapped[object] = mapped_column(Timestamp, index=True)
    # Reconciliation (what the platform said it did with the request's events; None: unknown)
    events_sent: Mapped[int | None] = mapped_column(Integer)
    events_accepted: Mapped[int | None] = mapped_column(Integer)
    events_rejected: Mapped[int | None] = mapped_column(Integer)
    platform_request_id: Mapped[str | None] = mapped_column(String(255))
    platform_reasons: Mapped[list | None] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_tracks_destination_created", "destination", "created_at"),
        Index("ix_tracks_created_report", "created_at", "destination", "outcome", "duration_ms"),
        TABLE_OPTS,
    )


class DestinationControl(db.Model):
    """Operator switches per destination (pause holds its deliveries pending)."""

    __tablename__ = "destination_controls"
    __table_args__ = TABLE_OPTS
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[object] = mapped_column(Timestamp)


class ExchangeItem(db.Model):
    """Which deliveries one Exchange's request carried (a batch request carries many)."""

    __tablename__ = "track_items"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    track_id: Mapped[int] = mapped_column(BigId, index=True)
    delivery_id: Mapped[int] = mapped_column(BigId, index=True)
    event_id: Mapped[int] = mapped_column(BigId, index=True)
    __table_args__ = (TABLE_OPTS,)


class Person(db.Model):
    """A verified phone: one opaque, stable userId on every device.

    The phone is kept as a keyed hash (lookup) and encrypted (to hash it for platforms at
    send time); never in clear.
    """

    __tablename__ = "persons"
    __table_args__ = TABLE_OPTS
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(64), unique=True)
    phone_key: Mapped[str] = mapped_column(String(64), unique=True)
    phone_enc: Mapped[str] = mapped_column(Text)
    country: Mapped[str | None] = mapped_column(String(2))
    created_at: Mapped[object] = mapped_column(Timestamp)
    verified_at: Mapped[object] = mapped_column(Timestamp)


class OtpCode(db.Model):
    """A live one-time code of our own providers: only its keyed hash, never the code."""

    __tablename__ = "otp_codes"
    __table_args__ = TABLE_OPTS
    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # the phone's lookup key
    code_hash: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[float] = mapped_column(Double)  # epoch seconds: FLOAT is too coarse
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class Replay(db.Model):
    """A run of `sst replay`: who, when, with which filters, and what it did."""

    __tablename__ = "replays"
    __table_args__ = TABLE_OPTS
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    started_at: Mapped[object] = mapped_column(Timestamp, index=True)
    finished_at: Mapped[object | None] = mapped_column(Timestamp)
    operator: Mapped[str | None] = mapped_column(String(128))
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    force: Mapped[bool] = mapped_column(Boolean, default=False)
    filters: Mapped[dict] = mapped_column(JSON)
    counts: Mapped[dict | None] = mapped_column(JSON)


class AlertState(db.Model):
    """When each alert was last posted: makes "once per window" hold across workers."""

    __tablename__ = "alert_state"
    __table_args__ = TABLE_OPTS
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_sent_at: Mapped[object] = mapped_column(Timestamp)


class Erasure(db.Model):
    """One run of `sst forget` or `sst purge`: what kind, when, who, how many rows.

    Deliberately without any identifier of the person.
    """

    __tablename__ = "erasures"
    __table_args__ = TABLE_OPTS
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # phone | user_id | anonymous_id | retention
    requested_at: Mapped[object] = mapped_column(Timestamp, index=True)
    finished_at: Mapped[object | None] = mapped_column(Timestamp)
    operator: Mapped[str | None] = mapped_column(String(128))
    counts: Mapped[dict | None] = mapped_column(JSON)


# --- Rollups (sst.rollups): what the reports read instead of scanning raw rows ---------------


class RollupState(db.Model):
    """One row per rollup: how far it has read its source table (ids <= last_id are in it),
    and the horizon it may read up to once settled (ids committed late are not skipped).
    The row named "lock" is the mutex every pass and every hook that changes rolled rows
    takes first (an UPDATE of it: a row lock on MariaDB, the write lock on SQLite)."""

    __tablename__ = "rollup_state"
    __table_args__ = TABLE_OPTS
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger, default=0)
    horizon: Mapped[int | None] = mapped_column(BigInteger)
    horizon_at: Mapped[object | None] = mapped_column(Timestamp)
    info: Mapped[dict | None] = mapped_column(JSON)
    updated_at: Mapped[object | None] = mapped_column(Timestamp)


class RollupEvent(db.Model):
    """Events per UTC day of event time, source and report name (events report)."""

    __tablename__ = "rollup_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    k: Mapped[str] = mapped_column(String(40))  # digest of the key columns (counters)
    day: Mapped[object] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(255))
    events: Mapped[int] = mapped_column(BigInteger, default=0)
    bots: Mapped[int] = mapped_column(BigInteger, default=0)
    __table_args__ = (Index("uq_rollup_events_k", "k", unique=True),
                      Index("ix_rollup_events_day", "day", "source"), TABLE_OPTS)


class RollupDelivery(db.Model):
    """Deliveries in a final state per UTC day of event time, source, destination, state."""

    __tablename__ = "rollup_deliveries"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    k: Mapped[str] = mapped_column(String(40))  # digest of the key columns (counters)
    day: Mapped[object] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(64))
    destination: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    n: Mapped[int] = mapped_column(BigInteger, default=0)
    __table_args__ = (Index("uq_rollup_deliveries_k", "k", unique=True),
                      Index("ix_rollup_deliveries_day", "day", "source"), TABLE_OPTS)


class RollupOpenDelivery(db.Model):
    """A delivery at or below the deliveries rollup's last_id that is not in it (it was
    waiting when rolled up, or a replay took it out): the reports read it raw."""

    __tablename__ = "rollup_open_deliveries"
    __table_args__ = TABLE_OPTS
    delivery_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    source: Mapped[str] = mapped_column(String(64))  # its event's (a report by source reads it)


class RollupRequest(db.Model):
    """Requests (tracks) per UTC day of sending, destination, outcome and duration to the
    millisecond, with the reconciliation sums of those that carried events_sent > 0."""

    __tablename__ = "rollup_requests"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    k: Mapped[str] = mapped_column(String(40))  # digest of the key columns (counters)
    day: Mapped[object] = mapped_column(Date)
    destination: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    ms: Mapped[float | None] = mapped_column(Double)
    n: Mapped[int] = mapped_column(BigInteger, default=0)
    recon_n: Mapped[int] = mapped_column(BigInteger, default=0)
    sent: Mapped[int] = mapped_column(BigInteger, default=0)
    accepted: Mapped[int] = mapped_column(BigInteger, default=0)
    rejected: Mapped[int] = mapped_column(BigInteger, default=0)
    __table_args__ = (Index("uq_rollup_requests_k", "k", unique=True),
                      Index("ix_rollup_requests_day", "day"), TABLE_OPTS)


class RollupOpenTrack(db.Model):
    """A request at or below the requests rollup's last_id still in flight when rolled up
    (outcome "sending": its answer is written later): read raw until it has one."""

    __tablename__ = "rollup_open_tracks"
    __table_args__ = TABLE_OPTS
    track_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)


class RollupReason(db.Model):
    """The rolled-up requests that carried platform reasons (few): reconciliation reads
    its latest reasons here instead of walking every request of the window."""

    __tablename__ = "rollup_reasons"
    __table_args__ = (Index("ix_rollup_reasons_created", "created_at"), TABLE_OPTS)
    track_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    destination: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[object] = mapped_column(Timestamp)
    reasons: Mapped[list | None] = mapped_column(JSON)


class RollupConversion(db.Model):
    """One conversion with its attribution worked out (touch platforms, Person, UTM touches,
    cross-device platforms), recomputed when its device's or Person's identity data changes."""

    __tablename__ = "rollup_conversions"
    event_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    event_time: Mapped[object] = mapped_column(Timestamp)
    source: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(255))
    anonymous_id: Mapped[str | None] = mapped_column(String(ID_LEN))
    user_id: Mapped[str | None] = mapped_column(String(255))
    first_platform: Mapped[str | None] = mapped_column(String(32))
    last_platform: Mapped[str | None] = mapped_column(String(32))
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    utm_first_source: Mapped[str | None] = mapped_column(String(255))
    utm_first_campaign: Mapped[str | None] = mapped_column(String(255))
    utm_last_source: Mapped[str | None] = mapped_column(String(255))
    utm_last_campaign: Mapped[str | None] = mapped_column(String(255))
    cross_platforms: Mapped[str | None] = mapped_column(String(255))  # "google,meta": platforms credited
    __table_args__ = (
        Index("ix_rollup_conversions_time", "event_time", "source"),
        Index("ix_rollup_conversions_anonymous_id", "anonymous_id"),
        Index("ix_rollup_conversions_user_id", "user_id"),
        TABLE_OPTS,
    )


class RollupAttribution(db.Model):
    """rollup_conversions counted per UTC day and source, one dimension of the report at a
    time: "cube" (name, first platform, last platform, verified "1"/"0"), "utm_first" /
    "utm_last" (source, campaign), "cross" (the platforms credited across devices). The
    window's whole days read these few rows, not every conversion."""

    __tablename__ = "rollup_attribution"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    k: Mapped[str] = mapped_column(String(40))  # digest of the key columns (counters)
    day: Mapped[object] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(64))
    dim: Mapped[str] = mapped_column(String(16))
    k1: Mapped[str | None] = mapped_column(String(255))
    k2: Mapped[str | None] = mapped_column(String(255))
    k3: Mapped[str | None] = mapped_column(String(255))
    k4: Mapped[str | None] = mapped_column(String(8))
    n: Mapped[int] = mapped_column(BigInteger, default=0)
    __table_args__ = (Index("uq_rollup_attribution_k", "k", unique=True),
                      Index("ix_rollup_attribution_day", "day", "source"), TABLE_OPTS)


def upsert(dialect_name: str, table, key: str, columns, add: bool = False):
    """INSERT that, where a row with the same unique `key` exists, sets its `columns` to the
    new row's values (or, `add`, adds them): ON DUPLICATE KEY UPDATE on MySQL/MariaDB, ON
    CONFLICT DO UPDATE on SQLite. With a list of rows PyMySQL sends one statement."""
    if dialect_name in ("mysql", "mariadb"):
        stmt = mysql.insert(table)
        new = stmt.inserted
        return stmt.on_duplicate_key_update(
            {c: table.c[c] + new[c] if add else new[c] for c in columns})
    stmt = sqlite.insert(table)
    new = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=[key], set_={c: table.c[c] + new[c] if add else new[c] for c in columns})


def insert_ignore(table):
    """INSERT that skips rows whose unique key exists (MySQL IGNORE, SQLite OR IGNORE)."""
    return (insert(table).prefix_with("IGNORE", dialect="mysql")
            .prefix_with("IGNORE", dialect="mariadb")
            .prefix_with("OR IGNORE", dialect="sqlite"))
