"""Segment's own Python SDK (segment-analytics-python) pointed at a live sst on MariaDB."""

from datetime import UTC, datetime

import pytest
from segment.analytics import Client
from segment.analytics.request import APIError
from sqlalchemy import select

from sst.clock import from_db
from sst.extensions import db
from sst.models import Event
from support.apps import SERVER_KEY, live_server


def events(app):
    with app.app_context():
        return {e.message_id: e for e in db.session.execute(select(Event)).scalars()}


def sdk(url, errors, **kwargs):
    return Client(SERVER_KEY, host=url, on_error=lambda exc, batch: errors.append(exc),
                  max_retries=1, **kwargs)


def send_every_call(client):
    """Each Segment call type once; returns {messageId: (type, name)} as the SDK made them."""
    sent = {}
    for kind, name, call in [
        ("track", "Order Completed", lambda: client.track(
            "u1", "Order Completed", {"order_id": "o-1", "revenue": 12.5})),
        ("identify", None, lambda: client.identify("u1", {"email": "a@b.test"})),
        ("page", "Pricing", lambda: client.page("u1", "Docs", "Pricing",
                                                {"url": "https://x.test/pricing?gclid=G1"})),
        ("screen", "Home", lambda: client.screen("u1", "App", "Home")),
        ("group", None, lambda: client.group("u1", "g-1", {"name": "Acme"})),
        ("alias", None, lambda: client.alias("anon-1", "u1")),
    ]:
        ok, message = call()
        assert ok
        sent[message["messageId"]] = (kind, name)
    return sent


@pytest.mark.parametrize("gzip", [False, True])
def test_sync_mode_calls_are_all_stored(mysql_app, gzip):
    errors = []
    with live_server(mysql_app) as url:
        client = sdk(url, errors, sync_mode=True, gzip=gzip)
        sent = send_every_call(client)
    assert errors == []
    stored = events(mysql_app)
    assert {m: (e.type, e.event) for m, e in stored.items()} == sent
    track = next(e for e in stored.values() if e.type == "track")
    assert track.user_id == "u1"
    assert track.message["properties"] == {"order_id": "o-1", "revenue": 12.5}
    assert track.message["context"]["library"]["name"] == "analytics-python"
    assert track.request["auth"] == "basic"


def test_a_queued_batch_is_flushed_and_stored(mysql_app):
    errors = []
    with live_server(mysql_app) as url:
        client = sdk(url, errors, upload_size=50)
        sent = {}
        for i in range(120):
            ok, message = client.track(f"user-{i % 7}", "Item Viewed", {"i": i})
            assert ok
            sent[message["messageId"]] = i
        client.flush()
        client.join()
    assert errors == []
    stored = events(mysql_app)
    assert set(stored) == set(sent)
    assert all(e.request["endpoint"] == "/v1/batch" for e in stored.values())


def test_sdk_timestamps_become_the_event_time(mysql_app):
    errors = []
    when = datetime(2026, 1, 15, 8, 30, tzinfo=UTC)
    with live_server(mysql_app) as url:
        client = sdk(url, errors, sync_mode=True)
        ok, message = client.track("u1", "Backfilled", timestamp=when)
    assert errors == []
    stored = events(mysql_app)[message["messageId"]]
    assert from_db(stored.timestamp) == when
    # The SDK's batch sentAt is "now": the event time is corrected relative to our clock,
    # and keeps the distance between timestamp and sentAt.
    assert from_db(stored.sent_at) > when
    assert stored.event_time < stored.received_at


def test_resending_the_same_messages_stores_them_once(mysql_app):
    errors = []
    with live_server(mysql_app) as url:
        client = sdk(url, errors, sync_mode=True)
        for _ in range(3):
            client.track("u1", "Clicked", message_id="fixed-id-1")
    assert errors == []
    assert list(events(mysql_app)) == ["fixed-id-1"]


def test_an_unknown_write_key_is_reported_to_the_sdk(mysql_app):
    with live_server(mysql_app) as url:
        client = Client("wk_nobody_has_this_key", host=url, sync_mode=True, max_retries=0)
        with pytest.raises(APIError) as info:
            client.track("u1", "Clicked")
    assert info.value.status == 401
    assert info.value.code == "unknown_write_key"  # the SDK reads the body's "code"
    assert "not known" in info.value.message
    assert events(mysql_app) == {}


def test_a_refused_message_reaches_the_sdk_with_its_code(mysql_app):
    """A 400 is final for the SDK (no retry) and names what was wrong."""
    with live_server(mysql_app) as url:
        client = Client(SERVER_KEY, host=url, sync_mode=True, max_retries=0)
        with pytest.raises(APIError) as info:
            client.track("u1", "x" * 300)  # event names are 255 characters at most
    assert info.value.status == 400
    assert info.value.code == "invalid_batch"  # the SDK always posts to /v1/batch
    assert "no message" in info.value.message
    assert events(mysql_app) == {}
