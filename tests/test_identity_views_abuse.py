"""Abuse limits of the OTP API on the real Redis (counters of each test's own, see
support/otp.py): sends per phone, per IP and per country, and checks per phone and per IP."""

import json

import pytest
from sqlalchemy import select

from sst.extensions import db
from sst.models import Person
from support import otp
from support.apps import ORIGIN, WRITE_KEY, make_mysql_app, truncate_all
from support.otp import otp_apps

BASE = "https://t.example.com"
BROWSER = {"Origin": ORIGIN}
E164 = "+16505551234"


@pytest.fixture
def make_app(mysql_url, redis_url, tmp_path):
    with otp_apps(mysql_url, redis_url, tmp_path / "outbox.jsonl") as make:
        yield make


def codes(app, phone=E164):
    return otp.codes(app, phone)


def client_at(app, ip):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ip
    return client


def send(client, phone=E164):
    return client.post(BASE + "/v1/otp/send", json={"writeKey": WRITE_KEY, "phone": phone},
                       headers=BROWSER)


def check(client, code, phone=E164):
    return client.post(BASE + "/v1/otp/verify", json={"writeKey": WRITE_KEY, "phone": phone,
                                                      "code": code}, headers=BROWSER)


def wrong(code, n=1):
    return f"{(int(code) + n) % 10**6:06d}"


def assert_limited(r, most=None):
    assert r.status_code == 429, r.data
    assert r.get_json()["error"] == "rate_limited"
    wait = int(r.headers["Retry-After"])
    assert wait >= 1
    if most is not None:
        assert wait <= most


def us_phone(i):
    return f"+1650555{i:04d}"


# --- sends ------------------------------------------------------------------------------------


def test_three_sends_per_phone_then_429(make_app):
    app = make_app()  # defaults: "3/10 minutes"
    laptop, phone, again = (client_at(app, f"198.51.100.{i}") for i in (1, 2, 3))
    assert send(laptop).status_code == 202
    assert send(phone).status_code == 202
    assert send(again).status_code == 202  # two devices and one resend
    r = send(client_at(app, "198.51.100.4"))  # from yet another IP: the phone's own bucket
    assert_limited(r, 600)
    assert len(codes(app)) == 3  # the fourth SMS was never sent


def test_phone_limit_does_not_block_other_phones(make_app):
    app = make_app()
    client = app.test_client()
    for _ in range(3):
        send(client)
    assert send(client).status_code == 429
    assert send(client, "+16505559876").status_code == 202


def test_phone_limit_counts_spellings_together(make_app):
    app = make_app()
    client = app.test_client()
    for spelling in ("+16505551234", "(650) 555-1234", "650.555.1234"):
        assert send(client, spelling).status_code == 202
    assert send(client, "1 650 555 1234").status_code == 429


def test_send_limit_phone_is_configurable(make_app):
    app = make_app(send_limit_phone="1/hour")
    client = app.test_client()
    assert send(client).status_code == 202
    assert_limited(send(client), 3600)


def test_ip_send_flood_is_429(make_app):
    app = make_app()  # default "20/hour" per IP
    flooder = client_at(app, "203.0.113.7")
    for i in range(20):
        assert send(flooder, us_phone(i)).status_code == 202, i
    assert_limited(send(flooder, us_phone(20)), 3600)
    assert not codes(app, us_phone(20))
    # another IP is not affected, even for a fresh phone
    assert send(client_at(app, "203.0.113.8"), us_phone(21)).status_code == 202


def test_send_limit_ip_is_configurable(make_app):
    app = make_app(send_limit_ip="2/minute")
    flooder = client_at(app, "203.0.113.9")
    assert send(flooder, us_phone(1)).status_code == 202
    assert send(flooder, us_phone(2)).status_code == 202
    assert_limited(send(flooder, us_phone(3)), 60)


def test_country_daily_budget(make_app):
    app = make_app(country_daily_budget=2, allowed_regions=["US", "GB"])
    gb = ["+447400123456", "+447400123457", "+447400123458"]
    for i, phone in enumerate(gb[:2]):
        assert send(client_at(app, f"192.0.2.{i}"), phone).status_code == 202
    assert_limited(send(client_at(app, "192.0.2.9"), gb[2]), 86400)
    assert not codes(app, gb[2])
    # other countries keep their own budget
    assert send(client_at(app, "192.0.2.10"), E164).status_code == 202


def test_only_the_default_region_by_default(make_app):
    """M6: codes go to the configured default region's phones only, unless allowed."""
    app = make_app()
    r = send(client_at(app, "192.0.2.20"), "+447400123456")
    assert r.status_code == 400, r.data
    assert r.get_json()["fields"] == {"phone": "region_not_allowed"}
    assert not codes(app, "+447400123456")
    assert send(client_at(app, "192.0.2.21"), E164).status_code == 202
    gb = make_app(default_region="GB")
    assert send(client_at(gb, "192.0.2.22"), "07400 123457").status_code == 202
    assert send(client_at(gb, "192.0.2.23"), us_phone(5)).status_code == 400
    anywhere = make_app(allowed_regions=["*"])
    assert send(client_at(anywhere, "192.0.2.24"), "+447400123458").status_code == 202


def test_global_daily_budget(make_app):
    """M6: one budget over every country, whatever the per-country ones say."""
    app = make_app(daily_budget=3, allowed_regions=["*"])
    phones = [us_phone(1), "+447400123456", "+33612345678", "+4915123456789"]
    for i, phone in enumerate(phones[:3]):
        assert send(client_at(app, f"192.0.2.{30 + i}"), phone).status_code == 202
    assert_limited(send(client_at(app, "192.0.2.40"), phones[3]), 86400)
    assert not codes(app, phones[3])


def test_ipv6_limits_key_the_slash_64(make_app):
    """M6: an IPv6 subscriber holds a whole /64; each address is not a fresh limit."""
    app = make_app(send_limit_ip="2/hour")
    assert send(client_at(app, "2001:db8:1:2::1"), us_phone(1)).status_code == 202
    assert send(client_at(app, "2001:db8:1:2::ffff"), us_phone(2)).status_code == 202
    assert_limited(send(client_at(app, "2001:db8:1:2:abcd::9"), us_phone(3)), 3600)
    assert send(client_at(app, "2001:db8:1:3::1"), us_phone(4)).status_code == 202


def test_country_budget_zero_means_unlimited(make_app):
    app = make_app(country_daily_budget=0, send_limit_ip=None)
    client = app.test_client()
    for i in range(12):
        assert send(client, us_phone(i)).status_code == 202


def test_limit_answers_do_not_name_the_bucket(make_app):
    app = make_app(send_limit_ip="1/hour")
    client = app.test_client()
    send(client, us_phone(1))
    by_ip = send(client, us_phone(2))
    app2 = make_app()
    c2 = app2.test_client()
    for _ in range(3):
        send(c2)
    by_phone = send(c2)
    assert by_ip.status_code == by_phone.status_code == 429
    assert by_ip.get_json() == by_phone.get_json()


# --- checks ---------------------------------------------------------------------------------------


def test_brute_force_stops_at_the_cap(make_app):
    app = make_app()  # 5 wrong codes per code, "10/10 minutes" checks per phone
    attacker = app.test_client()
    guesses = 0
    assert send(attacker).status_code == 202
    code = codes(app)[-1]
    for n in range(1, 6):
        assert check(attacker, wrong(code, n)).status_code == 400
        guesses += 1
    assert_limited(check(attacker, code))  # the code is dead
    guesses += 1
    assert send(attacker).status_code == 202  # a new code, new tries...
    code = codes(app)[-1]
    for n in range(1, 5):
        assert check(attacker, wrong(code, n)).status_code == 400
        guesses += 1
    assert guesses == 10
    # ...until the per-phone check bucket is empty: even the right code is refused
    r = check(attacker, code)
    assert_limited(r, 600)
    assert r.get_json()["verified"] is False
    assert "userId" not in r.get_json()
    with app.app_context():
        assert db.session.execute(select(Person)).first() is None


def test_check_cap_per_phone_holds_across_ips(make_app):
    app = make_app(verify_limit_phone="3/10 minutes", otp_max_attempts=10)
    send(app.test_client())
    code = codes(app)[-1]
    for i in range(3):
        assert check(client_at(app, f"198.51.100.{i}"), wrong(code, i + 1)).status_code == 400
    r = check(client_at(app, "198.51.100.99"), code)
    assert_limited(r)
    assert r.get_json()["verified"] is False


def test_check_cap_per_ip_across_phones(make_app):
    app = make_app(verify_limit_ip="4/10 minutes")
    attacker = client_at(app, "203.0.113.50")
    for i in range(4):
        assert check(attacker, "123456", us_phone(i)).status_code == 400
    r = check(attacker, "123456", us_phone(5))
    assert_limited(r, 600)
    assert r.get_json()["verified"] is False
    # a legitimate user elsewhere still verifies
    user = client_at(app, "203.0.113.51")
    send(user)
    assert check(user, codes(app)[-1]).status_code == 200


def test_limits_are_shared_between_app_instances(make_app):
    # Two web processes (two apps) see the same Redis counters.
    one, two = make_app(), make_app()
    send(one.test_client())
    send(two.test_client())
    send(one.test_client())
    assert send(two.test_client()).status_code == 429


def test_redis_down_refuses_sends_but_not_checks(mysql_url, tmp_path):
    # Sends cost money: without the counters they stop (503). A check costs nothing and
    # each code still dies after otp_max_attempts wrong tries (kept in the database).
    outbox = tmp_path / "outbox.jsonl"
    app = make_mysql_app(mysql_url, "redis://127.0.0.1:1/15", IDENTITY={
        "otp_provider": "file", "otp_outbox": str(outbox)})
    truncate_all(app)
    client = app.test_client()
    r = send(client)
    assert r.status_code == 503
    assert r.get_json()["error"] == "otp_unavailable"
    assert r.headers["Retry-After"] == "30"
    assert not outbox.exists()
    with app.app_context():
        assert app.extensions["sst"].otp_provider.send(E164).status == "pending"
    code = json.loads(outbox.read_text())["code"]
    assert check(client, wrong(code)).status_code == 400
    assert check(client, code).status_code == 200
