"""Browsers: the first-party anonymous-id cookie, the anonymous-id rule, and CORS."""

import json
from http.cookies import SimpleCookie

import pytest
from sqlalchemy import select
from werkzeug.http import parse_cookie

from sst.cookies import CookieSigner
from sst.extensions import db
from sst.models import Event, Link
from support.apps import ORIGIN, SERVER_KEY, WRITE_KEY, make_mysql_app

SIGNER = CookieSigner("test-secret-key-0123456789")  # base_config's SECRET_KEY
MAX_AGE = 400 * 86400


def browser_post(client, body=None, cookie=None, origin=ORIGIN, path="/v1/track"):
    headers = {"Origin": origin} if origin else {}
    if cookie is not None:
        client.set_cookie("sst_aid", cookie, domain="localhost")
    body = body or {"event": "Viewed", "anonymousId": "client-anon", "messageId": "m-1"}
    return client.post(path, data=json.dumps({**body, "writeKey": WRITE_KEY}),
                       content_type="text/plain", headers=headers)


def set_cookie(resp):
    """The sst_aid Set-Cookie of a response, parsed."""
    headers = [h for h in resp.headers.getlist("Set-Cookie") if h.startswith("sst_aid=")]
    assert len(headers) == 1, resp.headers
    jar = SimpleCookie()
    jar.load(headers[0])
    # The value as a browser sends it back, read the way sst reads it.
    value = parse_cookie(headers[0].split(";")[0])["sst_aid"]
    return jar["sst_aid"], value


def stored(app, message_id="m-1"):
    with app.app_context():
        return db.session.execute(select(Event).where(Event.message_id == message_id)).scalar_one()


def links(app):
    with app.app_context():
        return [(x.anonymous_id, x.kind, x.value)
                for x in db.session.execute(select(Link)).scalars()]


# --- the cookie ------------------------------------------------------------------------------


def test_the_cookie_has_the_contract_attributes(client):
    morsel, _ = set_cookie(browser_post(client))
    assert morsel["httponly"] is True
    assert morsel["secure"] is True
    assert morsel["samesite"] == "Lax"
    assert morsel["domain"].lstrip(".") == "example.com"  # a leading dot means the same
    assert morsel["path"] == "/"
    assert morsel["max-age"] == str(MAX_AGE)
    assert MAX_AGE == 34560000


def test_the_cookie_holds_a_signed_id(client):
    _, value = set_cookie(browser_post(client))
    assert SIGNER.unsign(value) == "client-anon"


def test_with_no_cookie_the_message_anonymous_id_becomes_the_cookie(app, client):
    _, value = set_cookie(browser_post(client))
    assert SIGNER.unsign(value) == "client-anon"
    row = stored(app)
    assert (row.anonymous_id, row.client_anonymous_id) == ("client-anon", None)
    assert row.request["cookie"] == "new"


def test_with_no_cookie_and_no_anonymous_id_a_new_id_is_made(app, client):
    r = browser_post(client, {"event": "E", "userId": "u1", "messageId": "m-1"})
    _, value = set_cookie(r)
    new_id = SIGNER.unsign(value)
    assert len(new_id) == 36
    assert stored(app).anonymous_id == new_id


def test_a_valid_cookie_is_kept_and_re_issued(app, client):
    cookie = SIGNER.sign("cookie-anon")
    _, value = set_cookie(browser_post(client, cookie=cookie))
    assert SIGNER.unsign(value) == "cookie-anon"
    assert stored(app).request["cookie"] == "valid"


def test_the_cookie_id_wins_over_the_message_anonymous_id(app, client):
    browser_post(client, cookie=SIGNER.sign("cookie-anon"))
    row = stored(app)
    assert (row.anonymous_id, row.client_anonymous_id) == ("cookie-anon", "client-anon")
    assert links(app) == [("cookie-anon", "anonymous_id", "client-anon")]


def test_the_same_anonymous_id_in_cookie_and_message_is_not_linked(app, client):
    browser_post(client, cookie=SIGNER.sign("client-anon"))
    row = stored(app)
    assert (row.anonymous_id, row.client_anonymous_id) == ("client-anon", None)
    assert links(app) == []


@pytest.mark.parametrize("cookie", [
    "cookie-anon",  # unsigned
    SIGNER.sign("cookie-anon")[:-2] + "xx",  # bad signature
    "other-anon" + SIGNER.sign("cookie-anon")[len("cookie-anon"):],  # id swapped
    CookieSigner("a-different-secret-key-value").sign("cookie-anon"),  # forged elsewhere
    "",
])
def test_a_forged_or_tampered_cookie_is_ignored_and_replaced(app, client, cookie):
    _, value = set_cookie(browser_post(client, cookie=cookie))
    assert SIGNER.unsign(value) == "client-anon"
    row = stored(app)
    assert row.anonymous_id == "client-anon"
    assert row.request["cookie"] == "new"


def test_an_odd_anonymous_id_round_trips_through_the_cookie(app, client):
    odd = 'a b;c,"d"\\é'
    _, value = set_cookie(browser_post(client, {"event": "E", "anonymousId": odd,
                                                 "messageId": "m-1"}))
    assert SIGNER.unsign(value) == odd
    client2 = app.test_client()
    client2.set_cookie("sst_aid", value, domain="localhost")
    r = client2.post("/v1/track", data=json.dumps({"event": "E", "messageId": "m-2",
                                                   "writeKey": WRITE_KEY}),
                     headers={"Origin": ORIGIN})
    assert r.status_code == 200
    assert stored(app, "m-2").anonymous_id == odd


def test_a_batch_uses_the_first_message_anonymous_id(app, client):
    batch = [{"type": "track", "event": "E", "anonymousId": "first", "messageId": "b-0"},
             {"type": "track", "event": "E", "anonymousId": "second", "messageId": "b-1"}]
    r = browser_post(client, {"batch": batch}, path="/v1/batch")
    _, value = set_cookie(r)
    assert SIGNER.unsign(value) == "first"
    row = stored(app, "b-1")
    assert (row.anonymous_id, row.client_anonymous_id) == ("first", "second")


def test_server_calls_get_no_cookie_and_keep_their_anonymous_id(app, client):
    r = client.post("/v1/track", json={"event": "E", "anonymousId": "srv-anon", "messageId": "m-1"},
                    auth=(SERVER_KEY, ""))
    assert r.status_code == 200
    assert "Set-Cookie" not in r.headers
    assert stored(app).anonymous_id == "srv-anon"


def test_a_refused_request_sets_no_cookie(client):
    r = browser_post(client, {"event": "", "anonymousId": "a", "messageId": "m-1"})
    assert r.status_code == 400
    assert "Set-Cookie" not in r.headers


# --- CORS ------------------------------------------------------------------------------------


def test_an_allowed_origin_is_echoed_with_credentials(client):
    r = browser_post(client)
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in r.headers.get_all("Vary")


def test_an_error_for_an_allowed_origin_is_readable_by_the_page(client):
    r = browser_post(client, {"event": "", "anonymousId": "a"})
    assert r.status_code == 400
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_a_disallowed_origin_gets_403_and_no_cors_headers(app, client):
    r = browser_post(client, origin="https://evil.test")
    assert r.status_code == 403
    assert r.get_json()["error"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in r.headers
    assert "Set-Cookie" not in r.headers
    assert "Origin" in r.headers.get_all("Vary")


def test_a_server_only_key_refuses_any_origin(client):
    r = client.post("/v1/track", json={"event": "E", "userId": "u1"}, auth=(SERVER_KEY, ""),
                    headers={"Origin": ORIGIN})
    assert r.status_code == 403


def test_a_trailing_slash_on_the_origin_is_tolerated(client):
    assert browser_post(client, origin=ORIGIN + "/").status_code == 200


@pytest.mark.parametrize("path", ["/v1/track", "/v1/batch", "/v1/pixel/track"])
def test_preflight_is_answered_for_an_allowed_origin(client, path):
    r = client.options(path, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert r.headers["Access-Control-Allow-Headers"] == "content-type"
    assert int(r.headers["Access-Control-Max-Age"]) > 0


def test_preflight_from_a_disallowed_origin_gets_no_cors_headers(client):
    r = client.options("/v1/track", headers={"Origin": "https://evil.test",
                                             "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in r.headers
    assert "Access-Control-Allow-Methods" not in r.headers


@pytest.mark.parametrize("origin", ["null", "*", "https://www.example.com.evil.test",
                                    "http://www.example.com"])
def test_lookalike_origins_are_refused(client, origin):
    r = browser_post(client, origin=origin)
    assert r.status_code == 403
    assert "Access-Control-Allow-Origin" not in r.headers


def test_origins_match_whatever_the_case_in_the_config(mysql_url, redis_url):
    """Browsers send the Origin in lower case; a config entry may not be written so."""
    app = make_mysql_app(mysql_url, redis_url, SOURCES=[
        {"name": "web", "write_key": WRITE_KEY, "origins": ["https://WWW.Example.com/"]}])
    client = app.test_client()
    r = client.post("/v1/track", json={"event": "Clicked", "anonymousId": "a-case",
                                       "writeKey": WRITE_KEY},
                    headers={"Origin": "https://www.example.com"})
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == "https://www.example.com"
    r = client.post("/v1/track", json={"event": "Clicked", "anonymousId": "a-case",
                                       "writeKey": WRITE_KEY},
                    headers={"Origin": "https://evil.example.com"})
    assert r.status_code == 403
