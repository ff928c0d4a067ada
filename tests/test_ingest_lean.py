"""The lean single-event insert (ingest.store._store_single) writes what the transaction
writes."""

from __future__ import annotations

import copy
import json
import logging

from sqlalchemy import text

from sst.clock import utcnow
from sst.extensions import db
from sst.ingest import lean
from sst.ingest import store as storage
from sst.ingest.prepare import RequestInfo, prepare


def _event(message_id, _cache={}):  # noqa: B006 - a deliberate cache
    """The same prepared event (same receive time) under another message id."""
    if "ev" not in _cache:
        _cache["ev"] = _prepared()
    ev = copy.deepcopy(_cache["ev"])
    ev.row["message_id"] = message_id
    return ev


def _prepared():
    raw = {"type": "track", "event": "Order Completed", "messageId": "m", "userId": "u-1",
           "anonymousId": "a-1", "timestamp": "2026-11-26T10:15:30Z",
           "properties": {"emoji": "😀", "none": None, "n": 1.5},
           "context": {"userAgent": "Googlebot/2.1", "page": {"url": "https://e.com/x"}}}
    info = RequestInfo(source="server", endpoint="/v1/track", received_at=utcnow(),
                       ip="127.0.0.1", content_type="application/json")
    return prepare(raw, info)


def test_lean_insert_matches_the_transaction_and_dedupes(mysql_app):
    engine = mysql_app.extensions["sst"].engine
    assert storage.store_events(engine, [_event("lean")]) == [True]
    assert storage.store_events(engine, [_event("lean")]) == [False]
    assert storage.store_in_transaction(engine, [_event("tx")]) == [True]
    with mysql_app.app_context(), db.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(
            text("SELECT * FROM events ORDER BY id"))]
    assert len(rows) == 2
    lean, tx = rows
    for row in rows:
        row.pop("id")
        row.pop("message_id")
    assert lean == tx
    assert lean["is_bot"] in (1, True)


def test_lean_insert_survives_a_killed_connection(mysql_app):
    engine = mysql_app.extensions["sst"].engine
    assert storage.store_events(engine, [_event("k1")]) == [True]
    for entry in list(lean._fast_idle):
        entry[3].close()  # as if MariaDB had dropped it
    assert storage.store_events(engine, [_event("k2")]) == [True]
    assert storage.store_events(engine, [_event("k3")]) == [True]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM events")).scalar() == 3


NASTY = "it's \"quoted\" back\\slash nul\x00 ctrl-z\x1a cr\r lf\n %s %(x)s 😀"


def _nasty(message_id):
    """An event whose every text column holds characters that need escaping."""
    raw = {"type": "track", "event": "Nasty " + NASTY, "messageId": message_id,
           "userId": "u-" + NASTY[:40], "anonymousId": "a-" + NASTY[:40],
           "timestamp": "2026-11-26T10:15:30.5+02:00",
           "properties": {"text": NASTY, "url": "https://e.com/?q=" + NASTY},
           "context": {"userAgent": "UA " + NASTY, "page": {"referrer": "r" + NASTY}}}
    info = RequestInfo(source="server", endpoint="/v1/track", received_at=utcnow(),
                       ip="127.0.0.1", content_type="application/json; " + NASTY)
    ev = prepare(raw, info)
    assert isinstance(ev, storage.PreparedEvent), ev
    return ev


def _rows(app):
    with app.app_context(), db.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(
            text("SELECT * FROM events ORDER BY id"))]
    for row in rows:
        row.pop("id")
        row.pop("received_at")
    return rows


def test_lean_insert_escapes_like_the_driver(mysql_app, caplog):
    """The SQL text built by ingest.lean stores exactly what SQLAlchemy's parameters store."""
    engine = mysql_app.extensions["sst"].engine
    lean, tx = _nasty("same"), _nasty("same")
    tx.row["source"] = "other"
    caplog.set_level(logging.DEBUG, logger="sst.ingest.store")
    assert storage.store_events(engine, [lean]) == [True]
    assert "lean insert failed" not in caplog.text  # the SQL text itself was accepted
    assert storage.store_in_transaction(engine, [tx]) == [True]
    assert storage.store_events(engine, [_nasty("same")]) == [False]  # the lean path dedupes
    stored_lean, stored_tx = _rows(mysql_app)
    assert stored_lean.pop("source") == "server" and stored_tx.pop("source") == "other"
    assert stored_lean == stored_tx
    assert json.loads(stored_lean["message"])["properties"]["text"] == NASTY
    assert stored_lean["user_agent"] == "UA " + NASTY


def test_lean_insert_under_no_backslash_escapes(mysql_app, caplog):
    """A server in NO_BACKSLASH_ESCAPES mode reads backslashes literally: the lean path then
    lets the driver escape (quotes doubled) instead of sending its own backslash-escaped text,
    which would fail (JSON check, quotes) and cost a second, transactional attempt."""
    engine = mysql_app.extensions["sst"].engine
    assert storage.store_events(engine, [_event("warm")]) == [True]
    for entry in lean._fast_idle:
        with entry[3].cursor() as cur:
            cur.execute("SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, "
                        "',NO_BACKSLASH_ESCAPES')")
    caplog.set_level(logging.DEBUG, logger="sst.ingest.store")
    assert storage.store_events(engine, [_nasty("nbe")]) == [True]
    assert "lean insert failed" not in caplog.text  # stored by the lean path itself
    (row,) = [r for r in _rows(mysql_app) if r["message_id"] == "nbe"]
    assert row["user_agent"] == "UA " + NASTY
    assert json.loads(row["message"])["properties"]["text"] == NASTY


# --- many events in one statement (a server SDK's /v1/batch) --------------------------------


def test_a_batch_is_one_multi_row_insert_that_stores_what_the_transaction_stores(mysql_app):
    engine = mysql_app.extensions["sst"].engine
    batch = [_nasty(f"b-{i}") for i in range(5)]
    assert storage.store_events(engine, batch) == [True] * 5
    tx = [_nasty(f"b-{i}") for i in range(5)]
    for item in tx:
        item.row["source"] = "other"
    assert storage.store_in_transaction(engine, tx) == [True] * 5
    stored = _rows(mysql_app)
    assert len(stored) == 10
    by_source = {}
    for row in stored:
        by_source.setdefault(row.pop("source"), []).append(row)
    assert by_source["server"] == by_source["other"]


def test_a_batch_with_duplicates_tells_which_were_new(mysql_app):
    """The multi-row insert cannot tell which rows were duplicates: it is rolled back and the
    row-by-row path answers, storing each event once."""
    engine = mysql_app.extensions["sst"].engine
    assert storage.store_events(engine, [_event("d-1"), _event("d-2")]) == [True, True]
    again = [_event("d-0"), _event("d-1"), _event("d-3"), _event("d-3")]
    assert storage.store_events(engine, again) == [True, False, True, False]
    with mysql_app.app_context(), db.engine.connect() as conn:
        ids = [r[0] for r in conn.execute(text("SELECT message_id FROM events ORDER BY 1"))]
    assert ids == ["d-0", "d-1", "d-2", "d-3"]


def test_a_batch_with_a_touch_takes_one_transaction_with_one_insert(mysql_app):
    """Browser batches carry visitor touches: events go in one multi-row INSERT inside the
    transaction that also writes the visitor, and duplicates still fall back row by row."""
    engine = mysql_app.extensions["sst"].engine
    items = [_event(f"v-{i}") for i in range(3)]
    items[1].touch = storage.Touch(anonymous_id="a-1", source="server",
                                   at=items[1].row["event_time"], clicks={"gclid": "G1"})
    assert storage.store_events(engine, items) == [True] * 3
    assert storage.store_events(engine, [_event("v-1"), items[1]]) == [False, False]
    with mysql_app.app_context(), db.engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM events")).scalar() == 3
        assert conn.execute(text("SELECT value FROM click_ids")).scalars().all() == ["G1"]


def test_a_marked_batch_carries_the_fanout_mark(mysql_app):
    engine = mysql_app.extensions["sst"].engine
    assert storage.store_events(engine, [_event("f-1"), _event("f-2")], fanout=True) == [True] * 2
    assert storage.store_events(engine, [_event("f-3")], fanout=True) == [True]
    assert storage.store_events(engine, [_event("f-4")]) == [True]
    with mysql_app.app_context(), db.engine.connect() as conn:
        marks = dict(conn.execute(text("SELECT message_id, fanout FROM events")).all())
    assert marks == {"f-1": 1, "f-2": 1, "f-3": 1, "f-4": None}
