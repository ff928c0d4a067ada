"""One-time codes by SMS behind one small interface: Twilio Verify, our own codes, a dev outbox.

Providers never raise for an expected outcome; they return a SendResult/CheckResult whose
``status`` the blueprint maps to HTTP. ``detail`` is for logs only: never show it to the
caller (it may name a fraud block or a Twilio error). Codes never appear in logs or
exception text (the dev outbox file is the one exception); phones are logged masked.

Own codes (TwilioSmsProvider, FileProvider) are stored only as HMAC-SHA256(key, lookup_key
+ ":" + code) with a key derived from the app secret. A slow hash (scrypt) buys nothing for a
6-digit code (10**6 guesses: hours on one core, minutes in parallel) and costs CPU on every
check, which an attacker can trigger at will. The HMAC key never sits in the store, so a
leaked store alone cannot be brute-forced, and binding the phone's lookup key means a hash
cannot be replayed against another phone.
"""

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import requests
from twilio.base.exceptions import TwilioException
from twilio.http import HttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from sst.identity.crypto import derive_key, phone_lookup_key
from sst.identity.phone import mask_phone

logger = logging.getLogger(__name__)

CODE_INFO = "sst/otp-code/v1"
CODE_DIGITS = 6

# Client() falls back to os.environ when `environment` is falsy, and TWILIO_EDGE/TWILIO_REGION
# there silently change the API host. A non-empty mapping without those keys isolates us.
_ISOLATED_ENV = {"SST_TWILIO_ENV_ISOLATED": "1"}

# Twilio error codes, https://www.twilio.com/docs/api/errors/<code>
_SEND_INVALID_PHONE = {
    60200,  # Verify: invalid parameter (To not E.164, bad channel)
    60205,  # Verify: SMS to a landline (skip_sms_to_landlines)
    21211,  # Messages: invalid 'To' number
    21612,  # Messages: 'To' not reachable from this sender
    21614,  # Messages: 'To' is not a mobile number
}
_SEND_REFUSED = {
    60203,  # Verify: max (5) send attempts within 10 minutes
    60212,  # Verify: too many concurrent requests for the number
    60410,  # Verify Fraud Guard: prefix blocked (12 h, renewed while fraud continues)
    60605,  # Verify: blocked by geo permissions
    60238,  # Verify: creation blocked by Twilio (account review, sanctions)
    21408,  # Messages: no permission to send to this region (geo permissions)
    21610,  # Messages: recipient replied STOP
    20429,  # API: too many requests
}


@dataclass(frozen=True)
class SendResult:
    status: str  # "pending" | "rate_limited" | "invalid_phone" | "unavailable"
    retry_after: float | None = None
    detail: str | None = None  # for logs only


@dataclass(frozen=True)
class CheckResult:
    status: str  # "approved" | "wrong_code" | "expired" | "too_many_attempts" | "unavailable"
    detail: str | None = None  # for logs only


@runtime_checkable
class OtpProvider(Protocol):
    name: str

    def send(self, phone_e164: str) -> SendResult: ...

    def check(self, phone_e164: str, code: str) -> CheckResult: ...


@dataclass(frozen=True)
class StoredCode:
    code_hash: str
    expires_at: float  # unix seconds
    attempts: int = 0


class CodeStore(Protocol):
    """Storage for own codes, keyed by the phone's lookup key (never the clear phone)."""

    def put(self, key: str, code_hash: str, expires_at: float) -> None:
        """Store or replace the code for ``key``; attempts restart at 0."""

    def get(self, key: str) -> StoredCode | None: ...

    def incr_attempts(self, key: str) -> int:
        """Atomically add one attempt; return the new count, or 0 if no code is stored."""

    def delete(self, key: str) -> bool:
        """Remove the code; True if one was there (this is what makes a code single-use)."""


class MemoryCodeStore:
    """Thread-safe in-process CodeStore for tests and single-process use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._codes: dict[str, StoredCode] = {}

    def put(self, key: str, code_hash: str, expires_at: float) -> None:
        with self._lock:
            self._codes[key] = StoredCode(code_hash, expires_at, 0)

    def get(self, key: str) -> StoredCode | None:
        with self._lock:
            return self._codes.get(key)

    def incr_attempts(self, key: str) -> int:
        with self._lock:
            stored = self._codes.get(key)
            if stored is None:
                return 0
            stored = StoredCode(stored.code_hash, stored.expires_at, stored.attempts + 1)
            self._codes[key] = stored
            return stored.attempts

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._codes.pop(key, None) is not None


def _clean_code(code: object) -> str:
    # Users paste "123 456" or "123-456"; anything else is simply a wrong code.
    if not isinstance(code, str):
        return ""
    return re.sub(r"[\s-]", "", code)[:16]


def _redact(text: str) -> str:
    # Twilio messages can quote the number ("The 'To' number +1501... is not valid").
    return re.sub(r"\+?\d[\d ().-]{4,}\d", "[redacted]", text)[:200]


def _error_info(exc: Exception) -> tuple[int | None, int | None, str]:
    status = getattr(exc, "status", None)
    code = getattr(exc, "code", None)
    msg = getattr(exc, "msg", None) or getattr(exc, "title", None) or type(exc).__name__
    return status, code, f"twilio code={code} http={status}: {_redact(str(msg))}"


def _send_error(exc: Exception) -> SendResult:
    status, code, detail = _error_info(exc)
    if code in _SEND_INVALID_PHONE:
        return SendResult("invalid_phone", detail=detail)
    if code == 60203:
        # Twilio's send window is 10 minutes from the first send.
        return SendResult("rate_limited", retry_after=600.0, detail=detail)
    if code in _SEND_REFUSED or status == 429:
        return SendResult("rate_limited", detail=detail)
    return SendResult("unavailable", detail=detail)


def _twilio_client(
    account_sid: str,
    auth_token: str,
    timeout: float,
    http_client: HttpClient | None,
    edge: str | None,
    region: str | None,
) -> Client:
    if http_client is None:
        if not timeout or timeout <= 0:
            raise ValueError("twilio timeout must be > 0")
        # TwilioHttpClient's default timeout is None: a hung Twilio would hang the worker.
        http_client = TwilioHttpClient(timeout=timeout)
    return Client(
        account_sid,
        auth_token,
        http_client=http_client,
        environment=_ISOLATED_ENV,
        edge=edge,
        region=region,
    )


def _log_send(name: str, phone: str, result: SendResult) -> None:
    if result.status == "pending":
        logger.info("otp sent: provider=%s phone=%s", name, mask_phone(phone))
    elif result.status == "unavailable":
        logger.error(
            "otp send failed: provider=%s phone=%s %s", name, mask_phone(phone), result.detail
        )
    else:
        logger.warning(
            "otp send refused: provider=%s phone=%s status=%s %s",
            name,
            mask_phone(phone),
            result.status,
            result.detail,
        )


def _log_check(name: str, phone: str, result: CheckResult) -> None:
    level = logging.ERROR if result.status == "unavailable" else logging.INFO
    logger.log(
        level,
        "otp check: provider=%s phone=%s status=%s%s",
        name,
        mask_phone(phone),
        result.status,
        f" {result.detail}" if result.detail else "",
    )


class TwilioVerifyProvider:
    """Twilio Verify v2: Twilio generates, stores, expires (10 min) and rate-limits the code."""

    name = "twilio_verify"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        service_sid: str,
        *,
        timeout: float = 10,
        http_client: HttpClient | None = None,
        channel: str = "sms",
        edge: str | None = None,
        region: str | None = None,
    ):
        self._client = _twilio_client(account_sid, auth_token, timeout, http_client, edge, region)
        self._service = self._client.verify.v2.services(service_sid)
        self.service_sid = service_sid
        self.channel = channel

    def __repr__(self) -> str:
        return f"TwilioVerifyProvider(service_sid={self.service_sid!r})"

    def send(self, phone_e164: str) -> SendResult:
        """Start (or, within 10 minutes, resend the same code of) a verification."""
        try:
            verification = self._service.verifications.create(to=phone_e164, channel=self.channel)
        except TwilioException as exc:
            result = _send_error(exc)
        except (requests.RequestException, OSError) as exc:
            result = SendResult("unavailable", detail=f"twilio network error: {type(exc).__name__}")
        else:
            if verification.status == "pending":
                result = SendResult("pending")
            else:
                result = SendResult("unavailable", detail=f"twilio status={verification.status}")
        _log_send(self.name, phone_e164, result)
        return result

    def check(self, phone_e164: str, code: str) -> CheckResult:
        """Check a code. Twilio allows 5 checks per verification, then 60202."""
        code = _clean_code(code)
        # Twilio rejects codes outside 4-10 characters with 60200; no need to ask it.
        if not (code.isdigit() and 4 <= len(code) <= 10):
            result = CheckResult("wrong_code", detail="malformed code, not sent to twilio")
            _log_check(self.name, phone_e164, result)
            return result
        try:
            check = self._service.verification_checks.create(to=phone_e164, code=code)
        except TwilioException as exc:
            status, err, detail = _error_info(exc)
            if err == 60202:
                result = CheckResult("too_many_attempts", detail=detail)
            elif err == 20404:
                # Approved, expired or maxed-out verifications are soft-deleted by Twilio.
                result = CheckResult("expired", detail=detail)
            elif err == 60200:
                result = CheckResult("wrong_code", detail=detail)
            else:
                result = CheckResult("unavailable", detail=detail)
        except (requests.RequestException, OSError) as exc:
            result = CheckResult(
                "unavailable", detail=f"twilio network error: {type(exc).__name__}"
            )
        else:
            # A wrong code is HTTP 200 with status "pending": only "approved" is success.
            status = check.status
            if status == "approved":
                result = CheckResult("approved")
            elif status == "pending":
                result = CheckResult("wrong_code")
            elif status == "max_attempts_reached":
                result = CheckResult("too_many_attempts", detail=f"twilio status={status}")
            else:
                result = CheckResult("expired", detail=f"twilio status={status}")
        _log_check(self.name, phone_e164, result)
        return result


class OwnCodeProvider:
    """Our own 6-digit codes: hashed at rest, expiring, single use, limited wrong tries.

    A new send replaces the previous code. After ``max_attempts`` checks without success the
    code is dead (even the right code fails with "too_many_attempts") until a new send.
    Subclasses implement ``_deliver``.
    """

    name = "own"

    def __init__(
        self,
        store: CodeStore,
        *,
        secret: str,
        ttl: float = 600,
        max_attempts: int = 5,
        clock: Callable[[], float] = time.time,
    ):
        if ttl <= 0 or max_attempts < 1:
            raise ValueError("ttl must be > 0 and max_attempts >= 1")
        self.store = store
        self.ttl = ttl
        self.max_attempts = max_attempts
        self._secret = secret
        self._hash_key = derive_key(secret, CODE_INFO)
        self._clock = clock

    def _deliver(self, phone_e164: str, code: str) -> SendResult:
        raise NotImplementedError

    def _key(self, phone_e164: str) -> str:
        return phone_lookup_key(phone_e164, self._secret)

    def _hash(self, key: str, code: str) -> str:
        return hmac.new(self._hash_key, f"{key}:{code}".encode(), hashlib.sha256).hexdigest()

    def send(self, phone_e164: str) -> SendResult:
        """Create a new code (replacing any previous one) and deliver it."""
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        key = self._key(phone_e164)
        # Store before delivering: the code must verify the moment it arrives, and a store
        # outage then fails before we pay for an SMS.
        self.store.put(key, self._hash(key, code), self._clock() + self.ttl)
        result = self._deliver(phone_e164, code)
        if result.status != "pending":
            self.store.delete(key)
        _log_send(self.name, phone_e164, result)
        return result

    def check(self, phone_e164: str, code: str) -> CheckResult:
        """Check a code; the right one approves once."""
        result = self._check(self._key(phone_e164), _clean_code(code))
        _log_check(self.name, phone_e164, result)
        return result

    def _check(self, key: str, code: str) -> CheckResult:
        stored = self.store.get(key)
        if stored is None:
            return CheckResult("expired")
        if self._clock() >= stored.expires_at:
            self.store.delete(key)
            return CheckResult("expired")
        # Count before comparing: concurrent guesses cannot all slip under the limit.
        attempts = self.store.incr_attempts(key)
        if attempts == 0:
            return CheckResult("expired")
        if attempts > self.max_attempts:
            return CheckResult("too_many_attempts")
        if hmac.compare_digest(self._hash(key, code), stored.code_hash):
            # delete() returning False means a concurrent check used it first.
            if self.store.delete(key):
                return CheckResult("approved")
            return CheckResult("expired")
        return CheckResult("wrong_code")


class TwilioSmsProvider(OwnCodeProvider):
    """Own codes sent through the Twilio Messages API.

    ``sender`` is an E.164 ``From`` number or a Messaging Service SID (``MG...``).
    """

    name = "twilio_sms"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        sender: str,
        store: CodeStore,
        *,
        secret: str,
        ttl: float = 600,
        max_attempts: int = 5,
        timeout: float = 10,
        http_client: HttpClient | None = None,
        message_template: str = "Your code is {code}",
        edge: str | None = None,
        region: str | None = None,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(store, secret=secret, ttl=ttl, max_attempts=max_attempts, clock=clock)
        if "{code}" not in message_template:
            raise ValueError("message_template must contain {code}")
        self._client = _twilio_client(account_sid, auth_token, timeout, http_client, edge, region)
        self.sender = sender
        self.message_template = message_template

    def __repr__(self) -> str:
        return f"TwilioSmsProvider(sender={self.sender!r})"

    def _deliver(self, phone_e164: str, code: str) -> SendResult:
        kwargs = {"to": phone_e164, "body": self.message_template.format(code=code)}
        if self.sender.startswith("MG"):
            kwargs["messaging_service_sid"] = self.sender
        else:
            kwargs["from_"] = self.sender
        try:
            self._client.messages.create(**kwargs)
        except TwilioException as exc:
            return _send_error(exc)
        except (requests.RequestException, OSError) as exc:
            return SendResult("unavailable", detail=f"twilio network error: {type(exc).__name__}")
        return SendResult("pending")


class FileProvider(OwnCodeProvider):
    """Development only: "sends" by appending {"to", "code"} as one JSON line to a file."""

    name = "file"

    def __init__(
        self,
        outbox_path: str | os.PathLike,
        store: CodeStore,
        *,
        secret: str,
        ttl: float = 600,
        max_attempts: int = 5,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(store, secret=secret, ttl=ttl, max_attempts=max_attempts, clock=clock)
        self.outbox_path = os.fspath(outbox_path)

    def _deliver(self, phone_e164: str, code: str) -> SendResult:
        line = (json.dumps({"to": phone_e164, "code": code}) + "\n").encode()
        try:
            # One write() on an O_APPEND fd: lines from several processes never interleave.
            fd = os.open(self.outbox_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:
            return SendResult("unavailable", detail=f"outbox write failed: {exc.strerror}")
        return SendResult("pending")


def _require(config: Mapping[str, object], key: str, provider: str) -> str:
    value = config.get(key)
    if value is None or str(value).strip() == "":
        raise ValueError(f"identity config: {key} is required for otp_provider={provider}")
    return str(value).strip()


def _number(config: Mapping[str, object], key: str, default: float, cast: type) -> float:
    value = config.get(key)
    if value is None or value == "":
        return default
    try:
        return cast(value)
    except (TypeError, ValueError):
        raise ValueError(f"identity config: {key} must be a number") from None


def build_provider(
    config: Mapping[str, object],
    *,
    store: CodeStore,
    secret: str,
    production: bool = False,
    http_client: HttpClient | None = None,
) -> OtpProvider:
    """Build the provider named by ``otp_provider`` from the ``[identity]`` settings.

    Keys (case-insensitive): otp_provider (twilio_verify | twilio_sms | file), otp_outbox,
    twilio_account_sid, twilio_auth_token, twilio_verify_service_sid, twilio_from,
    twilio_messaging_service_sid, otp_ttl, otp_max_attempts, twilio_timeout, and optional
    twilio_channel, twilio_edge, twilio_region, otp_message_template.

    Raises:
        ValueError: naming the missing or bad key (never its value).
    """
    cfg = {str(k).lower(): v for k, v in config.items()}
    kind = str(cfg.get("otp_provider") or "").strip().lower()
    ttl = _number(cfg, "otp_ttl", 600, float)
    max_attempts = int(_number(cfg, "otp_max_attempts", 5, int))
    timeout = _number(cfg, "twilio_timeout", 10, float)
    edge = cfg.get("twilio_edge") or None
    region = cfg.get("twilio_region") or None

    if kind == "twilio_verify":
        return TwilioVerifyProvider(
            _require(cfg, "twilio_account_sid", kind),
            _require(cfg, "twilio_auth_token", kind),
            _require(cfg, "twilio_verify_service_sid", kind),
            timeout=timeout,
            http_client=http_client,
            channel=str(cfg.get("twilio_channel") or "sms"),
            edge=edge,
            region=region,
        )
    if kind == "twilio_sms":
        sender = cfg.get("twilio_messaging_service_sid") or cfg.get("twilio_from")
        if not sender or not str(sender).strip():
            raise ValueError(
                "identity config: twilio_from or twilio_messaging_service_sid is required "
                "for otp_provider=twilio_sms"
            )
        extra = {}
        if cfg.get("otp_message_template"):
            extra["message_template"] = str(cfg["otp_message_template"])
        return TwilioSmsProvider(
            _require(cfg, "twilio_account_sid", kind),
            _require(cfg, "twilio_auth_token", kind),
            str(sender).strip(),
            store,
            secret=secret,
            ttl=ttl,
            max_attempts=max_attempts,
            timeout=timeout,
            http_client=http_client,
            edge=edge,
            region=region,
            **extra,
        )
    if kind == "file":
        if production:
            raise ValueError("identity config: otp_provider=file is for development only")
        return FileProvider(
            _require(cfg, "otp_outbox", kind),
            store,
            secret=secret,
            ttl=ttl,
            max_attempts=max_attempts,
        )
    raise ValueError("identity config: otp_provider must be twilio_verify, twilio_sms or file")
