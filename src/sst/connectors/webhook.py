"""Generic webhook: one signed JSON POST per event.

The body is the stored message as Segment's webhooks carry it (contract §5; built by
sst.delivery.event_data.webhook_body). Headers, all over the exact body bytes:

- `X-SST-Signature: sha256=<hex HMAC-SHA256 of the body with the secret>`;
- `X-SST-Timestamp: <unix seconds>`, when this attempt was built;
- `X-SST-Signature-V2: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`: it binds the
  time, so a receiver that refuses stale timestamps refuses replayed requests (review L7).

docs/operations.md "Webhook signature" has the receiver's code.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

from marshmallow import ValidationError, fields, validates_schema

from sst.connectors import register
from sst.connectors.base import (
    PERMANENT,
    RETRYABLE,
    SUCCESS,
    Connector,
    ConnectorSettings,
    EventData,
    Outcome,
    OutgoingRequest,
    dumps,
    parse_retry_after,
)
from sst.version import __version__

SIGNATURE_HEADER = "X-SST-Signature"
TIMESTAMP_HEADER = "X-SST-Timestamp"
SIGNATURE_V2_HEADER = "X-SST-Signature-V2"


def sign(secret: str, body: bytes) -> str:
    """The X-SST-Signature value for `body`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def sign_v2(secret: str, timestamp: int, body: bytes) -> str:
    """The X-SST-Signature-V2 value: the HMAC of "<timestamp>.<body>"."""
    signed = str(int(timestamp)).encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def signature_headers(secret: str, body: bytes, timestamp: int) -> dict:
    return {SIGNATURE_HEADER: sign(secret, body), TIMESTAMP_HEADER: str(int(timestamp)),
            SIGNATURE_V2_HEADER: sign_v2(secret, timestamp, body)}


class WebhookSettings(ConnectorSettings):
    url = fields.Url(required=True, schemes={"http", "https"}, require_tld=False)
    secret = fields.String(required=True, metadata={"secret": True})
    test = fields.Boolean(load_default=False)  # adds X-SST-Test: true for the receiver

    @validates_schema
    def _no_base_url(self, data, **kwargs):
        if data.get("base_url"):
            raise ValidationError("webhook takes `url` (the whole target), not base_url",
                                  "base_url")


@register
class WebhookConnector(Connector):
    name = "webhook"
    settings_schema = WebhookSettings
    max_batch = 1
    max_event_age = None
    forwards_bots = True

    def build_requests(self, events: list[EventData],
                       now: float | None = None) -> list[OutgoingRequest]:
        reqs = []
        stamp = int(time.time() if now is None else now)
        for e in self.sendable(events):
            body = dumps(e.message)
            headers = {
                "Content-Type": "application/json",
                "User-Agent": f"sst/{__version__}",
                "X-SST-Message-Id": e.message_id,
                **signature_headers(self.settings["secret"], body.encode("utf-8"), stamp),
            }
            if self.settings.get("test"):
                headers["X-SST-Test"] = "true"
            reqs.append(OutgoingRequest("POST", self.settings["url"], headers, body,
                                        [e.message_id]))
        return reqs

    def classify(self, request: OutgoingRequest, status: int, body: str,
                 headers: Mapping) -> dict[str, Outcome]:
        code = f"HTTP {status}"
        if 200 <= status < 300:
            out = Outcome(SUCCESS, code=code)
        elif status in (408, 425, 429) or status >= 500:
            out = Outcome(RETRYABLE, error=f"{code} {(body or '')[:500]}".strip(), code=code,
                          retry_after=parse_retry_after(headers.get("Retry-After")))
        else:  # 3xx are not followed for POST; they and other 4xx are configuration problems
            out = Outcome(PERMANENT, error=f"{code} {(body or '')[:500]}".strip(), code=code)
        return {mid: out for mid in request.message_ids}
