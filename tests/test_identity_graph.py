"""The identity graph on MariaDB: devices joined to a verified person by the OTP API or by an
identify call carrying the person's userId, and what delivery.event_data.build_event_data makes of them."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from sst.delivery.event_data import build_event_data
from sst.extensions import db
from sst.identity import people
from sst.identity.crypto import phone_lookup_key
from sst.models import Event, Link
from support.apps import ORIGIN, SERVER_KEY, WRITE_KEY
from support.otp import codes, cookie_id, otp_apps

BASE = "https://t.example.com"
BROWSER = {"Origin": ORIGIN}
E164 = "+16505551234"


@pytest.fixture
def app(mysql_url, redis_url, tmp_path):
    with otp_apps(mysql_url, redis_url, tmp_path / "outbox.jsonl") as make:
        yield make()


def verify(app, client, phone=E164):
    assert client.post(BASE + "/v1/otp/send", json={"writeKey": WRITE_KEY, "phone": phone},
                       headers=BROWSER).status_code == 202
    r = client.post(BASE + "/v1/otp/verify", json={"writeKey": WRITE_KEY, "phone": phone,
                                                   "code": codes(app, phone)[-1]}, headers=BROWSER)
    assert r.status_code == 200, r.data
    return r.get_json()["userId"]


def page(client, url, at=None):
    body = {"writeKey": WRITE_KEY, "name": "Landing", "context": {"page": {"url": url}}}
    if at is not None:
        body["timestamp"] = at.isoformat()  # no sentAt: the event time is this timestamp
    r = client.post(BASE + "/v1/page", json=body, headers=BROWSER)
    assert r.status_code == 200, r.data


def test_identify_with_a_server_key_links_another_device(app):
    laptop, tablet = app.test_client(), app.test_client()
    user = verify(app, laptop)
    page(tablet, "https://www.example.com/")
    tablet_id = cookie_id(app, tablet)
    engine = app.extensions["sst"].engine
    assert people.find_person(engine, anonymous_id=tablet_id) is None
    r = app.test_client().post(BASE + "/v1/identify", json={
        "writeKey": SERVER_KEY, "userId": user, "anonymousId": tablet_id})
    assert r.status_code == 200
    assert people.find_person(engine, anonymous_id=tablet_id).user_id == user
    assert set(people.devices_of(engine, user)) == {cookie_id(app, laptop), tablet_id}


def _event_data(app, message_id):
    engine = app.extensions["sst"].engine
    with engine.connect() as conn:
        event_id = conn.execute(select(Event.id).where(Event.message_id == message_id)).scalar()
    return build_event_data(engine, [{"id": 1, "event_id": event_id,
                                      "platform_event": "Purchase"}],
                            phones=people.phones_for(app.config["SECRET_KEY"]))[1]


def test_a_browser_key_user_id_claims_no_person(app):
    """M3: the victim's userId sent with the public browser key (identify, then a track) is
    stored as sent but pulls neither the victim's phone nor their devices' click ids."""
    victim, attacker = app.test_client(), app.test_client()
    page(victim, "https://www.example.com/?fbclid=FB-VICTIM")
    user = verify(app, victim)
    page(attacker, "https://www.example.com/?gclid=G-ATTACKER")
    for kind, extra in (("identify", {}), ("track", {"event": "Order Completed",
                                                     "messageId": "attack-1"})):
        r = attacker.post(BASE + f"/v1/{kind}", json={
            "writeKey": WRITE_KEY, "userId": user, "anonymousId": "attacker-device-9",
            "context": {"ip": "203.0.113.66"}, **extra}, headers=BROWSER)
        assert r.status_code == 200, r.data
    engine = app.extensions["sst"].engine
    attacker_id = cookie_id(app, attacker)
    assert people.find_person(engine, anonymous_id=attacker_id) is None
    assert people.find_person(engine, anonymous_id="attacker-device-9") is None
    assert set(people.devices_of(engine, user)) == {cookie_id(app, victim)}
    data = _event_data(app, "attack-1")
    assert data.phone is None
    assert {p: c.value for p, c in data.click_ids.items()} == {"gclid": "G-ATTACKER"}
    with engine.connect() as conn:
        row = conn.execute(select(Event.user_id).where(Event.message_id == "attack-1")).scalar()
    assert row == user  # stored as sent


def test_verify_does_not_link_a_body_anonymous_id(app):
    """M3: a verification links the caller's own cookie, not a device named in the body."""
    page(app.test_client(), "https://www.example.com/?fbclid=FB-VICTIM")
    attacker = app.test_client()
    page(attacker, "https://www.example.com/")
    assert attacker.post(BASE + "/v1/otp/send", json={"writeKey": WRITE_KEY, "phone": E164},
                         headers=BROWSER).status_code == 202
    r = attacker.post(BASE + "/v1/otp/verify", json={
        "writeKey": WRITE_KEY, "phone": E164, "code": codes(app, E164)[-1],
        "anonymousId": "victim-device-1"}, headers=BROWSER)
    assert r.status_code == 200
    engine = app.extensions["sst"].engine
    user = r.get_json()["userId"]
    assert people.devices_of(engine, user) == [cookie_id(app, attacker)]
    # Without a cookie, a browser gets a new id of sst's choosing, not the body's.
    fresh = app.test_client()
    assert fresh.post(BASE + "/v1/otp/send", json={"writeKey": WRITE_KEY, "phone": E164},
                      headers=BROWSER).status_code == 202
    fresh = app.test_client()
    r = fresh.post(BASE + "/v1/otp/verify", json={
        "writeKey": WRITE_KEY, "phone": E164, "code": codes(app, E164)[-1],
        "anonymousId": "victim-device-1"}, headers=BROWSER)
    assert r.status_code == 200
    assert "victim-device-1" not in people.devices_of(engine, user)
    assert people.find_person(engine, anonymous_id="victim-device-1") is None


def test_identify_with_an_unknown_user_id_links_no_person(app):
    client = app.test_client()
    verify(app, app.test_client())
    r = client.post(BASE + "/v1/identify", json={"writeKey": WRITE_KEY, "userId": "crm-42"},
                    headers=BROWSER)
    assert r.status_code == 200
    engine = app.extensions["sst"].engine
    assert people.find_person(engine, anonymous_id=cookie_id(app, client)) is None
    with app.app_context():
        link = db.session.execute(select(Link).where(Link.value == "crm-42")).scalar_one()
    assert link.kind == "claimed_user_id"  # a browser key's word, kept but trusted by nobody


def test_find_person_by_each_identifier(app):
    client = app.test_client()
    user = verify(app, client)
    engine = app.extensions["sst"].engine
    key = phone_lookup_key(E164, app.config["SECRET_KEY"])
    by_phone = people.find_person(engine, phone_key=key)
    assert by_phone.user_id == user
    assert people.find_person(engine, user_id=user).phone_key == key
    assert people.find_person(engine, anonymous_id=cookie_id(app, client)).user_id == user
    assert people.find_person(engine, user_id="u_nobody") is None
    assert people.find_person(engine, anonymous_id="nobody") is None
    assert people.find_person(engine, phone_key="0" * 64) is None


def test_verifying_twice_on_one_device_links_once(app):
    client = app.test_client()
    user = verify(app, client)
    verify(app, client)
    engine = app.extensions["sst"].engine
    assert people.devices_of(engine, user) == [cookie_id(app, client)]
    with app.app_context():
        kinds = sorted(db.session.execute(select(Link.kind)).scalars())
    assert kinds == ["person", "user_id"]


def test_phones_for_decrypts_only_known_users(app):
    user = verify(app, app.test_client())
    phones = people.phones_for(app.config["SECRET_KEY"])
    with app.extensions["sst"].engine.connect() as conn:
        assert phones(conn, {user, "u_nobody"}) == {user: E164}
    other = people.phones_for("another-secret-0123456789")
    with app.extensions["sst"].engine.connect() as conn:
        assert other(conn, {user}) == {}  # an old secret's rows are sent without the phone


def test_build_event_data_uses_the_most_recent_click_of_any_device(app):
    """Laptop and phone of one person: the phone's conversion gets, per click id, the most
    recent click within that parameter's window, whichever device saw it."""
    now = datetime.now(UTC).replace(microsecond=0)
    laptop, phone = app.test_client(), app.test_client()
    page(laptop, "https://www.example.com/?fbclid=FB-LAPTOP&ttclid=TT-OLD",
         now - timedelta(days=40))
    page(laptop, "https://www.example.com/?gclid=G-LAPTOP-NEW", now - timedelta(days=1))
    page(phone, "https://www.example.com/?fbclid=FB-PHONE&gclid=G-PHONE-OLD",
         now - timedelta(days=3))
    page(phone, "https://www.example.com/?gclid=G-AFTER", now)
    user = verify(app, laptop)
    assert verify(app, phone) == user
    r = phone.post(BASE + "/v1/track", json={  # a conversion sent two hours late
        "writeKey": WRITE_KEY, "event": "Order Completed", "messageId": "order-1",
        "timestamp": (now - timedelta(hours=2)).isoformat()}, headers=BROWSER)
    assert r.status_code == 200
    engine = app.extensions["sst"].engine
    with engine.connect() as conn:
        event_id = conn.execute(select(Event.id).where(Event.message_id == "order-1")).scalar()
    out = build_event_data(engine, [{"id": 7, "event_id": event_id,
                                     "platform_event": "Purchase"}],
                           phones=people.phones_for(app.config["SECRET_KEY"]))
    data = out[7]
    clicks = {p: c.value for p, c in data.click_ids.items()}
    # gclid: the laptop's one-day-old click beats the phone's three-day-old one; the click
    # seen two hours after the event does not count. fbclid: the phone's (3 days) is more
    # recent than the laptop's (40 days). ttclid: 40 days is past its 28-day window.
    assert clicks == {"gclid": "G-LAPTOP-NEW", "fbclid": "FB-PHONE"}
    assert abs(data.click_ids["gclid"].seen_at - (now - timedelta(days=1))) < timedelta(seconds=2)
    assert data.user_id == user
    assert data.phone == E164
    assert data.anonymous_id == cookie_id(app, phone)
    assert data.message["context"]["clickIds"] == clicks


def test_build_event_data_before_the_link_and_for_a_stranger(app):
    """A device not linked to anybody keeps its own clicks only, and no phone."""
    now = datetime.now(UTC).replace(microsecond=0)
    laptop, stranger = app.test_client(), app.test_client()
    page(laptop, "https://www.example.com/?gclid=G-LAPTOP", now - timedelta(days=1))
    verify(app, laptop)
    page(stranger, "https://www.example.com/?fbclid=FB-STRANGER", now - timedelta(days=2))
    r = stranger.post(BASE + "/v1/track", json={"writeKey": WRITE_KEY, "event": "Signup",
                                                "messageId": "s-1"}, headers=BROWSER)
    assert r.status_code == 200
    engine = app.extensions["sst"].engine
    with engine.connect() as conn:
        event_id = conn.execute(select(Event.id).where(Event.message_id == "s-1")).scalar()
    data = build_event_data(engine, [{"id": 1, "event_id": event_id, "platform_event": "Lead"}],
                            phones=people.phones_for(app.config["SECRET_KEY"]))[1]
    assert {p: c.value for p, c in data.click_ids.items()} == {"fbclid": "FB-STRANGER"}
    assert data.phone is None
    assert data.user_id is None


def test_server_event_with_the_user_id_gets_the_persons_clicks(app):
    """A server-side event that carries only the verified userId is joined to the devices."""
    now = datetime.now(UTC).replace(microsecond=0)
    laptop = app.test_client()
    page(laptop, "https://www.example.com/?ttclid=TT-LAPTOP", now - timedelta(days=2))
    user = verify(app, laptop)
    r = app.test_client().post(BASE + "/v1/track", json={
        "writeKey": SERVER_KEY, "event": "Renewal", "userId": user, "messageId": "srv-1"})
    assert r.status_code == 200
    engine = app.extensions["sst"].engine
    with engine.connect() as conn:
        event_id = conn.execute(select(Event.id).where(Event.message_id == "srv-1")).scalar()
    data = build_event_data(engine, [{"id": 1, "event_id": event_id, "platform_event": "Renew"}],
                            phones=people.phones_for(app.config["SECRET_KEY"]))[1]
    assert {p: c.value for p, c in data.click_ids.items()} == {"ttclid": "TT-LAPTOP"}
    assert data.phone == E164
    assert data.user_id == user
