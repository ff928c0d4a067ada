"""Message validation: ingest.prepare.prepare() and the Segment message schema (pure, no app)."""

from datetime import UTC, datetime, timedelta

import pytest

from sst.ingest.prepare import MAX_DEPTH, Rejection, RequestInfo, prepare
from sst.jsonutil import MAX_PARSE_DEPTH, MalformedJSON, loads

RECEIVED = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


def info(**extra):
    return RequestInfo(source="web", endpoint="/v1/track", received_at=RECEIVED, **extra)


def nested(depth):
    """A value `depth` objects deep."""
    value = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize("message", [
    {"type": "track", "event": "Signed Up", "userId": "u1"},
    {"type": "track", "event": "Signed Up", "anonymousId": "a1"},
    {"type": "track", "event": "E", "userId": 42},  # numbers are allowed as ids
    {"type": "page", "anonymousId": "a1"},
    {"type": "page", "name": "Home", "anonymousId": "a1", "category": "Docs"},
    {"type": "screen", "name": "Home", "userId": "u1"},
    {"type": "identify", "userId": "u1", "traits": {"email": "a@b.test"}},
    {"type": "group", "groupId": "g1", "userId": "u1"},
    {"type": "alias", "previousId": "a1", "userId": "u1"},
    {"type": "track", "event": "E", "userId": "u1", "properties": None, "context": None},
    {"type": "track", "event": "E", "userId": "u1", "customTopLevel": [1, 2]},
])
def test_valid_messages_are_prepared(message):
    assert not isinstance(prepare(message, info()), Rejection)


@pytest.mark.parametrize("message, field", [
    ({"type": "track", "userId": "u1"}, "event"),
    ({"type": "track", "event": "", "userId": "u1"}, "event"),
    ({"type": "track", "event": 5, "userId": "u1"}, "event"),
    ({"type": "track", "event": "E"}, "anonymousId"),  # neither anonymousId nor userId
    ({"type": "track", "event": "E", "userId": "  "}, "anonymousId"),
    ({"type": "track", "event": "E", "userId": True}, "userId"),
    ({"type": "track", "event": "E", "userId": {"id": 1}}, "userId"),
    ({"type": "track", "event": "E", "anonymousId": "a" * 129}, "anonymousId"),
    ({"type": "track", "event": "E", "userId": "u1", "messageId": "m" * 129}, "messageId"),
    ({"type": "track", "event": "E", "userId": "u1", "properties": [1]}, "properties"),
    ({"type": "track", "event": "E", "userId": "u1", "context": "web"}, "context"),
    ({"type": "track", "event": "E", "userId": "u1", "timestamp": "last tuesday"}, "timestamp"),
    ({"type": "track", "event": "E", "userId": "u1", "timestamp": 1714564800}, "timestamp"),
    ({"type": "track", "event": "E", "userId": "u1",
      "timestamp": "9999-12-31T23:59:59-01:00"}, "timestamp"),
    ({"type": "track", "event": "E", "userId": "u1", "sentAt": "soon"}, "sentAt"),
    ({"type": "alias", "userId": "u1"}, "previousId"),
    ({"type": "group", "userId": "u1"}, "groupId"),
    ({"type": "shout", "userId": "u1"}, "type"),
    ({"userId": "u1"}, "type"),
])
def test_invalid_messages_are_rejected_with_the_field(message, field):
    result = prepare(message, info())
    assert isinstance(result, Rejection)
    assert (result.status, result.error) == (400, "invalid_message")
    assert field in result.fields, result.fields


@pytest.mark.parametrize("raw", [None, [], "track", 5])
def test_a_message_must_be_an_object(raw):
    result = prepare(raw, info())
    assert (result.status, result.error) == (400, "invalid_message")


def test_message_size_is_counted_in_bytes_of_json():
    # 9,000 three-byte characters: 9,000 characters but 27,000 bytes.
    message = {"type": "track", "event": "E", "userId": "u1", "properties": {"t": "€" * 9000}}
    assert not isinstance(prepare(message, info(), 0, 32 * 1024), Rejection)
    message["properties"]["t"] = "€" * 11000  # 33,000 bytes
    result = prepare(message, info(), 0, 32 * 1024)
    assert (result.status, result.error) == (413, "message_too_large")


def test_nesting_up_to_the_limit_is_accepted():
    message = {"type": "track", "event": "E", "userId": "u1", "properties": nested(MAX_DEPTH - 1)}
    assert not isinstance(prepare(message, info()), Rejection)


def test_nesting_past_the_limit_is_invalid():
    message = {"type": "track", "event": "E", "userId": "u1", "properties": nested(MAX_DEPTH)}
    result = prepare(message, info())
    assert (result.status, result.error) == (400, "invalid_message")


def test_skew_is_corrected_from_the_message_sent_at():
    ts = datetime(2030, 1, 1, 0, 0, tzinfo=UTC)  # the client clock is years ahead
    message = {"type": "track", "event": "E", "userId": "u1", "timestamp": ts.isoformat(),
               "sentAt": (ts + timedelta(seconds=5)).isoformat()}
    row = prepare(message, info()).row
    assert row["event_time"] == (RECEIVED - timedelta(seconds=5)).replace(tzinfo=None)
    assert row["timestamp"] == ts.replace(tzinfo=None)


def test_a_batch_sent_at_applies_when_the_message_has_none():
    ts = datetime(2030, 1, 1, 0, 0, tzinfo=UTC)
    message = {"type": "track", "event": "E", "userId": "u1", "timestamp": ts.isoformat()}
    row = prepare(message, info(batch_sent_at=ts + timedelta(seconds=30))).row
    assert row["event_time"] == (RECEIVED - timedelta(seconds=30)).replace(tzinfo=None)


def test_the_message_sent_at_wins_over_the_batch_one():
    ts = datetime(2030, 1, 1, 0, 0, tzinfo=UTC)
    message = {"type": "track", "event": "E", "userId": "u1", "timestamp": ts.isoformat(),
               "sentAt": (ts + timedelta(seconds=2)).isoformat()}
    row = prepare(message, info(batch_sent_at=ts + timedelta(seconds=30))).row
    assert row["event_time"] == (RECEIVED - timedelta(seconds=2)).replace(tzinfo=None)


def test_the_write_key_is_not_stored_and_a_missing_message_id_is_generated():
    row = prepare({"type": "track", "event": "E", "userId": "u1", "writeKey": "secret"},
                  info()).row
    assert "writeKey" not in row["message"]
    assert row["message"]["messageId"] == row["message_id"]
    assert len(row["message_id"]) == 36


def test_a_cookie_visitor_id_wins_and_the_message_id_is_linked():
    prepared = prepare({"type": "track", "event": "E", "anonymousId": "client-anon"},
                       info(visitor_id="cookie-anon", cookie_state="valid"))
    assert prepared.row["anonymous_id"] == "cookie-anon"
    assert prepared.row["client_anonymous_id"] == "client-anon"
    assert prepared.links == [("cookie-anon", "anonymous_id", "client-anon")]


def test_identify_links_the_user_id_to_the_visitor():
    prepared = prepare({"type": "identify", "anonymousId": "a1", "userId": "u1"},
                       info(trusted=True))
    assert prepared.links == [("a1", "user_id", "u1")]
    assert prepared.row["request"]["trusted"] is True


def test_a_browser_keys_identify_is_only_a_claim():
    prepared = prepare({"type": "identify", "anonymousId": "a1", "userId": "u1"}, info())
    assert prepared.links == [("a1", "claimed_user_id", "u1")]
    assert "trusted" not in prepared.row["request"]


@pytest.mark.parametrize("body", [
    b"{", b"", b"[1,", b'{"a": NaN}', b'{"a": Infinity}', b'"\\ud800"', b"\xff\xfe",
    b"{" * 2000 + b"}" * 2000,
])
def test_loads_refuses_malformed_json(body):
    with pytest.raises(MalformedJSON):
        loads(body)


def test_loads_refuses_very_deep_json():
    with pytest.raises(MalformedJSON, match="nested deeper"):
        loads(b"[" * (MAX_PARSE_DEPTH + 1) + b"]" * (MAX_PARSE_DEPTH + 1))


def test_loads_takes_integers_beyond_64_bits():
    assert loads(b'{"n": 123456789012345678901234567890}') == {"n": 123456789012345678901234567890}
