"""One status/exception table run over every registered connector (Apprise-style harness)."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import requests
import responses

from sst import connectors
from sst.connectors.base import ClickId, ConnectorSettings, EventData, mask_settings

NOW = datetime.now(UTC).replace(microsecond=0)
TOKEN = "ya29.ACCESS-TOKEN-value/+x"
TOKEN_URL = "https://oauth.test/token"

# Minimal valid settings per connector, with the secrets we must never see in a Track row.
SETTINGS = {
    "meta": {"pixel_id": "1234567890", "access_token": "EAAB-meta-secret/+=="},
    "tiktok": {"pixel_code": "CPIXEL123", "access_token": "tt-secret-token"},
    "google_ads": {"customer_id": "123-456-7890", "client_id": "cid.apps.example",
                   "client_secret": "gcs-secret", "refresh_token": "1//refresh-secret",
                   "token_url": TOKEN_URL},
    "google_ads_legacy": {"customer_id": "1234567890", "client_id": "cid.apps.example",
                          "client_secret": "gcs-secret", "refresh_token": "1//refresh-secret",
                          "token_url": TOKEN_URL, "developer_token": "dev-token-secret"},
    "ga4": {"measurement_id": "G-TEST123", "api_secret": "ga4-api-secret"},
    "webhook": {"url": "https://hooks.test/sst", "secret": "whsec-secret"},
    "snapchat": {"pixel_id": "snap-pixel-1", "access_token": "snap-secret/+token=="},
    "reddit": {"account_id": "t2_acct1", "access_token": "reddit-secret-token"},
    "pinterest": {"ad_account_id": "549755885175", "access_token": "pina_secret/+token"},
}
API_URL = {
    "meta": re.compile(r"https://graph\.facebook\.com/v[\d.]+/1234567890/events.*"),
    "tiktok": "https://business-api.tiktok.com/open_api/v1.3/event/track/",
    "google_ads": "https://datamanager.googleapis.com/v1/events:ingest",
    "google_ads_legacy": re.compile(
        r"https://googleads\.googleapis\.com/v\d+/customers/1234567890:uploadClickConversions"),
    "ga4": re.compile(r"https://www\.google-analytics\.com/mp/collect.*"),
    "webhook": "https://hooks.test/sst",
    "snapchat": re.compile(r"https://tr\.snapchat\.com/v3/snap-pixel-1/events\?access_token=.*"),
    "reddit": "https://ads-api.reddit.com/api/v2.0/conversions/events/t2_acct1",
    "pinterest": "https://api.pinterest.com/v5/ad_accounts/549755885175/events",
}
SUCCESS_BODY = {
    "meta": (200, {"events_received": 1, "messages": [], "fbtrace_id": "AbC"}),
    "tiktok": (200, {"code": 0, "message": "OK", "request_id": "r1", "data": {}}),
    "google_ads": (200, {"requestId": "req-1"}),
    "google_ads_legacy": (200, {"results": [{"gclid": "Cj0", "conversionAction": "x"}]}),
    "ga4": (204, None),
    "webhook": (200, {"ok": True}),
    "snapchat": (200, {"status": "VALID", "reason": "All events processed successfully"}),
    "reddit": (200, {"message": "Successfully processed 1 conversion events."}),
    "pinterest": (200, {"num_events_received": 1, "num_events_processed": 1,
                        "events": [{"status": "processed"}]}),
}
GOOGLE = {"google_ads", "google_ads_legacy"}


def test_builtin_registry_is_complete():
    assert connectors.load_builtin() == []
    assert set(connectors.registry()) == set(connectors.BUILTIN) == set(SETTINGS)


def make_event(name, **kw):
    base = dict(
        message_id="msg-1", type="track", event="Order Completed",
        platform_event="987654" if name in GOOGLE else "Purchase",
        event_time=NOW - timedelta(minutes=10),
        properties={"revenue": 10.5, "currency": "eur", "order_id": "o-1"},
        message={"type": "track", "messageId": "msg-1"},
        anonymous_id="anon-1", user_id="U-1", ip="203.0.113.7", user_agent="Mozilla/5.0",
        page_url="https://shop.example/checkout",
        click_ids={"gclid": ClickId("Cj0-gclid", NOW - timedelta(days=1))},
        email="Person@Example.com",
    )
    base.update(kw)
    return EventData(**base)


def make_connector(name, **extra):
    raw = {"name": f"dest-{name}", "connector": name, **SETTINGS[name], **extra}
    settings = connectors.validate_destination(raw)
    return connectors.get(name)(settings, session=requests.Session())


def secrets_of(name):
    schema = connectors.get(name).settings_schema
    masked = mask_settings(schema, SETTINGS[name])
    out = [v for k, v in SETTINGS[name].items() if masked[k] == "***"]
    return out + ([TOKEN] if name in GOOGLE else [])


def assert_masked(name, exchanges):
    for ex in exchanges:
        blob = json.dumps([ex.url, ex.request_headers, ex.request_body, ex.response_headers,
                           ex.response_body, ex.error_message])
        for secret in secrets_of(name):
            for variant in (secret, requests.utils.quote(secret, safe="")):
                assert variant not in blob, f"{name}: secret leaked in {ex.url}"


def add_token(rsps):
    rsps.add(responses.POST, TOKEN_URL, json={"access_token": TOKEN, "expires_in": 3599,
                                              "token_type": "Bearer"})


def api_exchanges(name, exchanges):
    return [ex for ex in exchanges if not ex.url.startswith(TOKEN_URL)]


# (case id, response kwargs for `responses`, expected kind, expected retry_after)
CASES = [
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


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_success(name):
    conn = make_connector(name)
    status, body = SUCCESS_BODY[name]
    with responses.RequestsMock() as rsps:
        if name in GOOGLE:
            add_token(rsps)
        rsps.add(responses.POST, API_URL[name], status=status,
                 body=json.dumps(body) if body is not None else "")
        res = conn.send([make_event(name)])
    assert res.outcomes["msg-1"].kind == "success"
    assert len(api_exchanges(name, res.exchanges)) == 1
    ex = api_exchanges(name, res.exchanges)[0]
    assert ex.status == status and ex.error_class is None and ex.duration_ms >= 0
    assert ex.started_at.tzinfo is not None
    assert_masked(name, res.exchanges)


@pytest.mark.parametrize("name", sorted(SETTINGS))
@pytest.mark.parametrize(("case", "resp", "kind", "retry_after"), CASES,
                         ids=[c[0] for c in CASES])
def test_failure_table(name, case, resp, kind, retry_after):
    conn = make_connector(name)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        if name in GOOGLE:
            add_token(rsps)
        rsps.add(responses.POST, API_URL[name], **resp)
        res = conn.send([make_event(name)])
    out = res.outcomes["msg-1"]
    assert out.kind == kind, out
    assert out.error
    if retry_after is not None:
        assert out.retry_after == retry_after
    api = api_exchanges(name, res.exchanges)
    # Google refreshes the token once on a 401 and resends: two API calls, two token calls.
    expected_calls = 2 if (case == "401" and name in GOOGLE) else 1
    assert len(api) == expected_calls
    assert len(res.exchanges) - len(api) == (expected_calls if name in GOOGLE else 0)
    if case in ("timeout", "refused"):
        assert api[0].status is None
        assert api[0].error_class in ("ReadTimeout", "ConnectionError")
        assert out.code == api[0].error_class
    else:
        assert api[0].status == resp["status"]
    assert_masked(name, res.exchanges)


@pytest.mark.parametrize("name", ["meta", "tiktok", "ga4", "reddit", "pinterest"])
def test_too_old_is_skipped_without_request(name):
    conn = make_connector(name)
    old = make_event(name, event_time=NOW - timedelta(days=30))
    with responses.RequestsMock() as rsps:  # any request would fail the test
        res = conn.send([old])
        assert len(rsps.calls) == 0
    assert res.outcomes["msg-1"].kind == "skipped"
    assert "too old" in res.outcomes["msg-1"].error
    assert res.exchanges == []


@pytest.mark.parametrize(("name", "limit"), [("meta", timedelta(days=7)),
                                             ("tiktok", timedelta(days=7)),
                                             ("ga4", timedelta(hours=72)),
                                             ("google_ads", None), ("google_ads_legacy", None),
                                             ("webhook", None),
                                             ("snapchat", timedelta(days=37)),
                                             ("reddit", timedelta(days=7)),
                                             ("pinterest", timedelta(days=7))])
def test_max_event_age(name, limit):
    assert connectors.get(name).max_event_age == limit


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_build_requests_is_pure_and_masks_nothing_itself(name):
    conn = make_connector(name)
    with responses.RequestsMock():  # no HTTP allowed
        reqs = conn.build_requests([make_event(name)])
    assert len(reqs) == 1 and reqs[0].message_ids == ["msg-1"]
    assert reqs[0].method == "POST"


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_batches_respect_max_batch(name):
    conn = make_connector(name)
    events = [make_event(name, message_id=f"m{i}") for i in range(conn.max_batch + 1)]
    reqs = conn.build_requests(events)
    assert sum(len(r.message_ids) for r in reqs) == len(events)
    assert all(len(r.message_ids) <= conn.max_batch for r in reqs)
    assert len(reqs) == 2 if conn.max_batch > 1 else len(events)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_unknown_setting_and_missing_secret_name_the_key(name):
    raw = {"name": "d", "connector": name, **SETTINGS[name], "nonsense": 1}
    with pytest.raises(connectors.ConnectorConfigError, match="nonsense"):
        connectors.validate_destination(raw)
    secret_key = next(k for k, v in mask_settings(connectors.get(name).settings_schema,
                                                  SETTINGS[name]).items() if v == "***")
    raw = {"name": "d", "connector": name, **SETTINGS[name]}
    del raw[secret_key]
    with pytest.raises(connectors.ConnectorConfigError, match=secret_key) as exc:
        connectors.validate_destination(raw)
    assert exc.value.key == secret_key


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_common_defaults(name):
    s = connectors.validate_destination({"name": "d", "connector": name, **SETTINGS[name]})
    assert (s["retry_max"], s["retry_backoff"], s["timeout"]) == (6, 30.0, 10.0)
    assert s["events"] == {} and s["consent_categories"] == [] and s["enabled"] is True


def test_settings_schemas_extend_the_common_one():
    for cls in connectors.registry().values():
        assert issubclass(cls.settings_schema, ConnectorSettings)


def test_timeout_setting_is_passed_to_requests():
    conn = make_connector("webhook", timeout=2.5)
    seen = {}

    class Session(requests.Session):
        def request(self, *a, **kw):
            seen.update(kw)
            raise requests.exceptions.ConnectTimeout("t")

    conn.session = Session()
    res = conn.send([make_event("webhook")])
    assert seen["timeout"] == 2.5
    assert res.outcomes["msg-1"].kind == "retryable"


def test_unknown_connector_lists_known_names():
    with pytest.raises(KeyError, match="meta") as exc:
        connectors.get("nope")
    assert "webhook" in str(exc.value)
    with pytest.raises(connectors.ConnectorConfigError, match="connector"):
        connectors.validate_destination({"name": "x", "connector": "nope"})


def test_mask_settings():
    masked = mask_settings(connectors.get("meta").settings_schema,
                           {"pixel_id": "1", "access_token": "tok", "test_event_code": None})
    assert masked == {"pixel_id": "1", "access_token": "***", "test_event_code": None}


def test_load_builtin_is_idempotent_and_reports_broken_entry_points(monkeypatch):
    class EP:
        name = "broken"

        def load(self):
            raise ImportError("no module named acme")

    monkeypatch.setattr(connectors, "entry_points", lambda group: [EP()])
    errors = connectors.load_builtin()
    assert errors == [("broken", "ImportError: no module named acme")]
    assert set(connectors.registry()) >= set(connectors.BUILTIN)


def graph_error(code, sub=None, transient=False, msg="Invalid parameter"):
    err = {"message": msg, "type": "OAuthException", "code": code, "is_transient": transient,
           "fbtrace_id": "A1"}
    if sub:
        err["error_subcode"] = sub
        err["error_user_title"] = "Event Timestamp Too Old"
    return {"error": err}


def ads_partial_failure(index, code=("conversionUploadError", "UNPARSEABLE_GCLID")):
    return {
        "results": [{}],
        "partialFailureError": {
            "code": 3, "message": "Partial failure",
            "details": [{
                "@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
                "errors": [{"errorCode": {code[0]: code[1]}, "message": "The click ID could "
                            "not be decoded.", "location": {"fieldPathElements": [
                                {"fieldName": "conversions", "index": index},
                                {"fieldName": "gclid"}]}}]}]}}


def rpc_error(status, name, reason=None, field=None):
    details = []
    if reason:
        details.append({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason})
    if field:
        details.append({"@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [{"field": field, "description": "bad"}]})
    return {"error": {"code": status, "message": "Request failed", "status": name,
                      "details": details}}


# (connector, HTTP status, body, kind, code)
PLATFORM_CASES = [
    ("meta", 400, graph_error(100, 2804003), "permanent", "100/2804003"),
    ("meta", 500, graph_error(2, transient=True, msg="Service temporarily unavailable"),
     "retryable", "2"),
    ("meta", 400, graph_error(1, msg="An unknown error occurred"), "retryable", "1"),
    ("meta", 400, graph_error(4, msg="Application request limit reached"), "retryable", "4"),
    ("meta", 400, graph_error(17), "retryable", "17"),
    ("meta", 400, graph_error(80003), "retryable", "80003"),
    ("meta", 400, graph_error(999, transient=True), "retryable", "999"),
    ("meta", 400, graph_error(190, msg="Error validating access token"), "permanent", "190"),
    ("meta", 400, graph_error(10), "permanent", "10"),
    ("meta", 403, graph_error(200), "permanent", "200"),
    ("meta", 400, graph_error(100, 33), "permanent", "100/33"),
    ("tiktok", 200, {"code": 40100, "message": "Too many requests"}, "retryable", "40100"),
    ("tiktok", 200, {"code": 40700, "message": "Internal"}, "retryable", "40700"),
    ("tiktok", 200, {"code": 40001, "message": "No permission"}, "permanent", "40001"),
    ("tiktok", 200, {"code": 40002, "message": "Invalid parameter"}, "permanent", "40002"),
    ("tiktok", 200, {"code": 51000, "message": "System error"}, "retryable", "51000"),
    ("tiktok", 200, {"code": 20001, "message": "Partial success"}, "success", "20001"),
    ("google_ads_legacy", 200, ads_partial_failure(0), "permanent", "UNPARSEABLE_GCLID"),
    ("google_ads_legacy", 200, ads_partial_failure(0, ("quotaError", "RESOURCE_EXHAUSTED")),
     "retryable", "RESOURCE_EXHAUSTED"),
    ("google_ads_legacy", 403, rpc_error(403, "PERMISSION_DENIED",
                                         "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE"),
     "permanent", "PERMISSION_DENIED"),
    ("google_ads", 400, rpc_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT",
                                  "events.events[0].ad_identifiers.gclid"),
     "permanent", "INVALID_ARGUMENT"),
    ("google_ads", 429, rpc_error(429, "RESOURCE_EXHAUSTED"), "retryable", "RESOURCE_EXHAUSTED"),
    ("google_ads", 503, rpc_error(503, "UNAVAILABLE"), "retryable", "UNAVAILABLE"),
    ("webhook", 408, {}, "retryable", "HTTP 408"),
    ("webhook", 404, {}, "permanent", "HTTP 404"),
    ("webhook", 302, {}, "permanent", "HTTP 302"),
    ("snapchat", 200, {"status": "INVALID", "reason": "Some events were invalid",
                       "errors": {"codes": ["INVALID_EVENT_NAME"],
                                  "error_msgs": ["event_name is not supported"]}},
     "permanent", "INVALID_EVENT_NAME"),
    ("snapchat", 400, {"status": "INVALID", "reason": "Invalid pixel id"}, "permanent",
     "HTTP 400"),
    ("snapchat", 503, {"status": "INVALID", "reason": "Service unavailable"}, "retryable",
     "HTTP 503"),
    ("reddit", 400, {"error": {"code": 400, "message": "invalid action_source: web"}},
     "permanent", "HTTP 400"),
    ("reddit", 200, {"error": {"code": 400, "message": "JSON error unknown field"}},
     "permanent", "HTTP 200"),
    ("reddit", 503, {"error": {"code": 503, "message": "Service Unavailable"}}, "retryable",
     "HTTP 503"),
    ("pinterest", 200, {"num_events_received": 1, "num_events_processed": 0,
                        "events": [{"status": "failed", "error_message": "bad event_time"}]},
     "permanent", "failed"),
    ("pinterest", 429, {"code": 8, "message": "This request exceeded a rate limit."},
     "retryable", "8"),
    ("pinterest", 503, {"code": 4197, "message": "The endpoint has been ramped down"},
     "retryable", "4197"),
    ("pinterest", 401, {"code": 2, "message": "Authentication failed."}, "permanent", "2"),
    ("pinterest", 403, {"code": 29, "message": "You are not permitted"}, "permanent", "29"),
]


@pytest.mark.parametrize(("name", "status", "body", "kind", "code"), PLATFORM_CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[4]}" for c in PLATFORM_CASES])
def test_platform_error_bodies(name, status, body, kind, code):
    conn = make_connector(name)
    with responses.RequestsMock() as rsps:
        if name in GOOGLE:
            add_token(rsps)
        rsps.add(responses.POST, API_URL[name], status=status, json=body)
        res = conn.send([make_event(name)])
    out = res.outcomes["msg-1"]
    assert (out.kind, out.code) == (kind, code), out
    if kind != "success":
        assert out.error
    assert_masked(name, res.exchanges)


def test_ga4_validation_messages_are_permanent():
    conn = make_connector("ga4", validate=True)
    body = {"validationMessages": [{"fieldPath": "events", "validationCode": "NAME_INVALID",
                                    "description": "Event at index: [0] has invalid name."}]}
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, re.compile(r"https://www\.google-analytics\.com/debug/mp/"
                                            r"collect.*"), json=body)
        res = conn.send([make_event("ga4")])
    out = res.outcomes["msg-1"]
    assert (out.kind, out.code) == ("permanent", "NAME_INVALID")
    assert "invalid name" in out.error
