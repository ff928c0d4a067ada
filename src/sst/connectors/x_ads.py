"""X (Twitter) Conversions API for web events.

API: POST https://ads-api.x.com/12/measurement/conversions/{pixel_id}, signed with OAuth 1.0a
(the Ads API app's consumer key and secret, the advertiser's access token and secret), body
{"conversions": [...]} of at most 500 events. One bad conversion fails the whole request;
success is {"data": {"conversions_processed": N, "debug_id": ...}}, errors
{"errors": [{"code", "message"}]} (developer.x.com …/measurement/web-conversions). The
signature is computed per request by oauthlib (RFC 5849 HMAC-SHA1; the JSON body is not part
of it, as with requests-oauthlib and X's own Python SDK), so `build_requests` stays pure;
previews show its stand-in header masked as "OAuth ***". No test mode. Facts and sources:
docs/connectors.md, X.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import UTC
from urllib.parse import quote, unquote

from marshmallow import fields, validate
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA1, Client

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
from sst.connectors.fields import currency, order_value, products, user_email, user_phone
from sst.identity import hashing as h

CLICK_ID = "twclid"
UNSIGNED = "OAuth (signed when sent)"
CLICK_COOKIE = "_twclid"  # the X pixel's first-party copy of the click
# An X event id: "tw-<pixel id>-<event id>" or the bare event id, both base 36.
_EVENT_ID = re.compile(r"^(tw-[0-9a-z]+-)?[0-9a-z]+$")
# X's Ads API error codes that a later try can get past (its "Response codes" list).
TRANSIENT_CODES = frozenset({"TOO_MANY_REQUESTS", "OVER_CAPACITY", "SERVICE_UNAVAILABLE",
                             "INTERNAL_ERROR", "TIMEOUT"})


class XAdsSettings(ConnectorSettings):
    pixel_id = fields.String(required=True)
    consumer_key = fields.String(required=True, metadata={"secret": True})
    consumer_secret = fields.String(required=True, metadata={"secret": True})
    access_token = fields.String(required=True, metadata={"secret": True})
    access_token_secret = fields.String(required=True, metadata={"secret": True})
    api_version = fields.String(load_default="12",
                                validate=validate.Regexp(r"^\d{1,3}$", error="expected e.g. 12"))


@register
class XAdsConnector(Connector):
    name = "x_ads"
    settings_schema = XAdsSettings
    max_batch = 500
    # X publishes no age limit for this endpoint (docs/connectors.md): nothing is cut here.
    max_event_age = None
    default_base_url = "https://ads-api.x.com"

    def skip_reason(self, event: EventData) -> str | None:
        if not _EVENT_ID.match(event.platform_event or ""):
            return (f"x_ads: event mapped to {event.platform_event!r}, not an X event id "
                    "(tw-<pixel id>-<event id>, or the base-36 event id)")
        # One of twclid, hashed email, hashed phone is required; IP and user agent only
        # count beside one of them.
        if _click_id(event) or user_email(event) or user_phone(event):
            return None
        return "x_ads: no twclid, email or phone to match on"

    def build_requests(self, events: list[EventData]) -> list[OutgoingRequest]:
        s = self.settings
        url = (f"{self.base_url}/{s.get('api_version') or '12'}/measurement/conversions/"
               f"{quote(s['pixel_id'], safe='')}")
        return [
            # The real Authorization is signed as the request goes out (send_request); this
            # stand-in shows in previews as the "OAuth ***" a Exchange records.
            OutgoingRequest("POST", url, {"Content-Type": "application/json",
                                          "Authorization": UNSIGNED},
                            dumps({"conversions": [self.conversion(e) for e in batch]}),
                            [e.message_id for e in batch])
            for batch in self.chunks(self.sendable(events), self.max_batch)
        ]

    def conversion(self, e: EventData) -> dict:
        out: dict = {
            "conversion_time": e.event_time.astimezone(UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            # The mapped X event id ("tw-<pixel>-<event>" or the bare base-36 id).
            "event_id": e.platform_event,
            "identifiers": [self.identifiers(e)],
            "conversion_id": e.message_id,  # the pixel's conversion_id, for de-duplication
        }
        props = e.properties or {}
        value = order_value(props)
        if value is not None:
            out["value"] = value
        cur = currency(props)
        if cur:
            out["price_currency"] = cur
        items = products(props)
        if items:
            count = sum(i.get("quantity", 1) for i in items)
            if isinstance(count, int) and count > 0:  # X: an integer greater than zero
                out["number_items"] = count
            out["contents"] = [
                {k2: i[k1] for k1, k2 in (("id", "content_id"), ("name", "content_name"),
                                          ("price", "content_price"), ("quantity", "num_items"))
                 if k1 in i and not (k2 == "num_items" and not isinstance(i[k1], int))}
                for i in items
            ]
        if props.get("query"):
            out["search_string"] = str(props["query"])
        return out

    @staticmethod
    def identifiers(e: EventData) -> dict:
        ident = {
            "twclid": _click_id(e),
            "hashed_email": h.hashed(user_email(e), h.normalize_email),  # trimmed, lowercase
            "hashed_phone_number": h.hashed(user_phone(e), h.e164_plus),  # E.164
            "ip_address": e.ip,
            "user_agent": e.user_agent,
        }
        return {k: v for k, v in ident.items() if v}

    # --- I/O: sign each request as it goes out ---------------------------------------------

    def send_request(self, req: OutgoingRequest) -> tuple[list[HttpExchange], dict[str, Outcome]]:
        exch, resp = self.perform(req, {"Authorization": self.authorization(req)})
        return [exch], self.outcomes_for(req, exch, resp)

    def authorization(self, req: OutgoingRequest, nonce: str | None = None,
                      timestamp: str | None = None) -> str:
        """The OAuth 1.0a header for this request (fresh nonce and timestamp unless given)."""
        s = self.settings
        client = Client(s["consumer_key"], client_secret=s["consumer_secret"],
                        resource_owner_key=s["access_token"],
                        resource_owner_secret=s["access_token_secret"],
                        signature_method=SIGNATURE_HMAC_SHA1, nonce=nonce, timestamp=timestamp)
        _, headers, _ = client.sign(req.url, http_method=req.method)
        return headers["Authorization"]

    def classify(self, request: OutgoingRequest, status: int, body: str,
                 headers: Mapping) -> dict[str, Outcome]:
        data = loads_or_none(body)
        data = data if isinstance(data, dict) else {}
        errors = [e for e in data.get("errors") or [] if isinstance(e, dict)]
        if 200 <= status < 300 and not errors:
            return {mid: Outcome(SUCCESS, code=f"HTTP {status}") for mid in request.message_ids}
        codes = [str(e.get("code")) for e in errors if e.get("code")]
        detail = "; ".join(dict.fromkeys(str(e.get("message") or e.get("code"))
                                         for e in errors)) or (body or "")[:500]
        retry_after = parse_retry_after(headers.get("Retry-After")) or _reset_in(headers)
        if status == 429 or status >= 500 or any(c in TRANSIENT_CODES for c in codes):
            out = Outcome(RETRYABLE, error=f"HTTP {status} X: {detail}",
                          code=codes[0] if codes else f"HTTP {status}", retry_after=retry_after)
        elif status < 300:  # a 2xx carrying errors: X refused the request
            out = Outcome(PERMANENT, error=f"HTTP {status} X: {detail}",
                          code=codes[0] if codes else f"HTTP {status}")
        else:
            out = http_outcome(status, headers, f"X: {detail}")
            out.code = codes[0] if codes else out.code
        # All or nothing: one bad conversion fails the request, so every event shares it.
        return {mid: out for mid in request.message_ids}

    def acknowledge(self, request: OutgoingRequest, status: int, body: str,
                    headers: Mapping) -> Acknowledgement | None:
        """conversions_processed is X's count; its debug_id (else the x-transaction-id
        header) is what X support asks for; reasons are X's error messages."""
        data = loads_or_none(body)
        data = data if isinstance(data, dict) else {}
        inner = data.get("data") if isinstance(data.get("data"), dict) else {}
        processed = inner.get("conversions_processed")
        request_id = inner.get("debug_id") or headers.get("x-transaction-id")
        reasons = [str(e.get("message") or e.get("code"))[:300]
                   for e in data.get("errors") or [] if isinstance(e, dict)]
        if processed is None and not request_id and not reasons:
            return None
        return Acknowledgement(
            accepted=processed if isinstance(processed, int) and not reasons else None,
            request_id=str(request_id) if request_id else None,
            reasons=list(dict.fromkeys(reasons))[:5])


def _click_id(e: EventData) -> str | None:
    """twclid from the click seen on any of the person's devices, else the X pixel's
    `_twclid` cookie, a JSON object whose `twclid` is the click id."""
    click = e.click_ids.get(CLICK_ID)
    if click:
        return click.value
    raw = e.cookies.get(CLICK_COOKIE)
    for text in (raw, unquote(raw or "")):
        data = loads_or_none(text)
        if isinstance(data, dict) and isinstance(data.get(CLICK_ID), str) and data[CLICK_ID]:
            return data[CLICK_ID]
    return None


def _reset_in(headers: Mapping) -> float | None:
    """Seconds until X's x-rate-limit-reset (epoch seconds), when it sends one."""
    try:
        reset = float(headers.get("x-rate-limit-reset") or "")
    except ValueError:
        return None
    return max(0.0, reset - time.time())
