"""Right data for real visitors, end to end (MariaDB, Redis, a real RQ worker, local stubs):
the webhook body and its signatures (contract §5), the visitor's IP/UA (never a backend's),
and the page URL's own click ids for a userId-only event."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from sst.clock import iso
from sst.delivery.worker import run_worker
from sst.extensions import db
from sst.identity.people import link_device, person_for_phone
from sst.models import Event
from support.apps import ORIGIN, SERVER_KEY, WRITE_KEY
from support.delivery import BROWSER_UA, meta_dest, mysql_app, tiktok_dest, webhook_dest
from support.stub_platform import Reply, StubPlatform

OK = Reply(200, {"events_received": 1, "code": 0, "message": "OK"})
SITE = "https://t.example.com"  # the test client's host, so the .example.com cookie returns
FBCLID = "IwAR0visitorClick"


def _stored(app, message_id):
    with app.app_context():
        return db.session.execute(select(Event).where(Event.message_id == message_id)
                                  ).scalar_one()


def _by_path(stub, path):
    return [r for r in stub.requests if r.path.startswith(path)]


def _meta_events(stub):
    return {e["event_id"]: e for r in stub.requests if "/events" in r.path
            for e in r.json()["data"]}


def test_browser_tag_event_reaches_the_webhook_with_who_and_when(mysql_url, redis_url):
    with StubPlatform(default=OK) as stub:
        app = mysql_app(mysql_url, redis_url, webhook_dest(stub.url))
        client = app.test_client()
        headers = {"Origin": ORIGIN, "User-Agent": BROWSER_UA}
        first = client.post("/v1/page", base_url=SITE, headers=headers, json={
            "writeKey": WRITE_KEY, "anonymousId": "sdk-anon-1", "messageId": "p-1",
            "context": {"page": {"url": f"https://www.example.com/?fbclid={FBCLID}"}}})
        assert first.status_code == 200
        assert "sst_aid=" in first.headers["Set-Cookie"]
        # The client's clock runs an hour ahead: timestamp and sentAt both say so.
        ahead = datetime.now(UTC) + timedelta(hours=1)
        sent = client.post("/v1/track", base_url=SITE, headers=headers, json={
            "writeKey": WRITE_KEY, "event": "Signed Up", "messageId": "t-1",
            "anonymousId": "sdk-other-id",
            "timestamp": iso(ahead - timedelta(seconds=30)), "sentAt": iso(ahead),
            "properties": {"plan": "pro"}})
        assert sent.status_code == 200
        run_worker(app, burst=True)

        hooks = {r.json()["messageId"]: r for r in _by_path(stub, "/hook")}
        assert set(hooks) == {"p-1", "t-1"}
        stored = _stored(app, "t-1")
        body = hooks["t-1"].json()
        assert body["anonymousId"] == stored.anonymous_id == "sdk-anon-1"  # the cookie's id
        assert "userId" not in body
        assert body["type"] == "track" and body["event"] == "Signed Up"
        assert body["properties"] == {"plan": "pro"}
        assert body["timestamp"] == iso(stored.event_time)  # corrected: ~30 s before receipt
        assert body["originalTimestamp"] == iso(ahead - timedelta(seconds=30))
        assert body["sentAt"] == iso(ahead)
        assert body["receivedAt"] == iso(stored.received_at)
        skew = stored.received_at - stored.event_time
        assert timedelta(seconds=29) <= skew <= timedelta(seconds=31)
        assert body["context"]["userAgent"] == BROWSER_UA
        assert body["context"]["ip"] == "127.0.0.1"
        assert body["context"]["bot"] is False
        assert body["context"]["clickIds"] == {"fbclid": FBCLID}
        assert "writeKey" not in body
        # Both signatures, over the raw bytes received.
        req = hooks["t-1"]
        raw, stamp = req.body, req.headers["X-SST-Timestamp"]
        assert req.headers["X-SST-Signature"] == (
            "sha256=" + hmac.new(b"s3cret", raw, hashlib.sha256).hexdigest())
        assert req.headers["X-SST-Signature-V2"] == (
            "sha256=" + hmac.new(b"s3cret", stamp.encode() + b"." + raw,
                                 hashlib.sha256).hexdigest())
        assert abs(int(stamp) - datetime.now(UTC).timestamp()) < 600


def test_server_event_without_context_sends_no_backend_ip_or_ua(mysql_url, redis_url):
    with StubPlatform(default=OK) as stub:
        app = mysql_app(mysql_url, redis_url, meta_dest(stub.url), tiktok_dest(stub.url),
                        webhook_dest(stub.url))
        r = app.test_client().post("/v1/track", auth=(SERVER_KEY, ""),
                                   headers={"User-Agent": "analytics-python/2.4.0"}, json={
            "event": "Order Completed", "userId": "u-server", "messageId": "s-1",
            "properties": {"order_id": "o-1", "total": 5, "currency": "EUR"},
            "context": {"page": {"url": f"https://www.example.com/thanks?fbclid={FBCLID}"}}})
        assert r.status_code == 200
        run_worker(app, burst=True)

        stored = _stored(app, "s-1")
        assert (stored.ip, stored.user_agent, stored.is_bot) == (None, None, False)
        assert stored.request["user_agent"] == "analytics-python/2.4.0"  # on record only
        meta = _meta_events(stub)["s-1"]
        assert meta["action_source"] == "system_generated"
        assert "client_user_agent" not in meta["user_data"]
        assert "client_ip_address" not in meta["user_data"]
        # The page URL's own fbclid, for an event with only a userId (no anonymous id).
        millis = int(stored.event_time.replace(tzinfo=UTC).timestamp() * 1000)
        assert meta["user_data"]["fbc"] == f"fb.1.{millis}.{FBCLID}"
        tiktok = next(r.json() for r in stub.requests if "/open_api/" in r.path)
        user = tiktok["data"][0]["user"]
        assert not user.get("ip") and not user.get("user_agent")
        hook = _by_path(stub, "/hook")[0].json()
        assert hook["userId"] == "u-server" and "anonymousId" not in hook
        assert hook["context"]["ip"] is None and hook["context"]["userAgent"] is None
        assert hook["context"]["clickIds"] == {"fbclid": FBCLID}


def test_server_event_of_a_linked_person_uses_the_browser_devices_ip_and_ua(mysql_url,
                                                                            redis_url):
    with StubPlatform(default=OK) as stub:
        app = mysql_app(mysql_url, redis_url, meta_dest(stub.url))
        client = app.test_client()
        r = client.post("/v1/page", base_url=SITE, json={
            "writeKey": WRITE_KEY, "anonymousId": "laptop-1", "messageId": "lp-1"},
            headers={"Origin": ORIGIN, "User-Agent": BROWSER_UA})
        assert r.status_code == 200
        state = app.extensions["sst"]
        laptop = _stored(app, "lp-1").anonymous_id
        user_id, _ = person_for_phone(state.engine, "+16505551234", app.config["SECRET_KEY"])
        link_device(state.engine, laptop, user_id)
        r = client.post("/v1/track", auth=(SERVER_KEY, ""),
                        headers={"User-Agent": "Go-http-client/2.0"}, json={
            "event": "Order Completed", "userId": user_id, "messageId": "srv-1",
            "properties": {"order_id": "o-9", "total": 9, "currency": "EUR"}})
        assert r.status_code == 200
        run_worker(app, burst=True)

        meta = _meta_events(stub)["srv-1"]
        assert meta["action_source"] == "website"
        assert meta["user_data"]["client_user_agent"] == BROWSER_UA
        assert meta["user_data"]["client_ip_address"] == "127.0.0.1"
