"""`sst identity show` on MariaDB: find a person by phone, userId or device; the phone is
only ever printed masked."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from sst.cli import main as sst_cli
from support.apps import ORIGIN, WRITE_KEY
from support.otp import codes, cookie_id, otp_apps

BASE = "https://t.example.com"
BROWSER = {"Origin": ORIGIN}
E164 = "+16505551234"


@pytest.fixture
def app(mysql_url, redis_url, tmp_path):
    with otp_apps(mysql_url, redis_url, tmp_path / "outbox.jsonl", default_region="US") as make:
        yield make()


def verify(app, client, phone=E164):
    client.post(BASE + "/v1/otp/send", json={"writeKey": WRITE_KEY, "phone": phone},
                headers=BROWSER)
    r = client.post(BASE + "/v1/otp/verify", json={"writeKey": WRITE_KEY, "phone": phone,
                                                   "code": codes(app, phone)[-1]},
                    headers=BROWSER)
    assert r.status_code == 200
    return r.get_json()["userId"]


@pytest.fixture
def person(app):
    """A person with two devices; the laptop arrived from an ad click."""
    laptop, phone = app.test_client(), app.test_client()
    at = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    r = laptop.post(BASE + "/v1/page", json={
        "writeKey": WRITE_KEY, "name": "Landing", "timestamp": at,
        "context": {"page": {"url": "https://www.example.com/?gclid=GCLICK-123"}}},
        headers=BROWSER)
    assert r.status_code == 200
    user = verify(app, laptop)
    assert verify(app, phone) == user
    return {"user": user, "laptop": cookie_id(app, laptop), "phone": cookie_id(app, phone)}


def show(app, *args):
    return app.test_cli_runner().invoke(sst_cli, ["identity", "show", *args])


def test_show_by_phone_in_any_format(app, person):
    for spelling in (E164, "(650) 555-1234", "650.555.1234"):
        result = show(app, "--phone", spelling)
        assert result.exit_code == 0, result.output
        out = result.output
        assert person["user"] in out
        assert "+1******1234" in out
        assert "6505551234" not in out
        assert person["laptop"] in out and person["phone"] in out
        assert "devices  2" in out
        assert "gclid" in out and "GCLICK-123" in out


@pytest.mark.parametrize("by", ["--user-id", "--anonymous-id"])
def test_show_by_user_id_or_device(app, person, by):
    value = person["user"] if by == "--user-id" else person["phone"]
    result = show(app, by, value)
    assert result.exit_code == 0, result.output
    assert person["user"] in result.output
    assert "+1******1234" in result.output
    assert "6505551234" not in result.output


def test_show_json(app, person):
    result = show(app, "--user-id", person["user"], "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["userId"] == person["user"]
    assert doc["phone"] == "+1******1234"
    assert doc["country"] == "US"
    assert {d["anonymousId"] for d in doc["devices"]} == {person["laptop"], person["phone"]}
    assert [(c["param"], c["value"], c["anonymousId"]) for c in doc["clicks"]] == [
        ("gclid", "GCLICK-123", person["laptop"])]
    kinds = {(e["type"], e["anonymousId"]) for e in doc["recentEvents"]}
    assert ("page", person["laptop"]) in kinds and ("identify", person["phone"]) in kinds
    assert "6505551234" not in result.output


@pytest.mark.parametrize("args", [
    ("--phone", "+16505559876"), ("--user-id", "u_nobody"), ("--anonymous-id", "nobody"),
])
def test_show_unknown_exits_1(app, person, args):
    result = show(app, *args)
    assert result.exit_code == 1
    assert "no verified person found" in result.output
    assert person["user"] not in result.output


def test_show_device_without_person_exits_1(app):
    client = app.test_client()
    client.post(BASE + "/v1/page", json={"writeKey": WRITE_KEY, "name": "Home"}, headers=BROWSER)
    result = show(app, "--anonymous-id", cookie_id(app, client))
    assert result.exit_code == 1


@pytest.mark.parametrize("args", [(), ("--phone", E164, "--user-id", "u_x")])
def test_show_needs_exactly_one_identifier(app, args):
    result = show(app, *args)
    assert result.exit_code == 2
    assert "exactly one" in result.output


def test_show_invalid_phone_is_a_usage_error(app):
    result = show(app, "--phone", "not a phone")
    assert result.exit_code == 2
    assert "not a valid phone number" in result.output


def test_show_by_phone_picks_that_phone_on_a_shared_device(app):
    """Two phones verified on one laptop join both people in one identity graph; --phone
    still shows the person with that very phone."""
    laptop = app.test_client()
    first, second = verify(app, laptop), verify(app, laptop, phone="+16505559876")
    assert first != second
    for phone, user in (("(650) 555-1234", first), ("+16505559876", second)):
        result = show(app, "--phone", phone, "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["userId"] == user
