"""GET /v1/pixel/<type>: always the 43-byte GIF; bad input recorded, never stored."""

import base64
import json
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from sst.extensions import db
from sst.models import Event, RejectedPayload, Visitor
from support.apps import ORIGIN, WRITE_KEY

GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")


def encode(message, urlsafe=False, pad=True):
    raw = json.dumps(message).encode()
    text = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(raw).decode()
    return text if pad else text.rstrip("=")


def events(app):
    with app.app_context():
        return db.session.execute(select(Event)).scalars().all()


def rejected(app):
    with app.app_context():
        return db.session.execute(select(RejectedPayload)).scalars().all()


def assert_gif(resp):
    assert resp.status_code == 200
    assert resp.data == GIF
    assert len(resp.data) == 43
    assert resp.headers["Content-Type"] == "image/gif"
    assert "no-cache" in resp.headers["Cache-Control"]
    assert "no-store" in resp.headers["Cache-Control"]
    assert resp.headers["Pragma"] == "no-cache"
    assert resp.headers["Expires"] == "0"


MESSAGE = {"event": "Email Opened", "anonymousId": "a-1", "messageId": "px-1",
           "properties": {"campaign": "spring"}, "writeKey": WRITE_KEY}


@pytest.mark.parametrize("urlsafe, pad", [(False, True), (True, True), (True, False)])
def test_base64_data_is_stored(app, client, urlsafe, pad):
    r = client.get(f"/v1/pixel/track?data={encode(MESSAGE, urlsafe, pad)}")
    assert_gif(r)
    (ev,) = events(app)
    assert (ev.type, ev.event, ev.message_id, ev.source) == ("track", "Email Opened", "px-1",
                                                             "web")
    assert ev.message["properties"] == {"campaign": "spring"}
    assert "writeKey" not in ev.message


def test_a_plus_that_arrived_as_a_space_is_repaired(app, client):
    message = {**MESSAGE, "properties": {"x": ">>>???"}}  # base64 with '+' and '/'
    data = encode(message)
    assert "+" in data
    assert_gif(client.get("/v1/pixel/track?data=" + data.replace("+", " ")))
    assert events(app)[0].message["properties"] == {"x": ">>>???"}


def test_the_dotted_form_is_stored(app, client):
    query = urlencode({"writeKey": WRITE_KEY, "event": "Email Opened", "userId": "u-1",
                       "messageId": "px-2", "properties.campaign": "spring",
                       "properties.variant": "b", "context.page.url": "https://x.test/?gclid=G1"})
    assert_gif(client.get("/v1/pixel/track?" + query))
    (ev,) = events(app)
    assert ev.event == "Email Opened"
    assert ev.message["properties"] == {"campaign": "spring", "variant": "b"}
    assert ev.page_url == "https://x.test/?gclid=G1"


def test_a_page_pixel_is_a_page_event(app, client):
    assert_gif(client.get("/v1/pixel/page?" + urlencode({"writeKey": WRITE_KEY, "name": "Home",
                                                         "anonymousId": "a-1"})))
    assert [(e.type, e.event) for e in events(app)] == [("page", "Home")]


def test_the_pixel_sets_the_first_party_cookie(client):
    r = client.get(f"/v1/pixel/track?data={encode(MESSAGE)}")
    assert any(h.startswith("sst_aid=") and "HttpOnly" in h
               for h in r.headers.getlist("Set-Cookie"))


def test_click_ids_in_the_pixel_url_reach_the_visitor(app, client):
    query = urlencode({"writeKey": WRITE_KEY, "event": "Email Clicked", "anonymousId": "a-1",
                       "utm_source": "newsletter", "gclid": "G-9"})
    assert_gif(client.get("/v1/pixel/track?" + query))
    with app.app_context():
        v = db.session.execute(select(Visitor)).scalar_one()
    assert v.first_touch["click_ids"]["gclid"]["value"] == "G-9"
    assert v.first_touch["utm"] == {"utm_source": "newsletter"}


def test_the_same_pixel_twice_is_stored_once(app, client):
    for _ in range(2):
        assert_gif(client.get(f"/v1/pixel/track?data={encode(MESSAGE)}"))
    assert len(events(app)) == 1


@pytest.mark.parametrize("query, error", [
    ("data=%%%not-base64", "malformed_data"),
    ("data=" + base64.b64encode(b"{not json").decode(), "malformed_json"),
    ("data=" + base64.b64encode(b"[1, 2]").decode(), "invalid_message"),
    ("data=" + encode({**MESSAGE, "writeKey": "wk_unknown_key_0000"}), "unknown_write_key"),
    ("data=" + encode({k: v for k, v in MESSAGE.items() if k != "writeKey"}),
     "missing_write_key"),
    ("data=" + encode({**MESSAGE, "event": ""}), "invalid_message"),
    ("data=" + encode({**MESSAGE, "timestamp": "not a time"}), "invalid_message"),
    ("data=" + "A" * (8 * 1024 + 4), "message_too_large"),
    (urlencode({"writeKey": WRITE_KEY, "event": "E", "properties": "x",
                "properties.a": "1"}), "invalid_message"),
    (urlencode({"writeKey": WRITE_KEY, "event": "E", "a..b": "1"}), "invalid_message"),
    (urlencode({"writeKey": WRITE_KEY, "event": "E", "a.b.c.d.e": "1"}), "invalid_message"),
])
def test_bad_input_still_gets_the_gif_and_is_recorded(app, client, query, error):
    assert_gif(client.get("/v1/pixel/track?" + query))
    assert events(app) == []
    (kept,) = rejected(app)
    assert kept.error == error
    assert kept.endpoint == "/v1/pixel/track"
    assert kept.body  # the query string, for the operator


def test_an_unknown_pixel_type_still_gets_the_gif(app, client):
    assert_gif(client.get(f"/v1/pixel/shout?data={encode(MESSAGE)}"))
    assert events(app) == []
    assert [r.error for r in rejected(app)] == ["not_found"]


def test_data_up_to_8_kib_is_accepted(app, client):
    message = {**MESSAGE, "properties": {"pad": ""}}
    base = len(encode(message))
    message["properties"]["pad"] = "x" * ((8 * 1024 - base) * 3 // 4 - 3)
    data = encode(message)
    assert len(data) <= 8 * 1024
    assert_gif(client.get(f"/v1/pixel/track?data={data}"))
    assert len(events(app)) == 1


def test_a_disallowed_origin_on_the_pixel_is_recorded(app, client):
    r = client.get(f"/v1/pixel/track?data={encode(MESSAGE)}",
                   headers={"Origin": "https://evil.test"})
    assert_gif(r)
    assert events(app) == []
    assert [x.error for x in rejected(app)] == ["origin_not_allowed"]


def test_an_allowed_origin_on_the_pixel_is_stored(app, client):
    assert_gif(client.get(f"/v1/pixel/track?data={encode(MESSAGE)}", headers={"Origin": ORIGIN}))
    assert len(events(app)) == 1


def test_the_pixel_answers_the_gif_when_the_database_is_down(tmp_path):
    from sst import create_app
    from support.apps import base_config

    down = create_app(base_config(DATABASE_URL="mysql+pymysql://root@127.0.0.1:1/x"))
    assert_gif(down.test_client().get(f"/v1/pixel/track?data={encode(MESSAGE)}"))


def test_the_pixel_answers_the_gif_on_an_unexpected_failure(app, client, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(app.extensions["sst"], "store", boom)
    assert_gif(client.get(f"/v1/pixel/track?data={encode(MESSAGE)}"))
