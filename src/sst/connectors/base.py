"""Connector base: event data in, classified outcomes and recorded HTTP exchanges out.

A connector turns `EventData` into platform requests (`build_requests`, pure), sends them
(`send`, never raises on HTTP or network failure) and classifies each answer per event
(`classify`, reading the platform's body, not only the status).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

import requests
from marshmallow import RAISE, Schema, fields, validate

from sst.identity.hashing import mask_hashes

logger = logging.getLogger(__name__)

MASK = "***"
MAX_RESPONSE_BODY = 64 * 1024
# Skip events this close to a platform's age limit: the request itself takes time and the
# platform clock may run ahead of ours (Meta rejects the whole batch for one event too old).
AGE_MARGIN = timedelta(minutes=5)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Header names whose whole value is a credential.
SECRET_HEADERS = frozenset({"authorization", "access-token", "developer-token", "x-api-key"})

SUCCESS, RETRYABLE, PERMANENT, SKIPPED = "success", "retryable", "permanent", "skipped"


@dataclass
class ClickId:
    value: str
    seen_at: datetime  # tz-aware UTC: event time of the first event that carried it


@dataclass
class EventData:
    """Everything a connector may read about one event; built by the job layer."""

    message_id: str
    type: str
    event: str | None
    platform_event: str
    event_time: datetime
    properties: dict = field(default_factory=dict)
    traits: dict = field(default_factory=dict)
    context: dict = field(default_factory=dict)
    message: dict = field(default_factory=dict)
    anonymous_id: str | None = None
    user_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    page_url: str | None = None
    referrer: str | None = None
    click_ids: dict[str, ClickId] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    phone: str | None = None
    email: str | None = None


@dataclass
class Acknowledgement:
    """What the platform's answer says it did with the request's events, for reconciliation.

    None in a field: the answer does not say. `Connector.acknowledge` reads it from the body.
    """

    accepted: int | None = None  # events the platform says it counted (Meta events_received)
    rejected: int | None = None  # events it says it refused
    request_id: str | None = None  # its id for the request (fbtrace_id, request_id, requestId)
    reasons: list[str] = field(default_factory=list)  # its words for what it refused


@dataclass
class HttpExchange:
    """One outgoing HTTP request and its answer, secrets masked: what an Exchange row records."""

    method: str
    url: str
    request_headers: dict
    request_body: str | None
    status: int | None
    response_headers: dict
    response_body: str | None
    error_class: str | None
    error_message: str | None
    duration_ms: float
    started_at: datetime
    message_ids: list[str] = field(default_factory=list)  # the events this request carried
    acknowledgement: Acknowledgement | None = None  # what the answer said, if it said anything
    track_id: int | None = None  # the ledger row written before the request went out (L3)


@dataclass
class Outcome:
    kind: str  # success | retryable | permanent | skipped
    error: str | None = None
    code: str | None = None
    retry_after: float | None = None


@dataclass
class SendReport:
    """What `Connector.send` did: every request made, and one outcome per event passed in."""

    exchanges: list[HttpExchange]
    outcomes: dict[str, Outcome]
    # Ledger rows written ahead for requests that then were not sent (the send window
    # closed): the caller removes them.
    unsent_track_ids: list[int] = field(default_factory=list)


# A request not started because the send window closed: the delivery goes back to pending
# without counting an attempt (see Connector.send's `send_by`).
UNSENT = "unsent"
# Requests recorded in the ledger per write before the first of them goes out (L3): one
# write per request cost more than the request itself; a worker killed mid-window leaves
# at most this many rows "unknown" that never reached the platform.
RECORD_AHEAD = 25


@dataclass
class OutgoingRequest:
    """A request ready to send; `message_ids` are the events it carries, in body order."""

    method: str
    url: str
    headers: dict
    body: str | None
    message_ids: list[str]
    meta: dict = field(default_factory=dict)


class ConnectorSettings(Schema):
    """Keys every destination takes; connector schemas subclass this."""

    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Length(min=1))
    connector = fields.String(required=True, validate=validate.Length(min=1))
    base_url = fields.Url(schemes={"http", "https"}, require_tld=False, load_default=None)
    events = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    retry_max = fields.Integer(load_default=6, validate=validate.Range(min=1))
    retry_backoff = fields.Float(load_default=30.0, validate=validate.Range(min=0))
    timeout = fields.Float(load_default=10.0, validate=validate.Range(min=0, min_inclusive=False))
    consent_categories = fields.List(fields.String(), load_default=list)
    # Send events whose visitor is a bot? Unset: the connector's own default (forwards_bots).
    forward_bots = fields.Boolean(load_default=None, allow_none=True)
    enabled = fields.Boolean(load_default=True)


def secret_fields(schema: type[Schema] | Schema) -> list[str]:
    """Names of the fields marked `metadata={"secret": True}`."""
    inst = schema() if isinstance(schema, type) else schema
    return [name for name, f in inst.fields.items() if f.metadata.get("secret")]


def mask_settings(schema: type[Schema] | Schema, settings: Mapping) -> dict:
    """Copy of `settings` with every secret value replaced by "***"."""
    secret = set(secret_fields(schema))
    return {k: (MASK if k in secret and v not in (None, "") else v) for k, v in settings.items()}


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def epoch_seconds(dt: datetime) -> int:
    """Unix seconds, floored (platforms in seconds must not round up into the future)."""
    return (dt - EPOCH) // timedelta(seconds=1)


def epoch_millis(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(milliseconds=1)


def epoch_micros(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(microseconds=1)


def dumps(obj: Any) -> str:
    """Compact JSON, the exact text sent."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str)


def loads_or_none(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def http_outcome(status: int, headers: Mapping | None = None, detail: str = "") -> Outcome:
    """Generic status classification: 2xx ok, 408/425/429/5xx retry, other 4xx permanent."""
    code = f"HTTP {status}"
    msg = f"{code} {detail}".strip()
    if 200 <= status < 300:
        return Outcome(SUCCESS, code=code)
    if status in (408, 425, 429) or status >= 500:
        ra = parse_retry_after((headers or {}).get("Retry-After"))
        return Outcome(RETRYABLE, error=msg, code=code, retry_after=ra)
    return Outcome(PERMANENT, error=msg, code=code)


class HttpSession(requests.Session):
    """A requests.Session that reads the environment's proxy and CA settings (HTTPS_PROXY,
    NO_PROXY, REQUESTS_CA_BUNDLE...) once per scheme and host instead of on every request:
    requests walks os.environ on each call, about 5 % of a worker's CPU per delivery. A
    worker reads its environment at start-up, as it does its configuration."""

    def __init__(self):
        super().__init__()
        self._environment: dict = {}

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        if proxies or stream is not None or verify is not None or cert is not None:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        key = urlsplit(url)[:2]
        settings = self._environment.get(key)
        if settings is None:
            settings = self._environment[key] = super().merge_environment_settings(
                url, {}, None, None, None)
        return {**settings, "proxies": dict(settings["proxies"])}


# The hook of the send() running in this thread (a connector instance serves every job of
# its process; a thread runs one send at a time).
_hook = threading.local()


class Connector:
    """Base class. Subclasses set the class attributes and implement `build_requests`."""

    name: str = ""
    settings_schema: type[Schema] = ConnectorSettings
    max_batch: int = 1
    max_event_age: timedelta | None = None
    default_base_url: str = ""
    # Does a success answer mean the platform accepted the events? False where it answers
    # 2xx to anything (GA4's Measurement Protocol): those events count as unconfirmed.
    confirms_acceptance: bool = True
    # Bots' events are not sent to ad platforms unless a destination sets forward_bots
    # (contract §3); a webhook is the site's own system and gets them, marked context.bot.
    forwards_bots: bool = False

    # Key of the tags that stand for hashed identifiers in recorded requests (M5); the app
    # derives it from its secret. None: they are masked outright.
    ledger_key: bytes | None = None

    def __init__(self, settings: dict, session: requests.Session | None = None):
        self.settings = settings
        self.session = session or HttpSession()
        self._secrets: set[str] = {
            str(settings[k]) for k in secret_fields(self.settings_schema) if settings.get(k)
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.settings.get('name')!r}>"

    @property
    def base_url(self) -> str:
        return (self.settings.get("base_url") or self.default_base_url).rstrip("/")

    # --- pure part -------------------------------------------------------------------------

    @classmethod
    def refuses_age(cls, event_time: datetime, now: datetime) -> timedelta | None:
        """The event's age when the platform would refuse it for being too old, else None.

        The one cut-off: first sends and `sst replay` both ask it. AGE_MARGIN keeps a
        request that is slow to arrive from crossing the platform's limit on the way.
        """
        if cls.max_event_age is None:
            return None
        age = now - event_time
        return age if age > cls.max_event_age - AGE_MARGIN else None

    def too_old(self, event: EventData, now: datetime) -> str | None:
        """Reason string when the platform would refuse the event for its age, else None."""
        age = self.refuses_age(event.event_time, now)
        if age is not None:
            return (
                f"event too old for {self.name}: {_fmt_age(age)} old, "
                f"limit {_fmt_age(self.max_event_age)}"
            )
        return None

    def skip_reason(self, event: EventData) -> str | None:
        """Reason this event cannot be sent at all (missing identifiers ...), else None."""
        return None

    def build_requests(self, events: list[EventData]) -> list[OutgoingRequest]:
        """Platform requests for the events that pass `skip_reason`. Pure, no I/O."""
        raise NotImplementedError

    def classify(
        self, request: OutgoingRequest, status: int, body: str, headers: Mapping
    ) -> dict[str, Outcome]:
        """Per-event outcomes for one HTTP answer. Default: by status only."""
        outcome = http_outcome(status, headers, _snippet(body) if status >= 300 else "")
        return {mid: outcome for mid in request.message_ids}

    def acknowledge(self, request: OutgoingRequest, status: int, body: str,
                    headers: Mapping) -> Acknowledgement | None:
        """The platform's own account of the request (counts, request id, reasons), read
        from its answer. Default: nothing beyond what `classify` decided per event."""
        return None

    def sendable(self, events: list[EventData]) -> list[EventData]:
        return [e for e in events if self.skip_reason(e) is None]

    @staticmethod
    def chunks(items: list, size: int) -> list[list]:
        return [items[i : i + size] for i in range(0, len(items), size)]

    # --- I/O -------------------------------------------------------------------------------

    def send(self, events: list[EventData], now: datetime | None = None,
             send_by: float | None = None, before_send=None) -> SendReport:
        """Send the events: the one send loop, which production's workers and the connector
        test table both run. Never raises on HTTP, network or payload failure.

        The events must carry distinct message ids (one platform event id per request).
        `send_by` is a time.monotonic() deadline: a request not started by then is not sent,
        and its events get the outcome code UNSENT (a worker's claim is running out).
        `before_send([(req, exchange), ...]) -> [track id, ...]` records requests before
        they go out (each exchange holds the masked request, no answer yet), so a worker
        killed while the platform answers leaves the request in the ledger (L3). It is
        called once per RECORD_AHEAD requests, before the first of them is sent, and once
        more for any repeat of a request (an OAuth retry).
        """
        _hook.before_send = before_send
        _hook.drafts = {}
        try:
            return self._send(events, now, send_by)
        finally:
            _hook.before_send = None
            _hook.drafts = {}

    def _send(self, events, now, send_by) -> SendReport:
        now = now or datetime.now(UTC)
        outcomes: dict[str, Outcome] = {}
        ready = []
        for ev in events:
            reason = self.too_old(ev, now) or self.skip_reason(ev)
            if reason:
                outcomes[ev.message_id] = Outcome(SKIPPED, error=reason)
                logger.info("%s: skipped %s: %s", self.name, ev.message_id, reason)
            else:
                ready.append(ev)
        exchanges: list[HttpExchange] = []
        try:
            requests_ = self.build_requests(ready) if ready else []
        except Exception as exc:  # a payload bug must fail the delivery, not the worker
            logger.exception("%s: build_requests failed", self.name)
            failed = Outcome(PERMANENT, error=f"payload error: {exc}"[:500], code="internal")
            requests_ = []
            outcomes.update({ev.message_id: failed for ev in ready})
        unsent_tracks: list[int] = []
        for i, req in enumerate(requests_):
            if send_by is not None and time.monotonic() > send_by:
                # A slow platform ate the claim's time: hand the rest back unsent.
                unsent = Outcome(SKIPPED, error="not sent: claim window over", code=UNSENT)
                outcomes.update({mid: unsent for mid in req.message_ids})
                drafted = _hook.drafts.pop(id(req), None)
                if drafted and drafted[1] is not None:
                    unsent_tracks.append(drafted[1])
                continue
            if i % RECORD_AHEAD == 0:
                self._record_ahead(requests_[i:i + RECORD_AHEAD])
            exch, outs = self.send_request(req)
            for x in exch:
                x.message_ids = list(req.message_ids)
            exchanges.extend(exch)
            for mid in req.message_ids:
                outcomes[mid] = outs.get(mid) or Outcome(
                    PERMANENT, error="no outcome from classification", code="internal"
                )
        for ev in events:  # guard: every event passed in has an outcome
            outcomes.setdefault(
                ev.message_id, Outcome(SKIPPED, error="no request was built for this event")
            )
        return SendReport(exchanges=exchanges, outcomes=outcomes,
                          unsent_track_ids=unsent_tracks)

    def _record_ahead(self, window: list[OutgoingRequest]) -> None:
        """Hand the masked drafts of the next requests to the before_send hook in one call;
        perform() then uses each draft and its track id instead of masking again."""
        before_send = getattr(_hook, "before_send", None)
        if before_send is None:
            return
        pairs = [(req, self.draft(req)) for req in window if req.message_ids]
        if pairs:
            ids = before_send(pairs)
            _hook.drafts.update({id(req): (exch, track_id)
                                 for (req, exch), track_id in zip(pairs, ids, strict=True)})

    def draft(self, req: OutgoingRequest, headers: Mapping | None = None) -> HttpExchange:
        """The masked request as the ledger keeps it, with no answer yet."""
        return HttpExchange(
            method=req.method, url=self.mask(req.url),
            request_headers=self.mask_headers(req.headers if headers is None else headers),
            # Hashed phones and emails are reversible (M5): the ledger keeps keyed tags.
            request_body=(mask_hashes(self.mask(req.body), self.ledger_key)
                          if isinstance(req.body, str) else None),
            status=None, response_headers={}, response_body=None, error_class=None,
            error_message=None, duration_ms=0.0, started_at=datetime.now(UTC),
            message_ids=list(req.message_ids))

    def send_request(self, req: OutgoingRequest) -> tuple[list[HttpExchange], dict[str, Outcome]]:
        """Perform one request and classify it. Google connectors wrap this with OAuth."""
        exch, resp = self.perform(req)
        return [exch], self.outcomes_for(req, exch, resp)

    def outcomes_for(
        self, req: OutgoingRequest, exch: HttpExchange, resp: requests.Response | None
    ) -> dict[str, Outcome]:
        if resp is None:
            kind = RETRYABLE if exch.error_class in _RETRYABLE_ERRORS else PERMANENT
            out = Outcome(kind, error=f"{exch.error_class}: {exch.error_message}",
                          code=exch.error_class)
            return {mid: out for mid in req.message_ids}
        try:
            exch.acknowledgement = self.acknowledge(req, resp.status_code, resp.text,
                                                    resp.headers)
        except Exception:  # an odd answer must not lose the delivery state
            logger.exception("%s: acknowledge failed", self.name)
        try:
            return self.classify(req, resp.status_code, resp.text, resp.headers)
        except Exception as exc:  # a classifier bug must not lose the delivery state
            logger.exception("%s: classify failed", self.name)
            out = http_outcome(resp.status_code, resp.headers)
            if out.kind == SUCCESS:
                return {mid: out for mid in req.message_ids}
            out.error = f"{out.error} (classify failed: {exc})"
            return {mid: out for mid in req.message_ids}

    def perform(
        self, req: OutgoingRequest, extra_headers: dict | None = None
    ) -> tuple[HttpExchange, requests.Response | None]:
        """Do the HTTP call with the configured timeout; record it, secrets masked."""
        headers = {**req.headers, **(extra_headers or {})}
        # Recorded ahead by _send (L3); taken once, so a repeat (OAuth retry) gets its own row.
        drafted = getattr(_hook, "drafts", {}).pop(id(req), None)
        if drafted is not None:
            draft, track_id = drafted
            if extra_headers:
                draft.request_headers = self.mask_headers(headers)
        else:
            draft, track_id = self.draft(req, headers), None
            before_send = getattr(_hook, "before_send", None)
            if before_send is not None and req.message_ids:
                [track_id] = before_send([(req, draft)])
        masked_url, masked_headers = draft.url, draft.request_headers
        masked_body = draft.request_body
        started = datetime.now(UTC)
        t0 = time.perf_counter()
        resp = err = None
        try:
            resp = self.session.request(
                req.method,
                req.url,
                headers=headers,
                data=req.body.encode("utf-8") if isinstance(req.body, str) else req.body,
                timeout=self.settings.get("timeout", 10.0),
                allow_redirects=False,  # a redirected POST may turn into a GET
            )
        except requests.RequestException as exc:
            err = exc
        duration = (time.perf_counter() - t0) * 1000.0
        if resp is not None:
            body = resp.content[:MAX_RESPONSE_BODY].decode(resp.encoding or "utf-8", "replace")
            status, resp_headers = resp.status_code, dict(resp.headers)
        else:
            body, status, resp_headers = None, None, {}
        exch = HttpExchange(
            method=req.method,
            url=masked_url,
            request_headers=masked_headers,
            request_body=masked_body,
            status=status,
            response_headers=self.mask_headers(resp_headers),
            response_body=mask_hashes(self.mask(body), self.ledger_key),
            error_class=type(err).__name__ if err is not None else None,
            error_message=self.mask(str(err))[:2000] if err is not None else None,
            duration_ms=round(duration, 3),
            started_at=started,
            track_id=track_id,
        )
        if err is not None:
            logger.warning("%s: %s %s failed: %s", self.name, req.method, exch.url,
                           exch.error_class)
        return exch, resp

    # --- secrets ---------------------------------------------------------------------------

    def add_secret(self, value: str | None) -> None:
        """Mask this value too (e.g. an OAuth access token obtained at run time)."""
        if value:
            self._secrets.add(str(value))

    def mask(self, text: str | None) -> str | None:
        if not text:
            return text
        for secret in sorted(self._secrets, key=len, reverse=True):
            for variant in {secret, quote(secret, safe=""), quote_plus(secret)}:
                text = text.replace(variant, MASK)
        return text

    def mask_headers(self, headers: Mapping) -> dict:
        out = {}
        for k, v in headers.items():
            if k.lower() in SECRET_HEADERS:
                scheme = str(v).split(" ", 1)[0] if " " in str(v) else ""
                out[k] = f"{scheme} {MASK}".strip()
            else:
                out[k] = self.mask(str(v))
        return out


_RETRYABLE_ERRORS = frozenset(
    {"Timeout", "ConnectTimeout", "ReadTimeout", "ConnectionError", "ChunkedEncodingError",
     "ContentDecodingError", "ProxyError", "SSLError"}
)


def _fmt_age(td: timedelta) -> str:
    secs = int(td.total_seconds())
    if secs >= 86400 and secs % 86400 == 0:
        return f"{secs // 86400} d"
    if secs >= 3600:
        return f"{secs / 3600:.1f} h"
    return f"{secs} s"


def _snippet(body: str | None, limit: int = 500) -> str:
    return (body or "").strip()[:limit]
