"""The cross-device journey on MariaDB + Redis: a laptop clicks an ad and verifies a phone;
the phone (another cookie jar) verifies the same number and converts; the platforms get
the laptop's click ids and the hashed phone."""

import hashlib
import json
import re
from urllib.parse import parse_qs

from sqlalchemy import select

from sst.delivery.worker import run_worker
from sst.extensions import db
from sst.models import Delivery, Event, Person
from support.apps import ORIGIN, WRITE_KEY, make_mysql_app, truncate_all
from support.stub_platform import Reply, StubPlatform

PHONE = "+1 (650) 555-1234"
BASE = "https://t.example.com"  # the cookie's domain is .example.com
E164 = "+16505551234"
PHONE_DIGITS = hashlib.sha256(b"16505551234").hexdigest()  # Meta, Snap, Pinterest: no "+"
PHONE_PLUS = hashlib.sha256(E164.encode()).hexdigest()  # Google, TikTok, Reddit, MS, X: E.164
# The laptop's landing URL carries every platform's click id.
CLICKS = {"fbclid": "FBCLICK", "gclid": "GCLICK", "ttclid": "TTCLICK", "ScCid": "SCCLICK",
          "rdt_cid": "RDTCLICK", "epik": "EPIKCLICK", "li_fat_id": "LIFATCLICK",
          "msclkid": "MSCLICK", "twclid": "TWCLICK"}


def _check_meta(body, user_id):
    purchase = [e for e in body["data"] if e["event_name"] == "Purchase"]
    assert len(purchase) == 1
    ud = purchase[0]["user_data"]
    assert ud["fbc"].endswith(".FBCLICK") and ud["fbc"].startswith("fb.1.")
    assert ud["ph"] in (PHONE_DIGITS, [PHONE_DIGITS])
    ext = hashlib.sha256(user_id.lower().encode()).hexdigest()
    assert ud["external_id"] in (ext, [ext])


def _check_tiktok(body, user_id):
    assert body["data"][0]["user"]["ttclid"] == "TTCLICK"


def _check_google(body, user_id):
    assert "GCLICK" in json.dumps(body)
    assert PHONE_PLUS in json.dumps(body)


def _check_snapchat(body, user_id):
    ud = body["data"][0]["user_data"]
    assert ud["sc_click_id"] == "SCCLICK" and ud["ph"] == [PHONE_DIGITS]


def _check_reddit(body, user_id):
    event = body["events"][0]
    assert event["click_id"] == "RDTCLICK" and event["user"]["phone_number"] == PHONE_PLUS


def _check_pinterest(body, user_id):
    ud = body["data"][0]["user_data"]
    assert ud["click_id"] == "EPIKCLICK" and ud["ph"] == [PHONE_DIGITS]


def _check_linkedin(body, user_id):
    # LinkedIn takes no phone: the laptop's click id is what ties the phone's conversion.
    ids = body["elements"][0]["user"]["userIds"]
    assert {"idType": "LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID", "idValue": "LIFATCLICK"} in ids


def _check_microsoft(body, user_id):
    ud = body["data"][0]["userData"]
    assert ud["msclkid"] == "MSCLICK" and ud["ph"] == PHONE_PLUS


def _check_x(body, user_id):
    ident = body["conversions"][0]["identifiers"][0]
    assert ident["twclid"] == "TWCLICK" and ident["hashed_phone_number"] == PHONE_PLUS


# One row per platform: its destination (base_url added), the request path it posts to, and
# what its payload must carry after the cross-device journey.
JOURNEY = [
    ({"name": "meta", "connector": "meta", "pixel_id": "123", "access_token": "tok",
      "events": {"Order Completed": "Purchase"}}, r"^/v[\d.]+/123/events", _check_meta),
    ({"name": "tiktok", "connector": "tiktok", "pixel_code": "PC1", "access_token": "tt",
      "events": {"Order Completed": "CompletePayment"}}, r"/event/track/", _check_tiktok),
    ({"name": "google", "connector": "google_ads", "customer_id": "123-456-7890",
      "client_id": "cid", "client_secret": "cs", "refresh_token": "rt",
      "events": {"Order Completed": "987654"}}, r"events:ingest", _check_google),
    ({"name": "snapchat", "connector": "snapchat", "pixel_id": "SNAPPIX", "access_token": "sn",
      "events": {"Order Completed": "PURCHASE"}}, r"^/v3/SNAPPIX/events", _check_snapchat),
    ({"name": "reddit", "connector": "reddit", "account_id": "t2_acct", "access_token": "rd",
      "events": {"Order Completed": "Purchase"}}, r"^/api/v2\.0/conversions/events/t2_acct",
     _check_reddit),
    ({"name": "pinterest", "connector": "pinterest", "ad_account_id": "549755885175",
      "access_token": "pn", "events": {"Order Completed": "checkout"}},
     r"^/v5/ad_accounts/549755885175/events", _check_pinterest),
    ({"name": "linkedin", "connector": "linkedin", "access_token": "li",
      "events": {"Order Completed": "104012"}}, r"^/rest/conversionEvents", _check_linkedin),
    ({"name": "microsoft", "connector": "microsoft_ads", "tag_id": "343000123",
      "access_token": "ms", "events": {"Order Completed": "purchase"}},
     r"^/v1/343000123/events", _check_microsoft),
    ({"name": "x", "connector": "x_ads", "pixel_id": "o8z6j", "consumer_key": "ck",
      "consumer_secret": "cs", "access_token": "at", "access_token_secret": "ats",
      "events": {"Order Completed": "tw-o8z6j-o87ne"}},
     r"^/12/measurement/conversions/o8z6j", _check_x),
]


def _read_code(outbox, phone=E164):
    lines = [json.loads(x) for x in outbox.read_text().splitlines()]
    return [x["code"] for x in lines if x["to"] == phone][-1]


def _app(mysql_url, redis_url, tmp_path, stub_url):
    outbox = tmp_path / "outbox.jsonl"
    dests = [{**dest, "base_url": stub_url} for dest, _, _ in JOURNEY]
    for dest in dests:
        if dest["connector"] == "google_ads":
            dest["token_url"] = stub_url + "/token"
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
    # One answer every platform reads as success: TikTok's code 0, Meta's events_received.
    with StubPlatform(Reply(200, {"code": 0, "message": "OK", "events_received": 1,
                                   "access_token": "at", "expires_in": 3600})) as stub:
        app, outbox = _app(mysql_url, redis_url, tmp_path, stub.url)
        laptop, phone = app.test_client(), app.test_client()
        h = {"Origin": ORIGIN}
        r = laptop.post(BASE + "/v1/page", json={
            "writeKey": WRITE_KEY, "anonymousId": "laptop-anon", "context": {"page": {
                "url": "https://www.example.com/?" + "&".join(
                    f"{k}={v}" for k, v in CLICKS.items())}},
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
                data = {k: json.loads(v[0]) if k == "data" else v[0]
                        for k, v in parse_qs(req.body.decode()).items()}
            bodies[req.path] = data
        for dest, path, check in JOURNEY:
            sent = [body for p, body in bodies.items() if re.search(path, p)]
            assert len(sent) == 1, (dest["name"], sorted(bodies))
            check(sent[0], user_laptop)
        with app.app_context():
            assert db.session.execute(select(Person)).scalars().all()[0].user_id == user_laptop
            states = db.session.execute(select(Delivery.destination, Delivery.state)).all()
            assert sorted(states) == sorted((d["name"], "succeeded") for d, _, _ in JOURNEY)
            kinds = [e.type for e in db.session.execute(select(Event)).scalars()]
            assert kinds.count("identify") == 2
