"""Microsoft Advertising UET Conversions API (CAPI).

API: POST https://capi.uet.microsoft.com/v1/{tagId}/events with `Authorization: Bearer
<token issued for that UET tag>`, body {"data": [event, ...], "continueOnValidationError":
true}: valid events are taken and the answer lists the invalid ones by index,
{"eventsReceived", "error": {"code", "message", "details": [{"index", "propertyName",
"errorMessage"}]}, "traceId"} (learn.microsoft.com/advertising/guides/
uet-conversion-api-integration; Segment's Microsoft CAPI destination reads the same shape).
`eventId` de-duplicates against the UET tag's own event. No test mode is documented. Facts and
sources: docs/connectors.md, Microsoft Advertising.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from urllib.parse import quote

from marshmallow import fields

from sst.connectors import register
from sst.connectors.base import (
    PERMANENT,
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
)
from sst.connectors.fields import money, order_id, products, user_email, user_phone
from sst.identity import hashing as h

PAGE_LOAD, CUSTOM = "pageLoad", "custom"
CLICK_ID = "msclkid"
CLICK_COOKIE = "_uetmsclkid"  # the UET tag's copy of the click: "_uet" + msclkid
VISITOR_COOKIE = "_uetvid"  # the UET tag's visitor id: userData.anonymousId


class MicrosoftAdsSettings(ConnectorSettings):
    tag_id = fields.String(required=True)
    # Issued per UET tag ("Use Conversions API" on the tag), so a token sends for one tag only.
    access_token = fields.String(required=True, metadata={"secret": True})


@register
class MicrosoftAdsConnector(Connector):
    name = "microsoft_ads"
    settings_schema = MicrosoftAdsSettings
    max_batch = 1000
    # eventTime must be within the last 7 days.
    max_event_age = timedelta(days=7)
    default_base_url = "https://capi.uet.microsoft.com"

    def skip_reason(self, event: EventData) -> str | None:
        if event.type == "page" and not event.page_url:
            return "microsoft_ads: a pageLoad event needs the page URL"
        if (_click_id(event) or user_email(event) or user_phone(event)
                or event.cookies.get(VISITOR_COOKIE) or (event.ip and event.user_agent)):
            return None
        return ("microsoft_ads: no msclkid, email, phone, UET visitor id, or IP address with "
                "user agent to match on")

    def build_requests(self, events: list[EventData]) -> list[OutgoingRequest]:
        url = f"{self.base_url}/v1/{quote(self.settings['tag_id'], safe='')}/events"
        headers = {"Content-Type": "application/json",
                   "Authorization": f"Bearer {self.settings['access_token']}"}
        return [
            OutgoingRequest("POST", url, dict(headers),
                            dumps({"data": [self.event_payload(e) for e in batch],
                                   # take the valid events, list the others by index
                                   "continueOnValidationError": True}),
                            [e.message_id for e in batch])
            for batch in self.chunks(self.sendable(events), self.max_batch)
        ]

    def event_payload(self, e: EventData) -> dict:
        # A page view is UET's pageLoad; anything else a custom event named as mapped, which
        # a conversion goal matches on (its "action").
        out: dict = {"eventType": PAGE_LOAD if e.type == "page" else CUSTOM}
        if out["eventType"] == CUSTOM:
            out["eventName"] = e.platform_event
        out["eventId"] = e.message_id  # the UET tag's event id, for de-duplication
        out["eventTime"] = epoch_seconds(e.event_time)
        if e.page_url:
            out["eventSourceUrl"] = e.page_url
        if e.referrer:
            out["referrerUrl"] = e.referrer
        out["userData"] = self.user_data(e)
        custom = self.custom_data(e)
        if custom:
            out["customData"] = custom
        return out

    @staticmethod
    def user_data(e: EventData) -> dict:
        ud = {
            "em": h.hashed(user_email(e), h.normalize_email),  # trimmed, lowercase
            "ph": h.hashed(user_phone(e), h.e164_plus),  # E.164 with "+"
            "externalId": h.external_id(e.user_id),
            "anonymousId": e.cookies.get(VISITOR_COOKIE),
            "msclkid": _click_id(e),
            "clientIpAddress": e.ip,
            "clientUserAgent": e.user_agent,
        }
        return {k: v for k, v in ud.items() if v}

    @staticmethod
    def custom_data(e: EventData) -> dict:
        props = e.properties or {}
        cd: dict = money(props)  # value, currency: the goal's revenue
        oid = order_id(props)
        if oid:
            cd["transactionId"] = oid
        items = products(props)
        if items:
            cd["itemIds"] = [i["id"] for i in items]
            cd["items"] = [{k: i[k] for k in ("id", "name", "price", "quantity") if k in i}
                           for i in items]
        if props.get("query"):
            cd["searchTerm"] = str(props["query"])
        return cd

    def classify(self, request: OutgoingRequest, status: int, body: str,
                 headers: Mapping) -> dict[str, Outcome]:
        data = loads_or_none(body)
        data = data if isinstance(data, dict) else {}
        err = data.get("error") if isinstance(data.get("error"), dict) else {}
        details = _details(err)
        if 200 <= status < 300:
            outcomes = {mid: Outcome(SUCCESS, code=f"HTTP {status}")
                        for mid in request.message_ids}
            for index, reason in details.items():
                if 0 <= index < len(request.message_ids):
                    outcomes[request.message_ids[index]] = Outcome(
                        PERMANENT, error=f"HTTP {status} Microsoft: {reason}",
                        code=str(err.get("code") or "invalid event"))
            return outcomes
        # The whole request refused: 429 (Retry-After kept) and 5xx retry, other 4xx stop.
        message = err.get("message") or data.get("message")
        detail = "; ".join(dict.fromkeys(details.values())) or message or (body or "")[:500]
        out = http_outcome(status, headers, f"Microsoft: {detail}")
        if err.get("code"):
            out.code = str(err["code"])
        return {mid: out for mid in request.message_ids}

    def acknowledge(self, request: OutgoingRequest, status: int, body: str,
                    headers: Mapping) -> Acknowledgement | None:
        """eventsReceived is what UET took in; traceId names the request for support."""
        data = loads_or_none(body)
        if not isinstance(data, dict):
            return None
        err = data.get("error") if isinstance(data.get("error"), dict) else {}
        received = data.get("eventsReceived")
        details = _details(err)
        reasons = list(dict.fromkeys(details.values())) or (
            [str(err["message"])[:300]] if err.get("message") else [])
        counted = 200 <= status < 300 and isinstance(received, int) \
            and not isinstance(received, bool)
        # Whether eventsReceived counts the refused events too is not documented: either way
        # the accepted ones are at most the batch less those listed as invalid.
        valid = len(request.message_ids) - len(details)
        return Acknowledgement(
            accepted=min(received, valid) if counted else None,
            rejected=len(details) if counted else None,
            request_id=str(data.get("traceId") or "") or None,
            reasons=reasons[:5])


def _click_id(e: EventData) -> str | None:
    """msclkid from the click seen on any of the person's devices, else the UET tag's cookie
    (whose value is the click id behind a "_uet" prefix)."""
    click = e.click_ids.get(CLICK_ID)
    if click:
        return click.value
    cookie = e.cookies.get(CLICK_COOKIE) or ""
    return cookie.removeprefix("_uet") or None


def _details(err: Mapping) -> dict[int, str]:
    """{event index: "propertyName: errorMessage"} from error.details."""
    out: dict[int, str] = {}
    for d in err.get("details") or []:
        if isinstance(d, dict) and isinstance(d.get("index"), int):
            prop = d.get("propertyName")
            msg = str(d.get("errorMessage") or "invalid")
            out.setdefault(d["index"], f"{prop}: {msg}"[:300] if prop else msg[:300])
    return out
