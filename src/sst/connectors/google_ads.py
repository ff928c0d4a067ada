"""Google Ads conversions through Google's Data Manager API (`events:ingest`).

API: https://developers.google.com/data-manager/api/reference/rest/v1/events/ingest
Formatting: https://developers.google.com/data-manager/api/devguides/concepts/formatting
The Google Ads API click-conversion upload closed to new adopters on 15 June 2026; Data
Manager is its replacement (no developer token, scope .../auth/datamanager). It is
fast-fail: one invalid event rejects the whole request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from marshmallow import fields, validate

from sst.connectors import register
from sst.connectors.base import (
    PERMANENT,
    RETRYABLE,
    SUCCESS,
    Acknowledgement,
    Connector,
    ConnectorSettings,
    EventData,
    HttpExchange,
    Outcome,
    OutgoingRequest,
    dumps,
    http_outcome,
    loads_or_none,
    parse_retry_after,
)
from sst.connectors.fields import money, order_id, user_email, user_phone
from sst.identity import hashing as h

TOKEN_URL = "https://oauth2.googleapis.com/token"
# One click id per conversion; gclid first, then the iOS ones (web-to-web wbraid before gbraid).
CLICK_PARAMS = ("gclid", "wbraid", "gbraid")
# google.rpc status names worth retrying.
TRANSIENT_STATUS = frozenset({"UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED",
                              "ABORTED", "UNKNOWN"})
_EVENT_INDEX = re.compile(r"^events(?:\.events)?\[(\d+)\]")


class GoogleOAuthSettings(ConnectorSettings):
    """OAuth refresh-token credentials shared by both Google connectors."""

    customer_id = fields.String(required=True, validate=validate.Regexp(r"^\d{3}-?\d{3}-?\d{4}$"))
    login_customer_id = fields.String(load_default=None,
                                      validate=validate.Regexp(r"^\d{3}-?\d{3}-?\d{4}$"))
    client_id = fields.String(required=True)
    client_secret = fields.String(required=True, metadata={"secret": True})
    refresh_token = fields.String(required=True, metadata={"secret": True})
    token_url = fields.Url(load_default=TOKEN_URL, require_tld=False)
    validate_only = fields.Boolean(load_default=False)


class GoogleOAuthMixin:
    """Access token from a refresh token, cached on the instance until shortly before expiry;
    on a 401 the token is refreshed once and the request resent. Token calls are recorded."""

    _access_token: str | None = None
    _token_expires: datetime | None = None

    def access_token(self, exchanges: list[HttpExchange]) -> tuple[str | None, Outcome | None]:
        now = datetime.now(UTC)
        if self._access_token and self._token_expires and now < self._token_expires:
            return self._access_token, None
        s = self.settings
        form = urlencode({
            "grant_type": "refresh_token",
            "client_id": s["client_id"],
            "client_secret": s["client_secret"],
            "refresh_token": s["refresh_token"],
        })
        req = OutgoingRequest("POST", s["token_url"],
                              {"Content-Type": "application/x-www-form-urlencoded"}, form, [])
        exch, resp = self.perform(req)
        data = loads_or_none(resp.text) if resp is not None else None
        token = data.get("access_token") if isinstance(data, dict) else None
        if token:
            self.add_secret(token)
            exch.response_body = self.mask(exch.response_body)
        exchanges.append(exch)
        if resp is None:
            return None, Outcome(RETRYABLE, error=f"OAuth token: {exch.error_class}: "
                                 f"{exch.error_message}", code=exch.error_class)
        if resp.status_code != 200 or not token:
            err = data.get("error") if isinstance(data, dict) else None
            desc = data.get("error_description") if isinstance(data, dict) else None
            base = http_outcome(resp.status_code, resp.headers)
            # invalid_grant / invalid_client (400/401) need new credentials: permanent.
            kind = base.kind if base.kind == RETRYABLE else PERMANENT
            return None, Outcome(kind, error=f"OAuth token refresh failed: HTTP "
                                 f"{resp.status_code} {err or ''} {desc or ''}".strip(),
                                 code=f"oauth/{err or resp.status_code}",
                                 retry_after=base.retry_after)
        ttl = float(data.get("expires_in") or 3600)
        self._access_token = token
        self._token_expires = now + timedelta(seconds=max(0.0, ttl - 60))
        return token, None

    def send_request(self, req: OutgoingRequest):
        exchanges: list[HttpExchange] = []
        for attempt in (1, 2):
            token, fail = self.access_token(exchanges)
            if fail:
                return exchanges, {mid: fail for mid in req.message_ids}
            exch, resp = self.perform(req, {"Authorization": f"Bearer {token}"})
            exchanges.append(exch)
            if resp is not None and resp.status_code == 401 and attempt == 1:
                self._access_token = None  # expired or revoked early: refresh once
                continue
            return exchanges, self.outcomes_for(req, exch, resp)
        raise AssertionError("unreachable")


def digits(cid: str | None) -> str | None:
    return re.sub(r"\D", "", cid) if cid else None


def click_id(e: EventData) -> tuple[str, str] | None:
    for name in CLICK_PARAMS:
        click = e.click_ids.get(name)
        if click and click.value:
            return name, click.value
    return None


def hashed_identifiers(e: EventData) -> tuple[str | None, str | None]:
    """(email, phone) normalised the Data Manager way, SHA-256 hex."""
    email = h.hashed(user_email(e), h.normalize_email, gmail_dots=True)
    phone = h.hashed(user_phone(e), h.e164_plus)
    return email, phone


def rpc_error_outcome(status: int, body: str, headers: Mapping) -> Outcome:
    """Outcome for a google.rpc.Status error body {"error": {code, message, status, details}}."""
    data = loads_or_none(body)
    err = data.get("error") if isinstance(data, dict) else None
    base = http_outcome(status, headers, (body or "")[:500])
    if not isinstance(err, dict):
        return base
    name = err.get("status") or f"HTTP {status}"
    reasons = []
    for d in err.get("details") or []:
        if not isinstance(d, dict):
            continue
        if d.get("reason"):  # google.rpc.ErrorInfo (Data Manager)
            reasons.append(str(d["reason"]))
        for e in d.get("errors") or []:  # GoogleAdsFailure (Google Ads API)
            reasons.extend(str(v) for v in (e.get("errorCode") or {}).values())
    msg = f"HTTP {status} {name}: {err.get('message') or ''}".strip()
    if reasons:
        msg += f" ({', '.join(reasons)})"
    if name in TRANSIENT_STATUS or base.kind == RETRYABLE:
        return Outcome(RETRYABLE, error=msg, code=name,
                       retry_after=parse_retry_after(headers.get("Retry-After")))
    return Outcome(PERMANENT, error=msg, code=name)


class GoogleAdsSettings(GoogleOAuthSettings):
    pass


@register
class GoogleAdsConnector(GoogleOAuthMixin, Connector):
    name = "google_ads"
    settings_schema = GoogleAdsSettings
    max_batch = 2000
    max_event_age = None  # bounded by the conversion action's click window, checked by Google
    default_base_url = "https://datamanager.googleapis.com"
    path = "/v1/events:ingest"

    def skip_reason(self, event: EventData) -> str | None:
        if not re.fullmatch(r"\d+", event.platform_event or ""):
            return (f"{self.name}: events map must give a conversion action id, "
                    f"got {event.platform_event!r}")
        if not click_id(event) and not any(hashed_identifiers(event)):
            return f"{self.name}: no gclid/gbraid/wbraid and no email or phone to match on"
        return None

    @staticmethod
    def identifiers(e: EventData) -> list[dict]:
        email, phone = hashed_identifiers(e)
        return ([{"emailAddress": email}] if email else []) + (
            [{"phoneNumber": phone}] if phone else [])

    def build_requests(self, events: list[EventData]) -> list[OutgoingRequest]:
        s = self.settings
        reqs = []
        for batch in self.chunks(self.sendable(events), self.max_batch):
            actions = sorted({e.platform_event for e in batch})
            body = {
                # One destination per conversion action; events point to theirs by reference.
                "destinations": [self.destination(a) for a in actions],
                "events": [self.event_payload(e) for e in batch],
                "encoding": "HEX",
                "validateOnly": bool(s.get("validate_only")),
            }
            reqs.append(OutgoingRequest("POST", self.base_url + self.path,
                                        {"Content-Type": "application/json"}, dumps(body),
                                        [e.message_id for e in batch]))
        return reqs

    def destination(self, action_id: str) -> dict:
        s = self.settings
        dest: dict = {
            "reference": action_id,
            "operatingAccount": {"accountType": "GOOGLE_ADS",
                                 "accountId": digits(s["customer_id"])},
            "productDestinationId": action_id,
        }
        if s.get("login_customer_id"):
            dest["loginAccount"] = {"accountType": "GOOGLE_ADS",
                                    "accountId": digits(s["login_customer_id"])}
        return dest

    def event_payload(self, e: EventData) -> dict:
        props = e.properties or {}
        out: dict = {
            "destinationReferences": [e.platform_event],
            "transactionId": order_id(props) or e.message_id,
            "eventTimestamp": e.event_time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "eventSource": "WEB",
        }
        click = click_id(e)
        if click:
            out["adIdentifiers"] = {click[0]: click[1]}
        ids = self.identifiers(e)
        if ids:
            out["userData"] = {"userIdentifiers": ids}
        out.update(money(props, "conversionValue", "currency"))
        return out

    def acknowledge(self, request: OutgoingRequest, status: int, body: str,
                    headers: Mapping) -> Acknowledgement | None:
        """Google's request id: the body's requestId (Data Manager), else the request-id
        header every Google API answers with. Counts come from the per-event outcomes."""
        data = loads_or_none(body)
        request_id = (data.get("requestId") if isinstance(data, dict) else None) or \
            headers.get("request-id")
        return Acknowledgement(request_id=str(request_id)) if request_id else None

    def classify(self, request: OutgoingRequest, status: int, body: str,
                 headers: Mapping) -> dict[str, Outcome]:
        if 200 <= status < 300:
            # {"requestId": ...}: processing is asynchronous (requestStatus.retrieve).
            return {mid: Outcome(SUCCESS, code=f"HTTP {status}") for mid in request.message_ids}
        out = rpc_error_outcome(status, body, headers)
        bad = self.bad_event_indexes(body)
        if out.kind == PERMANENT and bad and len(request.message_ids) > 1:
            # Fast-fail rejected the whole request for these events; the others were fine and
            # may be sent again without them.
            others = Outcome(RETRYABLE, error=f"request rejected because of other events: "
                             f"{out.error}", code="rejected_with_batch")
            return {mid: (out if i in bad else others)
                    for i, mid in enumerate(request.message_ids)}
        return {mid: out for mid in request.message_ids}

    @staticmethod
    def bad_event_indexes(body: str) -> set[int]:
        data = loads_or_none(body)
        err = data.get("error") if isinstance(data, dict) else None
        found: set[int] = set()
        for d in (err or {}).get("details") or []:
            for v in (d.get("fieldViolations") or []) if isinstance(d, dict) else []:
                m = _EVENT_INDEX.match(str(v.get("field", "")))
                if m:
                    found.add(int(m.group(1)))
        return found
