"""The cross-device journey on MariaDB + Redis: a laptop clicks an ad and verifies a phone;
the phone (another cookie jar) verifies the same number and converts; the platforms get
the laptop's click ids and the hashed phone."""

import hashlib
import json

from sqlalchemy import select

from sst.delivery.worker import run_worker
from sst.extensions import db
from sst.models import Delivery, Event, Person
from support.apps import ORIGIN, WRITE_KEY, make_mysql_app, truncate_all
from support.stub_platform import Reply, StubPlatform

PHONE = "+1 (650) 555-1234"
BASE = "https://t.example.com"  # the cookie's domain is .example.com
E164 = "+16505551234"


def _read_code(outbox, phone=E164):
    lines = [json.loads(x) for x in outbox.read_text().splitlines()]
    return [x["code"] for x in lines if x["to"] == phone][-1]


def _app(mysql_url, redis_url, tmp_path, stub_url):
    outbox = tmp_path / "outbox.jsonl"
    dests = [
        {"name": "meta", "connector": "meta", "pixel_id": "123", "access_token": "tok",
         "base_url": stub_url, "events": {"Order Completed": "Purchase"}},
        {"name": "tiktok", "connector": "tiktok", "pixel_code": "PC1", "access_token": "tt",
         "base_url": stub_url, "events": {"Order Completed": "CompletePayment"}},
        {"name": "google", "connector": "google_ads", "customer_id": "123-456-7890",
         "client_id": "cid", "client_secret": "cs", "refresh_token": "rt",
         "token_url": stub_url + "/token", "base_url": stub_url,
         "events": {"Order Completed": "987654"}},
    ]
    app = make_mysql_app(mysql_url, redis_url, DESTINATIONS=dests,
                         IDENTITY={"otp_provider": "file", "otp_outbox": str(outbox),
                                   "conversion_event": "Phone Verified"})
    truncate_all(app)
    return app, outbox


def _verify(client, outbox):
    h = {"Origin": ORIGIN}
    r = client.post(BASE + "/v1/otp/send", json={"writeKey": WRITE_KEY, "phone": PHONE}, headers=h)
    assert r.status_code == 202, r.data
    assert r.get_json() == {"status": "pending"}
    r = client.post(BASE + "/v1/otp/verify", json={"writeKey": WRITE_KEY, "phone": PHONE,
                                            "code": _read_code(outbox)}, headers=h)
    assert r.status_code == 200, r.data
    body = r.get_json()
    assert body["verified"] is True
    return body["userId"]


def test_laptop_click_credited_to_phone_conversion(mysql_url, redis_url, tmp_path):
    # One answer both platforms read as success: TikTok's code 0, Meta's events_received.
    with StubPlatform(Reply(200, {"code": 0, "message": "OK", "events_received": 1,
                                   "access_token": "at", "expires_in": 3600})) as stub:
        app, outbox = _app(mysql_url, redis_url, tmp_path, stub.url)
        laptop, phone = app.test_client(), app.test_client()
        h = {"Origin": ORIGIN}
        r = laptop.post(BASE + "/v1/page", json={
            "writeKey": WRITE_KEY, "anonymousId": "laptop-anon", "context": {"page": {
                "url": "https://www.example.com/?fbclid=FBCLICK&gclid=GCLICK&ttclid=TTCLICK"}},
            "timestamp": "2026-11-20T10:00:00Z", "sentAt": "2026-11-20T10:00:00Z"},
            headers=h)
        assert r.status_code == 200
        user_laptop = _verify(laptop, outbox)
        user_phone = _verify(phone, outbox)
        assert user_laptop == user_phone
        r = phone.post(BASE + "/v1/track", json={
            "writeKey": WRITE_KEY, "event": "Order Completed", "messageId": "order-1",
            "properties": {"order_id": "o-1", "total": 30, "currency": "USD"},
            "context": {"userAgent": "Mozilla/5.0 (iPhone)"}}, headers=h)
        assert r.status_code == 200
        run_worker(app, burst=True)

        bodies = {}
        for req in stub.requests:
            data = json.loads(req.body) if req.body.startswith(b"{") else None
            if data is None:
                from urllib.parse import parse_qs

                data = {k: json.loads(v[0]) if k == "data" else v[0]
                        for k, v in parse_qs(req.body.decode()).items()}
            bodies[req.path] = data
        meta = next(v for k, v in bodies.items() if "/events" in k)
        purchase = [e for e in meta["data"] if e["event_name"] == "Purchase"]
        assert len(purchase) == 1
        ud = purchase[0]["user_data"]
        assert ud["fbc"].endswith(".FBCLICK") and ud["fbc"].startswith("fb.1.")
        phone_hash = hashlib.sha256(b"16505551234").hexdigest()
        assert ud["ph"] in (phone_hash, [phone_hash])
        ext = hashlib.sha256(user_laptop.lower().encode()).hexdigest()
        assert ud["external_id"] in (ext, [ext])
        tiktok = next(v for k, v in bodies.items() if "/event/track" in k)
        tt = tiktok["data"][0]
        assert tt["user"]["ttclid"] == "TTCLICK"
        google = next(v for k, v in bodies.items() if "events:ingest" in k)
        assert "GCLICK" in json.dumps(google)
        assert hashlib.sha256(E164.encode()).hexdigest() in json.dumps(google)
        with app.app_context():
            assert db.session.execute(select(Person)).scalars().all()[0].user_id == user_laptop
            states = db.session.execute(select(Delivery.destination, Delivery.state)).all()
            assert sorted(states) == [("google", "succeeded"), ("meta", "succeeded"),
                                      ("tiktok", "succeeded")]
            kinds = [e.type for e in db.session.execute(select(Event)).scalars()]
            assert kinds.count("identify") == 2
