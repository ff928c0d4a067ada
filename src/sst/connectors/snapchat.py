"""Snap Conversions API v3 (web events of a Snap Pixel).

API: POST https://tr.snapchat.com/v3/{PIXEL_ID}/events?access_token=TOKEN, body {"data": [...]}
(https://developers.snap.com/api/marketing-api/Conversions-API/UsingTheAPI); the answer is
{"status": "VALID"|"INVALID", "reason", "errors": {"codes", "error_msgs"}} (Snap's own
OpenAPI in Snapchat/business-sdk-v3-java). Test mode: the same body to `/events/validate`,
which Events Manager's test tool shows and which records nothing. Facts and sources:
docs/connectors.md, Snapchat.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from urllib.parse import quote, urlencode

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
from sst.connectors.matching import hashed_contact
from sst.identity import hashing as h

# `status` of Snap's EventResponse / ValidateResponse.
VALID, INVALID = "VALID", "INVALID"


class SnapchatSettings(ConnectorSettings):
    pixel_id = fields.String(required=True)
    access_token = fields.String(required=True, metadata={"secret": True})
    # Send to /events/validate: checked and shown in the test events tool, never recorded.
    validate = fields.Boolean(load_default=False)


@register
class SnapchatConnector(Connector):
    name = "snapchat"
    settings_schema = SnapchatSettings
    max_batch = 2000
    # Snap reports events up to 37 days old; older ones are not eligible.
    max_event_age = timedelta(days=37)
    default_base_url = "https://tr.snapchat.com"

    def skip_reason(self, event: EventData) -> str | None:
        # Snap needs one match key: em, ph, or client_ip_address with client_user_agent.
        if user_email(event) or user_phone(event) or (event.ip and event.user_agent):
            return None
        return "snapchat: no email, phone, or IP address with user agent to match on"

    def build_requests(self, events: list[EventData]) -> list[OutgoingRequest]:
        s = self.settings
        path = f"/v3/{quote(s['pixel_id'], safe='')}/events"
        if s.get("validate"):
            path += "/validate"
        url = self.base_url + path + "?" + urlencode({"access_token": s["access_token"]})
        return [
            OutgoingRequest("POST", url, {"Content-Type": "application/json"},
                            dumps({"data": [self.event_payload(e) for e in batch]}),
                            [e.message_id for e in batch])
            for batch in self.chunks(self.sendable(events), self.max_batch)
        ]

    def event_payload(self, e: EventData) -> dict:
        out: dict = {
            "event_name": e.platform_event,
            "event_time": epoch_seconds(e.event_time),
            "event_id": e.message_id,  # the Pixel's client_dedup_id / transaction_id
            "action_source": "WEB",
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
        # Snap's normalisation rules are Meta's (docs/connectors.md): the same helper.
        ud: dict = {k: [v] for k, v in hashed_contact(e).items()}
        ext = h.external_id(e.user_id)
        if ext:
            ud["external_id"] = ext
        raw = {
            "client_ip_address": e.ip,
            "client_user_agent": e.user_agent,
            "sc_click_id": e.click_ids["ScCid"].value if "ScCid" in e.click_ids else None,
            "sc_cookie1": e.cookies.get("_scid"),
        }
        ud.update({k: v for k, v in raw.items() if v})
        return ud

    @staticmethod
    def custom_data(props: Mapping) -> dict:
        cd: dict = money(props)
        items = products(props)
        if items:
            cd["content_ids"] = [i["id"] for i in items]
            # Snap's Content schema types quantity and item_price as strings.
            cd["contents"] = [
                {k2: _text(i[k1]) for k1, k2 in (("id", "id"), ("quantity", "quantity"),
                                                 ("price", "item_price")) if k1 in i}
                for i in items
            ]
            cd["num_items"] = int(sum(i.get("quantity", 1) for i in items))
        oid = order_id(props)
        if oid:
            cd["order_id"] = oid
        return cd

    def classify(self, request: OutgoingRequest, status: int, body: str,
                 headers: Mapping) -> dict[str, Outcome]:
        data = loads_or_none(body)
        data = data if isinstance(data, dict) else {}
        snap_status = data.get("status")
        detail = _detail(data) or (body or "")[:500]
        if 200 <= status < 300 and snap_status != INVALID:
            if isinstance(data.get("event_logs"), list):  # /validate answers per event
                return self.validate_outcomes(request, data["event_logs"], status)
            return {mid: Outcome(SUCCESS, code=snap_status or f"HTTP {status}")
                    for mid in request.message_ids}
        if 200 <= status < 300:  # INVALID: Snap checked the events and refused them
            out = Outcome(PERMANENT, error=f"HTTP {status} Snap {INVALID}: {detail}",
                          code=_codes(data) or INVALID)
        else:  # 429 (Retry-After kept) and 5xx retry, other 4xx stop
            out = http_outcome(status, headers, f"Snap: {detail}".strip())
            out.code = _codes(data) or out.code
        return {mid: out for mid in request.message_ids}

    def acknowledge(self, request: OutgoingRequest, status: int, body: str,
                    headers: Mapping) -> Acknowledgement | None:
        """Snap gives no count for /events: VALID takes the request, INVALID refuses it with
        its `reason` and `errors.error_msgs`. /validate's event_logs judge each event, so
        they give the counts."""
        data = loads_or_none(body)
        if not isinstance(data, dict):
            return None
        logs = data.get("event_logs")
        if 200 <= status < 300 and isinstance(logs, list):
            bad = [log for log in logs if isinstance(log, dict)
                   and (log.get("status") == INVALID or _detail(log))]
            n = len(request.message_ids)
            return Acknowledgement(accepted=max(0, n - len(bad)), rejected=min(n, len(bad)),
                                   reasons=_distinct(_detail(log) or INVALID for log in bad))
        if data.get("status") == INVALID or _detail(data):
            return Acknowledgement(reasons=_distinct([_detail(data) or str(data.get("reason")
                                                                           or INVALID)]))
        return None

    @staticmethod
    def validate_outcomes(request: OutgoingRequest, logs: list,
                          status: int) -> dict[str, Outcome]:
        """Per-event outcomes from /validate's event_logs (index `event` into the batch)."""
        outcomes = {mid: Outcome(SUCCESS, code=VALID) for mid in request.message_ids}
        for pos, log in enumerate(logs):
            if not isinstance(log, dict):
                continue
            index = log.get("event") if isinstance(log.get("event"), int) else pos
            errs = _detail(log)
            if 0 <= index < len(request.message_ids) and (errs or log.get("status") == INVALID):
                outcomes[request.message_ids[index]] = Outcome(
                    PERMANENT, error=f"HTTP {status} Snap validate: {errs or INVALID}",
                    code=_codes(log) or INVALID)
        return outcomes


def _detail(data: Mapping) -> str:
    errors = data.get("errors") if isinstance(data.get("errors"), dict) else {}
    msgs = [str(m) for m in errors.get("error_msgs") or [] if m]
    if not msgs and data.get("status") == INVALID and data.get("reason"):
        msgs = [str(data["reason"])]
    return "; ".join(msgs)


def _codes(data: Mapping) -> str | None:
    errors = data.get("errors") if isinstance(data.get("errors"), dict) else {}
    codes = [str(c) for c in errors.get("codes") or [] if c]
    return ",".join(codes) or None


def _distinct(items, limit: int = 5) -> list[str]:
    return list(dict.fromkeys(str(i)[:300] for i in items))[:limit]


def _text(value) -> str:
    """A number as Snap's string fields want it: 5.0 -> "5", 19.99 -> "19.99"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
