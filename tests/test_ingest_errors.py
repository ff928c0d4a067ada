"""Every refusal the ingest API makes, on MariaDB + Redis: the status, the JSON error, the
record kept for operators, and never a 500. Health probes at the end."""

import base64
import http.client
import json
import secrets
import socket
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from sst import create_app
from sst.extensions import db
from sst.models import Event, RejectedPayload
from support.apps import ORIGIN, SERVER_KEY, WRITE_KEY, base_config, live_server, make_mysql_app

CLOSED_DB = "mysql+pymysql://root@127.0.0.1:1/x"
CLOSED_REDIS = "redis://127.0.0.1:1/0"


def basic(key=SERVER_KEY):
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def rows(app, model):
    with app.app_context():
        return db.session.execute(select(model)).scalars().all()


def track(message_id="m-1", **extra):
    return {"event": "E", "userId": "u1", "messageId": message_id, **extra}


def assert_error(resp, status, code):
    assert resp.status_code == status, resp.data
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"]
    return body


# --- 400 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"{", b"", b"null", b"[]", b'"track"', b"\xff\xfe{}",
                                  b'{"event": NaN}', b'{"a": "\\ud800"}'])
def test_malformed_json_is_a_400(mysql_client, data):
    r = mysql_client.post("/v1/track", data=data, content_type="application/json",
                          headers=basic())
    assert_error(r, 400, "malformed_json")


@pytest.mark.parametrize("body, field", [
    ({"userId": "u1"}, "event"),
    ({"event": "E"}, "anonymousId"),
    ({"event": "E", "userId": "u1", "timestamp": "tomorrow"}, "timestamp"),
    ({"event": "E", "userId": "u1", "properties": "x"}, "properties"),
])
def test_an_invalid_message_is_a_400_with_the_field(mysql_app, mysql_client, body, field):
    r = mysql_client.post("/v1/track", json=body, headers=basic())
    assert field in assert_error(r, 400, "invalid_message")["fields"]
    assert rows(mysql_app, Event) == []


def test_a_message_nested_too_deep_for_mariadb_is_a_400(mysql_app, mysql_client):
    value = 1
    for _ in range(40):
        value = {"a": value}
    r = mysql_client.post("/v1/track", json=track(properties=value), headers=basic())
    assert_error(r, 400, "invalid_message")


def test_a_body_nested_hundreds_deep_is_a_400(mysql_client):
    data = b'{"event":"E","userId":"u","properties":' + b'{"a":' * 1000 + b"1" + b"}" * 1001
    r = mysql_client.post("/v1/track", data=data, content_type="application/json",
                          headers=basic())
    assert_error(r, 400, "malformed_json")


def test_a_bad_gzip_body_is_a_400(mysql_client):
    r = mysql_client.post("/v1/batch", data=b"not gzip", headers={
        **basic(), "Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert_error(r, 400, "malformed_body")


# --- 401 / 403 -------------------------------------------------------------------------------


@pytest.mark.parametrize("headers, body", [
    ({}, track()),
    ({"Authorization": "Basic " + base64.b64encode(b":").decode()}, track()),
    ({"Authorization": "Basic !!!not-base64"}, track()),
    ({"Authorization": "Bearer " + SERVER_KEY}, track()),
    ({}, {**track(), "writeKey": ""}),
    ({}, {**track(), "writeKey": 12345}),
])
def test_a_missing_write_key_is_a_401(mysql_client, headers, body):
    r = mysql_client.post("/v1/track", json=body, headers=headers)
    assert_error(r, 401, "missing_write_key")


@pytest.mark.parametrize("headers, body", [
    (basic("wk_nobody_has_this_key"), track()),
    ({}, {**track(), "writeKey": "wk_nobody_has_this_key"}),
    (basic(SERVER_KEY.upper()), track()),  # keys are case-sensitive
])
def test_an_unknown_write_key_is_a_401(mysql_client, headers, body):
    r = mysql_client.post("/v1/track", json=body, headers=headers)
    assert_error(r, 401, "unknown_write_key")


def test_an_origin_not_allowed_for_the_key_is_a_403(mysql_app, mysql_client):
    r = mysql_client.post("/v1/track", json={**track(), "writeKey": WRITE_KEY},
                          headers={"Origin": "https://evil.test"})
    assert_error(r, 403, "origin_not_allowed")
    assert rows(mysql_app, Event) == []


def test_requests_without_origin_are_accepted_with_a_browser_key(mysql_app, mysql_client):
    r = mysql_client.post("/v1/track", json=track(), headers=basic(WRITE_KEY))
    assert r.status_code == 200


# --- 413 -------------------------------------------------------------------------------------


def test_a_message_over_32_kib_is_a_413(mysql_app, mysql_client):
    r = mysql_client.post("/v1/track", json=track(properties={"x": "a" * 33 * 1024}),
                          headers=basic())
    assert_error(r, 413, "message_too_large")
    assert rows(mysql_app, Event) == []


def test_a_message_just_under_32_kib_is_stored(mysql_app, mysql_client):
    body = track(properties={"x": ""})
    body["properties"]["x"] = "a" * (32 * 1024 - len(json.dumps(body)))
    data = json.dumps(body).encode()
    assert len(data) == 32 * 1024
    r = mysql_client.post("/v1/track", data=data, content_type="application/json",
                          headers=basic())
    assert r.status_code == 200
    assert len(rows(mysql_app, Event)) == 1


def test_a_batch_over_500_kib_is_a_413(mysql_app, mysql_client):
    batch = [{**track(f"m-{i}"), "type": "track", "properties": {"x": "a" * 20_000}}
             for i in range(27)]
    r = mysql_client.post("/v1/batch", json={"batch": batch}, headers=basic())
    assert_error(r, 413, "payload_too_large")
    assert rows(mysql_app, Event) == []


def test_a_batch_message_over_32_kib_is_rejected_alone(mysql_app, mysql_client):
    batch = [{**track("small"), "type": "track"},
             {**track("big"), "type": "track", "properties": {"x": "a" * 33 * 1024}}]
    r = mysql_client.post("/v1/batch", json={"batch": batch}, headers=basic())
    assert r.status_code == 200
    assert [(x["index"], x["messageId"], x["error"]) for x in r.get_json()["rejected"]] == [
        (1, "big", "message_too_large")]
    assert [e.message_id for e in rows(mysql_app, Event)] == ["small"]


def test_the_size_is_checked_before_parsing(mysql_client):
    # Not JSON at all, but too big: the answer is about the size, so nothing was parsed.
    r = mysql_client.post("/v1/batch", data=b"x" * (501 * 1024), headers=basic())
    assert_error(r, 413, "payload_too_large")


def test_a_gzip_body_is_measured_after_decompression(mysql_client):
    import gzip

    bomb = gzip.compress(b"[" + b" " * (2 * 1024 * 1024) + b"]")
    assert len(bomb) < 10 * 1024
    r = mysql_client.post("/v1/batch", data=bomb, headers={
        **basic(), "Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert_error(r, 413, "payload_too_large")


def test_a_413_is_answered_from_content_length_before_the_body_arrives(mysql_app):
    # A client announcing 100 MB gets its answer without sending (or us reading) any of it.
    with live_server(mysql_app) as url:
        parts = urlsplit(url)
        with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
            auth = base64.b64encode(f"{SERVER_KEY}:".encode()).decode()
            sock.sendall(("POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                          f"\r\nAuthorization: Basic {auth}\r\n"
                          "Content-Length: 100000000\r\n\r\n").encode())
            answer = b""
            while b"payload_too_large" not in answer and (chunk := sock.recv(4096)):
                answer += chunk
    answer = answer.decode("latin-1")
    assert answer.startswith("HTTP/1.1 413")
    assert "payload_too_large" in answer


def _post_chunked(url, path, chunks):
    """POST with Transfer-Encoding: chunked (no Content-Length), as streaming clients send."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("POST", path, body=iter(chunks), encode_chunked=True, headers={
            **basic(), "Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_a_chunked_body_is_read_whole_and_stored(mysql_app):
    body = json.dumps(track("chunked-1")).encode()
    with live_server(mysql_app) as url:
        status, answer = _post_chunked(url, "/v1/track", [body[:10], body[10:50], body[50:]])
    assert (status, answer) == (200, {"success": True})
    assert [e.message_id for e in rows(mysql_app, Event)] == ["chunked-1"]


def test_a_chunked_body_over_the_limit_is_a_413(mysql_app):
    message = track("chunked-2")
    message["properties"] = {"blob": "x" * (40 * 1024)}
    body = json.dumps(message).encode()
    with live_server(mysql_app) as url:
        status, answer = _post_chunked(url, "/v1/track",
                                       [body[i:i + 4096] for i in range(0, len(body), 4096)])
    assert status == 413 and answer["error"] == "message_too_large"
    assert rows(mysql_app, Event) == []


# --- 429 -------------------------------------------------------------------------------------


def test_a_source_over_its_rate_gets_429_with_retry_after(mysql_url, redis_url):
    name = "limited-" + secrets.token_hex(4)  # its own counter in the shared Redis
    key = "wk_limited_" + secrets.token_hex(8)
    app = make_mysql_app(mysql_url, redis_url,
                         SOURCES=[{"name": name, "write_key": key, "rate_limit": "5/second"}])
    client = app.test_client()
    statuses = []
    for i in range(12):
        r = client.post("/v1/track", json=track(f"rl-{i}"), headers=basic(key))
        statuses.append(r.status_code)
        if r.status_code == 429:
            body = assert_error(r, 429, "rate_limited")
            assert name in body["message"]
            assert int(r.headers["Retry-After"]) >= 1
    assert statuses[:5] == [200] * 5
    assert 429 in statuses
    assert set(statuses) == {200, 429}


def test_a_source_rate_counts_messages_not_requests(mysql_url, redis_url):
    """M7: a "2/minute" source let two batches of 4,000 messages through."""
    name = "limited-" + secrets.token_hex(4)
    key = "wk_limited_" + secrets.token_hex(8)
    app = make_mysql_app(mysql_url, redis_url,
                         SOURCES=[{"name": name, "write_key": key, "rate_limit": "5/minute"}])
    client = app.test_client()
    def track_(mid):
        return {"type": "track", **track(mid)}

    big = {"batch": [track_(f"big-{i}") for i in range(50)]}
    r = client.post("/v1/batch", json=big, headers=basic(key))
    # More than a whole window: not a 429 an SDK would retry for ever, but what to change.
    assert r.status_code == 413
    assert r.get_json()["error"] == "batch_over_rate_limit"
    assert "at most 5 messages" in r.get_json()["message"]
    small = {"batch": [track_(f"small-{i}") for i in range(3)]}
    assert client.post("/v1/batch", json=small, headers=basic(key)).status_code == 200
    r = client.post("/v1/batch", json={"batch": [track_(f"over-{i}") for i in range(3)]},
                    headers=basic(key))
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1  # fits a later window
    assert client.post("/v1/batch", json={"batch": [track_("s-4"), track_("s-5")]},
                       headers=basic(key)).status_code == 200
    assert client.post("/v1/track", json=track("s-6"), headers=basic(key)).status_code == 429
    mine = {e.message_id for e in rows(app, Event)} & (
        {f"big-{i}" for i in range(50)} | {"small-0", "small-1", "small-2", "s-4", "s-5", "s-6"})
    assert mine == {"small-0", "small-1", "small-2", "s-4", "s-5"}


def test_a_source_without_a_rate_is_not_limited(mysql_client):
    for i in range(30):
        assert mysql_client.post("/v1/track", json=track(f"n-{i}"), headers=basic()).status_code \
            == 200


def test_an_unreachable_rate_limiter_does_not_stop_ingest(mysql_url, tmp_path):
    app = make_mysql_app(mysql_url, CLOSED_REDIS, SOURCES=[
        {"name": "limited", "write_key": "wk_limited_0123456789", "rate_limit": "1/minute"}])
    client = app.test_client()
    for i in range(3):
        r = client.post("/v1/track", json=track(f"x-{i}"), headers=basic("wk_limited_0123456789"))
        assert r.status_code == 200


# --- 503 -------------------------------------------------------------------------------------


@pytest.fixture
def down_client():
    return create_app(base_config(DATABASE_URL=CLOSED_DB)).test_client()


@pytest.mark.parametrize("path, body", [
    ("/v1/track", track()),
    ("/v1/identify", {"userId": "u1"}),
    ("/v1/batch", {"batch": [{**track(), "type": "track"}]}),
])
def test_an_unreachable_database_is_a_503_with_retry_after(down_client, path, body):
    r = down_client.post(path, json=body, headers=basic())
    assert_error(r, 503, "storage_unavailable")
    assert int(r.headers["Retry-After"]) > 0


def test_a_browser_gets_a_503_it_can_read(down_client):
    r = down_client.post("/v1/track", json={**track(), "writeKey": WRITE_KEY},
                         headers={"Origin": ORIGIN})
    assert_error(r, 503, "storage_unavailable")
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Set-Cookie" not in r.headers  # nothing stored, so no id was promised


def test_bad_input_is_still_a_4xx_when_the_database_is_down(down_client):
    assert_error(down_client.post("/v1/track", data=b"{", headers=basic()), 400,
                 "malformed_json")
    assert_error(down_client.post("/v1/track", json=track()), 401, "missing_write_key")


def test_a_failure_mid_batch_writes_nothing(mysql_app, mysql_client, monkeypatch):
    from sst.ingest import store

    calls = []
    touch_visitor = store._touch_visitor

    def fail_on_second(conn, touch):
        calls.append(touch.anonymous_id)
        if len(calls) == 2:
            raise OperationalError("UPDATE visitors ...", {}, Exception("server gone"))
        touch_visitor(conn, touch)

    monkeypatch.setattr(store, "_touch_visitor", fail_on_second)
    batch = [{**track(f"m-{i}"), "type": "track", "anonymousId": f"v-{i}",
              "context": {"page": {"url": "https://x.test/?gclid=G1"}}} for i in range(3)]
    r = mysql_client.post("/v1/batch", json={"batch": batch}, headers=basic())
    assert_error(r, 503, "storage_unavailable")
    assert calls == ["v-0", "v-1"]
    from sst.models import ClickId, Link, Visitor

    for model in (Event, Visitor, ClickId, Link):
        assert rows(mysql_app, model) == [], model


def test_a_retry_after_the_failure_stores_everything_once(mysql_app, mysql_client,
                                                        monkeypatch):
    from sst.ingest import store

    def fail(conn, touch):
        raise OperationalError("INSERT ...", {}, Exception("server gone"))

    batch = [{**track(f"m-{i}"), "type": "track", "anonymousId": "v-1",
              "context": {"page": {"url": "https://x.test/?gclid=G1"}}} for i in range(3)]
    monkeypatch.setattr(store, "_touch_visitor", fail)
    assert mysql_client.post("/v1/batch", json={"batch": batch}, headers=basic()).status_code \
        == 503
    monkeypatch.undo()
    for _ in range(2):
        assert mysql_client.post("/v1/batch", json={"batch": batch},
                                 headers=basic()).status_code == 200
    assert sorted(e.message_id for e in rows(mysql_app, Event)) == ["m-0", "m-1", "m-2"]


# --- rejected payloads -----------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, status, error", [
    ({"data": b"{oops", "headers": basic()}, 400, "malformed_json"),
    ({"json": {"userId": "u1"}, "headers": basic()}, 400, "invalid_message"),
    ({"json": track()}, 401, "missing_write_key"),
    ({"json": track(), "headers": basic("wk_nobody_has_this_key")}, 401, "unknown_write_key"),
    ({"json": {**track(), "writeKey": WRITE_KEY}, "headers": {"Origin": "https://evil.test"}},
     403, "origin_not_allowed"),
    ({"json": track(properties={"x": "a" * 40_000}), "headers": basic()}, 413,
     "message_too_large"),
])
def test_a_refused_request_is_kept_with_the_reason(mysql_app, mysql_client, kwargs, status,
                                                  error):
    r = mysql_client.post("/v1/track", **kwargs)
    assert r.status_code == status
    (kept,) = rows(mysql_app, RejectedPayload)
    assert (kept.status, kept.error, kept.endpoint) == (status, error, "/v1/track")
    assert kept.message
    assert kept.received_at is not None
    assert kept.body is not None


def test_the_kept_body_never_holds_more_than_32_kib(mysql_app, mysql_client):
    mysql_client.post("/v1/batch", data=b"{" + b" " * 400_000, headers=basic())
    (kept,) = rows(mysql_app, RejectedPayload)
    assert len(kept.body) <= 32 * 1024


def test_a_refused_request_from_a_browser_keeps_origin_and_agent(mysql_app, mysql_client):
    mysql_client.post("/v1/track", json={**track(), "writeKey": WRITE_KEY},
                      headers={"Origin": "https://evil.test", "User-Agent": "UA/1"})
    (kept,) = rows(mysql_app, RejectedPayload)
    assert (kept.origin, kept.user_agent, kept.source) == ("https://evil.test", "UA/1", "web")


# --- never a 500 -----------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    track(timestamp="9999-12-31T23:59:59-01:00"),
    track(timestamp="0001-01-01T00:00:00+01:00"),
    track(timestamp="0001-01-01T00:00:00Z", sentAt="9999-12-31T00:00:00Z"),
    track(timestamp="9999-12-31T00:00:00Z", sentAt="0001-01-01T00:00:00Z"),
    track(userId=10 ** 40),
    track(properties={"n": 10 ** 30, "f": 1e308, "neg": -(10 ** 25)}),
    track(properties={"nul": "a\u0000b", "emoji": "\U0001f680" * 100, "rtl": "\u202e"}),
    track(properties={"": {"": [[], {}, None]}}),
    track(context={"ip": "x" * 500, "userAgent": "y" * 5000, "page": {"url": "u" * 20_000}}),
    track(context={"page": {"url": "http://[::1/?gclid=G"}}),
    track(event="e" * 255),
    {"event": "E", "anonymousId": "a" * 128, "messageId": "m" * 128},
    {"event": "E", "userId": "u1", "type": "identify"},
    {"event": ["list"], "userId": "u1"},
    {"event": "E", "userId": "u1", "integrations": {"All": False}},
    {"event": "E", "userId": "u1", "writeKey": {"nested": "key"}},
])
def test_odd_but_parseable_input_is_never_a_500(mysql_client, body):
    r = mysql_client.post("/v1/track", data=json.dumps(body), content_type="application/json",
                          headers=basic())
    assert r.status_code < 500, r.data


def test_a_huge_integer_is_refused_not_crashed(mysql_client):
    data = b'{"event":"E","userId":"u","properties":{"n":' + b"9" * 5000 + b"}}"
    r = mysql_client.post("/v1/track", data=data, content_type="application/json",
                          headers=basic())
    assert_error(r, 400, "malformed_json")


@pytest.mark.parametrize("method, path", [("GET", "/v1/track"), ("PUT", "/v1/batch"),
                                          ("POST", "/v1/nope"), ("POST", "/v2/track")])
def test_unknown_routes_and_methods_are_json_4xx(mysql_client, method, path):
    r = mysql_client.open(path, method=method, json=track(), headers=basic())
    assert 400 <= r.status_code < 500
    assert r.get_json()["error"]


# --- health ----------------------------------------------------------------------------------


def test_healthz_answers_while_the_database_is_down(down_client):
    r = down_client.get("/healthz")
    assert r.status_code == 200
    assert r.get_json()["status"] == "ok"


def test_readyz_is_200_with_database_and_redis_up(mysql_client):
    r = mysql_client.get("/readyz")
    assert r.status_code == 200
    assert r.get_json()["checks"]["database"] == "ok"
    assert r.get_json()["checks"]["redis"] == "ok"


def test_readyz_is_503_when_the_database_is_down(down_client):
    r = down_client.get("/readyz")
    assert r.status_code == 503
    assert r.get_json()["checks"]["database"] == "unavailable"
    assert "Retry-After" in r.headers


def test_readyz_stays_ready_when_redis_is_down(mysql_url):
    # Ingest works without Redis (deliveries wait in the outbox): readiness reports Redis
    # but does not fail on it (contract §7).
    client = make_mysql_app(mysql_url, CLOSED_REDIS).test_client()
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.get_json()["checks"] == {"database": "ok", "schema": "ok", "redis": "down"}


def test_unauthenticated_floods_do_not_fill_rejected_payloads(mysql_url, redis_url):
    """L2: 200 keyless 40 KB requests made 200 rows of 32 KiB; now 1 KiB bodies, and a
    bounded number of rows per client address."""
    app = make_mysql_app(mysql_url, redis_url, REJECTED_PER_IP="20/minute")
    client = app.test_client()
    ip = f"198.51.100.{secrets.randbelow(250) + 1}"
    client.environ_base["REMOTE_ADDR"] = ip
    before = len([r for r in rows(app, RejectedPayload) if r.ip == ip])
    body = json.dumps({"event": "x", "userId": "u", "properties": {"pad": "p" * 30_000}})
    for _ in range(40):
        r = client.post("/v1/track", data=body, content_type="application/json")
        assert r.status_code == 401
    mine = [r for r in rows(app, RejectedPayload) if r.ip == ip]
    assert len(mine) - before <= 20
    assert all(len(r.body or "") <= 1024 for r in mine)
