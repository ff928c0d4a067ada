"""`sst destination test`: a destination's payload for a sample (or given) event, and, when
asked, one request in the platform's test mode with the platform's verdict.

The payload is what a worker would send: the connector's own skip rules and its pure
`build_requests`, secrets masked as in the Exchange ledger (as `sst preview` shows them, see
sst.delivery.preview). Sending goes through `Connector.send`, the workers' loop, with the
connector's test-mode setting switched on, so nothing reaches reports or attribution.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sst.clock import parse_time, utcnow
from sst.connectors.base import SUCCESS, ClickId, EventData
from sst.delivery.preview import requests_for
from sst.ingest.touch import page_url_of, parse_touch, referrer_of

# Connector -> (setting that puts it in the platform's test mode, value; None: a code the
# operator copies from the platform's test tool). A connector may declare its own with a
# `test_mode` class attribute of the same shape.
TEST_MODES: dict[str, tuple[str, object]] = {
    "meta": ("test_event_code", None),          # Events Manager > Test events
    "tiktok": ("test_event_code", None),        # Events Manager > Test events
    "ga4": ("validate", True),                  # /debug/mp/collect: validation messages
    "google_ads": ("validate_only", True),      # validateOnly: checked, not recorded
    "google_ads_legacy": ("validate_only", True),
    "snapchat": ("validate", True),             # /events/validate
    "reddit": ("test_mode", True),              # test_mode: shown in Events Manager only
    "pinterest": ("test", True),                # ?test=true: checked, not recorded
    "webhook": ("test", True),                  # X-SST-Test: true for the receiver
}

BROWSER_UA = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
              "(KHTML, like Gecko) Version/18.1 Safari/605.1.15")


class TrialError(ValueError):
    """The test cannot run as asked (unmapped event, missing test code); says why."""


@dataclass
class Trial:
    destination: str
    connector: str
    platform_event: str | None
    message_id: str
    test_mode: str | None = None  # "setting = value" switched on for --send
    skip_reason: str | None = None
    requests: list[dict] = field(default_factory=list)  # method, url, headers, body (masked)
    sent: bool = False
    verdict: str | None = None  # "accepted" | "refused" | "retry later" | "skipped"
    answers: list[dict] = field(default_factory=list)  # status, body, error (masked)
    outcome: dict | None = None  # kind, code, error


def test_mode_of(dest) -> tuple[str, object] | None:
    return getattr(dest.connector_cls, "test_mode", None) or TEST_MODES.get(dest.connector)


def sample_message(dest, now: datetime) -> dict:
    """A plausible event this destination maps: its first named track event (else "Order
    Completed", else a page view), from a browser, with an ad click and an order."""
    names = [k for k in dest.events if not k.startswith("$") and k != "*"]
    kind, name = "track", names[0] if names else "Order Completed"
    if not names and "*" not in dest.events and "$page" in dest.events:
        kind, name = "page", None
    clicks = "gclid=Cj0KCQ-test&fbclid=IwAR-test&ttclid=E.C.P.test&ScCid=sc-test&rdt_cid=rd-test"
    msg = {
        "type": kind, "messageId": f"sst-test-{uuid.uuid4()}", "userId": "sst-test-user",
        "anonymousId": "sst-test-anon", "timestamp": now.isoformat(),
        "properties": {"order_id": "sst-test-order", "revenue": 42.0, "currency": "USD",
                       "products": [{"product_id": "p-1", "sku": "SKU-1", "price": 42.0,
                                     "quantity": 1}]},
        "context": {"userAgent": BROWSER_UA, "ip": "203.0.113.7",
                    "page": {"url": f"https://www.example.com/checkout?{clicks}",
                             "referrer": "https://www.example.com/cart"},
                    "traits": {"email": "test@example.com", "phone": "+16505551234"}},
    }
    if name:
        msg["event"] = name
    return msg


def event_from_message(message: dict, platform_event: str, now: datetime) -> EventData:
    """EventData for a message that is not stored: what the worker would build from it."""
    try:
        when = parse_time(message["timestamp"]) if message.get("timestamp") else now
    except (TypeError, ValueError):
        raise TrialError(f"timestamp {message.get('timestamp')!r} is not an ISO time") from None
    context = message.get("context") if isinstance(message.get("context"), dict) else {}
    traits = dict(context.get("traits") or {}) if isinstance(context.get("traits"), dict) else {}
    if isinstance(message.get("traits"), dict):
        traits.update(message["traits"])
    page_url = page_url_of(message)
    clicks, _utm = parse_touch(page_url)
    props = message.get("properties") if isinstance(message.get("properties"), dict) else {}
    return EventData(
        message_id=str(message.get("messageId") or f"sst-test-{uuid.uuid4()}"),
        type=str(message.get("type") or "track"), event=message.get("event"),
        platform_event=platform_event, event_time=when, properties=props, traits=traits,
        context=context, message=message, anonymous_id=message.get("anonymousId"),
        user_id=message.get("userId"), ip=context.get("ip"), user_agent=context.get("userAgent"),
        page_url=page_url, referrer=referrer_of(message),
        click_ids={p: ClickId(v, when) for p, v in clicks.items()},
        phone=traits.get("phone") if isinstance(traits.get("phone"), str) else None,
        email=traits.get("email") if isinstance(traits.get("email"), str) else None,
    )


def run_trial(state, name: str, message: dict | None = None, send: bool = False,
              test_code: str | None = None, now: datetime | None = None,
              session=None) -> Trial:
    """Build (and with `send`, send in test mode) one event for destination `name`."""
    dest = state.destinations[name]
    now = now or utcnow()
    message = message if message is not None else sample_message(dest, now)
    if not isinstance(message, dict):
        raise TrialError("the event must be a JSON object (a Segment message)")
    kind = str(message.get("type") or "track")
    platform_event = dest.platform_event(kind, message.get("event"))
    if platform_event is None:
        what = message.get("event") if kind == "track" else f"${kind}"
        raise TrialError(f"destination {name!r} does not map {what!r}; its events map: "
                         f"{dest.events or '(empty: it sends nothing)'}")
    settings = dict(dest.settings)
    mode = test_mode_of(dest)
    label = None
    if mode:
        key, value = mode
        if value is None:  # a code from the platform's test tool
            value = test_code or settings.get(key)
            if send and not value:
                raise TrialError(f"{dest.connector}'s test mode needs a test event code (the "
                                 f"platform's Events Manager, Test events): pass --test-code "
                                 f"CODE or set {key}")
        if value is not None and (send or key == "test_event_code"):
            settings[key] = value
            label = f"{key} = {value}"
    elif send:
        raise TrialError(f"{dest.connector} has no test mode: --send would record a real "
                         "event; use sst preview on a stored event instead")
    import requests

    connector = dest.connector_cls(settings, session or requests.Session())
    event = event_from_message(message, platform_event, now)
    trial = Trial(destination=name, connector=dest.connector, platform_event=platform_event,
                  message_id=event.message_id, test_mode=label)
    trial.skip_reason, trial.requests = requests_for(connector, event, now)
    if trial.skip_reason or not send:
        return trial
    report = connector.send([event], now=now)
    trial.sent = True
    trial.answers = [{"status": x.status, "body": x.response_body, "error": x.error_message,
                      "url": x.url} for x in report.exchanges]
    out = report.outcomes.get(event.message_id)
    if out is not None:
        trial.outcome = {"kind": out.kind, "code": out.code, "error": out.error}
        trial.verdict = {SUCCESS: "accepted", "permanent": "refused",
                         "retryable": "retry later", "skipped": "skipped"}.get(out.kind, out.kind)
    return trial
