"""The connector harness (Apprise-style): one table of failure modes run over every connector.

How a connector test file joins the harness (tests/test_connector_<name>.py, one per
connector in sst.connectors.BUILTIN; test_connectors.py fails for a connector without one):

    from support.connectors import ConnectorHarness, Platform, connector_factory, event_factory

    conn = connector_factory("acme", account_id="42", api_key="k")   # conn(**extra) -> Connector
    ev = event_factory(message_id="m-1", type="track", ...)           # ev(**kw) -> EventData

    ACME = Platform(
        name="acme",
        settings={"account_id": "42", "api_key": "acme-secret/+=="},  # secrets: URL-special
        api_url="https://api.acme.example/v1/events",   # str or re.compile(...) for `responses`
        success=(200, {"ok": True}),                    # (status, JSON body or None)
        max_event_age=timedelta(days=7),                # the connector's limit, or None
    )

    class TestAcmeHarness(ConnectorHarness):   # runs every shared case (FAILURE_MODES...) on Acme
        platform = ACME

    # The platform's own error bodies, through the same harness:
    ERROR_BODIES = [(400, {"error": ...}, "permanent", "CODE"), ...]

    @pytest.mark.parametrize(ERROR_BODY_FIELDS, ERROR_BODIES, ids=error_body_ids(ERROR_BODIES))
    def test_error_body(status, body, kind, code):
        check_error_body(ACME, status, body, kind, code)

Every send goes through `run` (one function), so the harness can later drive production's
send loop instead of Connector.send with a single edit there.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import requests
import responses

from sst import connectors
from sst.connectors.base import ClickId, EventData, SendReport, mask_settings

NOW = datetime.now(UTC).replace(microsecond=0)
VISITOR_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
# Connectors whose platforms take the visitor's IP and user agent.
SENDS_VISITOR = frozenset({"meta", "tiktok", "snapchat", "reddit", "pinterest"})
TOKEN = "ya29.ACCESS-TOKEN-value/+x"  # what the OAuth endpoint hands out: a secret too


@dataclass(frozen=True)
class Platform:
    """What the harness needs to know about one connector and its platform's API."""

    name: str
    settings: dict
    api_url: str | re.Pattern
    success: tuple[int, dict | None]
    max_event_age: timedelta | None = None
    platform_event: str = "Purchase"  # Google connectors map to a conversion action id
    token_url: str | None = None  # OAuth connectors: the (mocked) token endpoint in settings


def connector_factory(name: str, **defaults):
    """`conn(**extra)`: a validated `name` connector from defaults + extra settings."""

    def conn(**extra):
        raw = {"name": f"test-{name}", "connector": name, **defaults, **extra}
        return connectors.get(name)(connectors.validate_destination(raw), requests.Session())

    return conn


def event_factory(**defaults):
    """`ev(**kw)`: an EventData from defaults, with kw replacing fields."""

    def ev(**kw):
        return EventData(**{**defaults, **kw})

    return ev


def harness_event(platform: Platform, **kw) -> EventData:
    """One purchase ten minutes ago that every connector can send."""
    return event_factory(
        message_id="msg-1", type="track", event="Order Completed",
        platform_event=platform.platform_event,
        event_time=NOW - timedelta(minutes=10),
        properties={"revenue": 10.5, "currency": "eur", "order_id": "o-1"},
        message={"type": "track", "messageId": "msg-1"},
        anonymous_id="anon-1", user_id="U-1", ip="203.0.113.7", user_agent="Mozilla/5.0",
        page_url="https://shop.example/checkout",
        click_ids={"gclid": ClickId("Cj0-gclid", NOW - timedelta(days=1))},
        email="Person@Example.com",
    )(**kw)


def harness_connector(platform: Platform, **extra):
    return connector_factory(platform.name, **platform.settings)(**extra)


def run(platform: Platform, reply: dict | None, events: list[EventData] | None = None,
        conn=None) -> SendReport:
    """Send events (default: one harness_event) with the platform API answering `reply`
    (kwargs for `responses.add`; None: no request allowed). The harness's single way to send:
    Connector.send, the loop the workers run (sst.delivery.sender)."""
    conn = conn or harness_connector(platform)
    events = events if events is not None else [harness_event(platform)]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        if reply is not None:
            if platform.token_url:
                rsps.add(responses.POST, platform.token_url,
                         json={"access_token": TOKEN, "expires_in": 3599,
                               "token_type": "Bearer"})
            rsps.add(responses.POST, platform.api_url, **reply)
        result = conn.send(events)
        if reply is None:
            assert len(rsps.calls) == 0
    return result


def secrets_of(platform: Platform) -> list[str]:
    schema = connectors.get(platform.name).settings_schema
    masked = mask_settings(schema, platform.settings)
    out = [v for k, v in platform.settings.items() if masked[k] == "***"]
    return out + ([TOKEN] if platform.token_url else [])


def assert_masked(platform: Platform, exchanges) -> None:
    """No secret, plain or URL-quoted, in anything an Exchange row would record."""
    for ex in exchanges:
        blob = json.dumps([ex.url, ex.request_headers, ex.request_body, ex.response_headers,
                           ex.response_body, ex.error_message])
        for secret in secrets_of(platform):
            for variant in (secret, requests.utils.quote(secret, safe="")):
                assert variant not in blob, f"{platform.name}: secret leaked in {ex.url}"


def api_exchanges(platform: Platform, exchanges):
    """The exchanges with the platform's API, without the OAuth token calls."""
    if not platform.token_url:
        return list(exchanges)
    return [ex for ex in exchanges if not ex.url.startswith(platform.token_url)]


# (case id, response kwargs for `responses`, expected kind, expected retry_after)
FAILURE_MODES = [
    ("400", {"status": 400, "body": "bad request"}, "permanent", None),
    ("401", {"status": 401, "body": "unauthorized"}, "permanent", None),
    ("429", {"status": 429, "body": "slow down", "headers": {"Retry-After": "7"}},
     "retryable", 7.0),
    ("500", {"status": 500, "body": "oops"}, "retryable", None),
    ("503", {"status": 503, "body": "unavailable"}, "retryable", None),
    ("timeout", {"body": requests.exceptions.ReadTimeout("read timed out")}, "retryable", None),
    ("refused", {"body": requests.exceptions.ConnectionError("Connection refused")},
     "retryable", None),
]

# A platform's own error bodies: (HTTP status, JSON body, expected kind, expected code).
ERROR_BODY_FIELDS = ("status", "body", "kind", "code")


def error_body_ids(cases) -> list[str]:
    return [f"{c[0]}-{c[3]}" for c in cases]


def check_error_body(platform: Platform, status: int, body, kind: str, code: str) -> None:
    res = run(platform, {"status": status, "json": body})
    out = res.outcomes["msg-1"]
    assert (out.kind, out.code) == (kind, code), out
    if kind != "success":
        assert out.error
    assert_masked(platform, res.exchanges)


class ConnectorHarness:
    """The shared cases; a test file subclasses it as `Test<Name>Harness` with `platform`."""

    platform: Platform

    def test_success(self):
        p = self.platform
        status, body = p.success
        res = run(p, {"status": status, "body": json.dumps(body) if body is not None else ""})
        assert res.outcomes["msg-1"].kind == "success"
        (ex,) = api_exchanges(p, res.exchanges)
        assert ex.status == status and ex.error_class is None and ex.duration_ms >= 0
        assert ex.started_at.tzinfo is not None
        assert_masked(p, res.exchanges)

    @pytest.mark.parametrize(("case", "reply", "kind", "retry_after"), FAILURE_MODES,
                             ids=[c[0] for c in FAILURE_MODES])
    def test_failure_mode(self, case, reply, kind, retry_after):
        p = self.platform
        res = run(p, reply)
        out = res.outcomes["msg-1"]
        assert out.kind == kind, out
        assert out.error
        if retry_after is not None:
            assert out.retry_after == retry_after
        api = api_exchanges(p, res.exchanges)
        # OAuth connectors refresh the token once on a 401 and resend: two API calls, two
        # token calls.
        expected_calls = 2 if (case == "401" and p.token_url) else 1
        assert len(api) == expected_calls
        assert len(res.exchanges) - len(api) == (expected_calls if p.token_url else 0)
        if case in ("timeout", "refused"):
            assert api[0].status is None
            assert api[0].error_class in ("ReadTimeout", "ConnectionError")
            assert out.code == api[0].error_class
        else:
            assert api[0].status == reply["status"]
        assert_masked(p, res.exchanges)

    def test_max_event_age(self):
        assert connectors.get(self.platform.name).max_event_age == self.platform.max_event_age

    def test_too_old_event(self):
        """Past the platform's age limit: skipped without a request. No limit: sent."""
        p = self.platform
        age = (p.max_event_age or timedelta(days=29)) + timedelta(days=1)
        old = harness_event(p, event_time=NOW - age)
        if p.max_event_age is None:
            assert harness_connector(p).too_old(old, datetime.now(UTC)) is None
            return
        res = run(p, None, [old])
        assert res.outcomes["msg-1"].kind == "skipped"
        assert "too old" in res.outcomes["msg-1"].error
        assert res.exchanges == []

    def test_build_requests_is_pure(self):
        conn = harness_connector(self.platform)
        with responses.RequestsMock():  # no HTTP allowed
            reqs = conn.build_requests([harness_event(self.platform)])
        assert len(reqs) == 1 and reqs[0].message_ids == ["msg-1"]
        assert reqs[0].method == "POST"

    def test_batches_respect_max_batch(self):
        conn = harness_connector(self.platform)
        events = [harness_event(self.platform, message_id=f"m{i}")
                  for i in range(conn.max_batch + 1)]
        reqs = conn.build_requests(events)
        assert sum(len(r.message_ids) for r in reqs) == len(events)
        assert all(len(r.message_ids) <= conn.max_batch for r in reqs)
        assert len(reqs) == (2 if conn.max_batch > 1 else len(events))

    def test_unknown_setting_and_missing_secret_name_the_key(self):
        p = self.platform
        raw = {"name": "d", "connector": p.name, **p.settings, "nonsense": 1}
        with pytest.raises(connectors.ConnectorConfigError, match="nonsense"):
            connectors.validate_destination(raw)
        secret_key = next(k for k, v in mask_settings(connectors.get(p.name).settings_schema,
                                                      p.settings).items() if v == "***")
        raw = {"name": "d", "connector": p.name, **p.settings}
        del raw[secret_key]
        with pytest.raises(connectors.ConnectorConfigError, match=secret_key) as exc:
            connectors.validate_destination(raw)
        assert exc.value.key == secret_key

    def test_visitor_ip_and_user_agent_are_the_visitors_only(self):
        """Contract §5: the visitor's IP/UA go out as given; without them nothing stands in
        (no server address, no HTTP library), and the event still goes."""
        p = self.platform
        conn = harness_connector(p)
        visitor = harness_event(p, ip="198.51.100.23", user_agent=VISITOR_UA)
        (req,) = conn.build_requests([visitor])
        if p.name in SENDS_VISITOR:
            assert VISITOR_UA in req.body
            assert ("198.51.100.23" in req.body
                    or hashlib.sha256(b"198.51.100.23").hexdigest() in req.body)
        for ua in (None, ""):
            unknown = harness_event(p, ip=None, user_agent=ua)
            assert conn.skip_reason(unknown) is None  # email and ids still match
            (req,) = conn.build_requests([unknown])
            sent = _visitor_values(json.loads(req.body))
            assert sent == [], (p.name, sent)

    def test_common_defaults(self):
        p = self.platform
        s = connectors.validate_destination({"name": "d", "connector": p.name, **p.settings})
        assert (s["retry_max"], s["retry_backoff"], s["timeout"]) == (6, 30.0, 10.0)
        assert s["events"] == {} and s["consent_categories"] == [] and s["enabled"] is True


VISITOR_KEYS = frozenset({"client_user_agent", "user_agent", "userAgent", "client_ip_address",
                          "ip", "ip_address", "userIpAddress", "ipAddress"})


def _visitor_values(node) -> list:
    """Every non-empty value under an IP or user-agent key, anywhere in a JSON body."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in VISITOR_KEYS and value not in (None, "", [], {}):
                found.append((key, value))
            found += _visitor_values(value)
    elif isinstance(node, list):
        for item in node:
            found += _visitor_values(item)
    return found


def rpc_error(status, name, reason=None, field=None):
    """A google.rpc.Status error body, as Google's REST APIs answer."""
    details = []
    if reason:
        details.append({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason})
    if field:
        details.append({"@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [{"field": field, "description": "bad"}]})
    return {"error": {"code": status, "message": "Request failed", "status": name,
                      "details": details}}
