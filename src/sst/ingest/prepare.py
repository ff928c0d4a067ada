"""Turn one received Segment message into rows to store. Pure: no Flask, no I/O."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from marshmallow import ValidationError

from sst.clock import corrected_event_time, to_db
from sst.ingest.bots import Budget, is_bot_ua, visitor_user_agent
from sst.ingest.schema import flat_errors, message_schema, quick_load
from sst.ingest.store import PreparedEvent, Touch
from sst.ingest.touch import AD_COOKIES, page_url_of, parse_touch, referrer_of
from sst.jsonutil import dumps, nesting_depth, non_finite_path


@dataclass
class Rejection:
    """A message that will not be stored, and why."""

    status: int
    error: str
    message: str
    fields: dict = field(default_factory=dict)


@dataclass
class RequestInfo:
    """What the HTTP request tells about every message in it."""

    source: str
    endpoint: str
    received_at: datetime  # aware UTC
    ip: str | None = None
    user_agent: str | None = None
    origin: str | None = None
    auth: str = "basic"  # basic | body | query
    content_type: str | None = None
    visitor_id: str | None = None  # the first-party cookie's id, when this is a browser
    cookie_state: str = "absent"  # valid | absent | invalid | new
    ad_cookies: dict = field(default_factory=dict)
    batch_sent_at: object = None  # a batch's own sentAt
    extra_touch_url: str | None = None  # the pixel request's own URL (email links)
    shallow: bool = False  # the body has too few brackets for any message to be too deep
    finite: bool = False  # the body's text cannot hold a number too large for a double
    # A server-only key (origins = []) or sst's own OTP verification: only such a message's
    # userId may tie the device to a verified Person (contract section 4). A browser key is
    # public, so its userId is stored as sent and claims nobody.
    trusted: bool = False
    bot_budget: Budget = field(default_factory=Budget)  # bot-verdict time left (H1)

    @property
    def browser(self) -> bool:
        """Did a browser make this request (contract §3: an Origin, the pixel, the cookie)?

        The pixel and every Origin-bearing request get a cookie state of valid or new; a
        server request only shows a valid one when it forwards the visitor's sst cookie."""
        return self.origin is not None or self.cookie_state in ("valid", "new")


# MariaDB's JSON columns refuse documents nested 32 levels or more (JSON_VALID's limit);
# such a message must be a 400, not a storage failure that the client retries forever.
MAX_DEPTH = 31

def _context_str(context, key, limit):
    value = context.get(key) if isinstance(context, dict) else None
    return value[:limit] if isinstance(value, str) and value else None


def _ad_cookies(context, from_http: dict) -> dict:
    """The ad cookies of the request, plus those sst.js read on the page (context.cookies):
    a pixel's host-only cookie on www. never reaches t. as an HTTP cookie."""
    sent = context.get("cookies") if isinstance(context, dict) else None
    if not isinstance(sent, dict):
        return from_http
    extra = {k: v for k in AD_COOKIES
             if isinstance(v := sent.get(k), str) and 0 < len(v) <= 255}
    return {**extra, **from_http} if extra else from_http


def prepare(raw: dict, info: RequestInfo, index: int | None = None,
            max_bytes: int | None = None) -> PreparedEvent | Rejection:
    """Validate one message and build its rows; never raises on bad input."""
    if not isinstance(raw, dict):
        return Rejection(400, "invalid_message", "a message must be a JSON object")
    if not info.shallow and nesting_depth(raw, MAX_DEPTH) > MAX_DEPTH:
        return Rejection(400, "invalid_message",
                         f"a message may nest objects and arrays {MAX_DEPTH} levels deep at most")
    if not info.finite and (where := non_finite_path(raw)) is not None:
        # 1e309: not storable (MariaDB refuses Infinity in JSON) nor sendable; this message
        # alone is refused, never its batch, and never as a 503 (M1, L5: no silent null).
        return Rejection(400, "invalid_message",
                         f"{where}: the number is too large; send it as a string",
                         {where: "number out of range"})
    if max_bytes is not None and len(dumps(raw).encode()) > max_bytes:
        return Rejection(413, "message_too_large",
                         f"a message may be {max_bytes // 1024} KiB at most")
    try:
        msg = quick_load(raw) or message_schema.load(raw)
    except ValidationError as exc:
        fields_ = flat_errors(exc.messages)
        return Rejection(400, "invalid_message", "the message is not valid: "
                         + "; ".join(f"{k}: {v}" for k, v in fields_.items()), fields_)

    client_anon = msg.get("anonymousId")
    user_id = msg.get("userId")
    if info.visitor_id is not None:
        anonymous_id = info.visitor_id
    else:
        anonymous_id = client_anon
    if anonymous_id is None and user_id is None:
        return Rejection(400, "invalid_message", "a message needs anonymousId or userId",
                         {"anonymousId": "anonymousId or userId is required"})

    received = info.received_at
    sent_at = msg.get("sentAt") or info.batch_sent_at
    timestamp = msg.get("timestamp") or msg.get("originalTimestamp")
    event_time = corrected_event_time(received, timestamp, sent_at)

    context = msg.get("context") or {}
    ad_cookies = _ad_cookies(context, info.ad_cookies)
    page_url = page_url_of(raw)
    referrer = referrer_of(raw)
    # The visitor's IP and user agent (contract §5): the message's context, else the
    # browser's own request; a backend's address and HTTP library are never the visitor's.
    browser = info.browser
    context_ua = _context_str(context, "userAgent", None)  # cut below, on record
    ip = _context_str(context, "ip", 45) or (info.ip if browser else None)
    user_agent = visitor_user_agent(context_ua, info.user_agent, browser)
    cut_user_agent = None
    if user_agent is not None and len(user_agent) > 512:
        # Cut here, on purpose and on record, not by the database: INSERT IGNORE turns a
        # too-long value into a silent truncation (L5).
        cut_user_agent = len(user_agent)
        user_agent = user_agent[:512]
    kind = msg["type"]
    name = msg.get("event") if kind == "track" else msg.get("name")

    stored = {k: v for k, v in raw.items() if k != "writeKey"}
    message_id = msg.get("messageId")
    if message_id is None:
        # Segment's SDKs always send one; a hand-written call may not. Generated ids make the
        # call non-idempotent, which is what such a caller asked for.
        message_id = str(uuid.uuid4())
        stored["messageId"] = message_id

    db_time = to_db(event_time)
    request = {"endpoint": info.endpoint, "auth": info.auth, "cookie": info.cookie_state}
    if info.origin:
        request["origin"] = info.origin
    if info.content_type:
        request["content_type"] = info.content_type[:100]
    if ad_cookies:
        request["ad_cookies"] = ad_cookies
    if not browser:  # the caller's own address and library, on record, not the visitor's
        if info.ip:
            request["ip"] = info.ip[:45]
        if info.user_agent:
            request["user_agent"] = info.user_agent[:512]
            if len(info.user_agent) > 512:
                cut_user_agent = len(info.user_agent)
    if index is not None:
        request["batch_index"] = index
    if cut_user_agent:
        request["user_agent_length"] = cut_user_agent  # its length as sent, before the cut
    if info.trusted and user_id:
        request["trusted"] = True  # event_data joins this userId to its Person
    row = {
        "source": info.source,
        "message_id": message_id,
        "type": kind,
        "event": name[:255] if isinstance(name, str) else None,
        "anonymous_id": anonymous_id,
        "client_anonymous_id": client_anon if client_anon != anonymous_id else None,
        "user_id": user_id,
        "event_time": db_time,
        "timestamp": to_db(timestamp),
        "sent_at": to_db(sent_at),
        "received_at": to_db(received),
        "message": stored,
        "request": request,
        "response": {"status": 200} if index is None else {"status": 200, "index": index},
        "ip": ip,
        "user_agent": user_agent,
        "page_url": page_url,
        "referrer": referrer,
        "is_bot": is_bot_ua(user_agent, info.bot_budget),
    }

    links = []
    link_kind = "user_id" if info.trusted else "claimed_user_id"
    if anonymous_id is not None:
        if client_anon and client_anon != anonymous_id:
            links.append((anonymous_id, "anonymous_id", client_anon))
        if user_id and kind in ("identify", "alias"):
            links.append((anonymous_id, link_kind, user_id))
    previous = msg.get("previousId")
    if kind == "alias" and previous and user_id and previous != anonymous_id:
        links.append((previous[:128], link_kind, user_id))

    touch = None
    if anonymous_id is not None:
        clicks, utm = parse_touch(page_url)
        if info.extra_touch_url:
            more_clicks, more_utm = parse_touch(info.extra_touch_url)
            clicks = {**more_clicks, **clicks}
            utm = {**more_utm, **utm}
        wants_touch = (clicks or utm or info.cookie_state == "new"
                       or (ad_cookies and kind == "page"))
        if wants_touch:
            touch = Touch(anonymous_id=anonymous_id, source=info.source, at=db_time,
                          clicks=clicks, utm=utm, landing_page=page_url, referrer=referrer,
                          cookies=ad_cookies)
    return PreparedEvent(row=row, touch=touch, links=links)
