import json
import logging
import threading

import pytest
import requests
from twilio.http import HttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response

from sst.identity.crypto import phone_lookup_key
from sst.identity.otp import (
    CheckResult,
    FileProvider,
    MemoryCodeStore,
    OtpProvider,
    OwnCodeProvider,
    SendResult,
    TwilioSmsProvider,
    TwilioVerifyProvider,
    build_provider,
)

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test-auth-token"
SERVICE_SID = "VA" + "1" * 32
MG_SID = "MG" + "2" * 32
PHONE = "+15017122661"
SECRET = "app-secret"
VERIFY_BASE = f"https://verify.twilio.com/v2/Services/{SERVICE_SID}"
MESSAGES_URL = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"


class FakeTwilioHttp(HttpClient):
    """Records every request the real SDK builds; replays queued responses or exceptions."""

    def __init__(self):
        super().__init__(logger=logging.getLogger("fake.twilio"), is_async=False, timeout=None)
        self.requests = []
        self._responses = []

    def queue(self, status, body=None, exc=None):
        self._responses.append((status, body, exc))

    def request(
        self,
        method,
        url,
        params=None,
        data=None,
        headers=None,
        auth=None,
        timeout=None,
        allow_redirects=False,
    ):
        self.requests.append(
            {
                "method": method,
                "url": url,
                "data": data,
                "headers": headers,
                "auth": auth,
                "timeout": timeout,
            }
        )
        status, body, exc = self._responses.pop(0)
        if exc is not None:
            raise exc
        return Response(status, json.dumps(body), headers={})


def twilio_error(code, status, message="error"):
    return {"code": code, "message": message, "more_info": "", "status": status}


class Clock:
    def __init__(self, now=1_700_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def fake():
    return FakeTwilioHttp()


@pytest.fixture
def verify(fake):
    return TwilioVerifyProvider(ACCOUNT_SID, AUTH_TOKEN, SERVICE_SID, http_client=fake)


# --- Twilio Verify ---------------------------------------------------------------------------


def test_verify_send_builds_the_sdk_request(verify, fake):
    fake.queue(201, {"sid": "VE" + "3" * 32, "status": "pending", "to": PHONE, "channel": "sms"})
    assert verify.send(PHONE) == SendResult("pending")
    (req,) = fake.requests
    assert req["method"] == "POST"
    assert req["url"] == f"{VERIFY_BASE}/Verifications"
    assert req["data"] == {"To": PHONE, "Channel": "sms"}
    assert req["auth"] == (ACCOUNT_SID, AUTH_TOKEN)
    assert req["headers"]["Content-Type"] == "application/x-www-form-urlencoded"


def test_verify_check_builds_the_sdk_request(verify, fake):
    fake.queue(200, {"status": "approved", "valid": True})
    assert verify.check(PHONE, "123456") == CheckResult("approved")
    (req,) = fake.requests
    assert req["url"] == f"{VERIFY_BASE}/VerificationCheck"
    assert req["data"] == {"To": PHONE, "Code": "123456"}


def test_verify_channel_is_configurable(fake):
    provider = TwilioVerifyProvider(
        ACCOUNT_SID, AUTH_TOKEN, SERVICE_SID, http_client=fake, channel="whatsapp"
    )
    fake.queue(201, {"status": "pending"})
    provider.send(PHONE)
    assert fake.requests[0]["data"]["Channel"] == "whatsapp"


@pytest.mark.parametrize(
    ("http", "code", "expected"),
    [
        (400, 60200, "invalid_phone"),
        (403, 60205, "invalid_phone"),
        (429, 60203, "rate_limited"),
        (429, 60212, "rate_limited"),
        (403, 60410, "rate_limited"),
        (403, 60605, "rate_limited"),
        (429, 20429, "rate_limited"),
        (429, None, "rate_limited"),
        (500, 20500, "unavailable"),
        (503, None, "unavailable"),
        (401, 20003, "unavailable"),  # bad credentials: our problem, not the caller's
    ],
)
def test_verify_send_error_mapping(verify, fake, http, code, expected):
    body = twilio_error(code, http, f"The 'To' number {PHONE} is blocked") if code else {}
    fake.queue(http, body)
    result = verify.send(PHONE)
    assert result.status == expected
    assert result.detail
    assert PHONE not in result.detail and "5017122661" not in result.detail


def test_verify_max_sends_has_retry_after(verify, fake):
    fake.queue(429, twilio_error(60203, 429, "Max send attempts reached"))
    assert verify.send(PHONE).retry_after == 600


def test_verify_fraud_block_detail_is_for_logs(verify, fake):
    fake.queue(403, twilio_error(60410, 403, "Verification delivery attempt blocked"))
    result = verify.send(PHONE)
    assert result.status == "rate_limited"
    assert "60410" in result.detail


@pytest.mark.parametrize("exc", [requests.ConnectionError("down"), requests.Timeout("slow")])
def test_verify_network_errors_are_unavailable(verify, fake, exc):
    fake.queue(None, exc=exc)
    assert verify.send(PHONE).status == "unavailable"
    fake.queue(None, exc=exc)
    assert verify.check(PHONE, "123456").status == "unavailable"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("approved", "approved"),
        ("pending", "wrong_code"),  # Twilio answers a wrong code with 200 + pending
        ("max_attempts_reached", "too_many_attempts"),
        ("canceled", "expired"),
        ("expired", "expired"),
        ("failed", "expired"),
    ],
)
def test_verify_check_status_mapping(verify, fake, status, expected):
    fake.queue(200, {"status": status})
    assert verify.check(PHONE, "123456").status == expected


@pytest.mark.parametrize(
    ("http", "code", "expected"),
    [
        (429, 60202, "too_many_attempts"),
        (404, 20404, "expired"),
        (400, 60200, "wrong_code"),
        (429, 20429, "unavailable"),
        (500, 20500, "unavailable"),
    ],
)
def test_verify_check_error_mapping(verify, fake, http, code, expected):
    fake.queue(http, twilio_error(code, http))
    assert verify.check(PHONE, "123456").status == expected


@pytest.mark.parametrize("code", ["", "12", "abcdef", "12345678901", None])
def test_verify_malformed_code_never_reaches_twilio(verify, fake, code):
    assert verify.check(PHONE, code).status == "wrong_code"
    assert fake.requests == []


def test_verify_check_strips_spaces(verify, fake):
    fake.queue(200, {"status": "approved"})
    verify.check(PHONE, " 123 456 ")
    assert fake.requests[0]["data"]["Code"] == "123456"


def test_default_http_client_has_a_timeout():
    provider = TwilioVerifyProvider(ACCOUNT_SID, AUTH_TOKEN, SERVICE_SID, timeout=7)
    http = provider._client.http_client
    assert isinstance(http, TwilioHttpClient)
    assert http.timeout == 7


def test_timeout_reaches_the_wire():
    provider = TwilioVerifyProvider(ACCOUNT_SID, AUTH_TOKEN, SERVICE_SID, timeout=4)
    seen = {}

    class Adapter(requests.adapters.BaseAdapter):
        def send(self, request, timeout=None, **kwargs):
            seen["timeout"] = timeout
            seen["url"] = request.url
            raise requests.ConnectTimeout("no network in tests")

        def close(self):
            pass

    provider._client.http_client.session.mount("https://", Adapter())
    assert provider.send(PHONE).status == "unavailable"
    assert seen == {"timeout": 4, "url": f"{VERIFY_BASE}/Verifications"}


def test_zero_timeout_refused():
    with pytest.raises(ValueError):
        TwilioVerifyProvider(ACCOUNT_SID, AUTH_TOKEN, SERVICE_SID, timeout=0)


def test_twilio_env_vars_do_not_change_the_host(monkeypatch, fake):
    monkeypatch.setenv("TWILIO_EDGE", "sydney")
    monkeypatch.setenv("TWILIO_REGION", "au1")
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "9" * 32)
    provider = TwilioVerifyProvider(ACCOUNT_SID, AUTH_TOKEN, SERVICE_SID, http_client=fake)
    fake.queue(201, {"status": "pending"})
    provider.send(PHONE)
    assert fake.requests[0]["url"] == f"{VERIFY_BASE}/Verifications"
    assert fake.requests[0]["auth"] == (ACCOUNT_SID, AUTH_TOKEN)


def test_verify_logs_mask_the_phone(verify, fake, caplog):
    caplog.set_level(logging.DEBUG)
    fake.queue(201, {"status": "pending"})
    verify.send(PHONE)
    fake.queue(200, {"status": "pending"})
    verify.check(PHONE, "654321")
    assert "+1******2661" in caplog.text
    assert PHONE not in caplog.text
    assert "654321" not in caplog.text


def test_repr_hides_token(verify):
    assert AUTH_TOKEN not in repr(verify)


def test_providers_satisfy_protocol(verify, tmp_path):
    assert isinstance(verify, OtpProvider)
    assert isinstance(FileProvider(tmp_path / "o", MemoryCodeStore(), secret=SECRET), OtpProvider)


# --- own codes ------------------------------------------------------------------------------


class RecordingProvider(OwnCodeProvider):
    """Own-code logic with delivery captured in memory."""

    name = "recording"

    def __init__(self, store, **kwargs):
        super().__init__(store, secret=SECRET, **kwargs)
        self.sent = []
        self.deliver_result = SendResult("pending")

    def _deliver(self, phone_e164, code):
        self.sent.append((phone_e164, code))
        return self.deliver_result


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store():
    return MemoryCodeStore()


@pytest.fixture
def own(store, clock):
    return RecordingProvider(store, clock=clock)


def last_code(provider):
    return provider.sent[-1][1]


def wrong(code):
    return f"{(int(code) + 1) % 10**6:06d}"


def test_right_code_approves_once(own):
    own.send(PHONE)
    code = last_code(own)
    assert own.check(PHONE, code).status == "approved"
    assert own.check(PHONE, code).status == "expired"


def test_code_is_six_random_digits(own):
    codes = set()
    for _ in range(200):
        own.send(PHONE)
        code = last_code(own)
        assert len(code) == 6 and code.isdigit()
        codes.add(code)
    assert len(codes) > 150  # 200 draws from 10**6


def test_wrong_code_counts_and_right_code_still_works_before_limit(own, store):
    own.send(PHONE)
    code = last_code(own)
    for _ in range(4):
        assert own.check(PHONE, wrong(code)).status == "wrong_code"
    assert store.get(phone_lookup_key(PHONE, SECRET)).attempts == 4
    assert own.check(PHONE, code).status == "approved"


def test_five_wrong_codes_kill_the_code(own):
    own.send(PHONE)
    code = last_code(own)
    for _ in range(5):
        assert own.check(PHONE, wrong(code)).status == "wrong_code"
    assert own.check(PHONE, code).status == "too_many_attempts"
    assert own.check(PHONE, code).status == "too_many_attempts"


def test_new_send_after_dead_code_works(own):
    own.send(PHONE)
    for _ in range(6):
        own.check(PHONE, "000000" if last_code(own) != "000000" else "111111")
    own.send(PHONE)
    assert own.check(PHONE, last_code(own)).status == "approved"


def test_max_attempts_is_configurable(store, clock):
    provider = RecordingProvider(store, clock=clock, max_attempts=2)
    provider.send(PHONE)
    code = last_code(provider)
    provider.check(PHONE, wrong(code))
    provider.check(PHONE, wrong(code))
    assert provider.check(PHONE, code).status == "too_many_attempts"


def test_code_expires(own, clock):
    own.send(PHONE)
    code = last_code(own)
    clock.now += 599
    assert own.check(PHONE, wrong(code)).status == "wrong_code"
    clock.now += 1
    assert own.check(PHONE, code).status == "expired"


def test_new_send_replaces_old_code(own):
    own.send(PHONE)
    old = last_code(own)
    own.send(PHONE)
    new = last_code(own)
    if old != new:
        assert own.check(PHONE, old).status == "wrong_code"
    assert own.check(PHONE, new).status == "approved"


def test_new_send_resets_attempts(own, store):
    own.send(PHONE)
    for _ in range(3):
        own.check(PHONE, wrong(last_code(own)))
    own.send(PHONE)
    assert store.get(phone_lookup_key(PHONE, SECRET)).attempts == 0


def test_codes_are_per_phone(own):
    own.send(PHONE)
    code = last_code(own)
    assert own.check("+15017122662", code).status == "expired"
    assert own.check(PHONE, code).status == "approved"


def test_check_without_send_is_expired(own):
    assert own.check(PHONE, "123456").status == "expired"


def test_store_holds_only_a_keyed_hash(own, store):
    own.send(PHONE)
    code = last_code(own)
    key = phone_lookup_key(PHONE, SECRET)
    (stored_key,) = store._codes
    assert stored_key == key and PHONE not in stored_key
    stored = store.get(key)
    assert code not in stored.code_hash
    import hashlib

    assert stored.code_hash != hashlib.sha256(code.encode()).hexdigest()
    assert len(stored.code_hash) == 64


def test_other_secret_cannot_verify(store, clock):
    own = RecordingProvider(store, clock=clock)
    own.send(PHONE)
    other = OwnCodeProvider(store, secret="other-secret", clock=clock)
    # Different secret, different lookup key: the code is simply not found.
    assert other.check(PHONE, last_code(own)).status == "expired"


def test_failed_delivery_leaves_no_code(own, store):
    own.deliver_result = SendResult("unavailable", detail="boom")
    assert own.send(PHONE).status == "unavailable"
    assert store.get(phone_lookup_key(PHONE, SECRET)) is None


def test_code_accepts_spaces_and_dashes(own):
    own.send(PHONE)
    code = last_code(own)
    assert own.check(PHONE, f"{code[:3]} {code[3:]}").status == "approved"


@pytest.mark.parametrize("junk", [None, "", "abc", "1" * 1000])
def test_junk_codes_are_wrong(own, junk):
    own.send(PHONE)
    assert own.check(PHONE, junk).status == "wrong_code"


def test_code_never_logged(own, caplog):
    caplog.set_level(logging.DEBUG)
    own.send(PHONE)
    code = last_code(own)
    own.check(PHONE, wrong(code))
    own.check(PHONE, code)
    assert caplog.records
    for record in caplog.records:
        text = record.getMessage()
        assert code not in text
        assert PHONE not in text


def test_concurrent_right_codes_approve_once(store, clock):
    own = RecordingProvider(store, clock=clock, max_attempts=50)
    own.send(PHONE)
    code = last_code(own)
    results = []
    barrier = threading.Barrier(20)

    def worker():
        barrier.wait()
        results.append(own.check(PHONE, code).status)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("approved") == 1


def test_concurrent_guesses_respect_limit(store, clock):
    own = RecordingProvider(store, clock=clock)
    own.send(PHONE)
    code = last_code(own)
    results = []
    barrier = threading.Barrier(30)

    def worker():
        barrier.wait()
        results.append(own.check(PHONE, wrong(code)).status)

    threads = [threading.Thread(target=worker) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("wrong_code") == 5
    assert results.count("too_many_attempts") == 25


def test_memory_store_incr_on_missing_key(store):
    assert store.incr_attempts("nope") == 0
    assert store.delete("nope") is False


# --- Twilio SMS (own codes via Messages API) ------------------------------------------------


def sms(fake, store, clock, sender="+15005550006", **kwargs):
    return TwilioSmsProvider(
        ACCOUNT_SID,
        AUTH_TOKEN,
        sender,
        store,
        secret=SECRET,
        http_client=fake,
        clock=clock,
        **kwargs,
    )


def sent_code(fake):
    body = fake.requests[-1]["data"]["Body"]
    return body.rsplit(" ", 1)[-1]


def test_sms_builds_messages_request(fake, store, clock):
    provider = sms(fake, store, clock)
    fake.queue(201, {"sid": "SM" + "4" * 32, "status": "queued"})
    assert provider.send(PHONE) == SendResult("pending")
    (req,) = fake.requests
    assert req["method"] == "POST"
    assert req["url"] == MESSAGES_URL
    code = sent_code(fake)
    assert req["data"] == {"To": PHONE, "From": "+15005550006", "Body": f"Your code is {code}"}
    assert req["auth"] == (ACCOUNT_SID, AUTH_TOKEN)
    assert provider.check(PHONE, code).status == "approved"
    assert len(fake.requests) == 1  # checking own codes never calls Twilio


def test_sms_with_messaging_service(fake, store, clock):
    provider = sms(fake, store, clock, sender=MG_SID, message_template="{code} is your ACME code")
    fake.queue(201, {"status": "accepted"})
    provider.send(PHONE)
    data = fake.requests[0]["data"]
    assert data["MessagingServiceSid"] == MG_SID
    assert "From" not in data
    assert data["Body"].endswith(" is your ACME code")


def test_sms_template_needs_code(fake, store, clock):
    with pytest.raises(ValueError):
        sms(fake, store, clock, message_template="hello")


@pytest.mark.parametrize(
    ("http", "code", "expected"),
    [
        (400, 21211, "invalid_phone"),
        (400, 21614, "invalid_phone"),
        (400, 21408, "rate_limited"),
        (400, 21610, "rate_limited"),
        (429, 20429, "rate_limited"),
        (500, 20500, "unavailable"),
        (401, 20003, "unavailable"),
    ],
)
def test_sms_error_mapping(fake, store, clock, http, code, expected):
    provider = sms(fake, store, clock)
    fake.queue(http, twilio_error(code, http, f"The 'To' number {PHONE} is not valid"))
    result = provider.send(PHONE)
    assert result.status == expected
    assert "5017122661" not in result.detail
    assert store.get(phone_lookup_key(PHONE, SECRET)) is None


def test_sms_network_error(fake, store, clock):
    provider = sms(fake, store, clock)
    fake.queue(None, exc=requests.Timeout("slow"))
    assert provider.send(PHONE).status == "unavailable"


def test_sms_code_not_logged(fake, store, clock, caplog):
    caplog.set_level(logging.DEBUG)
    provider = sms(fake, store, clock)
    fake.queue(201, {"status": "queued"})
    provider.send(PHONE)
    code = sent_code(fake)
    provider.check(PHONE, code)
    assert code not in caplog.text
    assert PHONE not in caplog.text


def test_sms_repr_hides_token(fake, store, clock):
    assert AUTH_TOKEN not in repr(sms(fake, store, clock))


# --- file outbox -------------------------------------------------------------------------------


def test_file_provider_appends_json_lines(tmp_path, store, clock):
    outbox = tmp_path / "outbox.jsonl"
    provider = FileProvider(outbox, store, secret=SECRET, clock=clock)
    assert provider.send(PHONE).status == "pending"
    assert provider.send("+447400123456").status == "pending"
    lines = [json.loads(line) for line in outbox.read_text().splitlines()]
    assert [line["to"] for line in lines] == [PHONE, "+447400123456"]
    assert all(len(line["code"]) == 6 for line in lines)
    assert provider.check(PHONE, lines[0]["code"]).status == "approved"


def test_file_provider_concurrent_writers(tmp_path, store, clock):
    outbox = tmp_path / "outbox.jsonl"
    provider = FileProvider(outbox, store, secret=SECRET, clock=clock)
    threads = [
        threading.Thread(target=provider.send, args=(f"+1650555{i:04d}",)) for i in range(40)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = outbox.read_text().splitlines()
    assert len(lines) == 40
    assert all(json.loads(line)["code"] for line in lines)


def test_file_provider_unwritable(tmp_path, store, clock):
    provider = FileProvider(tmp_path / "missing" / "outbox", store, secret=SECRET, clock=clock)
    assert provider.send(PHONE).status == "unavailable"


def test_file_provider_logs_no_code(tmp_path, store, clock, caplog):
    caplog.set_level(logging.DEBUG)
    outbox = tmp_path / "outbox.jsonl"
    FileProvider(outbox, store, secret=SECRET, clock=clock).send(PHONE)
    code = json.loads(outbox.read_text())["code"]
    assert code not in caplog.text


# --- build_provider -----------------------------------------------------------------------------

VERIFY_CFG = {
    "otp_provider": "twilio_verify",
    "twilio_account_sid": ACCOUNT_SID,
    "twilio_auth_token": AUTH_TOKEN,
    "twilio_verify_service_sid": SERVICE_SID,
}


def test_build_verify(store):
    provider = build_provider(VERIFY_CFG, store=store, secret=SECRET)
    assert isinstance(provider, TwilioVerifyProvider)
    assert provider._client.http_client.timeout == 10


def test_build_verify_timeout_from_string(store):
    cfg = {**VERIFY_CFG, "twilio_timeout": "3.5"}
    provider = build_provider(cfg, store=store, secret=SECRET)
    assert provider._client.http_client.timeout == 3.5


def test_build_keys_are_case_insensitive(store):
    cfg = {k.upper(): v for k, v in VERIFY_CFG.items()}
    assert isinstance(build_provider(cfg, store=store, secret=SECRET), TwilioVerifyProvider)


@pytest.mark.parametrize(
    "missing", ["twilio_account_sid", "twilio_auth_token", "twilio_verify_service_sid"]
)
def test_build_verify_missing_key(store, missing):
    cfg = {k: v for k, v in VERIFY_CFG.items() if k != missing}
    with pytest.raises(ValueError, match=missing):
        build_provider(cfg, store=store, secret=SECRET)


def test_build_error_never_shows_values(store):
    cfg = {**VERIFY_CFG, "twilio_verify_service_sid": ""}
    with pytest.raises(ValueError) as exc:
        build_provider(cfg, store=store, secret=SECRET)
    assert AUTH_TOKEN not in str(exc.value)


def test_build_sms(store, fake):
    cfg = {
        "otp_provider": "twilio_sms",
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_from": "+15005550006",
        "otp_ttl": "300",
        "otp_max_attempts": "3",
    }
    provider = build_provider(cfg, store=store, secret=SECRET, http_client=fake)
    assert isinstance(provider, TwilioSmsProvider)
    assert (provider.ttl, provider.max_attempts, provider.sender) == (300, 3, "+15005550006")


def test_build_sms_messaging_service(store):
    cfg = {
        "otp_provider": "twilio_sms",
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_messaging_service_sid": MG_SID,
    }
    assert build_provider(cfg, store=store, secret=SECRET).sender == MG_SID


def test_build_sms_needs_a_sender(store):
    cfg = {
        "otp_provider": "twilio_sms",
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
    }
    with pytest.raises(ValueError, match="twilio_from"):
        build_provider(cfg, store=store, secret=SECRET)


def test_build_file(store, tmp_path):
    cfg = {"otp_provider": "file", "otp_outbox": str(tmp_path / "o.jsonl")}
    assert isinstance(build_provider(cfg, store=store, secret=SECRET), FileProvider)


def test_build_file_missing_outbox(store):
    with pytest.raises(ValueError, match="otp_outbox"):
        build_provider({"otp_provider": "file"}, store=store, secret=SECRET)


def test_build_file_refused_in_production(store, tmp_path):
    cfg = {"otp_provider": "file", "otp_outbox": str(tmp_path / "o.jsonl")}
    with pytest.raises(ValueError, match="development"):
        build_provider(cfg, store=store, secret=SECRET, production=True)


@pytest.mark.parametrize("kind", [None, "", "sns", "console"])
def test_build_unknown_provider(store, kind):
    with pytest.raises(ValueError, match="otp_provider"):
        build_provider({"otp_provider": kind}, store=store, secret=SECRET)


def test_build_bad_number(store):
    with pytest.raises(ValueError, match="otp_ttl"):
        build_provider({**VERIFY_CFG, "otp_ttl": "ten"}, store=store, secret=SECRET)
