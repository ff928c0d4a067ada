"""Reddit Conversions API v2.0.

API: POST https://ads-api.reddit.com/api/v2.0/conversions/events/{ACCOUNT_ID} with
`Authorization: Bearer <conversion access token>`, body {"events": [...], "test_mode": bool}
(https://ads-api.reddit.com/docs/v2/#tag/Conversions). Reddit marks v2.0 deprecated in favour
of v3 (`/api/v3/pixels/{pixel_id}/conversion_events`); the contract names v2.0 and an
account id, so this is v2.0. Facts, sources and the gaps in Reddit's docs:
docs/connectors.md, Reddit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, timedelta
from urllib.parse import quote

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
    http_outcome,
    loads_or_none,
)
from sst.connectors.fields import currency, order_value, products, user_email, user_phone
from sst.identity import hashing as h

# v2.0 `event_type.tracking_type` values; any other name goes as Custom + custom_event_name.
TRACKING_TYPES = frozenset({"PageVisit", "ViewContent", "Search", "AddToCart", "AddToWishlist",
                            "Purchase", "Lead", "SignUp"})
CUSTOM = "Custom"


class RedditSettings(ConnectorSettings):
    account_id = fields.String(required=True)
    access_token = fields.String(required=True, metadata={"secret": True})
    # Events sent with test_mode are validated and shown in Events Manager, not attributed.
    test_mode = fields.Boolean(load_default=False)


@register
class RedditConnector(Connector):
    name = "reddit"
    settings_schema = RedditSettings
    max_batch = 1000
    # RudderStack refuses events over 7 days old; Reddit publishes no limit (docs/connectors.md).
    max_event_age = timedelta(days=7)
    default_base_url = "https://ads-api.reddit.com"

    def build_requests(self, events: list[EventData]) -> list[OutgoingRequest]:
        s = self.settings
        url = f"{self.base_url}/api/v2.0/conversions/events/{quote(s['account_id'], safe='')}"
        headers = {"Content-Type": "application/json",
                   "Authorization": f"Bearer {s['access_token']}"}
        reqs = []
        for batch in self.chunks(self.sendable(events), self.max_batch):
            body: dict = {"events": [self.event_payload(e) for e in batch]}
            if s.get("test_mode"):
                body["test_mode"] = True
            reqs.append(OutgoingRequest("POST", url, dict(headers), dumps(body),
                                        [e.message_id for e in batch]))
        return reqs

    def event_payload(self, e: EventData) -> dict:
        name = e.platform_event
        event_type = ({"tracking_type": name} if name in TRACKING_TYPES
                      else {"tracking_type": CUSTOM, "custom_event_name": name})
        out: dict = {
            # v2.0 takes an ISO 8601 timestamp (v3 takes epoch milliseconds).
            "event_at": e.event_time.astimezone(UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "event_type": event_type,
        }
        if "rdt_cid" in e.click_ids:
            out["click_id"] = e.click_ids["rdt_cid"].value
        out["user"] = self.user(e)
        out["event_metadata"] = self.metadata(e)
        return out

    @staticmethod
    def user(e: EventData) -> dict:
        hashed = {
            "email": h.hashed(user_email(e), h.reddit_email),
            # E.164 with "+", as Reddit's own Segment destination sends it.
            "phone_number": h.hashed(user_phone(e), h.e164_plus),
            # Reddit hashes the trimmed external id and IP address (no lowercasing).
            "external_id": h.hashed(e.user_id, _trimmed),
            "ip_address": h.hashed(e.ip, _trimmed),
        }
        raw = {"user_agent": e.user_agent, "uuid": e.cookies.get("_rdt_uuid")}
        return {k: v for k, v in {**hashed, **raw}.items() if v}

    @staticmethod
    def metadata(e: EventData) -> dict:
        props = e.properties or {}
        # conversion_id de-duplicates against the Pixel's conversionId: the message id.
        md: dict = {"conversion_id": e.message_id}
        value = order_value(props)
        if value is not None:
            md["value_decimal"] = value
        cur = currency(props)
        if cur:
            md["currency"] = cur
        items = products(props)
        if items:
            md["item_count"] = int(sum(i.get("quantity", 1) for i in items))
            md["products"] = [{k: i[k] for k in ("id", "name", "category") if k in i}
                              for i in items]
        return md

    def classify(self, request: OutgoingRequest, status: int, body: str,
                 headers: Mapping) -> dict[str, Outcome]:
        data = loads_or_none(body)
        invalid = _invalid_events(data)
        if invalid:
            return self.invalid_outcomes(request, data, invalid, status)
        err = data.get("error") if isinstance(data, dict) else None
        if 200 <= status < 300 and not err:
            return {mid: Outcome(SUCCESS, code=f"HTTP {status}") for mid in request.message_ids}
        # Reddit's error body: {"error": {"code": 400, "message": "invalid action_source"}}.
        if isinstance(err, dict):
            detail = f"Reddit: {err.get('message') or err}"
        elif isinstance(data, dict) and data.get("message"):
            detail = f"Reddit: {data['message']}"
        else:
            detail = (body or "")[:500]
        if status < 300:  # a 2xx carrying an error: Reddit refused the request
            out = Outcome(PERMANENT, error=f"HTTP {status} {detail}", code=f"HTTP {status}")
        else:  # Reddit documents no error codes of its own: 429 and 5xx retry, other 4xx stop
            out = http_outcome(status, headers, detail)
        return {mid: out for mid in request.message_ids}


    @staticmethod
    def invalid_outcomes(request: OutgoingRequest, data: dict, invalid: list[dict],
                         status: int) -> dict[str, Outcome]:
        """Reddit checks the whole batch and, when some events are invalid, processes none
        ("There were 1 invalid conversion events. None were processed."), naming each one
        with its error_message. Those are refused for good; the others were never looked at,
        so they go again without them (Reddit finds them by conversion_id, our message id)."""
        by_id = {}
        for item in invalid:
            event = item.get("event") if isinstance(item.get("event"), dict) else {}
            md = event.get("event_metadata") if isinstance(event.get("event_metadata"),
                                                           dict) else {}
            by_id.setdefault(str(md.get("conversion_id")), str(item.get("error_message")
                                                               or "invalid event")[:300])
        found = [mid for mid in request.message_ids if mid in by_id]
        message = str(data.get("message") or "")
        if not found:  # the answer names events we cannot place: all share its reasons
            reasons = "; ".join(dict.fromkeys(str(i.get("error_message")) for i in invalid))
            out = Outcome(PERMANENT, error=f"HTTP {status} Reddit: {reasons}"[:500],
                          code="invalid_events")
            return {mid: out for mid in request.message_ids}
        others = Outcome(RETRYABLE, code="rejected_with_batch",
                         error=f"HTTP {status} Reddit: not processed because of other events "
                               f"({message or 'invalid events in the batch'})"[:500])
        return {mid: (Outcome(PERMANENT, error=f"HTTP {status} Reddit: {by_id[mid]}",
                              code="invalid_event") if mid in by_id else others)
                for mid in request.message_ids}

    def acknowledge(self, request: OutgoingRequest, status: int, body: str,
                    headers: Mapping) -> Acknowledgement | None:
        """Reddit's answer in words: "Successfully processed N conversion events.", or the
        invalid events with their error_message (and "None were processed"), or an error."""
        data = loads_or_none(body)
        if not isinstance(data, dict):
            return None
        message = str(data.get("message") or "")
        invalid = _invalid_events(data)
        if invalid:
            reasons = [str(i.get("error_message") or "invalid event")[:300] for i in invalid]
            none = "none were processed" in message.lower()
            return Acknowledgement(accepted=0 if none else None, rejected=len(invalid),
                                   reasons=list(dict.fromkeys(reasons))[:5])
        done = _PROCESSED.search(message)
        if 200 <= status < 300 and done and not data.get("error"):
            return Acknowledgement(accepted=int(done.group(1)), rejected=0)
        err = data.get("error") if isinstance(data.get("error"), dict) else {}
        reason = err.get("message") or (message if status >= 300 else None)
        return Acknowledgement(reasons=[str(reason)[:300]]) if reason else None


_PROCESSED = re.compile(r"processed (\d+) conversion events", re.IGNORECASE)


def _invalid_events(data) -> list[dict]:
    items = data.get("invalid_events") if isinstance(data, dict) else None
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _trimmed(value: str | None) -> str | None:
    return (str(value).strip() or None) if value is not None else None
