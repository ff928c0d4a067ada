"""Blueprint "verify": phone verification by one-time code. The logic lives in identity/
and people.py; this module reads the request, applies the abuse limits and answers.

Answers never say whether a phone is already known, and codes never appear in a response
or a log line; phones appear in logs only masked.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from dataclasses import replace
from urllib.parse import parse_qsl

import phonenumbers
from flask import Blueprint, Response, current_app, request
from sqlalchemy.exc import OperationalError

from sst.config import phone_region
from sst.cors import add_cors_headers
from sst.errors import ApiError, StorageUnavailableError
from sst.extensions import state as current_state
from sst.identity import people
from sst.identity.crypto import derive_key, phone_lookup_key
from sst.identity.network import client_key
from sst.identity.phone import InvalidPhoneError, mask_phone, normalize_phone, region_of
from sst.ingest.prepare import Rejection, prepare
from sst.ingest.request import authenticate, choose_visitor, read_body, request_info, set_cookie
from sst.jsonutil import MalformedJSON, dumps, loads
from sst.throttle import ThrottleUnavailableError

logger = logging.getLogger(__name__)
bp = Blueprint("verify", __name__)
bp.after_request(add_cors_headers)

DEFAULT_LIMITS = {
    "send_limit_phone": "3/10 minutes",  # two devices and one resend
    "send_limit_ip": "20/hour",
    "verify_limit_phone": "10/10 minutes",
    "verify_limit_ip": "30/10 minutes",
    "country_daily_budget": 1000,  # SMS pumping costs money before Twilio's limits bite
    "daily_budget": 5000,  # over every country: what a bad day may cost at most
}
MAX_BODY = 4096


def _json(body: dict, status: int) -> Response:
    return Response(dumps(body), status=status, mimetype="application/json")


def _setting(key):
    identity = current_app.config.get("IDENTITY") or {}
    return identity.get(key, DEFAULT_LIMITS.get(key))


def _region_allowed(region: str) -> bool:
    """[identity] allowed_regions, by default the default region alone: SMS pumping sends
    codes to premium ranges abroad, and a site rarely has users in 200 countries."""
    allowed = _setting("allowed_regions")
    if allowed is None:
        allowed = [phone_region(current_app.config)]
    return "*" in allowed or region in allowed


def _limited(retry_after: int) -> ApiError:
    err = ApiError(429, "rate_limited", "too many attempts; try again later")
    err.headers["Retry-After"] = str(retry_after)
    return err


def _unavailable(message: str, **details) -> ApiError:
    err = ApiError(503, "otp_unavailable", message, **details)
    err.headers["Retry-After"] = "30"
    return err


def _parse_body() -> dict:
    # Every body is read through read_body's bound, chunked ones included, before anything
    # else looks at it (H2: werkzeug's form parser read a chunked body of any size, and
    # spooled multipart files to disk, before the write key was checked).
    ctype = (request.mimetype or "").lower()
    if ctype.startswith("multipart/"):
        raise ApiError(415, "unsupported_media_type",
                       "send JSON, text/plain or application/x-www-form-urlencoded")
    data = read_body(MAX_BODY)
    if ctype == "application/x-www-form-urlencoded":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "malformed_body", "the form is not UTF-8") from None
        return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=20))
    try:
        body = loads(data) if data else {}
    except MalformedJSON as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "malformed_json", "the body must be a JSON object")
    return body


def _phone(body) -> str:
    raw = body.get("phone")
    if not isinstance(raw, str) or not raw.strip():
        raise ApiError(400, "invalid_phone", "phone is required",
                       fields={"phone": "required"})
    try:
        e164 = normalize_phone(raw, phone_region(current_app.config))
    except InvalidPhoneError as exc:
        raise ApiError(400, "invalid_phone", "this phone number cannot receive codes",
                       fields={"phone": exc.reason}) from None
    # phonenumbers reads letters as a keypad ("650 CALL NOW"): nobody types their own mobile
    # that way, so a code would go to whoever owns the spelled number.
    if phonenumbers.is_alpha_number(raw):
        raise ApiError(400, "invalid_phone", "this phone number cannot receive codes",
                       fields={"phone": "not_a_number"})
    return e164


def _begin():
    state = current_state()
    if state.otp_provider is None:
        raise ApiError(404, "otp_not_configured", "phone verification is not configured")
    body = _parse_body()
    source, auth = authenticate(state, body.get("writeKey"))
    return state, body, source, auth


@bp.post("/v1/otp/send")
def send():
    """Send a code: 202 pending, 400 invalid phone, 429 over a limit."""
    state, body, source, auth = _begin()
    phone = _phone(body)
    region = region_of(phone)
    if not _region_allowed(region):
        logger.warning("otp send refused for %s: region %s not allowed", mask_phone(phone),
                       region)
        raise ApiError(400, "invalid_phone", "this phone number cannot receive codes",
                       fields={"phone": "region_not_allowed"})
    secret = current_app.config["SECRET_KEY"]
    key = phone_lookup_key(phone, secret)
    ip = client_key(request.remote_addr)
    budget = int(_setting("country_daily_budget") or 0)
    total = int(_setting("daily_budget") or 0)
    for rate, ids in ((_setting("send_limit_ip"), ("otp-send-ip", ip)),
                      (_setting("send_limit_phone"), ("otp-send-phone", key)),
                      (f"{budget}/day" if budget else None, ("otp-send-country", region)),
                      (f"{total}/day" if total else None, ("otp-send-all", "all"))):
        try:
            # Fail closed: without the counters nothing bounds what SMS cost.
            wait = state.throttle.hit(rate, *ids, fail_open=False)
        except ThrottleUnavailableError:
            raise _unavailable("codes cannot be sent right now; retry later") from None
        if wait is not None:
            logger.warning("otp send refused by %s for %s", ids[0], mask_phone(phone))
            raise _limited(wait)
    try:
        result = state.otp_provider.send(phone)
    except OperationalError as exc:  # the code store (database) of our own providers
        logger.error("otp code store unavailable: %s", exc.__class__.__name__)
        raise _unavailable("codes cannot be sent right now; retry later") from None
    if result.status == "invalid_phone":
        raise ApiError(400, "invalid_phone", "this phone number cannot receive codes")
    if result.status == "rate_limited":
        raise _limited(int(result.retry_after or 600))
    if result.status != "pending":
        raise _unavailable("codes cannot be sent right now; retry later")
    resp = _json({"status": "pending"}, 202)
    _issue_cookie(resp, source, auth, body)
    return resp


@bp.post("/v1/otp/verify")
def verify():
    """Check a code: 200 with the person's userId, 400 wrong, 429 too many tries."""
    state, body, source, auth = _begin()
    phone = _phone(body)
    code = body.get("code")
    if not isinstance(code, str | int) or isinstance(code, bool):
        raise ApiError(400, "invalid_code", "code is required", verified=False,
                       fields={"code": "required"})
    secret = current_app.config["SECRET_KEY"]
    key = phone_lookup_key(phone, secret)
    ip = client_key(request.remote_addr)
    for rate, ids in ((_setting("verify_limit_ip"), ("otp-verify-ip", ip)),
                      (_setting("verify_limit_phone"), ("otp-verify-phone", key))):
        wait = state.throttle.hit(rate, *ids)
        if wait is not None:
            err = _limited(wait)
            err.details["verified"] = False
            raise err
    try:
        result = state.otp_provider.check(phone, str(code))
    except OperationalError as exc:
        logger.error("otp code store unavailable: %s", exc.__class__.__name__)
        raise _unavailable("codes cannot be checked right now", verified=False) from None
    if result.status == "wrong_code":
        raise ApiError(400, "wrong_code", "the code is not right", verified=False)
    if result.status == "expired":
        raise ApiError(400, "code_expired", "the code has expired or was used; ask for a new one",
                       verified=False)
    if result.status == "too_many_attempts":
        err = _limited(600)
        err.message = "too many wrong codes; ask for a new one"
        err.details["verified"] = False
        raise err
    if result.status != "approved":
        raise _unavailable("codes cannot be checked right now", verified=False)

    info = request_info(source, auth, request.path)
    devices = _devices_to_link(state, info, body)
    try:
        user_id, created = people.person_for_phone(state.engine, phone, secret)
        for anon in devices:
            people.link_device(state.engine, anon, user_id)
        _record_events(state, info, user_id, devices[0] if devices else None)
    except (StorageUnavailableError, OperationalError) as exc:
        # person_for_phone and link_device write through the engine directly: their
        # OperationalError must be a 503 too, not an unexpected 500.
        logger.error("storage unavailable after a verification: %s", exc.__class__.__name__)
        err = ApiError(503, "storage_unavailable", "the verification cannot be saved right "
                       "now; ask for a new code and retry", verified=False)
        err.headers["Retry-After"] = "30"
        raise err from None
    logger.info("phone %s verified (%s person)", mask_phone(phone),
                "new" if created else "known")
    resp = _json({"verified": True, "userId": user_id}, 200)
    if devices and info.visitor_id is not None:
        set_cookie(state, resp, info.visitor_id)
    return resp


def _devices_to_link(state, info, body) -> list[str]:
    """The anonymous ids a successful verification ties to the Person (M3).

    The caller's own device only: a valid sst cookie's id, or, for a browser without one, a
    new id that becomes its cookie. A body anonymousId is the caller's word, not proof: a
    browser key (public) could name somebody else's device with it, so it is linked only
    for a server-only key, whose caller is the site's own backend."""
    browser = request.headers.get("Origin") is not None
    body_id = _str_id(body.get("anonymousId"))
    visitor = choose_visitor(state, info, browser, body_id if info.trusted else None)
    info.visitor_id = visitor
    devices = [visitor] if visitor is not None else []
    if info.trusted and body_id is not None and body_id not in devices:
        devices.append(body_id)
    return devices


def _str_id(value):
    if isinstance(value, str) and 0 < len(value.strip()) <= 128:
        return value.strip()
    return None


def _record_events(state, info, user_id, anonymous_id) -> None:
    """An identify call for the verification, and the configured conversion event; both
    flow to destinations like any other event."""
    info = replace(info, visitor_id=None, trusted=True)  # ids are set explicitly below;
    # these messages are sst's own word that the device verified the phone
    messages = [{"type": "identify", "userId": user_id, "anonymousId": anonymous_id,
                 "messageId": f"otp-{uuid.uuid4()}", "traits": {"phoneVerified": True}}]
    conversion = _setting("conversion_event")
    if conversion:
        # One conversion per person: a second device verifying the same phone is a
        # duplicate messageId, stored and sent once.
        messages.append({"type": "track", "event": conversion, "userId": user_id,
                         "anonymousId": anonymous_id, "messageId": _conversion_id(user_id),
                         "properties": {}})
    prepared = []
    for msg in messages:
        if anonymous_id is None:
            msg.pop("anonymousId")
        item = prepare(msg, info)
        if not isinstance(item, Rejection):
            prepared.append(item)
    state.store(prepared)


def _conversion_id(user_id: str) -> str:
    """One per person (a second device is a duplicate), but not the userId in clear: the
    id is kept by replays and logs that `sst forget` cannot all reach (L1)."""
    key = derive_key(str(current_app.config["SECRET_KEY"]), "sst otp conversion id")
    return "otp-conv-" + hmac.new(key, user_id.encode(), hashlib.sha256).hexdigest()[:32]


def _issue_cookie(resp, source, auth, body):
    state = current_state()
    info = request_info(source, auth, request.path)
    visitor = choose_visitor(state, info, request.headers.get("Origin") is not None,
                       body.get("anonymousId"))
    if visitor is not None:
        set_cookie(state, resp, visitor)
