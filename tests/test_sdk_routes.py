"""The vendor browser SDKs' routes, request by request as the SDKs send them: Segment's short
paths and /v1/m, RudderStack's beacon path, both settings documents, /v1/visitor and the
plugins sst serves. (tests/test_sdk_browser.py runs the real SDKs in Chromium.)"""

import base64
import json

import pytest
from sqlalchemy import select

from sst.cookies import CookieSigner
from sst.extensions import db
from sst.models import Event
from support.apps import ORIGIN, SERVER_KEY, WRITE_KEY

SIGNER = CookieSigner("test-secret-key-0123456789")  # base_config's SECRET_KEY


def basic(key):
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def segment_post(client, path, body, key=WRITE_KEY, origin=ORIGIN, base_url=None, **headers):
    """As analytics-next 1.84 posts: a JSON string as text/plain, writeKey in the body and as
    the Basic user name, from the page's origin."""
    if key is not None:
        body = {**body, "writeKey": key}
        headers["Authorization"] = basic(key)
    if origin:
        headers["Origin"] = origin
    return client.post(path, data=json.dumps(body), content_type="text/plain", headers=headers,
                       **({"base_url": base_url} if base_url else {}))


def stored(app):
    with app.app_context():
        rows = db.session.execute(select(Event).order_by(Event.id)).scalars().all()
        db.session.expunge_all()
        return rows


SHORT = [("t", "track", {"event": "Signed Up"}), ("p", "page", {"name": "Home"}),
         ("i", "identify", {"userId": "u1", "traits": {"plan": "pro"}}),
         ("s", "screen", {"name": "Home"}), ("g", "group", {"groupId": "g1"}),
         ("a", "alias", {"userId": "u1", "previousId": "anon-1"})]


@pytest.mark.parametrize("short,kind,extra", SHORT)
def test_short_path_is_its_endpoint(app, client, short, kind, extra):
    body = {"anonymousId": "anon-1", "messageId": f"m-{short}", "type": kind,
            "timestamp": "2026-12-01T10:00:00.000Z", "sentAt": "2026-12-01T10:00:00.100Z",
            "context": {"library": {"name": "analytics.js", "version": "next-1.84.3"}}, **extra}
    resp = segment_post(client, f"/v1/{short}", body)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json() == {"success": True}
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert resp.headers["Access-Control-Allow-Credentials"] == "true"
    (ev,) = stored(app)
    assert ev.type == kind and ev.message_id == f"m-{short}"
    assert ev.request["endpoint"] == f"/v1/{short}" and ev.request["auth"] == "basic"
    assert "writeKey" not in ev.message


def test_short_path_without_origin_or_basic_auth(app, client):
    """A body-only write key, as older analytics.js releases sent it, also works."""
    resp = client.post("/v1/t", data=json.dumps({"event": "X", "anonymousId": "a",
                                                 "writeKey": WRITE_KEY}),
                       content_type="text/plain")
    assert resp.status_code == 200
    assert stored(app)[0].request["auth"] == "body"


def test_batching_mode_b(app, client):
    batch = [{"type": "track", "event": "A", "anonymousId": "anon-1", "messageId": "b-1"},
             {"type": "page", "name": "P", "anonymousId": "anon-1", "messageId": "b-2"},
             {"type": "track", "anonymousId": "anon-1", "messageId": "b-3"}]  # no event
    resp = segment_post(client, "/v1/b", {"batch": batch, "sentAt": "2026-12-01T10:00:00Z"})
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["success"] is True
    assert [r["messageId"] for r in body["rejected"]] == ["b-3"]
    assert [e.message_id for e in stored(app)] == ["b-1", "b-2"]


def test_preflight_is_readable(client):
    resp = client.options("/v1/t", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert 200 <= resp.status_code < 300
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "authorization" in resp.headers["Access-Control-Allow-Headers"].lower()
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]


def test_metrics_are_answered_and_dropped(app, client):
    series = {"series": [{"type": "Counter", "metric": "analytics_js.invoke.error", "value": 1,
                          "tags": {"library": "analytics.js"}}]}
    resp = client.post("/v1/m", data=json.dumps(series), content_type="text/plain",
                       headers={"Origin": ORIGIN})
    assert resp.status_code == 200
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert stored(app) == []
    assert client.post("/v1/m", data=b"not json", content_type="text/plain").status_code == 200


def test_rudderstack_beacon(app, client):
    batch = {"batch": [{"type": "track", "event": "Beaconed", "anonymousId": "r-1",
                        "messageId": "rb-1", "originalTimestamp": "2026-12-01T10:00:00.000Z",
                        "channel": "web"}], "sentAt": "2026-12-01T10:00:01.000Z"}
    resp = client.post(f"/beacon/v1/batch?writeKey={WRITE_KEY}", data=json.dumps(batch),
                       content_type="text/plain;charset=UTF-8", headers={"Origin": ORIGIN})
    assert resp.status_code == 200
    (ev,) = stored(app)
    assert ev.event == "Beaconed" and ev.request["auth"] == "query"
    assert ev.request["endpoint"] == "/beacon/v1/batch"


@pytest.mark.parametrize("path,key,headers,status,code", [
    ("/v1/t", None, {}, 401, "missing_write_key"),
    ("/v1/t", "wk_nobody_0123456789", {}, 401, "unknown_write_key"),
    ("/v1/t", WRITE_KEY, {"Origin": "https://evil.test"}, 403, "origin_not_allowed"),
    ("/v1/t", SERVER_KEY, {"Origin": ORIGIN}, 403, "origin_not_allowed"),
    ("/beacon/v1/batch", None, {}, 401, "missing_write_key"),
    ("/beacon/v1/batch?writeKey=wk_nobody_0123456789", None, {}, 401, "unknown_write_key"),
])
def test_auth_failures(client, path, key, headers, status, code):
    body = {"event": "X", "anonymousId": "a"} if path == "/v1/t" else {
        "batch": [{"type": "track", "event": "X", "anonymousId": "a"}]}
    if key:
        body["writeKey"] = key
        headers = {**headers, "Authorization": basic(key)}
    resp = client.post(path, data=json.dumps(body), content_type="text/plain", headers=headers)
    assert resp.status_code == status
    assert resp.get_json()["error"] == code


def test_wrong_basic_auth_is_refused_even_with_a_good_body_key(client):
    resp = client.post("/v1/t", data=json.dumps({"event": "X", "anonymousId": "a",
                                                 "writeKey": WRITE_KEY}),
                       content_type="text/plain",
                       headers={"Authorization": basic("wk_nobody_0123456789")})
    assert resp.status_code == 401


@pytest.mark.parametrize("path,data,status,code", [
    ("/v1/t", b"{not json", 400, "malformed_json"),
    ("/v1/t", b"[1,2]", 400, "malformed_json"),
    ("/v1/t", b"", 400, "malformed_json"),
    ("/v1/p", json.dumps({"anonymousId": "a", "properties": "x"}).encode(), 400,
     "invalid_message"),
    ("/v1/t", json.dumps({"anonymousId": "a"}).encode(), 400, "invalid_message"),
    ("/v1/b", json.dumps({"batch": []}).encode(), 400, "invalid_message"),
    ("/v1/b", json.dumps({"batch": [{"type": "track"}]}).encode(), 400, "invalid_batch"),
    ("/v1/b", json.dumps({"batch": "x"}).encode(), 400, "invalid_message"),
    ("/beacon/v1/batch", b"\xff\xfe", 400, "malformed_json"),
    ("/v1/x", b"{}", 404, "not_found"),
])
def test_bad_bodies_are_clear_4xx(client, path, data, status, code):
    sep = "&" if "?" in path else "?"
    resp = client.post(f"{path}{sep}writeKey={WRITE_KEY}" if path.startswith("/beacon") else path,
                       data=data, content_type="text/plain",
                       headers={"Authorization": basic(WRITE_KEY), "Origin": ORIGIN})
    assert resp.status_code == status, resp.get_data()
    assert resp.get_json()["error"] == code
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN  # the page can read why


def test_too_large_message_is_413(client):
    body = {"event": "X", "anonymousId": "a", "properties": {"x": "y" * 40000}}
    resp = segment_post(client, "/v1/t", body)
    assert resp.status_code == 413
    assert resp.get_json()["error"] == "message_too_large"


# --- settings documents -----------------------------------------------------------------------


def test_segment_settings(client):
    resp = client.get(f"/v1/projects/{WRITE_KEY}/settings", headers={"Origin": ORIGIN},
                      base_url="https://t.example.com")
    assert resp.status_code == 200
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    doc = resp.get_json()
    assert list(doc["integrations"]) == ["Segment.io"]  # no device-mode destination to load
    seg = doc["integrations"]["Segment.io"]
    assert seg["apiKey"] == WRITE_KEY
    assert seg["apiHost"] == "t.example.com/v1" and seg["protocol"] == "https"
    assert seg["deliveryStrategy"]["config"]["credentials"] == "include"
    assert doc["metrics"]["host"] == "t.example.com/v1"
    assert doc["remotePlugins"] == [] and doc["enabledMiddleware"] == {}
    assert doc["legacyVideoPluginsEnabled"] is False


@pytest.mark.parametrize("path", [f"/v1/projects/{SERVER_KEY}/settings",
                                  f"/sourceConfig/?writeKey={SERVER_KEY}"])
def test_settings_are_readable_only_by_the_key_origins(client, path):
    """The server-only key lists no origin: its settings exist, but no page may read them."""
    resp = client.get(path, headers={"Origin": ORIGIN})
    assert resp.status_code == 200
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_segment_settings_keep_the_port(client):
    doc = client.get(f"/v1/projects/{WRITE_KEY}/settings",
                     base_url="http://127.0.0.1:8000").get_json()
    seg = doc["integrations"]["Segment.io"]
    assert (seg["apiHost"], seg["protocol"]) == ("127.0.0.1:8000/v1", "http")


@pytest.mark.parametrize("path", ["/v1/projects/wk_nobody_0123456789/settings",
                                  "/sourceConfig/?writeKey=wk_nobody_0123456789",
                                  "/sourceConfig/"])
def test_settings_of_an_unknown_key_are_404(client, path):
    resp = client.get(path, headers={"Origin": ORIGIN})
    assert resp.status_code == 404
    assert resp.get_json()["error"] == "unknown_write_key"
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_rudderstack_source_config(client):
    url = (f"/sourceConfig/?p=npm&v=3.34.1&build=modern&writeKey={WRITE_KEY}"
           "&lockIntegrationsVersion=true&lockPluginsVersion=true")
    resp = client.get(url, headers={"Origin": ORIGIN, "Authorization": basic(WRITE_KEY)})
    assert resp.status_code == 200
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    src = resp.get_json()["source"]
    assert src["enabled"] is True and src["destinations"] == [] and src["id"]
    assert src["config"]["statsCollection"]["errors"]["enabled"] is False
    # The key may come as the Basic user name alone.
    assert client.get("/sourceConfig", headers={"Authorization": basic(WRITE_KEY)}
                      ).status_code == 200
    pre = client.options(url, headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET",
                                       "Access-Control-Request-Headers": "authorization"})
    assert 200 <= pre.status_code < 300 and pre.headers["Access-Control-Allow-Origin"] == ORIGIN


# --- the first-party visitor id ---------------------------------------------------------------


def visitor(client, body, origin=ORIGIN):
    # https: the cookie is Secure, so the test client sends it back only over https, to .example.com.
    return client.post("/v1/visitor", data=json.dumps(body), content_type="text/plain",
                       headers={"Origin": origin} if origin else {},
                       base_url="https://t.example.com")


def cookie_of(resp):
    (header,) = [h for h in resp.headers.getlist("Set-Cookie") if h.startswith("sst_aid=")]
    return header


def test_visitor_adopts_the_sdk_id_then_keeps_the_cookie(client):
    first = visitor(client, {"writeKey": WRITE_KEY, "anonymousId": "sdk-anon-1"})
    assert first.status_code == 200
    assert first.get_json()["anonymousId"] == "sdk-anon-1"
    assert first.headers["Access-Control-Allow-Credentials"] == "true"
    header = cookie_of(first)
    assert "HttpOnly" in header and "Max-Age=34560000" in header and "SameSite=Lax" in header
    assert first.headers["Cache-Control"] == "no-store"
    # Next page load: the SDK lost its own id (Safari's 7-day cap); the cookie wins.
    again = visitor(client, {"writeKey": WRITE_KEY, "anonymousId": "sdk-anon-2"})
    assert again.get_json() == {"anonymousId": "sdk-anon-1", "cookie": "valid"}
    assert cookie_of(again)  # re-issued: 400 days from this visit


def test_visitor_without_sdk_id_gets_a_new_one(client):
    resp = visitor(client, {"writeKey": WRITE_KEY})
    new_id = resp.get_json()["anonymousId"]
    assert len(new_id) == 36
    assert visitor(client, {"writeKey": WRITE_KEY}).get_json()["anonymousId"] == new_id


def test_visitor_replaces_a_forged_cookie(client):
    client.set_cookie("sst_aid", "forged.value", domain=".example.com")
    resp = visitor(client, {"writeKey": WRITE_KEY, "anonymousId": "sdk-anon"})
    assert resp.get_json() == {"anonymousId": "sdk-anon", "cookie": "new"}


@pytest.mark.parametrize("body,origin,status,code", [
    ({}, ORIGIN, 401, "missing_write_key"),
    ({"writeKey": "wk_nobody_0123456789"}, ORIGIN, 401, "unknown_write_key"),
    ({"writeKey": WRITE_KEY}, "https://evil.test", 403, "origin_not_allowed"),
    ("[1]", ORIGIN, 400, "malformed_json"),
    ("{bad", ORIGIN, 400, "malformed_json"),
])
def test_visitor_refusals(client, body, origin, status, code):
    data = body if isinstance(body, str) else json.dumps(body)
    resp = client.post("/v1/visitor", data=data, content_type="text/plain",
                       headers={"Origin": origin})
    assert resp.status_code == status
    assert resp.get_json()["error"] == code
    assert not [h for h in resp.headers.getlist("Set-Cookie") if h.startswith("sst_aid=")]


def test_events_with_the_visitor_id_are_the_visitor(app, client):
    vid = visitor(client, {"writeKey": WRITE_KEY}).get_json()["anonymousId"]
    segment_post(client, "/v1/t", {"event": "X", "anonymousId": vid, "messageId": "v-1"},
                 base_url="https://t.example.com")
    (ev,) = stored(app)
    assert ev.anonymous_id == vid and ev.client_anonymous_id is None
    assert ev.request["cookie"] == "valid"  # the test client sends the cookie back


@pytest.mark.parametrize("name,marker", [("sst-segment.js", "sstSegment"),
                                         ("sst-rudderstack.js", "sstRudderStack")])
def test_plugins_are_served(client, name, marker):
    resp = client.get(f"/v1/{name}")
    assert resp.status_code == 200
    assert resp.mimetype == "text/javascript"
    assert marker in resp.get_data(as_text=True)
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert client.get(f"/v1/{name}", headers={"If-None-Match": resp.headers["ETag"]}
                      ).status_code == 304
