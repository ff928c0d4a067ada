"""TikTok Events API 2.0 (web events).

API: POST https://business-api.tiktok.com/open_api/v1.3/event/track/ with header Access-Token
(https://business-api.tiktok.com/portal/docs?id=1771100865818625). TikTok answers HTTP 200
with {"code": N, "message": ...} even for errors, so the body's `code` decides.
Max event age for web events is not documented (platforms.md 2.6): we keep 7 days, as Meta.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from marshmallow import fields

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
    epoch_seconds,
    http_outcome,
    loads_or_none,
    parse_retry_after,
)
from sst.connectors.fields import money, order_id, products, user_email, user_phone
from sst.identity import hashing as h

# 0 OK, 20001 partial success (treated as sent; unconfirmed, per RudderStack).
SUCCESS_CODES = frozenset({0, 20001})
# 40100 rate limit (QPS/QPM/QPD), 40700 internal error -> retry. 5xxxx are server-side errors.
TRANSIENT_CODES = frozenset({40100, 40700})


class TikTokSettings(ConnectorSettings):
    pixel_code = fields.String(required=True)
    access_token = fields.String(required=True, metadata={"secret": True})
    test_event_code = fields.String(load_default=None)


@register
class TikTokConnector(Connector):
    name = "tiktok"
    settings_schema = TikTokSettings
    max_batch = 1000
    max_event_age = timedelta(days=7)  # unconfirmed with TikTok; see module docstring
    default_base_url = "https://business-api.tiktok.com"
    path = "/open_api/v1.3/event/track/"

    def build_requests(self, events: list[EventData]) -> list[OutgoingRequest]:
        s = self.settings
        headers = {"Content-Type": "application/json", "Access-Token": s["access_token"]}
        reqs = []
        for batch in self.chunks(self.sendable(events), self.max_batch):
            body: dict = {"event_source": "web", "event_source_id": s["pixel_code"]}
            if s.get("test_event_code"):
                body["test_event_code"] = s["test_event_code"]
            body["data"] = [self.event_payload(e) for e in batch]
            reqs.append(OutgoingRequest("POST", self.base_url + self.path, dict(headers),
                                        dumps(body), [e.message_id for e in batch]))
        return reqs

    def event_payload(self, e: EventData) -> dict:
        user = {
            "email": h.hashed(user_email(e), h.normalize_email),
            # TikTok hashes E.164 *with* the "+", unlike Meta.
            "phone": h.hashed(user_phone(e), h.e164_plus),
            "external_id": h.external_id(e.user_id),
            "ttclid": e.click_ids["ttclid"].value if "ttclid" in e.click_ids else None,
            "ttp": e.cookies.get("_ttp"),
            "ip": e.ip,
            "user_agent": e.user_agent,
        }
        out: dict = {
            "event": e.platform_event,
            "event_time": epoch_seconds(e.event_time),
            "event_id": e.message_id,
            "user": {k: v for k, v in user.items() if v},
        }
        page = {"url": e.page_url, "referrer": e.referrer}
        if any(page.values()):
            out["page"] = {k: v for k, v in page.items() if v}
        props = self.properties(e.properties or {})
        if props:
            out["properties"] = props
        return out

    @staticmethod
    def properties(props: Mapping) -> dict:
        out: dict = money(props)
        items = products(props)
        if items:
            out["contents"] = [
                {k2: i[k1] for k1, k2 in (("id", "content_id"), ("name", "content_name"),
                                          ("price", "price"), ("quantity", "quantity"))
                 if k1 in i}
                for i in items
            ]
            out["content_type"] = "product"
        if props.get("query"):
            out["query"] = str(props["query"])
        oid = order_id(props)
        if oid:
            out["order_id"] = oid
        return out

    def acknowledge(self, request: OutgoingRequest, status: int, body: str,
                    headers: Mapping) -> Acknowledgement | None:
        """TikTok gives no counts; its request_id is what its support asks for."""
        data = loads_or_none(body)
        request_id = data.get("request_id") if isinstance(data, dict) else None
        return Acknowledgement(request_id=str(request_id)) if request_id else None

    def classify(self, request: OutgoingRequest, status: int, body: str,
                 headers: Mapping) -> dict[str, Outcome]:
        data = loads_or_none(body)
        code = data.get("code") if isinstance(data, dict) else None
        if not isinstance(code, int):
            out = http_outcome(status, headers, (body or "")[:500])
            if out.kind == SUCCESS:  # a 2xx without TikTok's envelope is not a confirmed send
                out = Outcome(RETRYABLE, error=f"HTTP {status} without a TikTok code in body",
                              code=f"HTTP {status}")
            return {mid: out for mid in request.message_ids}
        msg = f"TikTok code {code}: {data.get('message') or ''}".strip()
        if data.get("request_id"):
            msg += f" (request_id {data['request_id']})"
        if code in SUCCESS_CODES and status < 300:
            out = Outcome(SUCCESS, code=str(code))
        elif code in TRANSIENT_CODES or code >= 50000 or status >= 500 or status == 429:
            out = Outcome(RETRYABLE, error=msg, code=str(code),
                          retry_after=parse_retry_after(headers.get("Retry-After")))
        else:  # 40001 permission, 40002 parameter error, other 4xxxx: resending cannot help
            out = Outcome(PERMANENT, error=msg, code=str(code))
        return {mid: out for mid in request.message_ids}
