"""The lean single-event insert (storage._store_single) writes what the transaction writes."""

from __future__ import annotations

import copy

from sqlalchemy import text

from sst import storage
from sst.clock import utcnow
from sst.extensions import db
from sst.messages import RequestInfo, prepare


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
    # on_insert forces the transactional path
    assert storage.store_events(engine, [_event("tx")], on_insert=lambda *a: None) == [True]
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
    for entry in list(storage._fast_idle):
        entry[3].close()  # as if MariaDB had dropped it
    assert storage.store_events(engine, [_event("k2")]) == [True]
    assert storage.store_events(engine, [_event("k3")]) == [True]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM events")).scalar() == 3
