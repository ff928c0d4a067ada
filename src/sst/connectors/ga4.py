"""Google Analytics 4 Measurement Protocol (web streams).

API: https://developers.google.com/analytics/devguides/collection/protocol/ga4/sending-events
Validation: https://developers.google.com/analytics/devguides/collection/protocol/ga4/validating-events
/mp/collect answers 2xx even for malformed events; only `validate = true` (/debug/mp/collect)
reports problems. One request carries one client_id, so batches are split per visitor.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from urllib.parse import urlencode

from marshmallow import fields

from sst.connectors import register
from sst.connectors.base import (
    PERMANENT,
    SUCCESS,
    Connector,
    ConnectorSettings,
    EventData,
    Outcome,
    OutgoingRequest,
    dumps,
    epoch_micros,
    http_outcome,
    loads_or_none,
)
from sst.connectors.fields import money, order_id, products

MAX_NAME = 40
# Names GA4 refuses for Measurement Protocol events (reserved, or collected automatically).
RESERVED_NAMES = frozenset({
    "ad_activeview", "ad_click", "ad_exposure", "ad_impression", "ad_query", "ad_reward",
    "adunit_exposure", "app_background", "app_clear_data", "app_exception", "app_install",
    "app_remove", "app_store_refund", "app_store_subscription_cancel",
    "app_store_subscription_convert", "app_store_subscription_renew", "app_update",
    "app_upgrade", "dynamic_link_app_open", "dynamic_link_app_update", "dynamic_link_first_open",
    "error", "first_open", "first_visit", "in_app_purchase", "notification_dismiss",
    "notification_foreground", "notification_open", "notification_receive", "os_update",
    "session_start", "session_start_with_rollout", "user_engagement",
})
RESERVED_PREFIXES = ("_", "firebase_", "ga_", "google_", "gtag.")
_INDEX = re.compile(r"index:?\s*\[?(\d+)\]?", re.I)


def event_name(name: str) -> str:
    """GA4 rules: snake_case, letters/digits/underscore, starts with a letter, at most 40 chars."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", (name or "").strip())
    s = re.sub(r"[^A-Za-z0-9]+", "_", s).strip("_").lower()
    return s[:MAX_NAME].rstrip("_")


def client_id_from_ga(cookie: str | None) -> str | None:
    """`_ga` cookie "GA1.1.1234567890.1700000000" -> "1234567890.1700000000"."""
    if not cookie:
        return None
    parts = cookie.strip().split(".")
    if len(parts) >= 4 and parts[0].upper().startswith("GA"):
        return ".".join(parts[-2:])
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return cookie.strip()
    return None


class GA4Settings(ConnectorSettings):
    measurement_id = fields.String(required=True)
    api_secret = fields.String(required=True, metadata={"secret": True})
    validate = fields.Boolean(load_default=False)


@register
class GA4Connector(Connector):
    name = "ga4"
    settings_schema = GA4Settings
    max_batch = 25
    max_event_age = timedelta(hours=72)  # backdating limit of timestamp_micros
    default_base_url = "https://www.google-analytics.com"

    @property
    def confirms_acceptance(self) -> bool:
        # /mp/collect answers 2xx to anything; only the validation server judges events.
        return bool(self.settings.get("validate"))

    @staticmethod
    def client_id(e: EventData) -> str | None:
        return client_id_from_ga(e.cookies.get("_ga")) or e.anonymous_id

    def skip_reason(self, event: EventData) -> str | None:
        name = event_name(event.platform_event)
        if not name or not name[0].isalpha():
            return f"ga4: {event.platform_event!r} gives no valid GA4 event name"
        if name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES):
            return f"ga4: event name {name!r} is reserved by GA4"
        if not self.client_id(event):
            return "ga4: no client id (_ga cookie or anonymous id)"
        return None

    def build_requests(self, events: list[EventData]) -> list[OutgoingRequest]:
        s = self.settings
        path = "/debug/mp/collect" if s.get("validate") else "/mp/collect"
        url = f"{self.base_url}{path}?" + urlencode(
            {"measurement_id": s["measurement_id"], "api_secret": s["api_secret"]})
        groups: dict[tuple, list[EventData]] = {}
        for e in self.sendable(events):
            groups.setdefault((self.client_id(e), e.user_id), []).append(e)
        reqs = []
        for (cid, uid), group in groups.items():
            for batch in self.chunks(group, self.max_batch):
                body: dict = {"client_id": cid}
                if uid:
                    body["user_id"] = uid
                body["timestamp_micros"] = epoch_micros(batch[0].event_time)
                if s.get("validate"):
                    body["validation_behavior"] = "ENFORCE_RECOMMENDATIONS"
                body["events"] = [self.event_payload(e) for e in batch]
                reqs.append(OutgoingRequest("POST", url, {"Content-Type": "application/json"},
                                            dumps(body), [e.message_id for e in batch]))
        return reqs

    def event_payload(self, e: EventData) -> dict:
        props = e.properties or {}
        params: dict = {}
        for key in ("session_id", "engagement_time_msec"):
            if props.get(key) not in (None, ""):
                params[key] = props[key]
        if "session_id" not in params and e.context.get("sessionId"):
            params["session_id"] = e.context["sessionId"]
        if e.page_url:
            params["page_location"] = e.page_url
        if e.referrer:
            params["page_referrer"] = e.referrer
        params.update(money(props))
        oid = order_id(props)
        if oid:
            params["transaction_id"] = oid
        items = products(props)
        if items:
            keys = (("id", "item_id"), ("name", "item_name"), ("price", "price"),
                    ("quantity", "quantity"), ("category", "item_category"),
                    ("brand", "item_brand"))
            params["items"] = [{k2: i[k1] for k1, k2 in keys if k1 in i} for i in items]
        # Event-level timestamp overrides the request's, so a batch keeps each event's time.
        return {"name": event_name(e.platform_event), "params": params,
                "timestamp_micros": epoch_micros(e.event_time)}

    def classify(self, request: OutgoingRequest, status: int, body: str,
                 headers: Mapping) -> dict[str, Outcome]:
        if not 200 <= status < 300:
            out = http_outcome(status, headers, (body or "")[:500])
            return {mid: out for mid in request.message_ids}
        data = loads_or_none(body)
        messages = data.get("validationMessages") if isinstance(data, dict) else None
        if not messages:
            return {mid: Outcome(SUCCESS, code=f"HTTP {status}") for mid in request.message_ids}
        # Validation server: any message means the event would be dropped in production.
        bad: dict[int, list[str]] = {}
        general: list[str] = []
        for m in messages:
            text = f"{m.get('validationCode')}: {m.get('fieldPath')}: {m.get('description')}"
            match = _INDEX.search(str(m.get("description") or ""))
            if match and int(match.group(1)) < len(request.message_ids):
                bad.setdefault(int(match.group(1)), []).append(text)
            else:
                general.append(text)
        outcomes = {}
        for i, mid in enumerate(request.message_ids):
            errs = bad.get(i, []) + general
            if errs:
                code = str(messages[0].get("validationCode") or "VALIDATION")
                outcomes[mid] = Outcome(PERMANENT, error="; ".join(errs), code=code)
            else:
                outcomes[mid] = Outcome(SUCCESS, code=f"HTTP {status}")
        return outcomes
