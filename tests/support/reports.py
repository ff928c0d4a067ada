"""A small, hand-made data set whose report figures are worked out by hand in test_reports.py.

Two Persons (verified phones): p-1 with devices a1 (phone, came from a Meta ad) and a2
(laptop, came from a Google ad, buys); p-2 with a5 (Meta click, and a Microsoft click only
after p-2's purchase) and a4 (buys, no click, known by userId only). a3 and a6 are anonymous;
a7 is a crawler. A server-side purchase of p-1 has no device at all.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert

from sst.models import (
    ClickId,
    Delivery,
    Event,
    Exchange,
    ExchangeItem,
    Link,
    Person,
    UtmTouch,
    Visitor,
)

SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = datetime(2026, 11, 4, tzinfo=UTC)


def t(day, hour, minute=0):
    """Naive UTC, as the DATETIME columns hold it."""
    return datetime(2026, 11 if day < 30 else 10, day, hour, minute)


# id, source, type, event, anonymous_id, user_id, time, is_bot
EVENTS = [
    (1, "web", "page", None, "a1", None, t(1, 9), False),
    (2, "web", "page", None, "a2", None, t(1, 10), False),
    (3, "web", "track", "Add To Cart", "a2", None, t(1, 11), False),
    (4, "web", "track", "Order Completed", "a2", None, t(1, 12), False),  # C1
    (5, "web", "page", None, "a5", None, t(1, 8), False),
    (6, "web", "page", None, "a3", None, t(2, 8), False),
    (7, "web", "page", None, "a3", None, t(2, 9), False),
    (8, "web", "track", "Order Completed", "a3", None, t(2, 10), False),  # C2
    (9, "web", "track", "Signed Up", "a3", None, t(2, 10, 30), False),
    (10, "web", "track", "Order Completed", "a4", "p-2", t(2, 11), False),  # C3
    (11, "web", "page", None, "a5", None, t(2, 12), False),
    (12, "web", "track", "Order Completed", "a7", None, t(2, 13), True),  # a bot
    (13, "web", "page", None, "a7", None, t(2, 12, 30), True),
    (14, "web", "track", "Order Completed", "a6", None, t(3, 9), False),  # C4
    (15, "web", "page", None, "a6", None, t(3, 10), False),
    (16, "server", "track", "Order Completed", None, "p-1", t(3, 12), False),  # C5
    (17, "server", "identify", None, None, "p-1", t(3, 12, 5), False),
    (18, "web", "track", "Order Completed", "a3", None, t(30, 10), False),  # Oct 30: outside
]


def _touch(at, utm, **clicks):
    return {"at": at.isoformat() + "Z", "utm": utm,
            "click_ids": {p: {"value": v, "seen_at": at.isoformat() + "Z"}
                          for p, v in clicks.items()}}


VISITORS = [
    ("a1", _touch(t(1, 9), {"utm_source": "facebook", "utm_campaign": "bf"}, fbclid="fb.a1"),
     None),
    ("a2", _touch(t(1, 10), {"utm_source": "google", "utm_campaign": "brand"}, gclid="g.a2"),
     None),
    ("a3", _touch(t(2, 8), {"utm_source": "tiktok", "utm_campaign": "spring"}, ttclid="tt.a3"),
     _touch(t(2, 9), {"utm_source": "google", "utm_campaign": "brand"}, gclid="g.a3")),
    ("a4", None, None),
    ("a5", _touch(t(1, 8), {}, fbclid="fb.a5"), _touch(t(2, 12), {}, msclkid="ms.a5")),
    ("a6", _touch(t(3, 10), {"utm_source": "facebook", "utm_campaign": "retarget"},
                  fbclid="fb.a6"), None),
    ("a7", None, None),
]

CLICKS = [
    ("a1", "fbclid", "fb.a1", t(1, 9)),
    ("a2", "gclid", "g.a2", t(1, 10)),
    ("a3", "ttclid", "tt.a3", t(2, 8)),
    ("a3", "gclid", "g.a3", t(2, 9)),
    ("a5", "fbclid", "fb.a5", t(1, 8)),
    ("a5", "msclkid", "ms.a5", t(2, 12)),  # after p-2's purchase: no credit
    ("a6", "fbclid", "fb.a6", t(3, 10)),  # after a6's purchase: no credit
]

# Every UTM touch (what ingest writes to utm_touches): anonymous id, time, source, campaign.
UTM_TOUCHES = [
    ("a1", t(1, 9), "facebook", "bf"),
    ("a2", t(1, 10), "google", "brand"),
    ("a3", t(2, 8), "tiktok", "spring"),
    ("a3", t(2, 9), "google", "brand"),
    ("a3", t(2, 11), "newsletter", "dec"),  # after a3's purchase C2 (10:00): no credit
    ("a6", t(3, 10), "facebook", "retarget"),  # after a6's purchase C4 (09:00): no credit
]

LINKS = [
    ("a1", "person", "p-1"),
    ("a2", "person", "p-1"),
    ("a5", "user_id", "p-2"),
    ("a3", "user_id", "not-a-person"),  # a userId, but no verified phone: a3 stays anonymous
    ("a6", "anonymous_id", "a6-old"),
]

# id, event id, destination, state
DELIVERIES = [
    (1, 4, "meta", "succeeded"), (2, 4, "hook", "succeeded"),
    (3, 8, "meta", "failed"), (4, 8, "hook", "succeeded"),
    (5, 10, "meta", "succeeded"), (6, 10, "hook", "pending"),
    (7, 12, "meta", "skipped"),
    (8, 14, "meta", "succeeded"), (9, 14, "hook", "queued"),
    (10, 16, "meta", "succeeded"),
    (11, 18, "meta", "succeeded"),
]

# id, destination, outcome, status, duration ms, created, [delivery ids]
TRACKS = [
    (1, "meta", "success", 200, 100.0, t(1, 12, 1), [1]),
    (2, "meta", "retryable", 503, 500.0, t(2, 10, 1), [3]),
    (3, "meta", "permanent", 400, 300.0, t(2, 10, 31), [3]),
    (4, "meta", "success", 200, 200.0, t(2, 11, 1), [5]),
    (5, "meta", "success", 200, 50.0, t(3, 12, 1), [8, 10]),  # a batch: web + server events
    (6, "meta", "success", 200, 999.0, t(30, 10, 1), [11]),
    (7, "hook", "success", 200, 10.0, t(1, 12, 1), [2]),
    (8, "hook", "success", 200, 30.0, t(2, 10, 1), [4]),
    (9, "hook", "retryable", None, None, t(2, 11, 1), [6]),  # a timeout: no duration
]

ERROR_BODY = '{"error":{"message":"Invalid parameter","code":100}}'


def load(engine) -> None:
    """Insert the data set (tables must be empty)."""
    ev_time = {e[0]: e[6] for e in EVENTS}
    with engine.begin() as conn:
        conn.execute(insert(Event.__table__), [
            {"id": i, "source": src, "message_id": f"m-{i}", "type": typ, "event": name,
             "anonymous_id": anon, "user_id": user, "event_time": at, "received_at": at,
             "timestamp": at, "message": {"type": typ, "event": name, "messageId": f"m-{i}"},
             "request": {"endpoint": typ}, "is_bot": bot}
            for i, src, typ, name, anon, user, at, bot in EVENTS])
        conn.execute(insert(Visitor.__table__), [
            {"anonymous_id": a, "source": "web", "first_seen_at": t(1, 0),
             "last_seen_at": t(3, 0), "first_touch": first, "latest_touch": latest or first}
            for a, first, latest in VISITORS])
        conn.execute(insert(ClickId.__table__), [
            {"anonymous_id": a, "param": p, "value": v, "first_seen_at": at, "last_seen_at": at}
            for a, p, v, at in CLICKS])
        conn.execute(insert(UtmTouch.__table__), [
            {"anonymous_id": a, "at": at, "utm_source": src, "utm_campaign": camp,
             "utm": {"utm_source": src, "utm_campaign": camp}}
            for a, at, src, camp in UTM_TOUCHES])
        conn.execute(insert(Link.__table__), [
            {"anonymous_id": a, "kind": k, "value": v, "created_at": t(1, 0)}
            for a, k, v in LINKS])
        conn.execute(insert(Person.__table__), [
            {"user_id": u, "phone_key": f"key-{u}", "phone_enc": "x", "country": "US",
             "created_at": t(1, 0), "verified_at": t(1, 0)} for u in ("p-1", "p-2")])
        conn.execute(insert(Delivery.__table__), [
            {"id": i, "event_id": e, "destination": dest, "connector": dest,
             "platform_event": "Purchase", "state": state, "attempts": 1, "retry_base": 0,
             "next_attempt_at": ev_time[e], "event_time": ev_time[e], "created_at": ev_time[e],
             "updated_at": ev_time[e],
             "last_error": ERROR_BODY if state == "failed" else None}
            for i, e, dest, state in DELIVERIES])
        event_of = {d[0]: d[1] for d in DELIVERIES}
        conn.execute(insert(Exchange.__table__), [
            {"id": i, "delivery_id": items[0], "incoming_id": event_of[items[0]],
             "destination": dest, "connector": dest, "attempt": 1, "outcome": outcome,
             "method": "POST", "url": f"https://{dest}.invalid/events",
             "request_headers": {"Authorization": "***"},
             "request_body": '{"data":[{"event_name":"Purchase"}],"access_token":"***"}',
             "status": status,
             "response_body": ERROR_BODY if outcome == "permanent" else '{"ok":true}',
             "error_class": "Timeout" if status is None else None,
             "error_message": "read timed out" if status is None else None,
             "duration_ms": ms, "created_at": at}
            for i, dest, outcome, status, ms, at, items in TRACKS])
        conn.execute(insert(ExchangeItem.__table__), [
            {"track_id": i, "delivery_id": d, "event_id": event_of[d]}
            for i, *_rest, items in TRACKS for d in items])
