"""POST /v1/otp/send and /v1/otp/verify on MariaDB + Redis with the file provider: bodies,
auth, phone normalisation, code rules, the person and device link a verification makes,
and what never leaks (codes, clear phones, whether a phone is known)."""

import hashlib
import json
import logging
import re
import threading

import phonenumbers
import pytest
import redis
from phonenumbers import PhoneNumberFormat, PhoneNumberType
from sqlalchemy import String, Text, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.types import JSON

from sst.extensions import db
from sst.identity import people
from sst.identity.people import DbCodeStore
from sst.models import Event, Link, OtpCode, Person
from support import otp
from support.apps import ORIGIN, SERVER_KEY, WRITE_KEY, make_mysql_app
from support.otp import cookie_id, otp_apps

BASE = "https://t.example.com"  # the cookie's domain is .example.com
BROWSER = {"Origin": ORIGIN}
PHONE = "+1 (650) 555-1234"
E164 = "+16505551234"
OTHER = "+16505559876"


@pytest.fixture
def make_app(mysql_url, redis_url, tmp_path):
    """make_app(**identity) -> an app with the file provider and throttle counters of its own."""
    with otp_apps(mysql_url, redis_url, tmp_path / "outbox.jsonl",
                  conversion_event="Phone Verified") as make:
        yield make


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


def codes(app, phone=E164):
    return otp.codes(app, phone)


def send(client, phone=PHONE, headers=BROWSER, **extra):
    return client.post(BASE + "/v1/otp/send", json={"writeKey": WRITE_KEY, "phone": phone,
                                                    **extra}, headers=headers)


def check(client, code, phone=PHONE, headers=BROWSER, **extra):
    return client.post(BASE + "/v1/otp/verify", json={"writeKey": WRITE_KEY, "phone": phone,
                                                      "code": code, **extra}, headers=headers)


def verified_user(app, client, phone=PHONE, e164=E164):
    assert send(client, phone).status_code == 202
    r = check(client, codes(app, e164)[-1], phone)
    assert r.status_code == 200, r.data
    return r.get_json()["userId"]


def wrong(code):
    return f"{(int(code) + 1) % 10**6:06d}"


# --- send ---------------------------------------------------------------------------------------


def test_send_answers_pending(app, client):
    r = send(client)
    assert r.status_code == 202
    assert r.get_json() == {"status": "pending"}
    assert len(codes(app)) == 1 and re.fullmatch(r"\d{6}", codes(app)[0])


def test_send_sets_the_first_party_cookie(app, client):
    r = send(client)
    assert "HttpOnly" in r.headers["Set-Cookie"] and "Domain=example.com" in r.headers["Set-Cookie"]
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    assert cookie_id(app, client)


def test_send_text_plain_body(app, client):
    # navigator.sendBeacon and "simple" CORS requests send JSON as text/plain.
    r = client.post(BASE + "/v1/otp/send", data=json.dumps({"writeKey": WRITE_KEY, "phone": PHONE}),
                    content_type="text/plain", headers=BROWSER)
    assert r.status_code == 202
    assert codes(app)


def test_send_and_verify_form_bodies(app, client):
    r = client.post(BASE + "/v1/otp/send", data={"writeKey": WRITE_KEY, "phone": PHONE},
                    headers=BROWSER)
    assert r.status_code == 202
    r = client.post(BASE + "/v1/otp/verify", data={"writeKey": WRITE_KEY, "phone": PHONE,
                                                   "code": codes(app)[-1]}, headers=BROWSER)
    assert r.status_code == 200
    assert r.get_json()["verified"] is True


def test_malformed_json_is_400(client):
    r = client.post(BASE + "/v1/otp/send", data=b"{not json", content_type="application/json",
                    headers=BROWSER)
    assert r.status_code == 400
    assert r.get_json()["error"] == "malformed_json"


def test_json_array_body_is_400(client):
    r = client.post(BASE + "/v1/otp/send", json=[WRITE_KEY, PHONE], headers=BROWSER)
    assert r.status_code == 400


def test_oversized_body_is_413(client):
    r = client.post(BASE + "/v1/otp/send", json={"writeKey": WRITE_KEY, "phone": PHONE,
                                                 "pad": "x" * 5000}, headers=BROWSER)
    assert r.status_code == 413


# --- write key and Origin, as for ingest ------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/otp/send", "/v1/otp/verify"])
def test_missing_write_key_is_401(client, path):
    r = client.post(BASE + path, json={"phone": PHONE, "code": "123456"}, headers=BROWSER)
    assert r.status_code == 401
    assert r.get_json()["error"] == "missing_write_key"


@pytest.mark.parametrize("path", ["/v1/otp/send", "/v1/otp/verify"])
def test_unknown_write_key_is_401(client, path):
    r = client.post(BASE + path, json={"writeKey": "wk_nope_0123456789", "phone": PHONE,
                                       "code": "123456"}, headers=BROWSER)
    assert r.status_code == 401
    assert r.get_json()["error"] == "unknown_write_key"


@pytest.mark.parametrize("path", ["/v1/otp/send", "/v1/otp/verify"])
def test_origin_not_allowed_is_403(client, path):
    r = client.post(BASE + path, json={"writeKey": WRITE_KEY, "phone": PHONE, "code": "123456"},
                    headers={"Origin": "https://evil.example.net"})
    assert r.status_code == 403
    assert r.get_json()["error"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in r.headers


def test_server_key_from_a_browser_is_403(client):
    r = client.post(BASE + "/v1/otp/send", json={"writeKey": SERVER_KEY, "phone": PHONE},
                    headers=BROWSER)
    assert r.status_code == 403


def test_refused_key_sends_nothing(app, client):
    client.post(BASE + "/v1/otp/send", json={"writeKey": "wk_nope_0123456789", "phone": PHONE})
    client.post(BASE + "/v1/otp/send", json={"writeKey": WRITE_KEY, "phone": PHONE},
                headers={"Origin": "https://evil.example.net"})
    assert codes(app) == []


def test_server_key_without_origin_sets_no_cookie(app, client):
    r = client.post(BASE + "/v1/otp/send", json={"writeKey": SERVER_KEY, "phone": PHONE})
    assert r.status_code == 202
    assert "Set-Cookie" not in r.headers


def test_basic_auth_write_key(app, client):
    r = client.post(BASE + "/v1/otp/send", json={"phone": PHONE},
                    headers={**BROWSER, "Authorization": "Basic d2tfdGVzdF93ZWJfMDEyMzQ1Njc4OTo="})
    assert r.status_code == 202


def test_not_configured_is_404(mysql_url, redis_url):
    app = make_mysql_app(mysql_url, redis_url)
    r = app.test_client().post(BASE + "/v1/otp/send", json={"writeKey": WRITE_KEY, "phone": PHONE},
                               headers=BROWSER)
    assert r.status_code == 404
    assert r.get_json()["error"] == "otp_not_configured"


# --- phones ---------------------------------------------------------------------------------------


def _premium(region):
    number = phonenumbers.example_number_for_type(region, PhoneNumberType.PREMIUM_RATE)
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


@pytest.mark.parametrize("phone", [
    "call me maybe", "+1 650 CALL NOW", "12345", "+1 650", "", "   ", None, 16505551234,
    _premium("GB"), _premium("US"), _premium("FR"), "+1 800 555 0100", "9" * 300,
])
def test_invalid_phone_is_400(app, client, phone):
    r = send(client, phone)
    assert r.status_code == 400
    body = r.get_json()
    assert body["error"] == "invalid_phone"
    assert codes(app) == []


def test_invalid_phone_on_verify_is_400(client):
    r = check(client, "123456", phone="not a phone")
    assert r.status_code == 400
    assert r.get_json()["error"] == "invalid_phone"


@pytest.mark.parametrize("raw", ["650-555-1234", "(650) 555 1234", "+1 650.555.1234",
                                 "tel:+1-650-555-1234", "1 650 555 1234"])
def test_national_formats_use_the_default_region(app, client, raw):
    assert send(client, raw).status_code == 202
    assert len(codes(app, E164)) == 1


def test_default_region_from_config(make_app):
    app = make_app(default_region="GB")
    client = app.test_client()
    assert send(client, "07400 123456").status_code == 202
    code = codes(app, "+447400123456")[-1]
    r = check(client, code, phone="+44 7400 123456")  # another spelling of the same phone
    assert r.status_code == 200
    # the same person whatever the spelling
    assert verified_user(app, app.test_client(), "07400123456", "+447400123456") == \
        r.get_json()["userId"]


# --- verify ---------------------------------------------------------------------------------------


def test_right_code_verifies(app, client):
    send(client)
    r = check(client, codes(app)[-1])
    assert r.status_code == 200
    body = r.get_json()
    assert body == {"verified": True, "userId": body["userId"]}
    assert re.fullmatch(r"u_[0-9A-Za-z]{22}", body["userId"])


def test_code_as_json_number_and_with_spaces(app, client):
    send(client)
    code = codes(app)[-1]
    r = check(client, f"{code[:3]} {code[3:]}")
    assert r.status_code == 200
    send(client)
    code = codes(app)[-1]
    if code[0] != "0":  # a JSON number cannot keep a leading zero
        assert check(client, int(code)).status_code == 200


def test_wrong_code_is_400_not_verified(app, client):
    send(client)
    r = check(client, wrong(codes(app)[-1]))
    assert r.status_code == 400
    assert r.get_json()["verified"] is False
    assert r.get_json()["error"] == "wrong_code"
    assert "userId" not in r.get_json()


@pytest.mark.parametrize("code", [None, True, {"a": 1}, ["123456"]])
def test_missing_or_odd_code_is_400(app, client, code):
    send(client)
    r = check(client, code)
    assert r.status_code == 400
    assert r.get_json()["verified"] is False


def test_verify_without_a_send_is_400(client):
    r = check(client, "123456")
    assert r.status_code == 400
    assert r.get_json() == {"error": "code_expired", "verified": False,
                            "message": r.get_json()["message"]}


def test_five_wrong_codes_kill_the_code(app, client):
    send(client)
    code = codes(app)[-1]
    for _ in range(5):
        assert check(client, wrong(code)).status_code == 400
    r = check(client, code)
    assert r.status_code == 429
    assert r.get_json()["verified"] is False
    assert "userId" not in r.get_json()
    # a new send gives a new code that works
    assert send(client).status_code == 202
    assert check(client, codes(app)[-1]).status_code == 200


def test_four_wrong_codes_then_the_right_one_verifies(app, client):
    send(client)
    code = codes(app)[-1]
    for _ in range(4):
        assert check(client, wrong(code)).status_code == 400
    assert check(client, code).status_code == 200


def test_otp_max_attempts_is_configurable(make_app):
    app = make_app(otp_max_attempts=2)
    client = app.test_client()
    send(client)
    code = codes(app)[-1]
    assert check(client, wrong(code)).status_code == 400
    assert check(client, wrong(code)).status_code == 400
    assert check(client, code).status_code == 429


def test_expired_code_is_refused(app, client):
    send(client)
    with app.app_context():
        db.session.execute(update(OtpCode).values(expires_at=OtpCode.expires_at - 601))
        db.session.commit()
    r = check(client, codes(app)[-1])
    assert r.status_code == 400
    assert r.get_json() == {"error": "code_expired", "verified": False,
                            "message": r.get_json()["message"]}
    with app.app_context():
        assert db.session.execute(select(Person)).first() is None


def test_otp_ttl_is_configured(make_app):
    import time

    app = make_app(otp_ttl=120)
    send(app.test_client())
    with app.app_context():
        expires_at = db.session.execute(select(OtpCode.expires_at)).scalar_one()
    assert 100 < expires_at - time.time() <= 120


def test_code_is_single_use(app, client):
    send(client)
    code = codes(app)[-1]
    assert check(client, code).status_code == 200
    r = check(client, code)
    assert r.status_code == 400
    assert r.get_json()["error"] == "code_expired"
    assert check(app.test_client(), code).status_code == 400


def test_a_new_send_replaces_the_code(app, client):
    send(client)
    send(client)
    first, second = codes(app)
    if first != second:
        assert check(client, first).status_code == 400
    assert check(client, second).status_code == 200


def test_code_is_bound_to_its_phone(app, client):
    send(client, PHONE)
    send(client, OTHER)
    mine, theirs = codes(app, E164)[-1], codes(app, OTHER)[-1]
    if mine == theirs:  # one chance in a million
        pytest.skip("both phones drew the same code")
    assert check(client, mine, phone=OTHER).status_code == 400
    assert check(client, theirs, phone=OTHER).status_code == 200


def test_code_is_stored_hashed(app, client):
    send(client)
    code = codes(app)[-1]
    with app.app_context():
        row = db.session.execute(select(OtpCode)).scalar_one()
    assert code not in row.code_hash and code not in row.key
    assert row.attempts == 0


# --- persons and devices ------------------------------------------------------------------------


def test_same_phone_on_two_devices_is_one_user(app):
    laptop, phone = app.test_client(), app.test_client()
    user = verified_user(app, laptop)
    assert verified_user(app, phone) == user
    with app.app_context():
        assert db.session.execute(select(Person)).scalars().all()[0].user_id == user
        assert len(db.session.execute(select(Person)).all()) == 1


def test_different_phones_are_different_users(app):
    a = verified_user(app, app.test_client(), PHONE, E164)
    b = verified_user(app, app.test_client(), OTHER, OTHER)
    assert a != b


def test_user_id_is_opaque(app, client):
    user = verified_user(app, client)
    digits = E164[1:]
    for part in (digits, digits[1:], digits[-7:], digits[-4:]):
        assert part not in user
    for h in (hashlib.sha256(E164.encode()).hexdigest(),
              hashlib.sha256(digits.encode()).hexdigest(), hashlib.md5(E164.encode()).hexdigest()):
        assert h[:8] not in user.lower()
    with app.app_context():
        person = db.session.execute(select(Person)).scalar_one()
    assert person.phone_key not in user and person.phone_key[:8] not in user


def test_user_id_survives_reverification(app):
    first = verified_user(app, app.test_client())
    with app.app_context():
        before = db.session.execute(select(Person.created_at, Person.verified_at)).one()
    second = verified_user(app, app.test_client())
    assert first == second
    with app.app_context():
        after = db.session.execute(select(Person.created_at, Person.verified_at)).one()
    assert after.created_at == before.created_at and after.verified_at >= before.verified_at


def test_verification_links_the_cookie_and_records_events(app, client):
    assert client.post(BASE + "/v1/page", json={"writeKey": WRITE_KEY, "name": "Home"},
                       headers=BROWSER).status_code == 200
    anon = cookie_id(app, client)
    user = verified_user(app, client)
    assert cookie_id(app, client) == anon  # the cookie is kept, and re-issued
    with app.app_context():
        links = db.session.execute(select(Link.anonymous_id, Link.kind, Link.value)).all()
        events = db.session.execute(select(Event).where(Event.user_id == user)).scalars().all()
    assert (anon, "person", user) in links
    assert (anon, "user_id", user) in links
    kinds = sorted((e.type, e.event) for e in events)
    assert kinds == [("identify", None), ("track", "Phone Verified")]
    for e in events:
        assert e.anonymous_id == anon
        assert e.source == "web"
        assert e.message["userId"] == user
    identify = next(e for e in events if e.type == "identify")
    assert identify.message["traits"] == {"phoneVerified": True}


def test_no_conversion_event_when_not_configured(make_app):
    app = make_app(conversion_event=None)
    user = verified_user(app, app.test_client())
    with app.app_context():
        kinds = db.session.execute(select(Event.type).where(Event.user_id == user)).scalars().all()
    assert kinds == ["identify"]


def test_verify_from_a_new_browser_sets_a_cookie_and_links_it(app):
    send(app.test_client())  # the code was asked for elsewhere
    client = app.test_client()
    r = check(client, codes(app)[-1])
    assert r.status_code == 200
    anon = cookie_id(app, client)
    assert anon
    with app.app_context():
        link = db.session.execute(select(Link).where(Link.kind == "person")).scalar_one()
    assert (link.anonymous_id, link.value) == (anon, r.get_json()["userId"])


def test_server_side_verify_links_the_body_anonymous_id(app):
    """A server-only key (the site's backend) may name the device it verifies for."""
    client = app.test_client()
    assert send(client, headers={}).status_code == 202
    r = client.post(BASE + "/v1/otp/verify", json={
        "writeKey": SERVER_KEY, "phone": PHONE, "code": codes(app)[-1],
        "anonymousId": "server-anon-1"})
    assert r.status_code == 200
    assert "Set-Cookie" not in r.headers
    with app.app_context():
        links = db.session.execute(select(Link.anonymous_id, Link.kind)).all()
        events = db.session.execute(select(Event.anonymous_id)).scalars().all()
    assert ("server-anon-1", "person") in links
    assert set(events) == {"server-anon-1"}


def test_browser_key_verify_without_origin_does_not_link_the_body_anonymous_id(app):
    """M3: with the public browser key the body's anonymousId is anybody's word."""
    client = app.test_client()
    assert send(client, headers={}).status_code == 202
    r = check(client, codes(app)[-1], headers={}, anonymousId="victim-device-1")
    assert r.status_code == 200
    with app.app_context():
        links = db.session.execute(select(Link.anonymous_id)).scalars().all()
    assert "victim-device-1" not in links


def test_server_side_verify_without_any_id(app):
    client = app.test_client()
    send(client, headers={})
    r = check(client, codes(app)[-1], headers={})
    assert r.status_code == 200
    with app.app_context():
        assert db.session.execute(select(Link)).first() is None
        events = db.session.execute(select(Event.user_id, Event.anonymous_id)).all()
    assert events and all(e == (r.get_json()["userId"], None) for e in events)


# --- nothing leaks --------------------------------------------------------------------------------


def _comparable(resp):
    # Expires is computed from the clock; everything else must match byte for byte.
    headers = [(k, re.sub(r"Expires=[^;]+; ", "", v)) for k, v in resp.headers.items()]
    return resp.status_code, resp.data, headers


def test_send_does_not_tell_whether_a_phone_is_known(app, client):
    verified_user(app, app.test_client(), PHONE, E164)  # a known person
    client.post(BASE + "/v1/page", json={"writeKey": WRITE_KEY, "name": "Home"}, headers=BROWSER)
    known = send(client, PHONE)
    unknown = send(client, OTHER)
    assert known.status_code == 202
    assert _comparable(known) == _comparable(unknown)


def test_codes_and_phones_never_logged_or_answered(app, client, caplog):
    caplog.set_level(logging.DEBUG)
    answers = [send(client), send(app.test_client())]
    code = codes(app)[-1]
    answers.append(check(client, wrong(code)))
    answers.append(check(client, code))
    answers.append(check(client, code))  # used
    answers.append(send(client, "+1 650 555 12"))  # invalid
    assert answers[3].status_code == 200
    digits = E164[1:]
    for r in answers:
        blob = r.get_data(as_text=True) + json.dumps(list(r.headers.items()))
        assert code not in blob
        assert digits not in blob and digits[1:] not in blob
    records = caplog.records
    assert records, "the flow logs something"
    logged = "\n".join(rec.getMessage() + " " + repr(rec.args) for rec in records)
    assert code not in logged
    assert digits not in logged and digits[1:] not in logged
    assert "+1******1234" in logged  # phones appear masked


def _text_values(app):
    """Every text-ish value of every table, as strings."""
    out = []
    with app.app_context():
        for table in db.metadata.sorted_tables:
            cols = [c for c in table.columns if isinstance(c.type, String | Text | JSON)]
            if not cols:
                continue
            for row in db.session.execute(select(*cols)).all():
                out.extend(json.dumps(v) if not isinstance(v, str) else v for v in row if v)
    return out


def test_phone_is_never_stored_in_clear(make_app, app, client):
    client.post(BASE + "/v1/page", json={"writeKey": WRITE_KEY, "name": "Home"}, headers=BROWSER)
    user = verified_user(app, client)
    send(client, "650 555 1234")  # a second, pending code
    check(client, "000000", phone="(650) 555-1234")
    client.post(BASE + "/v1/track", json={"writeKey": WRITE_KEY, "event": "Order Completed"},
                headers=BROWSER)
    values = _text_values(app)
    assert any(user in v for v in values)  # the scan does see the tables
    national = "6505551234"
    for v in values:
        squeezed = re.sub(r"[^\d]", "", v)
        assert national not in squeezed, v[:200]
    with app.app_context():
        # the raw table too, in case a column type is not one of the above
        rows = db.session.execute(text("SELECT * FROM persons")).all()
    assert national not in repr(rows)
    keys = redis.Redis.from_url(make_app.throttle_url).keys(f"{make_app.key_prefix}*")
    assert keys and not any(national in k.decode() for k in keys)


def test_person_keeps_phone_encrypted_and_keyed(app, client):
    from sst.identity.crypto import PhoneCipher, phone_lookup_key

    verified_user(app, client)
    secret = app.config["SECRET_KEY"]
    with app.app_context():
        person = db.session.execute(select(Person)).scalar_one()
    assert person.phone_key == phone_lookup_key(E164, secret)
    assert PhoneCipher(secret).decrypt(person.phone_enc) == E164
    assert person.country == "US"


# --- concurrency and outages ----------------------------------------------------------------------


def test_concurrent_first_sends_for_one_phone(make_app):
    # A double-clicked button: two sends for a phone with no code yet used to deadlock in
    # the code store (DELETE + INSERT) and answer 500.
    app = make_app(send_limit_phone="50/minute", send_limit_ip="500/minute")
    phones = [f"+1650555{i:04d}" for i in range(10)]
    barrier = threading.Barrier(4)
    statuses = []

    def worker():
        client = app.test_client()
        for phone in phones:
            barrier.wait()
            statuses.append(send(client, phone).status_code)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [202] * 40
    with app.app_context():
        assert len(db.session.execute(select(OtpCode)).all()) == 10


def test_preflight_from_an_allowed_origin(client):
    r = client.options(BASE + "/v1/otp/verify", headers={
        **BROWSER, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    assert "content-type" in r.headers["Access-Control-Allow-Headers"].lower()


def _db_down(*args, **kwargs):
    raise OperationalError("INSERT INTO otp_codes", {}, Exception("database is gone"))


def test_code_store_outage_on_send_is_503(client, monkeypatch):
    monkeypatch.setattr(DbCodeStore, "put", _db_down)
    r = send(client)
    assert r.status_code == 503
    assert r.get_json()["error"] == "otp_unavailable"
    assert r.headers["Retry-After"] == "30"


def test_code_store_outage_on_verify_is_503(app, client, monkeypatch):
    send(client)
    monkeypatch.setattr(DbCodeStore, "get", _db_down)
    r = check(client, codes(app)[-1])
    assert r.status_code == 503
    assert r.get_json()["verified"] is False


def test_person_store_outage_is_503(app, client, monkeypatch):
    send(client)
    monkeypatch.setattr(people, "person_for_phone", _db_down)
    r = check(client, codes(app)[-1])
    assert r.status_code == 503
    assert r.get_json()["error"] == "storage_unavailable"
    assert r.get_json()["verified"] is False
    assert r.headers["Retry-After"] == "30"
