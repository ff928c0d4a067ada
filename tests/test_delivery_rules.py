"""What is sent at all: consent, bots, event age, the events map, and one slow destination
not holding up another (MariaDB, Redis, a real RQ worker, the local stub)."""

import time
from datetime import UTC, datetime, timedelta

import pytest

from sst.delivery.worker import run_worker
from support.apps import SERVER_KEY
from support.delivery import (
    BROWSER_UA,
    deliveries,
    iso,
    meta_dest,
    mysql_app,
    track,
    tracks,
    webhook_dest,
)
from support.stub_platform import Reply, StubPlatform

META_OK = Reply(200, {"events_received": 1})
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def _consent(advertising):
    return {"consent": {"categoryPreferences": {"Advertising": advertising,
                                                 "Analytics": True}},
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"}


def test_refused_consent_skips_with_reason_and_sends_nothing(mysql_url, redis_url):
    with StubPlatform(default=META_OK) as stub:
        app = mysql_app(mysql_url, redis_url,
                        meta_dest(stub.url, consent_categories=["Advertising"]))
        track(app, context=_consent(False))
        run_worker(app, burst=True)

        assert stub.requests == []
        [d] = deliveries(app)
        assert (d.state, d.attempts) == ("skipped", 0)
        assert d.reason == "consent denied:Advertising"
        assert tracks(app) == []


def test_granted_consent_is_sent(mysql_url, redis_url):
    with StubPlatform(default=META_OK) as stub:
        app = mysql_app(mysql_url, redis_url,
                        meta_dest(stub.url, consent_categories=["Advertising"]))
        track(app, context=_consent(True))
        run_worker(app, burst=True)

        assert len(stub.requests) == 1
        [d] = deliveries(app)
        assert (d.state, d.consent) == ("succeeded", "granted")


def test_bot_user_agent_is_skipped_for_ad_platforms_and_marked_for_the_webhook(mysql_url, redis_url):
    with StubPlatform(default=META_OK) as stub:
        app = mysql_app(mysql_url, redis_url, meta_dest(stub.url), webhook_dest(stub.url))
        track(app, context={"userAgent": GOOGLEBOT})
        run_worker(app, burst=True)

        # Contract §3: ad platforms skip a bot's events; the webhook gets them, marked.
        assert [r.path for r in stub.requests] == ["/hook"]
        assert stub.requests[0].json()["context"]["bot"] is True
        rows = deliveries(app)
        assert {(d.destination, d.state, d.reason) for d in rows} == {
            ("meta", "skipped", "bot user agent (forward_bots is false)"),
            ("hook", "succeeded", None)}


def test_event_older_than_meta_accepts_is_skipped_with_reason(mysql_url, redis_url):
    with StubPlatform(default=META_OK) as stub:
        app = mysql_app(mysql_url, redis_url, meta_dest(stub.url))
        track(app, timestamp=iso(datetime.now(UTC) - timedelta(days=8)))
        run_worker(app, burst=True)

        assert stub.requests == []
        [d] = deliveries(app)
        assert d.state == "skipped"
        assert d.reason.startswith("event too old for meta:") and "limit 7 d" in d.reason
        assert tracks(app) == []


def test_events_map_names_page_calls_and_drops_unmapped_events(mysql_url, redis_url):
    with StubPlatform(default=META_OK) as stub:
        app = mysql_app(mysql_url, redis_url, meta_dest(stub.url))
        r = app.test_client().post("/v1/page", auth=(SERVER_KEY, ""), json={
            "name": "Home", "userId": "u-1", "messageId": "page-1",
            "context": {"userAgent": BROWSER_UA,
                        "page": {"url": "https://www.example.com/"}}})
        assert r.status_code == 200
        track(app, "unmapped-1", event="Newsletter Opened")
        run_worker(app, burst=True)

        [d] = deliveries(app)
        assert (d.platform_event, d.state) == ("PageView", "succeeded")
        [req] = stub.requests
        [event] = req.json()["data"]
        assert (event["event_name"], event["event_id"]) == ("PageView", "page-1")
        assert event["event_source_url"] == "https://www.example.com/"


@pytest.mark.parametrize("slow_first", [True, False])
def test_slow_destination_does_not_hold_up_another(mysql_url, redis_url, slow_first):
    with StubPlatform(default=Reply(delay=5)) as slow, StubPlatform() as fast:
        slow_dest = webhook_dest(slow.url, "slow", timeout=1, retry_backoff=300)
        fast_dest = webhook_dest(fast.url, "fast")
        dests = [slow_dest, fast_dest] if slow_first else [fast_dest, slow_dest]
        app = mysql_app(mysql_url, redis_url, *dests)
        track(app)
        t0 = time.monotonic()
        run_worker(app, burst=True)
        elapsed = time.monotonic() - t0

        assert elapsed < 4, "the slow destination's timeout (1 s) bounds the wait"
        assert len(fast.requests) == 1 and len(slow.requests) == 1
        states = {d.destination: (d.state, d.last_code) for d in deliveries(app)}
        assert states["fast"] == ("succeeded", "HTTP 200")
        assert states["slow"][0] == "pending"  # a timeout is retried later
        assert states["slow"][1] in ("ReadTimeout", "Timeout")
