"""The Segment-compatible ingest API against the real MariaDB (integration)."""

import base64
import gzip
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from sst.clock import from_db
from sst.extensions import db
from sst.models import ClickId, Event, Link, RejectedPayload, Visitor
from support.apps import ORIGIN, SERVER_KEY, WRITE_KEY


def rows(app, model, *where):
    with app.app_context():
        result = db.session.execute(select(model).where(*where)).scalars().all()
        db.session.expunge_all()
        return result


def event(app, message_id):
    (found,) = rows(app, Event, Event.message_id == message_id)
    return found


def track(message_id="m-1", **extra):
    return {"event": "Signed Up", "anonymousId": "anon-1", "messageId": message_id,
            "properties": {"plan": "pro"}, **extra}


BROWSER_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/126.0.0.0 Safari/537.36")


def basic(key=SERVER_KEY):
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


# --- every call type -------------------------------------------------------------------------


@pytest.mark.parametrize("path, body, kind, name", [
    ("/v1/track", {"event": "Order Completed", "userId": "u1"}, "track", "Order Completed"),
    ("/v1/page", {"name": "Home", "anonymousId": "a1"}, "page", "Home"),
    ("/v1/screen", {"name": "Settings", "userId": "u1"}, "screen", "Settings"),
    ("/v1/identify", {"userId": "u1", "traits": {"plan": "pro"}}, "identify", None),
    ("/v1/group", {"userId": "u1", "groupId": "g1"}, "group", None),
    ("/v1/alias", {"userId": "u1", "previousId": "a1"}, "alias", None),
])
def test_each_call_type_is_stored(mysql_app, mysql_client, path, body, kind, name):
    r = mysql_client.post(path, json={**body, "messageId": "m-" + kind}, headers=basic())
    assert r.status_code == 200
    assert r.get_json() == {"success": True}
    stored = event(mysql_app, "m-" + kind)
    assert (stored.source, stored.type, stored.event) == ("server", kind, name)
    assert stored.message["messageId"] == "m-" + kind


def test_the_stored_row_keeps_the_message_and_the_request(mysql_app, mysql_client):
    r = mysql_client.post("/v1/track", json=track(context={"ip": "203.0.113.9"}),
                          headers={**basic(), "User-Agent": BROWSER_UA})
    assert r.status_code == 200
    stored = event(mysql_app, "m-1")
    assert stored.anonymous_id == "anon-1"
    assert stored.message["properties"] == {"plan": "pro"}
    assert stored.ip == "203.0.113.9"  # context.ip wins over the connection's address
    # A server call's own User-Agent is its HTTP library's, not the visitor's: kept on
    # record in the request column only (contract §5).
    assert stored.user_agent is None
    assert stored.request["user_agent"] == BROWSER_UA
    assert stored.request["auth"] == "basic"
    assert stored.request["endpoint"] == "/v1/track"
    assert stored.is_bot is False


def test_a_crawler_user_agent_is_flagged(mysql_app, mysql_client):
    ua = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    # The visitor's user agent in the message: a bot, whatever calls sst.
    mysql_client.post("/v1/track", json=track(context={"userAgent": ua}),
                      headers={**basic(), "User-Agent": "curl/8.5.0"})
    assert event(mysql_app, "m-1").is_bot is True
    # A browser's own request: its User-Agent is the visitor's.
    mysql_client.post("/v1/track", data=json.dumps({**track("m-2"),
                                                    "writeKey": WRITE_KEY}),
                      content_type="text/plain", headers={"Origin": ORIGIN, "User-Agent": ua})
    assert event(mysql_app, "m-2").is_bot is True
    # A server call's own User-Agent is never judged (contract §3).
    mysql_client.post("/v1/track", json=track("m-3"),
                      headers={**basic(), "User-Agent": ua})
    assert event(mysql_app, "m-3").is_bot is False


# --- auth and body forms ---------------------------------------------------------------------


def test_write_key_in_the_body(mysql_app, mysql_client):
    r = mysql_client.post("/v1/track", json={**track(), "writeKey": SERVER_KEY})
    assert r.status_code == 200
    stored = event(mysql_app, "m-1")
    assert stored.request["auth"] == "body"
    assert "writeKey" not in stored.message  # the key is never stored


def test_basic_auth_wins_over_a_body_write_key(mysql_app, mysql_client):
    r = mysql_client.post("/v1/track", json={**track(), "writeKey": "wk_not_a_real_key_000"},
                          headers=basic())
    assert r.status_code == 200
    assert event(mysql_app, "m-1").source == "server"


def test_text_plain_body_from_send_beacon(mysql_app, mysql_client):
    r = mysql_client.post("/v1/track", data=json.dumps({**track(), "writeKey": WRITE_KEY}),
                          content_type="text/plain;charset=UTF-8", headers={"Origin": ORIGIN})
    assert r.status_code == 200
    assert event(mysql_app, "m-1").request["content_type"] == "text/plain;charset=UTF-8"


def test_a_body_without_content_type_is_read_as_json(mysql_app, mysql_client):
    r = mysql_client.post("/v1/track", data=json.dumps(track()), headers=basic())
    assert r.status_code == 200
    assert event(mysql_app, "m-1").event == "Signed Up"


def test_a_gzip_body_is_accepted(mysql_app, mysql_client):
    body = gzip.compress(json.dumps({"batch": [{**track(), "type": "track"}]}).encode())
    r = mysql_client.post("/v1/batch", data=body, content_type="application/json",
                          headers={**basic(), "Content-Encoding": "gzip"})
    assert r.status_code == 200, r.data
    assert event(mysql_app, "m-1").event == "Signed Up"


# --- batch -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/import"])
def test_a_batch_stores_every_message(mysql_app, mysql_client, path):
    batch = [{**track(f"b-{i}"), "type": "track"} for i in range(3)]
    batch.append({"type": "identify", "userId": "u1", "messageId": "b-3"})
    r = mysql_client.post(path, json={"batch": batch}, headers=basic())
    assert r.get_json() == {"success": True}
    stored = rows(mysql_app, Event)
    assert sorted(e.message_id for e in stored) == ["b-0", "b-1", "b-2", "b-3"]
    assert sorted(e.request["batch_index"] for e in stored) == [0, 1, 2, 3]


def test_a_batch_keeps_the_valid_messages_and_lists_the_rejected(mysql_app, mysql_client):
    batch = [
        {**track("ok-0"), "type": "track"},
        {"type": "track", "userId": "u1", "messageId": "bad-1"},  # no event name
        "not a message",
        {**track("ok-3"), "type": "page"},
    ]
    r = mysql_client.post("/v1/batch", json={"batch": batch}, headers=basic())
    assert r.status_code == 200
    body = r.get_json()
    assert body["success"] is True
    assert [(x["index"], x["messageId"], x["error"]) for x in body["rejected"]] == [
        (1, "bad-1", "invalid_message"), (2, None, "invalid_message")]
    assert all(x["message"] for x in body["rejected"])
    assert sorted(e.message_id for e in rows(mysql_app, Event)) == ["ok-0", "ok-3"]


def test_the_rejected_batch_messages_are_kept_with_the_reason(mysql_app, mysql_client):
    batch = [{**track("ok-0"), "type": "track"}, {"type": "track", "userId": "u1",
                                                  "messageId": "bad-1"}]
    mysql_client.post("/v1/batch", json={"batch": batch}, headers=basic())
    (kept,) = rows(mysql_app, RejectedPayload)
    assert (kept.status, kept.error, kept.source) == (400, "invalid_message", "server")
    assert kept.details["index"] == 1
    assert json.loads(kept.body)["messageId"] == "bad-1"
    assert "event" in kept.message


def test_a_batch_with_no_valid_message_is_a_400(mysql_app, mysql_client):
    batch = [{"type": "track", "userId": "u1"}, {"type": "nope", "userId": "u1"}]
    r = mysql_client.post("/v1/batch", json={"batch": batch}, headers=basic())
    assert r.status_code == 400
    body = r.get_json()
    assert body["error"] == "invalid_batch"
    assert [x["index"] for x in body["rejected"]] == [0, 1]
    assert rows(mysql_app, Event) == []


@pytest.mark.parametrize("payload", [{}, {"batch": []}, {"batch": {"type": "track"}}])
def test_a_batch_needs_a_non_empty_list(mysql_client, payload):
    r = mysql_client.post("/v1/batch", json=payload, headers=basic())
    assert r.status_code == 400
    assert r.get_json()["error"] == "invalid_message"


def test_batch_context_applies_to_each_message(mysql_app, mysql_client):
    batch = [{**track("b-0"), "type": "track"},
             {**track("b-1"), "type": "track", "context": {"locale": "fr-FR"}}]
    mysql_client.post("/v1/batch", json={"batch": batch, "context": {"locale": "en-US",
                                                                     "app": {"name": "x"}}},
                      headers=basic())
    assert event(mysql_app, "b-0").message["context"] == {"locale": "en-US", "app": {"name": "x"}}
    assert event(mysql_app, "b-1").message["context"] == {"locale": "fr-FR", "app": {"name": "x"}}


# --- dedupe ----------------------------------------------------------------------------------


def test_the_same_message_id_twice_is_stored_once(mysql_app, mysql_client):
    for _ in range(2):
        r = mysql_client.post("/v1/track", json=track(), headers=basic())
        assert r.status_code == 200
    assert len(rows(mysql_app, Event)) == 1


def test_a_duplicate_inside_one_batch_is_stored_once(mysql_app, mysql_client):
    batch = [{**track("same"), "type": "track"}, {**track("same"), "type": "track"}]
    r = mysql_client.post("/v1/batch", json={"batch": batch}, headers=basic())
    assert r.get_json() == {"success": True}
    assert len(rows(mysql_app, Event)) == 1


def test_the_same_message_id_from_two_sources_is_two_events(mysql_app, mysql_client):
    mysql_client.post("/v1/track", json=track(), headers=basic(SERVER_KEY))
    mysql_client.post("/v1/track", json=track(), headers=basic(WRITE_KEY))
    assert sorted(e.source for e in rows(mysql_app, Event)) == ["server", "web"]


@pytest.mark.parametrize("first, second", [
    ("m-1", "M-1"), ("m-e", "m-\u00e9"), ("m-ss", "m-\u00df"), ("m-1", "\uff4d-1"),
])
def test_message_ids_are_compared_exactly(mysql_app, mysql_client, first, second):
    # utf8mb4_bin: a case- or accent-insensitive collation would take these for duplicates.
    mysql_client.post("/v1/track", json=track(first), headers=basic())
    mysql_client.post("/v1/track", json=track(second), headers=basic())
    assert sorted(e.message_id for e in rows(mysql_app, Event)) == sorted([first, second])


def test_numeric_message_ids_are_stored_as_text(mysql_app, mysql_client):
    mysql_client.post("/v1/track", json={**track(), "messageId": 12345}, headers=basic())
    mysql_client.post("/v1/track", json={**track(), "messageId": "12345"}, headers=basic())
    assert [e.message_id for e in rows(mysql_app, Event)] == ["12345"]


def test_unicode_and_long_integers_survive_storage(mysql_app, mysql_client):
    body = track(properties={"name": "Zoë 🚀", "order_id": 123456789012345678901234567890})
    r = mysql_client.post("/v1/track", data=json.dumps(body), content_type="application/json",
                          headers=basic())
    assert r.status_code == 200
    props = event(mysql_app, "m-1").message["properties"]
    assert props == {"name": "Zoë 🚀", "order_id": 123456789012345678901234567890}


def test_a_message_nested_to_the_limit_is_stored(mysql_app, mysql_client):
    from sst.ingest.prepare import MAX_DEPTH

    value = 1
    for _ in range(MAX_DEPTH - 1):  # the message object itself is the first level
        value = {"a": value}
    r = mysql_client.post("/v1/track", json=track(properties=value), headers=basic())
    assert r.status_code == 200, r.data
    assert event(mysql_app, "m-1").message["properties"] == value


# --- event time ------------------------------------------------------------------------------


def test_event_time_is_corrected_for_client_clock_skew(mysql_app, mysql_client):
    client_now = datetime(2031, 1, 1, 12, 0, 0, tzinfo=UTC)  # the device's clock is wrong
    body = track(timestamp=(client_now - timedelta(seconds=90)).isoformat(),
                 sentAt=client_now.isoformat())
    before = datetime.now(UTC)
    mysql_client.post("/v1/track", json=body, headers=basic())
    after = datetime.now(UTC)
    stored = event(mysql_app, "m-1")
    received = from_db(stored.received_at)
    assert before <= received <= after
    assert from_db(stored.event_time) == received - timedelta(seconds=90)
    assert from_db(stored.timestamp) == client_now - timedelta(seconds=90)
    assert from_db(stored.sent_at) == client_now


def test_batch_sent_at_corrects_every_message(mysql_app, mysql_client):
    client_now = datetime(2019, 6, 1, 0, 0, 0, tzinfo=UTC)
    batch = [{**track(f"b-{i}"), "type": "track",
              "timestamp": (client_now - timedelta(seconds=10 * i)).isoformat()}
             for i in range(1, 3)]
    mysql_client.post("/v1/batch", json={"batch": batch, "sentAt": client_now.isoformat()},
                      headers=basic())
    for i in (1, 2):
        stored = event(mysql_app, f"b-{i}")
        assert from_db(stored.event_time) == (from_db(stored.received_at)
                                              - timedelta(seconds=10 * i))


def test_without_sent_at_the_timestamp_is_the_event_time(mysql_app, mysql_client):
    mysql_client.post("/v1/track", json=track(timestamp="2026-01-02T03:04:05.678Z"),
                      headers=basic())
    assert event(mysql_app, "m-1").event_time == datetime(2026, 1, 2, 3, 4, 5, 678000)


def test_without_timestamp_the_event_time_is_the_receive_time(mysql_app, mysql_client):
    mysql_client.post("/v1/track", json=track(), headers=basic())
    stored = event(mysql_app, "m-1")
    assert stored.event_time == stored.received_at


# --- click ids, UTM, visitors ----------------------------------------------------------------


def page(message_id, url, at, anon="v-1", **extra):
    return {"type": "page", "anonymousId": anon, "messageId": message_id, "timestamp": at,
            "context": {"page": {"url": url, "referrer": "https://ref.test/"}}, **extra}


def post_batch(client, *messages, headers=None):
    r = client.post("/v1/batch", json={"batch": list(messages)}, headers=headers or basic())
    assert r.get_json() == {"success": True}, r.data


def visitor(app, anon="v-1"):
    (found,) = rows(app, Visitor, Visitor.anonymous_id == anon)
    return found


def test_click_ids_and_utm_are_kept_on_the_visitor(mysql_app, mysql_client):
    url = "https://www.example.com/?gclid=G-1&fbclid=F-1&utm_source=google&utm_campaign=spring"
    post_batch(mysql_client, page("p1", url, "2026-05-01T10:00:00Z"))
    v = visitor(mysql_app)
    assert v.first_touch == v.latest_touch
    assert v.first_touch["click_ids"] == {
        "gclid": {"value": "G-1", "seen_at": "2026-05-01T10:00:00.000Z"},
        "fbclid": {"value": "F-1", "seen_at": "2026-05-01T10:00:00.000Z"}}
    assert v.first_touch["utm"] == {"utm_source": "google", "utm_campaign": "spring"}
    assert v.landing_page == url
    assert v.referrer == "https://ref.test/"
    clicks = {(c.param, c.value): c.first_seen_at for c in rows(mysql_app, ClickId)}
    assert clicks == {("gclid", "G-1"): datetime(2026, 5, 1, 10),
                      ("fbclid", "F-1"): datetime(2026, 5, 1, 10)}


def test_properties_url_is_used_when_there_is_no_page_context(mysql_app, mysql_client):
    body = {"type": "track", "event": "E", "anonymousId": "v-1", "messageId": "t1",
            "properties": {"url": "https://www.example.com/?ttclid=T-1"}}
    post_batch(mysql_client, body)
    assert visitor(mysql_app).first_touch["click_ids"]["ttclid"]["value"] == "T-1"


def test_first_and_latest_touch_are_kept_apart(mysql_app, mysql_client):
    post_batch(mysql_client, page("p1", "https://x.test/?gclid=G-1&utm_source=a",
                                  "2026-05-01T10:00:00Z"))
    post_batch(mysql_client, page("p2", "https://x.test/?fbclid=F-2&utm_source=b",
                                  "2026-05-03T10:00:00Z"))
    v = visitor(mysql_app)
    assert v.first_touch["click_ids"] == {"gclid": {"value": "G-1",
                                                    "seen_at": "2026-05-01T10:00:00.000Z"}}
    assert v.first_touch["utm"] == {"utm_source": "a"}
    assert v.latest_touch["click_ids"] == {"fbclid": {"value": "F-2",
                                                      "seen_at": "2026-05-03T10:00:00.000Z"}}
    assert v.latest_touch["utm"] == {"utm_source": "b"}
    assert v.first_seen_at == datetime(2026, 5, 1, 10)
    assert v.last_seen_at == datetime(2026, 5, 3, 10)


def test_a_click_id_seen_again_keeps_its_first_seen_time(mysql_app, mysql_client):
    post_batch(mysql_client, page("p1", "https://x.test/?fbclid=F-1", "2026-05-01T10:00:00Z"))
    post_batch(mysql_client, page("p2", "https://x.test/?fbclid=F-1", "2026-05-02T10:00:00Z"))
    v = visitor(mysql_app)
    assert v.latest_touch["at"] == "2026-05-02T10:00:00.000Z"
    assert v.latest_touch["click_ids"]["fbclid"]["seen_at"] == "2026-05-01T10:00:00.000Z"
    (click,) = rows(mysql_app, ClickId)
    assert (click.first_seen_at, click.last_seen_at) == (datetime(2026, 5, 1, 10),
                                                         datetime(2026, 5, 2, 10))


def test_an_earlier_event_arriving_late_becomes_the_first_touch(mysql_app, mysql_client):
    post_batch(mysql_client, page("p2", "https://x.test/?gclid=G-2", "2026-05-02T10:00:00Z"))
    post_batch(mysql_client, page("p1", "https://x.test/?gclid=G-1&utm_source=a",
                                  "2026-05-01T10:00:00Z"))
    v = visitor(mysql_app)
    assert v.first_touch["click_ids"]["gclid"]["value"] == "G-1"
    assert v.latest_touch["click_ids"]["gclid"]["value"] == "G-2"
    assert v.first_seen_at == datetime(2026, 5, 1, 10)
    assert v.landing_page == "https://x.test/?gclid=G-1&utm_source=a"


def test_a_late_event_moves_a_click_ids_first_seen_time_back(mysql_app, mysql_client):
    # Meta's fbc needs the time of the first event that carried the fbclid, whatever order
    # the events arrive in.
    post_batch(mysql_client, page("p2", "https://x.test/?fbclid=F-1", "2026-05-02T10:00:00Z"))
    post_batch(mysql_client, page("p1", "https://x.test/?fbclid=F-1", "2026-05-01T10:00:00Z"))
    v = visitor(mysql_app)
    assert v.first_touch["click_ids"]["fbclid"]["seen_at"] == "2026-05-01T10:00:00.000Z"
    assert v.latest_touch["click_ids"]["fbclid"]["seen_at"] == "2026-05-01T10:00:00.000Z"
    (click,) = rows(mysql_app, ClickId)
    assert click.first_seen_at == datetime(2026, 5, 1, 10)


def test_a_late_event_moves_first_seen_back_in_a_newer_latest_touch(mysql_app, mysql_client):
    post_batch(mysql_client, page("p1", "https://x.test/?gclid=G-0", "2026-05-01T10:00:00Z"))
    post_batch(mysql_client, page("p3", "https://x.test/?fbclid=F-1", "2026-05-03T10:00:00Z"))
    post_batch(mysql_client, page("p2", "https://x.test/?fbclid=F-1", "2026-05-02T10:00:00Z"))
    v = visitor(mysql_app)
    assert v.first_touch["click_ids"] == {"gclid": {"value": "G-0",
                                                    "seen_at": "2026-05-01T10:00:00.000Z"}}
    assert v.latest_touch["at"] == "2026-05-03T10:00:00.000Z"
    assert v.latest_touch["click_ids"]["fbclid"]["seen_at"] == "2026-05-02T10:00:00.000Z"


def test_click_id_values_are_case_sensitive(mysql_app, mysql_client):
    post_batch(mysql_client, page("p1", "https://x.test/?gclid=abc", "2026-05-01T10:00:00Z"),
               page("p2", "https://x.test/?gclid=ABC", "2026-05-01T11:00:00Z"))
    assert sorted(c.value for c in rows(mysql_app, ClickId)) == ["ABC", "abc"]


def test_ad_platform_cookies_are_stored_on_the_visitor(mysql_app, mysql_client):
    for name, value in [("_fbp", "fb.1.1700000000000.42"), ("_fbc", "fb.1.1700000000000.F"),
                        ("_ga", "GA1.1.5.6"), ("_ttp", "ttp-1"), ("_scid", "scid-1"),
                        ("_rdt_uuid", "1684189007728.rdt-1"), ("_epik", "epik-1"),
                        ("other", "x")]:
        mysql_client.set_cookie(name, value, domain="localhost")
    post_batch(mysql_client, page("p1", "https://x.test/", "2026-05-01T10:00:00Z"))
    assert visitor(mysql_app).cookies == {"_fbp": "fb.1.1700000000000.42",
                                          "_fbc": "fb.1.1700000000000.F", "_ga": "GA1.1.5.6",
                                          "_ttp": "ttp-1", "_scid": "scid-1",
                                          "_rdt_uuid": "1684189007728.rdt-1", "_epik": "epik-1"}
    assert event(mysql_app, "p1").request["ad_cookies"]["_fbp"] == "fb.1.1700000000000.42"


def test_newer_ad_cookies_replace_older_ones(mysql_app, mysql_client):
    mysql_client.set_cookie("_fbp", "fb.1.1.old", domain="localhost")
    mysql_client.set_cookie("_ga", "GA1.1.1.1", domain="localhost")
    post_batch(mysql_client, page("p1", "https://x.test/", "2026-05-01T10:00:00Z"))
    mysql_client.set_cookie("_fbp", "fb.1.2.new", domain="localhost")
    post_batch(mysql_client, page("p2", "https://x.test/", "2026-05-01T11:00:00Z"))
    assert visitor(mysql_app).cookies == {"_fbp": "fb.1.2.new", "_ga": "GA1.1.1.1"}


# --- identity links --------------------------------------------------------------------------


def test_identify_links_the_user_to_the_visitor(mysql_app, mysql_client):
    mysql_client.post("/v1/identify", json={"anonymousId": "a1", "userId": "u1"},
                      headers=basic())
    assert [(x.anonymous_id, x.kind, x.value) for x in rows(mysql_app, Link)] == [
        ("a1", "user_id", "u1")]


def test_alias_links_the_previous_id(mysql_app, mysql_client):
    mysql_client.post("/v1/alias", json={"previousId": "old-anon", "userId": "u1"},
                      headers=basic())
    assert [(x.anonymous_id, x.kind, x.value) for x in rows(mysql_app, Link)] == [
        ("old-anon", "user_id", "u1")]
