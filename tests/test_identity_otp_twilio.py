"""The Twilio providers behind the OTP API, offline: a fake twilio.http.HttpClient (injected
through OTP_HTTP_CLIENT) records the exact request the real SDK builds and answers with
canned responses; we assert the request and how Twilio's answers map to ours."""

import json
import logging
from urllib.parse import urlencode

import pytest
from sqlalchemy import select
from twilio.http import HttpClient
from twilio.http.response import Response

from sst.extensions import db
from sst.models import Event, OtpCode, Person
from support.apps import ORIGIN, WRITE_KEY
from support.otp import otp_apps

BASE = "https://t.example.com"
BROWSER = {"Origin": ORIGIN}
E164 = "+16505551234"
ACCOUNT = "AC" + "0" * 32
TOKEN = "twilio-auth-token-not-for-logs"
SERVICE = "VA" + "1" * 32
VERIFY_URL = f"https://verify.twilio.com/v2/Services/{SERVICE}"
MESSAGES_URL = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Messages.json"


class FakeTwilio(HttpClient):
    """Records every request; answers with queued (status, body) pairs."""

    def __init__(self):
        super().__init__(logging.getLogger("tests.fake_twilio"), False, None)
        self.requests = []
        self.replies = []

    def reply(self, status, body):
        self.replies.append((status, body))

    def request(self, method, uri, params=None, data=None, headers=None, auth=None,
                timeout=None, allow_redirects=False):
        self.requests.append({"method": method, "url": uri, "params": params, "data": data,
                              "headers": headers, "auth": auth})
        status, body = self.replies.pop(0)
        text = body if isinstance(body, str) else json.dumps(body)
        return Response(status, text, headers={})


def pending(to=E164):
    return {"sid": "VE" + "2" * 32, "service_sid": SERVICE, "account_sid": ACCOUNT, "to": to,
            "channel": "sms", "status": "pending", "valid": False}


def error(code, status, message="error"):
    return {"code": code, "message": message, "status": status,
            "more_info": f"https://www.twilio.com/docs/errors/{code}"}


@pytest.fixture
def fake():
    return FakeTwilio()


@pytest.fixture
def make_app(mysql_url, redis_url, fake):
    with otp_apps(mysql_url, redis_url, conversion_event="Phone Verified") as make_otp:

        def make(provider="twilio_verify", **identity):
            cfg = {"otp_provider": provider, "twilio_account_sid": ACCOUNT,
                   "twilio_auth_token": TOKEN}
            if provider == "twilio_verify":
                cfg["twilio_verify_service_sid"] = SERVICE
            else:
                cfg["twilio_from"] = "+15005550006"
            return make_otp({"OTP_HTTP_CLIENT": fake}, **{**cfg, **identity})

        yield make


@pytest.fixture
def verify_app(make_app):
    return make_app("twilio_verify")


@pytest.fixture
def sms_app(make_app):
    return make_app("twilio_sms")


def send(client, phone="(650) 555-1234"):
    return client.post(BASE + "/v1/otp/send", json={"writeKey": WRITE_KEY, "phone": phone},
                       headers=BROWSER)


def check(client, code, phone="650-555-1234"):
    return client.post(BASE + "/v1/otp/verify", json={"writeKey": WRITE_KEY, "phone": phone,
                                                      "code": code}, headers=BROWSER)


# --- Twilio Verify ------------------------------------------------------------------------------


def test_verify_send_builds_the_sdk_request(verify_app, fake):
    fake.reply(201, pending())
    r = send(verify_app.test_client())
    assert r.status_code == 202
    assert r.get_json() == {"status": "pending"}
    [req] = fake.requests
    assert req["method"] == "POST"
    assert req["url"] == f"{VERIFY_URL}/Verifications"
    assert req["data"] == {"To": E164, "Channel": "sms"}
    assert req["auth"] == (ACCOUNT, TOKEN)
    assert req["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert urlencode(req["data"]) == "To=%2B16505551234&Channel=sms"


def test_verify_channel_is_configurable(make_app, fake):
    app = make_app("twilio_verify", twilio_channel="whatsapp")
    fake.reply(201, pending())
    assert send(app.test_client()).status_code == 202
    assert fake.requests[0]["data"] == {"To": E164, "Channel": "whatsapp"}


def test_verify_check_approved_makes_the_person(verify_app, fake):
    client = verify_app.test_client()
    fake.reply(201, pending())
    send(client)
    fake.reply(200, {**pending(), "status": "approved", "valid": True})
    r = check(client, "123456")
    assert r.status_code == 200
    user = r.get_json()["userId"]
    assert r.get_json() == {"verified": True, "userId": user}
    req = fake.requests[-1]
    assert req["method"] == "POST"
    assert req["url"] == f"{VERIFY_URL}/VerificationCheck"  # singular
    assert req["data"] == {"To": E164, "Code": "123456"}
    assert req["auth"] == (ACCOUNT, TOKEN)
    with verify_app.app_context():
        assert db.session.execute(select(Person.user_id)).scalar_one() == user
        kinds = sorted(db.session.execute(select(Event.type)).scalars())
        # nothing of ours is stored for Twilio's codes
        assert db.session.execute(select(OtpCode)).first() is None
    assert kinds == ["identify", "track"]


def test_verify_code_spacing_is_cleaned_before_twilio(verify_app, fake):
    fake.reply(200, {**pending(), "status": "approved", "valid": True})
    assert check(verify_app.test_client(), "123 456").status_code == 200
    assert fake.requests[-1]["data"]["Code"] == "123456"


def test_verify_wrong_code_is_pending_with_200(verify_app, fake):
    # Twilio answers a wrong code with HTTP 200 and status "pending".
    fake.reply(200, pending())
    r = check(verify_app.test_client(), "000000")
    assert r.status_code == 400
    assert r.get_json()["verified"] is False
    assert r.get_json()["error"] == "wrong_code"


def test_verify_malformed_code_is_not_sent_to_twilio(verify_app, fake):
    r = check(verify_app.test_client(), "12")
    assert r.status_code == 400
    assert r.get_json()["verified"] is False
    assert fake.requests == []


@pytest.mark.parametrize("reply, status, answer", [
    ((400, error(60200, 400, "Invalid parameter `To`: +16505551234")), 400, "invalid_phone"),
    ((400, error(60205, 400, "SMS is not supported by landline phone number")), 400,
     "invalid_phone"),
    ((429, error(60203, 429, "Max send attempts reached")), 429, "rate_limited"),
    ((429, error(60410, 429, "Fraud Guard blocked this prefix")), 429, "rate_limited"),
    ((403, error(60605, 403, "Geo permission")), 429, "rate_limited"),
    ((500, error(20500, 500, "Internal Server Error")), 503, "otp_unavailable"),
    ((503, "<html>Service Unavailable</html>"), 503, "otp_unavailable"),
    ((401, error(20003, 401, "Authenticate")), 503, "otp_unavailable"),
])
def test_verify_send_error_mapping(verify_app, fake, reply, status, answer):
    fake.reply(*reply)
    r = send(verify_app.test_client())
    assert r.status_code == status
    body = r.get_json()
    assert body["error"] == answer
    assert "twilio" not in json.dumps(body).lower()  # Twilio's detail is for logs only
    assert "16505551234" not in r.get_data(as_text=True)
    if status in (429, 503):
        assert int(r.headers["Retry-After"]) > 0


def test_verify_60203_waits_ten_minutes(verify_app, fake):
    fake.reply(429, error(60203, 429, "Max send attempts reached"))
    r = send(verify_app.test_client())
    assert r.headers["Retry-After"] == "600"


def test_verify_rfc9457_error_is_mapped_too(verify_app, fake):
    fake.reply(429, {"type": "https://www.twilio.com/docs/errors/60203", "title": "Max send",
                     "status": 429, "code": 60203, "detail": "Max send attempts reached"})
    assert send(verify_app.test_client()).status_code == 429


@pytest.mark.parametrize("reply, status, answer", [
    ((429, error(60202, 429, "Max check attempts reached")), 429, "rate_limited"),
    ((404, error(20404, 404, f"The requested resource /Services/{SERVICE}/VerificationCheck "
                             "was not found")), 400, "code_expired"),
    ((400, error(60200, 400, "Invalid parameter: Code")), 400, "wrong_code"),
    ((500, error(20500, 500, "Internal Server Error")), 503, "otp_unavailable"),
    ((502, ""), 503, "otp_unavailable"),
    ((200, {**pending(), "status": "max_attempts_reached"}), 429, "rate_limited"),
    ((200, {**pending(), "status": "expired"}), 400, "code_expired"),
    ((200, {**pending(), "status": "canceled"}), 400, "code_expired"),
])
def test_verify_check_error_mapping(verify_app, fake, reply, status, answer):
    fake.reply(*reply)
    r = check(verify_app.test_client(), "123456")
    assert r.status_code == status
    body = r.get_json()
    assert body["error"] == answer
    assert body["verified"] is False
    assert "userId" not in body
    with verify_app.app_context():
        assert db.session.execute(select(Person)).first() is None


def test_verify_network_error_is_503(verify_app, fake):
    import requests

    def boom(*args, **kwargs):
        raise requests.ConnectionError("connection refused")

    fake.request = boom
    r = send(verify_app.test_client())
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "30"


def test_our_limits_apply_before_twilio_is_called(verify_app, fake):
    for _ in range(3):
        fake.reply(201, pending())
        assert send(verify_app.test_client()).status_code == 202
    assert send(verify_app.test_client()).status_code == 429
    assert len(fake.requests) == 3


def test_invalid_phone_never_reaches_twilio(verify_app, fake):
    assert send(verify_app.test_client(), "+1 900 555 0123").status_code == 400
    assert fake.requests == []


def test_twilio_secrets_and_codes_stay_out_of_logs(verify_app, fake, caplog):
    caplog.set_level(logging.DEBUG)
    client = verify_app.test_client()
    fake.reply(400, error(60200, 400, "Invalid parameter `To`: +16505551234"))
    send(client)
    fake.reply(201, pending())
    send(client)
    fake.reply(200, pending())
    check(client, "918273")
    fake.reply(200, {**pending(), "status": "approved"})
    check(client, "918274")
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "otp" in logged
    for secret in (TOKEN, "918273", "918274", "16505551234", "6505551234"):
        assert secret not in logged


# --- Twilio SMS (our own codes) -----------------------------------------------------------------


def _sent_code(req):
    return req["data"]["Body"].rsplit(" ", 1)[-1]


def test_sms_send_and_verify(sms_app, fake):
    client = sms_app.test_client()
    fake.reply(201, {"sid": "SM" + "3" * 32, "status": "queued"})
    assert send(client).status_code == 202
    [req] = fake.requests
    assert req["method"] == "POST"
    assert req["url"] == MESSAGES_URL
    assert req["auth"] == (ACCOUNT, TOKEN)
    assert req["data"]["To"] == E164
    assert req["data"]["From"] == "+15005550006"
    code = _sent_code(req)
    assert len(code) == 6 and code.isdigit()
    assert req["data"]["Body"] == f"Your code is {code}"
    r = check(client, code)
    assert r.status_code == 200
    assert r.get_json()["verified"] is True
    assert len(fake.requests) == 1  # checks never call Twilio


def test_sms_messaging_service_and_template(make_app, fake):
    app = make_app("twilio_sms", twilio_from=None, twilio_messaging_service_sid="MG" + "4" * 32,
                   otp_message_template="{code} is your Example code")
    fake.reply(201, {"sid": "SM" + "3" * 32, "status": "queued"})
    assert send(app.test_client()).status_code == 202
    data = fake.requests[0]["data"]
    assert data["MessagingServiceSid"] == "MG" + "4" * 32
    assert "From" not in data
    assert data["Body"].endswith(" is your Example code")


@pytest.mark.parametrize("reply, status, answer", [
    ((400, error(21211, 400, "The 'To' number +16505551234 is not a valid phone number.")), 400,
     "invalid_phone"),
    ((400, error(21614, 400, "'To' number is not a valid mobile number")), 400, "invalid_phone"),
    ((400, error(21610, 400, "Attempt to send to unsubscribed recipient")), 429, "rate_limited"),
    ((429, error(20429, 429, "Too Many Requests")), 429, "rate_limited"),
    ((500, error(20500, 500, "Internal Server Error")), 503, "otp_unavailable"),
])
def test_sms_send_error_mapping(sms_app, fake, reply, status, answer):
    fake.reply(*reply)
    r = send(sms_app.test_client())
    assert r.status_code == status
    assert r.get_json()["error"] == answer
    code = _sent_code(fake.requests[0])
    assert code not in r.get_data(as_text=True)
    # a code that never left is not kept: it cannot verify
    with sms_app.app_context():
        assert db.session.execute(select(OtpCode)).first() is None
    assert check(sms_app.test_client(), code).status_code == 400


def test_sms_wrong_codes_then_dead(sms_app, fake):
    client = sms_app.test_client()
    fake.reply(201, {"sid": "SM" + "3" * 32, "status": "queued"})
    send(client)
    code = _sent_code(fake.requests[0])
    for n in range(1, 6):
        assert check(client, f"{(int(code) + n) % 10**6:06d}").status_code == 400
    assert check(client, code).status_code == 429
