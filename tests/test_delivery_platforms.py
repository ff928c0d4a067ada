"""Meta and TikTok end to end (MariaDB, Redis, a real RQ worker, the local stub as platform):
retries keep the event id, platform error bodies decide between retry and stop."""

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from sst.delivery.worker import run_worker
from support.delivery import (
    deliveries,
    meta_dest,
    mysql_app,
    tiktok_dest,
    track,
    tracks,
)
from support.stub_platform import Reply, StubPlatform

META_OK = Reply(200, {"events_received": 1, "messages": [], "fbtrace_id": "AbC"})
TIKTOK_OK = Reply(200, {"code": 0, "message": "OK", "request_id": "r-1"})
EXTERNAL_ID = hashlib.sha256(b"user-42").hexdigest()


def _event_time():
    """An hour ago with a millisecond fraction, so flooring to seconds is visible."""
    t = datetime.now(UTC).replace(microsecond=987000) - timedelta(hours=1)
    return t, int(t.timestamp())  # int() floors a positive timestamp


def _send(app, when):
    return track(app, "msg-plat-1", userId="  User-42 ",
                 timestamp=when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z")


def _burst_until_settled(app, rounds=4):
    for _ in range(rounds):
        run_worker(app, burst=True)


def _meta_events(stub):
    return [e for r in stub.requests for e in r.json()["data"]]


def test_meta_retries_then_succeeds_with_one_event_id(mysql_url, redis_url):
    transient = Reply(500, {"error": {"code": 1, "message": "An unknown error occurred",
                                      "is_transient": True}})
    with StubPlatform(default=META_OK) as stub:
        stub.replies = [transient, Reply(503, b"upstream down")]
        app = mysql_app(mysql_url, redis_url, meta_dest(stub.url))
        when, floored = _event_time()
        _send(app, when)
        _burst_until_settled(app)

        assert len(stub.requests) == 3
        assert {r.path.split("?")[0] for r in stub.requests} == {"/v25.0/1234567890/events"}
        events = _meta_events(stub)
        assert {e["event_id"] for e in events} == {"msg-plat-1"}
        assert {e["event_time"] for e in events} == {floored}
        assert {e["event_name"] for e in events} == {"Purchase"}
        assert all(e["user_data"]["external_id"] == [EXTERNAL_ID] for e in events)
        [d] = deliveries(app)
        assert (d.state, d.attempts, d.last_error) == ("succeeded", 3, None)
        assert [(t.attempt, t.status, t.outcome) for t in tracks(app)] == [
            (1, 500, "retryable"), (2, 503, "retryable"), (3, 200, "success")]
        # The access token never reaches the ledger.
        assert all("meta-token-secret" not in (t.url + (t.request_body or ""))
                   for t in tracks(app))


def test_tiktok_retries_then_succeeds_with_one_event_id(mysql_url, redis_url):
    with StubPlatform(default=TIKTOK_OK) as stub:
        stub.replies = [Reply(200, {"code": 40100, "message": "Too many requests"}),
                        Reply(502, b"bad gateway")]
        app = mysql_app(mysql_url, redis_url, tiktok_dest(stub.url))
        when, floored = _event_time()
        _send(app, when)
        _burst_until_settled(app)

        assert stub.paths() == ["/open_api/v1.3/event/track/"] * 3
        assert {r.headers["Access-Token"] for r in stub.requests} == {"tt-token-secret"}
        events = [e for r in stub.requests for e in r.json()["data"]]
        assert {e["event_id"] for e in events} == {"msg-plat-1"}
        assert {e["event_time"] for e in events} == {floored}
        assert {e["event"] for e in events} == {"CompletePayment"}
        assert {e["user"]["external_id"] for e in events} == {EXTERNAL_ID}
        [d] = deliveries(app)
        assert (d.state, d.attempts) == ("succeeded", 3)
        assert [(t.attempt, t.outcome) for t in tracks(app)] == [
            (1, "retryable"), (2, "retryable"), (3, "success")]
        assert all("tt-token-secret" not in str(t.request_headers) for t in tracks(app))


@pytest.mark.parametrize("reply, code, text", [
    (Reply(400, {"error": {"code": 100, "error_subcode": 2804003, "type": "OAuthException",
                           "message": "Invalid parameter",
                           "error_user_title": "Event Timestamp Too Old",
                           "fbtrace_id": "AbC"}}),
     "100/2804003", "Event Timestamp Too Old"),
    (Reply(400, {"error": {"code": 190, "message": "Invalid OAuth access token."}}),
     "190", "Invalid OAuth access token"),
])
def test_meta_permanent_error_stops_after_one_attempt(mysql_url, redis_url, reply, code, text):
    with StubPlatform(default=reply) as stub:
        app = mysql_app(mysql_url, redis_url, meta_dest(stub.url))
        track(app)
        _burst_until_settled(app, rounds=2)

        assert len(stub.requests) == 1
        [d] = deliveries(app)
        assert (d.state, d.attempts, d.last_code) == ("failed", 1, code)
        assert text in d.last_error and text in d.reason
        [t] = tracks(app)
        assert (t.status, t.outcome) == (400, "permanent")
        assert text in t.response_body


def test_tiktok_error_code_in_a_200_body_is_permanent(mysql_url, redis_url):
    body = {"code": 40001, "message": "No permission to operate pixel code: C0PIXEL",
            "request_id": "2026112610"}
    with StubPlatform(default=Reply(200, body)) as stub:
        app = mysql_app(mysql_url, redis_url, tiktok_dest(stub.url))
        track(app)
        _burst_until_settled(app, rounds=2)

        assert len(stub.requests) == 1
        [d] = deliveries(app)
        assert (d.state, d.attempts, d.last_code) == ("failed", 1, "40001")
        assert d.last_status == 200  # TikTok answers errors in a 200
        assert "No permission" in d.last_error and "2026112610" in d.last_error
        [t] = tracks(app)
        assert (t.status, t.outcome) == (200, "permanent")


def test_the_ledger_and_admin_keep_no_reversible_hash(mysql_url, redis_url):
    """M5: the platform gets SHA-256 of the phone, email and userId; the Exchange ledger and
    /admin show keyed tags instead (an unsalted hash of a phone reverses in seconds)."""
    phone_hash = hashlib.sha256(b"16502530042").hexdigest()
    email_hash = hashlib.sha256(b"jane@example.com").hexdigest()
    with StubPlatform(default=Reply(400, {"error": {"code": 100, "message": "Invalid"}})) \
            as stub:
        app = mysql_app(mysql_url, redis_url, meta_dest(stub.url))
        app.config["ADMIN"] = {"token": "admin-token-0123456789abc"}
        track(app, "msg-hash-1", userId="user-42",
              context={"userAgent": "Mozilla/5.0", "ip": "203.0.113.7",
                       "traits": {"email": "Jane@Example.com", "phone": "+1 650 253 0042"}})
        _burst_until_settled(app, rounds=1)
        sent = stub.requests[0].body.decode()
        assert phone_hash in sent and email_hash in sent and EXTERNAL_ID in sent
        (t,) = tracks(app)
        for value in (phone_hash, email_hash, EXTERNAL_ID):
            assert value not in t.request_body
        assert "sha256~" in t.request_body
        page = app.test_client().get(
            "/admin/failures", headers={"Authorization": "Bearer admin-token-0123456789abc"})
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert "sha256~" in html
        for value in (phone_hash, email_hash, EXTERNAL_ID):
            assert value not in html
