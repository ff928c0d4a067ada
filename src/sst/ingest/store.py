"""The ingest write path: events, visitors, click ids and links, in one transaction.

SQLAlchemy Core on purpose: it is the hot path, and the ORM's unit of work costs several
times more per row than a compiled INSERT (see docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import case, func, insert, select, update
from sqlalchemy.exc import DBAPIError, OperationalError

from sst.clock import from_db, iso, parse_time, utcnow
from sst.dbcheck import UPGRADE_HINT, is_schema_error
from sst.errors import SchemaBehindError, StorageRefusedError, StorageUnavailableError
from sst.ingest.lean import insert_rows, store_many, store_single
from sst.models import ClickId, Event, Link, RejectedPayload, UtmTouch, Visitor, insert_ignore

logger = logging.getLogger(__name__)

events_t = Event.__table__
visitors_t = Visitor.__table__
clicks_t = ClickId.__table__
links_t = Link.__table__
utm_touches_t = UtmTouch.__table__
rejected_t = RejectedPayload.__table__


_insert_event = insert_ignore(events_t)
_insert_visitor = insert_ignore(visitors_t)
_insert_click = insert_ignore(clicks_t)
_insert_link = insert_ignore(links_t)


@dataclass
class Touch:
    """What one event tells about its visitor."""

    anonymous_id: str
    source: str
    at: datetime  # naive UTC event time
    clicks: dict = field(default_factory=dict)
    utm: dict = field(default_factory=dict)
    landing_page: str | None = None
    referrer: str | None = None
    cookies: dict = field(default_factory=dict)


@dataclass
class PreparedEvent:
    row: dict  # columns of events
    touch: Touch | None = None
    links: list = field(default_factory=list)  # (anonymous_id, kind, value)


def store_events(engine, items: list[PreparedEvent], fanout: bool = False) -> list[bool]:
    """Store events once each; returns, per item, whether it was new (False: a duplicate).

    Every row is committed when this returns: an answer of 200 means the events are stored.
    `fanout`: mark each event for the relay (destinations are configured). The event row is
    the outbox: the relay (sst.delivery.outbox.fan_out) turns marked events into deliveries
    in batches, so a request writes one row per event, whatever the number of destinations.
    Raises StorageUnavailableError when the database cannot be reached.
    """
    if fanout:
        for item in items:
            item.row["fanout"] = 1
    if (engine.dialect.driver == "pymysql"
            and all(item.touch is None and not item.links for item in items)):
        # Nothing but event rows to write: one autocommitted (multi-row) INSERT.
        if len(items) == 1:
            inserted = store_single(engine, items[0].row)
            if inserted is not None:
                return [inserted]
        elif store_many(engine, [item.row for item in items]):
            return [True] * len(items)
    return store_in_transaction(engine, items)


class _Duplicates(Exception):
    """A multi-row insert met an existing message id: redo the events one by one."""


def store_in_transaction(engine, items: list[PreparedEvent]) -> list[bool]:
    """Events with their visitors, click ids and links, in one transaction."""
    attempt = 0
    one_by_one = len(items) == 1 or engine.dialect.driver != "pymysql"
    while True:
        attempt += 1
        try:
            with engine.begin() as conn:
                if one_by_one:
                    results = [conn.execute(_insert_event, item.row).rowcount == 1
                               for item in items]
                else:
                    # All new (the common case): one multi-row INSERT; else roll back and
                    # take the row-by-row path, which tells which ones were duplicates.
                    if not insert_rows(conn, [item.row for item in items]):
                        raise _Duplicates
                    results = [True] * len(items)
                for item, inserted in zip(items, results, strict=True):
                    if not inserted:
                        continue
                    if item.touch is not None:
                        _touch_visitor(conn, item.touch)
                    if item.links:
                        conn.execute(_insert_link, [
                            {"anonymous_id": anon, "kind": kind, "value": value,
                             "created_at": item.row["received_at"]}
                            for anon, kind, value in item.links])
                return results
        except _Duplicates:
            one_by_one = True
            continue
        except DBAPIError as exc:
            # A pooled connection that died (database restarted) is retried once on a new one.
            if exc.connection_invalidated and attempt == 1:
                continue
            # InnoDB rolled the whole transaction back (a deadlock): concurrent
            # requests for one visitor do this; running it again is what MySQL's manual asks.
            if _is_lock_conflict(exc) and attempt < LOCK_RETRIES:
                time.sleep(random.uniform(0.005, 0.03) * attempt)
                continue
            if _refused_value(exc):
                raise StorageRefusedError(str(exc.orig)[:200]) from exc
            if is_schema_error(exc):
                raise SchemaBehindError(f"the database schema is missing or behind: "
                                        f"{UPGRADE_HINT}") from exc
            if isinstance(exc, OperationalError) or exc.connection_invalidated:
                raise StorageUnavailableError(str(exc.orig)[:200]) from exc
            raise


# The server answered, and refused the data: CHECK constraint (4025, MariaDB's json_valid),
# invalid JSON text (3140, MySQL), out of range (1264), too long (1406), bad value (1366).
_REFUSED_VALUE_ERRORS = (4025, 3140, 1264, 1406, 1366)


def _refused_value(exc: DBAPIError) -> bool:
    args = getattr(exc.orig, "args", ())
    return bool(args) and args[0] in _REFUSED_VALUE_ERRORS


LOCK_RETRIES = 8
_LOCK_ERRORS = (1213,)  # ER_LOCK_DEADLOCK (a lock wait timeout already took 50 s)


def _is_lock_conflict(exc: DBAPIError) -> bool:
    args = getattr(exc.orig, "args", None)
    return bool(args) and args[0] in _LOCK_ERRORS


def _touch_doc(touch: Touch, previous: list[dict | None]) -> dict | None:
    """A first/latest touch document; a click id seen before keeps its first-seen time."""
    if not touch.clicks and not touch.utm:
        return None
    known = {}
    for doc in previous:
        for param, click in ((doc or {}).get("click_ids") or {}).items():
            if isinstance(click, dict):
                known[(param, click.get("value"))] = click.get("seen_at")
    at = iso(touch.at)
    return {
        "at": at,
        "click_ids": {p: {"value": v, "seen_at": _earliest(known.get((p, v)), at)}
                      for p, v in touch.clicks.items()},
        "utm": touch.utm,
        "landing_page": touch.landing_page,
        "referrer": touch.referrer,
    }


def _earliest(seen_at, at: str) -> str:
    """The earlier of a stored first-seen time and this event's time (events arrive late)."""
    try:
        return seen_at if seen_at and parse_time(seen_at) <= parse_time(at) else at
    except (TypeError, ValueError):
        return at


def _with_first_seen(doc, touch: Touch, at: str):
    """A stored touch document with its click ids' first-seen times moved back to `at` where
    this (earlier) event carried the same click id; None when nothing changes."""
    if not isinstance(doc, dict) or not isinstance(doc.get("click_ids"), dict):
        return None
    changed = False
    clicks = {}
    for param, click in doc["click_ids"].items():
        if (isinstance(click, dict) and touch.clicks.get(param) == click.get("value")
                and _earliest(click.get("seen_at"), at) == at and click.get("seen_at") != at):
            click = {**click, "seen_at": at}
            changed = True
        clicks[param] = click
    return {**doc, "click_ids": clicks} if changed else None


def _doc_time(doc):
    try:
        return parse_time(doc["at"]).replace(tzinfo=None)
    except (KeyError, TypeError, ValueError):
        return None


def _touch_visitor(conn, touch: Touch) -> None:
    # Lock an existing row first (X lock): INSERT IGNORE on a duplicate takes a shared lock,
    # and two requests upgrading shared locks on one visitor deadlock each other.
    row = _lock_visitor(conn, touch.anonymous_id)
    if row is None:
        doc = _touch_doc(touch, [])
        res = conn.execute(_insert_visitor, {
            "anonymous_id": touch.anonymous_id, "source": touch.source,
            "first_seen_at": touch.at, "last_seen_at": touch.at,
            "first_touch": doc, "latest_touch": doc,
            "landing_page": touch.landing_page, "referrer": touch.referrer,
            "cookies": touch.cookies or None,
        })
        if res.rowcount != 1:  # created meanwhile by a concurrent request
            row = _lock_visitor(conn, touch.anonymous_id)
    if row is not None:
        _update_visitor(conn, touch, row)
    for param, value in touch.clicks.items():
        _upsert_click(conn, touch.anonymous_id, param, value, touch.at)
    if touch.utm:
        conn.execute(insert(utm_touches_t), {
            "anonymous_id": touch.anonymous_id, "at": touch.at,
            "utm_source": _short(touch.utm.get("utm_source")),
            "utm_campaign": _short(touch.utm.get("utm_campaign")), "utm": touch.utm})


def _short(value):
    return value[:255] if isinstance(value, str) else None


def _lock_visitor(conn, anonymous_id):
    v = visitors_t.c
    return conn.execute(
        select(v.first_seen_at, v.last_seen_at, v.first_touch, v.latest_touch, v.cookies)
        .where(v.anonymous_id == anonymous_id).with_for_update()
    ).one_or_none()


def _update_visitor(conn, touch: Touch, row) -> None:
    v = visitors_t.c
    changes: dict = {}
    first_seen = from_db(row.first_seen_at).replace(tzinfo=None)
    if touch.at < first_seen:  # an earlier event arrived late: it is the real landing
        changes.update(first_seen_at=touch.at, landing_page=touch.landing_page,
                       referrer=touch.referrer)
    if touch.at > from_db(row.last_seen_at).replace(tzinfo=None):
        changes["last_seen_at"] = touch.at
    doc = _touch_doc(touch, [row.first_touch, row.latest_touch])
    if doc is not None:
        first_at = _doc_time(row.first_touch) if row.first_touch else None
        latest_at = _doc_time(row.latest_touch) if row.latest_touch else None
        if first_at is None or touch.at < first_at:
            changes["first_touch"] = doc
        else:
            moved = _with_first_seen(row.first_touch, touch, doc["at"])
            if moved is not None:
                changes["first_touch"] = moved
        if latest_at is None or touch.at >= latest_at:
            changes["latest_touch"] = doc
        else:
            moved = _with_first_seen(row.latest_touch, touch, doc["at"])
            if moved is not None:
                changes["latest_touch"] = moved
    if touch.cookies and touch.cookies != {k: (row.cookies or {}).get(k) for k in touch.cookies}:
        changes["cookies"] = {**(row.cookies or {}), **touch.cookies}
    if changes:
        conn.execute(update(visitors_t).where(v.anonymous_id == touch.anonymous_id)
                     .values(**changes))


def _upsert_click(conn, anonymous_id, param, value, at) -> None:
    # UPDATE first for the same reason as _touch_visitor: no shared lock to upgrade.
    c = clicks_t.c
    bump = (update(clicks_t)
            .where(c.anonymous_id == anonymous_id, c.param == param, c.value == value)
            .values(first_seen_at=case((c.first_seen_at > at, at), else_=c.first_seen_at),
                    last_seen_at=case((c.last_seen_at < at, at), else_=c.last_seen_at)))
    if conn.execute(bump).rowcount:
        return
    res = conn.execute(_insert_click, {"anonymous_id": anonymous_id, "param": param,
                                       "value": value, "first_seen_at": at, "last_seen_at": at})
    if res.rowcount != 1:
        conn.execute(bump)


REJECTED_BODY_MAX = 32 * 1024


def record_rejection(engine, *, keep: int, **row) -> None:
    """Keep a refused payload for operators. Best effort: it never fails the request."""
    body = row.get("body")
    if isinstance(body, bytes):
        body = body[:REJECTED_BODY_MAX].decode("utf-8", "replace")
    elif isinstance(body, str):
        body = body[:REJECTED_BODY_MAX]
    row["body"] = body
    row.setdefault("received_at", utcnow().replace(tzinfo=None))
    for key, limit in (("user_agent", 512), ("origin", 255), ("ip", 45), ("source", 64),
                       ("endpoint", 64), ("error", 64)):
        if isinstance(row.get(key), str):
            row[key] = row[key][:limit]
    try:
        with engine.begin() as conn:
            conn.execute(insert(rejected_t), row)
            # Trim now and then rather than on every insert: the cap is approximate.
            if random.random() < 0.02:
                newest = conn.execute(select(func.max(rejected_t.c.id))).scalar() or 0
                if newest > keep:
                    conn.execute(rejected_t.delete().where(rejected_t.c.id <= newest - keep))
    except DBAPIError as exc:
        logger.warning("could not record a rejected payload: %s", exc.__class__.__name__)
