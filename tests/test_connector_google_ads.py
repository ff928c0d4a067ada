"""Google Ads via Data Manager events:ingest: payload, OAuth caching/refresh, skip rules."""

import hashlib
import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import pytest
import requests
import responses

from sst.connectors.base import ClickId
from support.connectors import (
    ERROR_BODY_FIELDS,
    ConnectorHarness,
    Platform,
    check_error_body,
    connector_factory,
    error_body_ids,
    event_factory,
    rpc_error,
)

T = datetime(2026, 3, 1, 12, 0, 5, 250000, tzinfo=UTC)
URL = "https://datamanager.googleapis.com/v1/events:ingest"
TOKEN_URL = "https://oauth2.googleapis.com/token"
EMAIL_HASH = "223ebda6f6889b1494551ba902d9d381daf2f642bae055888e96343d53e9f9c4"
PHONE_HASH = "fb4f73a6ec5fdb7077d564cdd22c3554b43ce49168550c3b12c547b78c517b30"


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


conn = connector_factory("google_ads", customer_id="123-456-7890",
                         login_customer_id="111-222-3333", client_id="cid",
                         client_secret="csecret", refresh_token="1//rtoken")
ev = event_factory(
    message_id="m-1", type="track", event="Order Completed", platform_event="555001",
    event_time=T, properties={"order_id": "o-1", "revenue": 42, "currency": "eur"},
    click_ids={"gclid": ClickId("Cj0KCQ-gclid", T - timedelta(days=2)),
               "wbraid": ClickId("wb-1", T)},
    email="Cloudy.SanFrancisco+shopping@gmail.com", phone="+18005550100",
)

HARNESS_TOKEN_URL = "https://oauth.test/token"
GOOGLE_ADS = Platform(
    name="google_ads",
    settings={"customer_id": "123-456-7890", "client_id": "cid.apps.example",
              "client_secret": "gcs-secret", "refresh_token": "1//refresh-secret",
              "token_url": HARNESS_TOKEN_URL},
    api_url=URL,
    success=(200, {"requestId": "req-1"}),
    platform_event="987654",
    token_url=HARNESS_TOKEN_URL,
)


class TestGoogleAdsHarness(ConnectorHarness):
    platform = GOOGLE_ADS


ERROR_BODIES = [
    (400, rpc_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT",
                    "events.events[0].ad_identifiers.gclid"), "permanent", "INVALID_ARGUMENT"),
    (429, rpc_error(429, "RESOURCE_EXHAUSTED"), "retryable", "RESOURCE_EXHAUSTED"),
    (503, rpc_error(503, "UNAVAILABLE"), "retryable", "UNAVAILABLE"),
]


@pytest.mark.parametrize(ERROR_BODY_FIELDS, ERROR_BODIES, ids=error_body_ids(ERROR_BODIES))
def test_error_body(status, body, kind, code):
    check_error_body(GOOGLE_ADS, status, body, kind, code)


def test_exact_payload():
    (req,) = conn(validate_only=True).build_requests([ev()])
    assert req.url == URL and "Authorization" not in req.headers  # token added at send time
    assert json.loads(req.body) == {
        "destinations": [{
            "reference": "555001",
            "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": "1234567890"},
            "productDestinationId": "555001",
            "loginAccount": {"accountType": "GOOGLE_ADS", "accountId": "1112223333"},
        }],
        "events": [{
            "destinationReferences": ["555001"],
            "transactionId": "o-1",
            "eventTimestamp": "2026-03-01T12:00:05.250000Z",
            "eventSource": "WEB",
            "adIdentifiers": {"gclid": "Cj0KCQ-gclid"},
            # Google's documented examples, normalised and hashed:
            # cloudysanfrancisco@gmail.com and +18005550100.
            "userData": {"userIdentifiers": [
                {"emailAddress": EMAIL_HASH},
                {"phoneNumber": PHONE_HASH},
            ]},
            "conversionValue": 42.0,
            "currency": "EUR",
        }],
        "encoding": "HEX",
        "validateOnly": True,
    }


def test_transaction_id_falls_back_to_message_id():
    body = json.loads(conn().build_requests([ev(properties={})])[0].body)
    assert body["events"][0]["transactionId"] == "m-1"


def test_one_destination_per_conversion_action():
    events = [ev(), ev(message_id="m-2", platform_event="555002")]
    body = json.loads(conn().build_requests(events)[0].body)
    assert [d["productDestinationId"] for d in body["destinations"]] == ["555001", "555002"]
    assert [e["destinationReferences"] for e in body["events"]] == [["555001"], ["555002"]]


@pytest.mark.parametrize(("kw", "reason"), [
    ({"click_ids": {}, "email": None, "phone": None}, "no gclid"),
    ({"platform_event": "Purchase"}, "conversion action id"),
])
def test_skipped_with_reason(kw, reason):
    res = conn().send([ev(**kw)])
    assert res.outcomes["m-1"].kind == "skipped" and reason in res.outcomes["m-1"].error
    assert res.exchanges == []


def test_identifier_alone_is_enough():
    body = json.loads(conn().build_requests([ev(click_ids={})])[0].body)
    assert "adIdentifiers" not in body["events"][0]


def test_token_cached_and_refreshed_on_401():
    c = conn()
    tokens = iter(["tok-A", "tok-B"])
    with responses.RequestsMock() as rsps:
        rsps.add_callback(responses.POST, TOKEN_URL, callback=lambda r: (
            200, {}, json.dumps({"access_token": next(tokens), "expires_in": 3599})))
        rsps.add(responses.POST, URL, json={"requestId": "r1"})
        rsps.add(responses.POST, URL, json={"requestId": "r2"})
        rsps.add(responses.POST, URL, status=401, json={"error": {
            "code": 401, "status": "UNAUTHENTICATED", "message": "expired"}})
        rsps.add(responses.POST, URL, json={"requestId": "r3"})
        r1 = c.send([ev()])
        r2 = c.send([ev(message_id="m-2")])  # cached token: no token call
        r3 = c.send([ev(message_id="m-3")])  # 401 -> refresh once -> resend
        token_calls = [x for x in rsps.calls if x.request.url == TOKEN_URL]
        api_auth = [x.request.headers["Authorization"] for x in rsps.calls
                    if x.request.url == URL]
    assert len(token_calls) == 2
    form = parse_qs(token_calls[0].request.body.decode())
    assert form == {"grant_type": ["refresh_token"], "client_id": ["cid"],
                    "client_secret": ["csecret"], "refresh_token": ["1//rtoken"]}
    assert api_auth == ["Bearer tok-A", "Bearer tok-A", "Bearer tok-A", "Bearer tok-B"]
    assert [len(r.exchanges) for r in (r1, r2, r3)] == [2, 1, 3]
    assert all(r.outcomes[m].kind == "success" for r, m in ((r1, "m-1"), (r2, "m-2"),
                                                            (r3, "m-3")))
    token_ex = r1.exchanges[0]
    assert token_ex.url == TOKEN_URL
    blob = json.dumps([asdict(e) for e in r1.exchanges + r3.exchanges], default=str)
    for secret in ("csecret", "1//rtoken", "1%2F%2Frtoken", "tok-A", "tok-B"):
        assert secret not in blob


def test_token_failure_is_permanent_on_invalid_grant():
    c = conn()
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, TOKEN_URL, status=400,
                 json={"error": "invalid_grant", "error_description": "Token has been revoked."})
        res = c.send([ev()])
    out = res.outcomes["m-1"]
    assert (out.kind, out.code) == ("permanent", "oauth/invalid_grant")
    assert "revoked" in out.error and len(res.exchanges) == 1


def test_token_endpoint_down_is_retryable():
    c = conn()
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, TOKEN_URL, body=requests.exceptions.ConnectionError("refused"))
        res = c.send([ev()])
    assert res.outcomes["m-1"].kind == "retryable"


def test_fast_fail_blames_only_the_bad_event():
    c = conn()
    err = {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "invalid",
                     "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                                  "fieldViolations": [{"field": "events.events[1].ad_identifiers",
                                                       "description": "bad gclid"}]}]}}
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, TOKEN_URL, json={"access_token": "t", "expires_in": 3600})
        rsps.add(responses.POST, URL, status=400, json=err)
        res = c.send([ev(), ev(message_id="m-2")])
    assert res.outcomes["m-1"].kind == "retryable"
    assert res.outcomes["m-2"].kind == "permanent"


def test_a_resent_request_gets_its_own_ledger_row_before_it_goes_out():
    """L3 with requests recorded ahead: the 401's resend is a second request, so it gets a
    second in-flight row (written when it is made), not the first one's again."""
    c = conn()
    recorded = []

    def before_send(pairs):
        recorded.append([(req.message_ids, exch.status) for req, exch in pairs])
        return [len(recorded) * 10 + i for i in range(len(pairs))]

    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, TOKEN_URL, json={"access_token": "tok", "expires_in": 3599})
        rsps.add(responses.POST, URL, status=401, json={"error": {
            "code": 401, "status": "UNAUTHENTICATED", "message": "expired"}})
        rsps.add(responses.POST, URL, json={"requestId": "r2"})
        report = c.send([ev(message_id="m-9")], before_send=before_send)
    api = [x for x in report.exchanges if x.url == URL]
    assert recorded == [[(["m-9"], None)], [(["m-9"], None)]]
    assert [(x.status, x.track_id) for x in api] == [(401, 10), (200, 20)]
    assert api[1].request_headers["Authorization"] == "Bearer ***"
