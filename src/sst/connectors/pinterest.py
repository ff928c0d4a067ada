"""Pinterest API for Conversions (v5).

API: POST https://api.pinterest.com/v5/ad_accounts/{AD_ACCOUNT_ID}/events with
`Authorization: Bearer <conversion token>`, body {"data": [...]} of at most 1,000 events;
`?test=true` checks the request and records nothing. The 200 answer reports each event
(`events[i].status` processed | failed, in request order); errors are {"code", "message"}
(Pinterest's OpenAPI 5.x, `events/create`). Facts and sources: docs/connectors.md, Pinterest.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from urllib.parse import quote

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
    epoch_seconds,
    http_outcome,
    loads_or_none,
    parse_retry_after,
)
from sst.connectors.fields import currency, order_id, order_value, products, user_email
from sst.connectors.matching import hashed_contact
from sst.identity import hashing as h

# Pinterest error codes (body {"code", "message"}), from the OpenAPI examples:
# 8 rate limit (429), 4197 endpoint ramped down (503) -> retry.
TRANSIENT_CODES = frozenset({8, 4197})
# 2 authentication failed (401), 29 not permitted on the ad account (403),
# 4196 invalid request (400) -> resending cannot help.
PERMANENT_CODES = frozenset({2, 29, 4196})
PROCESSED, FAILED = "processed", "failed"  # events[i].status


class PinterestSettings(ConnectorSettings):
    ad_account_id = fields.String(required=True, validate=validate.Regexp(r"^\d{1,18}$"))
    access_token = fields.String(required=True, metadata={"secret": True})
    test = fields.Boolean(load_default=False)  # ?test=true: validated, not recorded


@register
class PinterestConnector(Connector):
    name = "pinterest"
    settings_schema = PinterestSettings
    max_batch = 1000
    max_event_age = timedelta(days=7)  # not documented by Pinterest: Meta's limit, kept safe
    default_base_url = "https://api.pinterest.com"

    def skip_reason(self, event: EventData) -> str | None:
        # user_data needs em, hashed_maids, or client_ip_address with client_user_agent.
        if user_email(event) or (event.ip and event.user_agent):
            return None
        return "pinterest: no email, or IP address with user agent, to match on"

    def build_requests(self, events: list[EventData]) -> list[OutgoingRequest]:
        s = self.settings
        url = f"{self.base_url}/v5/ad_accounts/{quote(s['ad_account_id'], safe='')}/events"
        if s.get("test"):
            url += "?test=true"
        headers = {"Content-Type": "application/json",
                   "Authorization": f"Bearer {s['access_token']}"}
        return [
            OutgoingRequest("POST", url, dict(headers),
                            dumps({"data": [self.event_payload(e) for e in batch]}),
                            [e.message_id for e in batch])
            for batch in self.chunks(self.sendable(events), self.max_batch)
        ]

    def event_payload(self, e: EventData) -> dict:
        out: dict = {
            "event_name": e.platform_event,
            "action_source": "web",
            "event_time": epoch_seconds(e.event_time),
            "event_id": e.message_id,  # the tag's event_id, for de-duplication
            "user_data": self.user_data(e),
        }
        if e.page_url:
            out["event_source_url"] = e.page_url
        custom = self.custom_data(e.properties or {})
        if custom:
            out["custom_data"] = custom
        return out

    @staticmethod
    def user_data(e: EventData) -> dict:
        # Pinterest's rules match Meta's (lowercase; phone digits with country code, no
        # leading zeros; city without spaces or punctuation; two-letter state and country).
        ud: dict = {k: [v] for k, v in hashed_contact(e).items()}
        ext = h.external_id(e.user_id)
        if ext:
            ud["external_id"] = [ext]
        click = e.click_ids.get("epik")
        raw = {
            "client_ip_address": e.ip,
            "client_user_agent": e.user_agent,
            # The epik URL parameter, else the tag's _epik cookie holding the same id.
            "click_id": click.value if click else e.cookies.get("_epik"),
        }
        ud.update({k: v for k, v in raw.items() if v})
        return ud

    @staticmethod
    def custom_data(props: Mapping) -> dict:
        cd: dict = {}
        value = order_value(props)
        if value is not None:
            cd["value"] = _decimal(value)  # Pinterest takes value as a string
        cur = currency(props)
        if cur:
            cd["currency"] = cur
        items = products(props)
        if items:
            cd["content_ids"] = [i["id"] for i in items]
            cd["contents"] = [
                {k2: (_decimal(i[k1]) if k2 == "item_price" else i[k1])
                 for k1, k2 in (("id", "id"), ("price", "item_price"), ("quantity", "quantity"),
                                ("name", "item_name"), ("category", "item_category"),
                                ("brand", "item_brand")) if k1 in i}
                for i in items
            ]
            cd["num_items"] = int(sum(i.get("quantity", 1) for i in items))
        oid = order_id(props)
        if oid:
            cd["order_id"] = oid
        if props.get("query"):
            cd["search_string"] = str(props["query"])
        return cd

    def classify(self, request: OutgoingRequest, status: int, body: str,
                 headers: Mapping) -> dict[str, Outcome]:
        data = loads_or_none(body)
        data = data if isinstance(data, dict) else {}
        # 200, or 422 "not all events were successfully processed": per-event statuses.
        report = data if isinstance(data.get("events"), list) else data.get("details")
        if status in (200, 422) and isinstance(report, dict) \
                and isinstance(report.get("events"), list):
            return self.per_event(request, report["events"], status)
        if 200 <= status < 300:
            return {mid: Outcome(SUCCESS, code=f"HTTP {status}") for mid in request.message_ids}
        code = data.get("code")
        if isinstance(code, int) and not isinstance(code, bool):
            msg = f"HTTP {status} Pinterest error {code}: {data.get('message') or ''}".strip()
            if code in TRANSIENT_CODES:
                out = Outcome(RETRYABLE, error=msg, code=str(code),
                              retry_after=parse_retry_after(headers.get("Retry-After")))
            elif code in PERMANENT_CODES:
                out = Outcome(PERMANENT, error=msg, code=str(code))
            else:  # unknown code: the HTTP status decides (429/5xx retry, other 4xx stop)
                base = http_outcome(status, headers)
                out = Outcome(base.kind, error=msg, code=str(code),
                              retry_after=base.retry_after)
        else:
            out = http_outcome(status, headers, (body or "")[:500])
        return {mid: out for mid in request.message_ids}

    def acknowledge(self, request: OutgoingRequest, status: int, body: str,
                    headers: Mapping) -> Acknowledgement | None:
        """Pinterest's own counts, num_events_received and num_events_processed (in a 200,
        or in a 422's details), and each failed event's error_message; an error body's
        message otherwise."""
        data = loads_or_none(body)
        if not isinstance(data, dict):
            return None
        report = data if "num_events_received" in data else data.get("details")
        if isinstance(report, dict) and _count(report.get("num_events_processed")) is not None:
            processed = _count(report["num_events_processed"])
            received = _count(report.get("num_events_received"))
            events = report.get("events") if isinstance(report.get("events"), list) else []
            reasons = [str(ev.get("error_message") or ev.get("status") or FAILED)[:300]
                       for ev in events if isinstance(ev, dict) and ev.get("status") != PROCESSED]
            return Acknowledgement(
                accepted=processed,
                rejected=max(0, received - processed) if received is not None else None,
                reasons=list(dict.fromkeys(reasons))[:5])
        if data.get("message"):
            return Acknowledgement(reasons=[str(data["message"])[:300]])
        return None

    @staticmethod
    def per_event(request: OutgoingRequest, events: list, status: int) -> dict[str, Outcome]:
        """Outcome per event from `events[i]` (same order as the request's data)."""
        outcomes: dict[str, Outcome] = {}
        for mid, ev in zip(request.message_ids, events, strict=False):
            ev = ev if isinstance(ev, dict) else {}
            if ev.get("status") == PROCESSED:
                outcomes[mid] = Outcome(SUCCESS, code=PROCESSED)
            else:
                reason = ev.get("error_message") or ev.get("status") or "no status"
                outcomes[mid] = Outcome(PERMANENT, error=f"HTTP {status} Pinterest: {reason}",
                                        code=FAILED)
        for mid in request.message_ids[len(events):]:  # the answer lists fewer events
            outcomes[mid] = Outcome(PERMANENT, code=f"HTTP {status}",
                                    error=f"HTTP {status} Pinterest: event missing from answer")
        return outcomes


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else None


def _decimal(value: float) -> str:
    """72.39 -> "72.39", 10.0 -> "10" (Pinterest parses the string into a double)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
