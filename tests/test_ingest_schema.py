"""ingest.schema.quick_load() is a shortcut for message_schema.load(): same result, or None."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from sst.ingest.schema import message_schema, quick_load

BASE = {"type": "track", "event": "Order Completed", "messageId": "m-1",
        "anonymousId": "a-1", "userId": "u-1", "timestamp": "2026-11-26T10:15:30.123Z",
        "sentAt": "2026-11-26T10:15:30.456Z", "properties": {"total": 1.5},
        "context": {"ip": "203.0.113.7"}, "integrations": {}, "extra": [1, 2]}

VALUES = [None, "", "  ", "x", " padded ", "y" * 129, "z" * 256, 0, 7, 1.5, True, False, [],
          {}, {"k": "v"}, "2026-11-26T10:15:30Z", "2026-11-26", "not a date",
          "2026-11-26T10:15:30+02:00", "track", "alias", "group", "page", "bogus"]
KEYS = ["type", "event", "name", "category", "messageId", "anonymousId", "userId",
        "previousId", "groupId", "properties", "traits", "context", "integrations",
        "timestamp", "sentAt", "originalTimestamp", "writeKey", "unknownKey"]


def check(raw):
    quick = quick_load(raw)
    if quick is None:
        return
    try:
        full = message_schema.load(raw)
    except ValidationError as exc:  # pragma: no cover - the assertion explains
        raise AssertionError(f"quick_load accepted {raw!r}; marshmallow: {exc.messages}") from exc
    assert quick == full, raw


def test_valid_messages_match_marshmallow():
    for kind in ("track", "page", "screen", "identify", "alias", "group"):
        raw = {**BASE, "type": kind, "previousId": "p", "groupId": "g"}
        assert quick_load(raw) == message_schema.load(raw)


def test_every_single_field_change_matches_marshmallow():
    for key, value in itertools.product(KEYS, VALUES):
        check({**BASE, key: value})
        check({k: v for k, v in BASE.items() if k != key})


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=8))
def test_random_messages_match_marshmallow(raw):
    check(raw)
    check({**BASE, **raw})
