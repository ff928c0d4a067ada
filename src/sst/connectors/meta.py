"""Meta (Facebook) Conversions API.

API: https://developers.facebook.com/documentation/ads-commerce/conversions-api/using-the-api
Errors: https://developers.facebook.com/docs/graph-api/guides/error-handling
The Graph API version is pinned in `api_version` (v25.0 is the version in Meta's current
CAPI examples; each CAPI version is supported for at least two years).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from urllib.parse import quote, urlencode

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
    Outcome,
    OutgoingRequest,
    dumps,
    epoch_millis,
    epoch_seconds,
    http_outcome,
    loads_or_none,
    parse_retry_after,
)
from sst.connectors.fields import money, order_id, products
from sst.connectors.matching import hashed_contact
from sst.identity import hashing as h

API_VERSION = "v25.0"
# Graph error codes: 1/2 temporary, 4/17/32/341/613 throttling, 80003 ad-account rate limit.
TRANSIENT_CODES = frozenset({1, 2, 4, 17, 32, 341, 613, 80003})
# 190/102 token, 3/10/200-299 permission, 100 invalid parameter (2804xxx CAPI validation).
PERMANENT_CODES = frozenset({3, 10, 100, 102, 190, 368}) | frozenset(range(200, 300))


class MetaSettings(ConnectorSettings):
    pixel_id = fields.String(required=True, validate=validate.Regexp(r"^\d+$"))
    access_token = fields.String(required=True, metadata={"secret": True})
    test_event_code = fields.String(load_default=None)
    api_version = fields.String(load_default=API_VERSION, validate=validate.Regexp(r"^v\d+\.\d+$"))


@register
class MetaConnector(Connector):
    name = "meta"
    settings_schema = MetaSettings
    max_batch = 1000
    max_event_age = timedelta(days=7)  # whole request fails if one event is older (2804003)
    default_base_url = "https://graph.facebook.com"

    def skip_reason(self, event: EventData) -> str | None:
        # One refused event fails the whole batch: an event Meta cannot match to anyone is
        # skipped here, with a reason, rather than sent.
        if not self.user_data(event):
            return "meta: no customer information to match (no user agent, IP, ids or contact)"
        return None

    @staticmethod
    def action_source(e: EventData) -> str:
        """"website" needs client_user_agent (Meta refuses it otherwise); an event whose
        visitor's browser is unknown (a backend's event of a person never seen in a browser)
        is one the business's system generated (contract §5)."""
        return "website" if e.user_agent else "system_generated"

    def build_requests(self, events: list[EventData]) -> list[OutgoingRequest]:
        s = self.settings
        url = (
            f"{self.base_url}/{s['api_version']}/{quote(s['pixel_id'], safe='')}/events?"
            + urlencode({"access_token": s["access_token"]})
        )
        reqs = []
        for batch in self.chunks(self.sendable(events), self.max_batch):
            body: dict = {"data": [self.event_payload(e) for e in batch]}
            if s.get("test_event_code"):
                body["test_event_code"] = s["test_event_code"]
            reqs.append(OutgoingRequest("POST", url, {"Content-Type": "application/json"},
                                        dumps(body), [e.message_id for e in batch]))
        return reqs

    def event_payload(self, e: EventData) -> dict:
        out: dict = {
            "event_name": e.platform_event,
            "event_time": epoch_seconds(e.event_time),
            "event_id": e.message_id,
            "action_source": self.action_source(e),
            "user_data": self.user_data(e),
        }
        if e.page_url:
            out["event_source_url"] = e.page_url
        if e.referrer:
            out["referrer_url"] = e.referrer
        custom = self.custom_data(e.properties or {})
        if custom:
            out["custom_data"] = custom
        return out

    @staticmethod
    def user_data(e: EventData) -> dict:
        hashed = {**hashed_contact(e), "external_id": h.external_id(e.user_id)}
        # Meta takes arrays for the hashed keys (as its SDK sends them).
        ud: dict = {k: [v] for k, v in hashed.items() if v}
        if e.ip:
            ud["client_ip_address"] = e.ip
        if e.user_agent:
            ud["client_user_agent"] = e.user_agent
        fbc = e.cookies.get("_fbc")
        click = e.click_ids.get("fbclid")
        if not fbc and click:
            # fb.<subdomainIndex>.<creation time ms>.<fbclid>; index 1 when built server-side,
            # the fbclid is case-sensitive and kept as is.
            fbc = f"fb.1.{epoch_millis(click.seen_at)}.{click.value}"
        if fbc:
            ud["fbc"] = fbc
        if e.cookies.get("_fbp"):
            ud["fbp"] = e.cookies["_fbp"]
        return ud

    @staticmethod
    def custom_data(props: Mapping) -> dict:
        cd: dict = money(props)
        items = products(props)
        if items:
            cd["content_ids"] = [i["id"] for i in items]
            cd["contents"] = [
                {k2: i[k1] for k1, k2 in (("id", "id"), ("quantity", "quantity"),
                                          ("price", "item_price")) if k1 in i}
                for i in items
            ]
            cd["content_type"] = "product"
            cd["num_items"] = int(sum(i.get("quantity", 1) for i in items))
        oid = order_id(props)
        if oid:
            cd["order_id"] = oid
        return cd

    def classify(self, request: OutgoingRequest, status: int, body: str,
                 headers: Mapping) -> dict[str, Outcome]:
        data = loads_or_none(body)
        err = data.get("error") if isinstance(data, dict) else None
        if 200 <= status < 300 and not err:
            return {mid: Outcome(SUCCESS, code=f"HTTP {status}") for mid in request.message_ids}
        out = self.error_outcome(status, err, headers) if isinstance(err, dict) else None
        out = out or http_outcome(status, headers, (body or "")[:500])
        # Meta rejects the whole batch when one event is invalid: every event shares the outcome.
        return {mid: out for mid in request.message_ids}

    def acknowledge(self, request: OutgoingRequest, status: int, body: str,
                    headers: Mapping) -> Acknowledgement | None:
        """{"events_received": N, "messages": [...], "fbtrace_id": ...}, or an error with
        its own fbtrace_id: Meta counts what it took in."""
        data = loads_or_none(body)
        if not isinstance(data, dict):
            return None
        err = data.get("error") if isinstance(data.get("error"), dict) else {}
        received = data.get("events_received")
        messages = data.get("messages") if isinstance(data.get("messages"), list) else []
        return Acknowledgement(
            accepted=received if isinstance(received, int) else None,
            request_id=str(data.get("fbtrace_id") or err.get("fbtrace_id") or "") or None,
            reasons=[str(m)[:300] for m in messages[:5]])

    @staticmethod
    def error_outcome(status: int, err: dict, headers: Mapping) -> Outcome:
        code, sub = err.get("code"), err.get("error_subcode")
        code_s = f"{code}/{sub}" if sub else str(code)
        parts = [err.get("message"), err.get("error_user_title"), err.get("error_user_msg")]
        msg = " | ".join(str(p) for p in parts if p) or f"HTTP {status}"
        msg = f"HTTP {status} Graph error {code_s}: {msg}"
        retry_after = parse_retry_after(headers.get("Retry-After"))
        if err.get("is_transient") is True or code in TRANSIENT_CODES:
            return Outcome(RETRYABLE, error=msg, code=code_s, retry_after=retry_after)
        if code in PERMANENT_CODES:
            return Outcome(PERMANENT, error=msg, code=code_s)
        # Unknown code: let the HTTP status decide (5xx / 429 retry, other 4xx stop).
        base = http_outcome(status, headers)
        return Outcome(base.kind if base.kind != SUCCESS else PERMANENT, error=msg, code=code_s,
                       retry_after=base.retry_after)
