"""LinkedIn Conversions API.

API: POST https://api.linkedin.com/rest/conversionEvents with `Authorization: Bearer`,
`LinkedIn-Version: YYYYMM`, `X-Restli-Protocol-Version: 2.0.0`; several events go as
`X-RestLi-Method: BATCH_CREATE` with {"elements": [...]}, answered {"elements": [{"status":
201}, ...]} in request order (learn.microsoft.com/linkedin/marketing/integrations/
ads-reporting/conversions-api; LinkedIn's Python client reads `status`, `id`, `error` per
element). Every request is a BATCH_CREATE, so every answer reports each event. Errors are
{"status", "serviceErrorCode", "code", "message"}. No test mode. Facts and sources:
docs/connectors.md, LinkedIn.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from marshmallow import fields, validate

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
    epoch_millis,
    http_outcome,
    loads_or_none,
)
from sst.connectors.fields import currency, order_value, trait, user_email
from sst.identity import hashing as h

URN_PREFIX = "urn:lla:llaPartnerConversion:"
# A version LinkedIn serves in 2026; versions sunset about a year after release, and a
# sunset version is refused with HTTP 426 (permanent), so operators set `api_version`.
DEFAULT_VERSION = "202603"
CLICK_ID = "li_fat_id"  # URL parameter, and the Insight Tag's first-party cookie of that name


class LinkedInSettings(ConnectorSettings):
    access_token = fields.String(required=True, metadata={"secret": True})
    api_version = fields.String(load_default=DEFAULT_VERSION,
                                validate=validate.Regexp(r"^\d{6}$", error="expected YYYYMM"))


@register
class LinkedInConnector(Connector):
    name = "linkedin"
    settings_schema = LinkedInSettings
    max_batch = 5000
    # LinkedIn rejects events more than 90 days old.
    max_event_age = timedelta(days=90)
    default_base_url = "https://api.linkedin.com"

    def skip_reason(self, event: EventData) -> str | None:
        if not _rule(event.platform_event):
            return (f"linkedin: event mapped to {event.platform_event!r}, not a conversion "
                    "rule id or urn:lla:llaPartnerConversion URN")
        if user_email(event) or _click_id(event) or _user_info(event):
            return None
        return "linkedin: no email, li_fat_id, or first and last name to match on"

    def build_requests(self, events: list[EventData]) -> list[OutgoingRequest]:
        s = self.settings
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {s['access_token']}",
            "LinkedIn-Version": s.get("api_version") or DEFAULT_VERSION,
            "X-Restli-Protocol-Version": "2.0.0",
            "X-RestLi-Method": "BATCH_CREATE",
        }
        url = f"{self.base_url}/rest/conversionEvents"
        return [
            OutgoingRequest("POST", url, dict(headers),
                            dumps({"elements": [self.element(e) for e in batch]}),
                            [e.message_id for e in batch])
            for batch in self.chunks(self.sendable(events), self.max_batch)
        ]

    def element(self, e: EventData) -> dict:
        out: dict = {
            "conversion": _rule(e.platform_event),
            "conversionHappenedAt": epoch_millis(e.event_time),
        }
        props = e.properties or {}
        value, cur = order_value(props), currency(props)
        if value is not None and cur:
            # amount is a decimal string ("1500.0" in LinkedIn's example).
            out["conversionValue"] = {"currencyCode": cur, "amount": _amount(value)}
        out["eventId"] = e.message_id  # the Insight Tag's event_id, for de-duplication
        user: dict = {"userIds": self.user_ids(e)}  # required, even when empty
        info = _user_info(e)
        if info:
            user["userInfo"] = info
        out["user"] = user
        return out

    @staticmethod
    def user_ids(e: EventData) -> list[dict]:
        ids = []
        email = h.hashed(user_email(e), h.normalize_email)  # trimmed, lowercase, SHA-256
        if email:
            ids.append({"idType": "SHA256_EMAIL", "idValue": email})
        click = _click_id(e)
        if click:
            ids.append({"idType": "LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID", "idValue": click})
        return ids

    def classify(self, request: OutgoingRequest, status: int, body: str,
                 headers: Mapping) -> dict[str, Outcome]:
        data = loads_or_none(body)
        data = data if isinstance(data, dict) else {}
        elements = data.get("elements")
        if 200 <= status < 300 and isinstance(elements, list):
            return self.per_element(request, elements, headers)
        if 200 <= status < 300:  # a plain 201 (single create): LinkedIn took the event
            return {mid: Outcome(SUCCESS, code=f"HTTP {status}") for mid in request.message_ids}
        message = data.get("message")
        out = http_outcome(status, headers, f"LinkedIn: {message}" if message else
                           (body or "")[:500])
        code = data.get("code") or data.get("serviceErrorCode")
        if code not in (None, ""):
            out.code = str(code)
        return {mid: out for mid in request.message_ids}

    @staticmethod
    def per_element(request: OutgoingRequest, elements: list,
                    headers: Mapping) -> dict[str, Outcome]:
        """Outcome per event from BATCH_CREATE's `elements[i].status` (request order)."""
        outcomes: dict[str, Outcome] = {}
        for mid, el in zip(request.message_ids, elements, strict=False):
            el = el if isinstance(el, dict) else {}
            st = el.get("status")
            if isinstance(st, int) and 200 <= st < 300:
                outcomes[mid] = Outcome(SUCCESS, code=str(st))
                continue
            err = el.get("error") if isinstance(el.get("error"), dict) else {}
            reason = err.get("message") or el.get("message") or f"element status {st}"
            if isinstance(st, int):  # 429 and 5xx for one element retry, 4xx stop
                out = http_outcome(st, headers, f"LinkedIn: {reason}")
            else:
                out = Outcome(PERMANENT, error=f"LinkedIn: {reason}", code="no status")
            outcomes[mid] = out
        for mid in request.message_ids[len(elements):]:
            outcomes[mid] = Outcome(PERMANENT, code="missing",
                                    error="LinkedIn: event missing from the batch answer")
        return outcomes

    def acknowledge(self, request: OutgoingRequest, status: int, body: str,
                    headers: Mapping) -> Acknowledgement | None:
        """Counts from BATCH_CREATE's per-element statuses; LinkedIn's x-li-uuid header is
        the id its support asks for; reasons are its own messages."""
        data = loads_or_none(body)
        data = data if isinstance(data, dict) else {}
        request_id = headers.get("x-li-uuid") or headers.get("x-li-request-id")
        elements = data.get("elements")
        if 200 <= status < 300 and isinstance(elements, list):
            statuses = [el.get("status") if isinstance(el, dict) else None for el in elements]
            ok = sum(isinstance(s, int) and 200 <= s < 300 for s in statuses)
            # Refused for good; an element answered 429 or 5xx is sent again, and counted
            # by the attempt that settles it.
            refused = [(el, s) for el, s in zip(elements, statuses, strict=False)
                       if not (isinstance(s, int) and (200 <= s < 300 or s >= 500
                                                       or s in (408, 425, 429)))]
            reasons = [str(((el.get("error") or {}) if isinstance(el, dict) else {})
                           .get("message") or f"status {s}")[:300] for el, s in refused]
            return Acknowledgement(accepted=ok, rejected=len(refused),
                                   request_id=request_id, reasons=_distinct(reasons))
        reasons = [str(data["message"])[:300]] if data.get("message") else []
        if request_id or reasons:
            return Acknowledgement(request_id=request_id, reasons=reasons)
        return None


def _rule(platform_event: str | None) -> str | None:
    """The conversion rule URN for a mapped event: a bare rule id gets LinkedIn's prefix."""
    value = (platform_event or "").strip()
    if value.startswith(URN_PREFIX) and value[len(URN_PREFIX):].isdigit():
        return value
    return URN_PREFIX + value if value.isdigit() else None


def _click_id(e: EventData) -> str | None:
    """li_fat_id from the click seen on any of the person's devices, else the tag's cookie."""
    click = e.click_ids.get(CLICK_ID)
    return click.value if click else (e.cookies.get(CLICK_ID) or None)


def _user_info(e: EventData) -> dict | None:
    """userInfo (plain text, not hashed): sent when both names are known, as LinkedIn
    matches on the pair."""
    first = trait(e, "firstName", "first_name")
    last = trait(e, "lastName", "last_name")
    if not (first and last):
        return None
    info = {"firstName": first.strip(), "lastName": last.strip()}
    company = (e.traits or {}).get("company")
    extra = {"companyName": trait(e, "companyName", "company") or (
                 company.get("name") if isinstance(company, dict) else None),
             "title": trait(e, "title", "jobTitle"),
             "countryCode": (h.meta_country(trait(e, "country")) or "").upper() or None}
    info.update({k: v.strip() if isinstance(v, str) else v for k, v in extra.items() if v})
    return info


def _amount(value: float) -> str:
    return repr(float(value))


def _distinct(items: list[str], limit: int = 5) -> list[str]:
    return list(dict.fromkeys(items))[:limit]
