"""Google Ads API `uploadClickConversions` (REST), for developer tokens still allowlisted.

API: https://developers.google.com/google-ads/api/reference/rpc/latest/ConversionUploadService
Since 15 June 2026 new adopters get CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE; use the
`google_ads` (Data Manager) connector instead. The API version is pinned in `api_version`
(v26 was the latest listed when this was written; versions sunset about a year after release).
partialFailure is always true, so one bad conversion does not fail the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC

from marshmallow import fields, validate

from sst.connectors import register
from sst.connectors.base import (
    PERMANENT,
    RETRYABLE,
    SUCCESS,
    EventData,
    Outcome,
    OutgoingRequest,
    dumps,
    loads_or_none,
)
from sst.connectors.fields import money, order_id
from sst.connectors.google_ads import (
    GoogleAdsConnector,
    GoogleOAuthSettings,
    click_id,
    digits,
    hashed_identifiers,
    rpc_error_outcome,
)

API_VERSION = "v26"
# Error enum values worth retrying; the TOO_RECENT_* ones clear after a few hours.
TRANSIENT_ERRORS = frozenset({"INTERNAL_ERROR", "TRANSIENT_ERROR", "RESOURCE_EXHAUSTED",
                              "RESOURCE_TEMPORARILY_EXHAUSTED", "CONCURRENT_MODIFICATION",
                              "DEADLINE_EXCEEDED"})
LATER_ERRORS = frozenset({"TOO_RECENT_CONVERSION_ACTION", "TOO_RECENT_EVENT"})


class GoogleAdsLegacySettings(GoogleOAuthSettings):
    developer_token = fields.String(required=True, metadata={"secret": True})
    api_version = fields.String(load_default=API_VERSION, validate=validate.Regexp(r"^v\d+$"))


@register
class GoogleAdsLegacyConnector(GoogleAdsConnector):
    """Same OAuth, skip rules and identifiers as `google_ads`; different wire format."""

    name = "google_ads_legacy"
    settings_schema = GoogleAdsLegacySettings
    max_batch = 2000
    default_base_url = "https://googleads.googleapis.com"

    def build_requests(self, events: list[EventData]) -> list[OutgoingRequest]:
        s = self.settings
        cid = digits(s["customer_id"])
        url = f"{self.base_url}/{s['api_version']}/customers/{cid}:uploadClickConversions"
        headers = {"Content-Type": "application/json", "developer-token": s["developer_token"]}
        if s.get("login_customer_id"):
            headers["login-customer-id"] = digits(s["login_customer_id"])
        reqs = []
        for batch in self.chunks(self.sendable(events), self.max_batch):
            body = {
                "conversions": [self.conversion(cid, e) for e in batch],
                "partialFailure": True,
                "validateOnly": bool(s.get("validate_only")),
            }
            reqs.append(OutgoingRequest("POST", url, dict(headers), dumps(body),
                                        [e.message_id for e in batch]))
        return reqs

    @staticmethod
    def conversion(cid: str, e: EventData) -> dict:
        props = e.properties or {}
        out: dict = {}
        click = click_id(e)
        if click:
            out[click[0]] = click[1]
        out["conversionAction"] = f"customers/{cid}/conversionActions/{e.platform_event}"
        # "yyyy-mm-dd hh:mm:ss+|-hh:mm"; we always send UTC.
        out["conversionDateTime"] = e.event_time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")
        out.update(money(props, "conversionValue", "currencyCode"))
        out["orderId"] = order_id(props) or e.message_id
        email, phone = hashed_identifiers(e)
        ids = ([{"hashedEmail": email}] if email else []) + (
            [{"hashedPhoneNumber": phone}] if phone else [])
        if ids:
            out["userIdentifiers"] = ids
        return out

    def classify(self, request: OutgoingRequest, status: int, body: str,
                 headers: Mapping) -> dict[str, Outcome]:
        if not 200 <= status < 300:
            out = rpc_error_outcome(status, body, headers)
            return {mid: out for mid in request.message_ids}
        data = loads_or_none(body) or {}
        per_index, general = self.partial_failures(data.get("partialFailureError"))
        outcomes = {}
        for i, mid in enumerate(request.message_ids):
            errors = per_index.get(i, []) + general
            outcomes[mid] = self.errors_outcome(errors) if errors else Outcome(
                SUCCESS, code=f"HTTP {status}")
        return outcomes

    @staticmethod
    def partial_failures(pfe) -> tuple[dict[int, list[tuple[str, str]]], list[tuple[str, str]]]:
        """(conversion index -> [(error code, message)], errors without an index)."""
        per_index: dict[int, list[tuple[str, str]]] = {}
        general: list[tuple[str, str]] = []
        if not isinstance(pfe, dict) or not (pfe.get("code") or pfe.get("details")):
            return per_index, general
        found = False
        for detail in pfe.get("details") or []:
            for err in (detail.get("errors") or []) if isinstance(detail, dict) else []:
                found = True
                code = next(iter((err.get("errorCode") or {}).values()), "UNKNOWN")
                item = (str(code), str(err.get("message") or ""))
                idx = None
                for el in (err.get("location") or {}).get("fieldPathElements") or []:
                    if el.get("fieldName") == "conversions" and "index" in el:
                        idx = int(el["index"])
                if idx is None:
                    general.append(item)
                else:
                    per_index.setdefault(idx, []).append(item)
        if not found:
            general.append((f"status {pfe.get('code')}", str(pfe.get("message") or "")))
        return per_index, general

    @staticmethod
    def errors_outcome(errors: list[tuple[str, str]]) -> Outcome:
        codes = [c for c, _ in errors]
        msg = "; ".join(f"{c}: {m}" for c, m in errors)
        if all(c in TRANSIENT_ERRORS | LATER_ERRORS for c in codes):
            later = any(c in LATER_ERRORS for c in codes)
            return Outcome(RETRYABLE, error=msg, code=codes[0],
                           retry_after=3600.0 if later else None)
        return Outcome(PERMANENT, error=msg, code=next(c for c in codes
                                                      if c not in TRANSIENT_ERRORS | LATER_ERRORS))
