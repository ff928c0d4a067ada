"""Google Ads API uploadClickConversions: headers, payload, partial failure per event."""

import hashlib
import json
import re
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import pytest
import responses

from sst import connectors
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
URL = "https://googleads.googleapis.com/v26/customers/1234567890:uploadClickConversions"
TOKEN_URL = "https://oauth2.googleapis.com/token"


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


conn = connector_factory("google_ads_legacy", customer_id="123-456-7890",
                         login_customer_id="1112223333", client_id="cid",
                         client_secret="csecret", refresh_token="rtoken",
                         developer_token="devtok")
ev = event_factory(
    message_id="m-1", type="track", event="Order Completed", platform_event="555001",
    event_time=T, properties={"order_id": "o-1", "revenue": 42, "currency": "usd"},
    click_ids={"gclid": ClickId("Cj0-gclid", T - timedelta(days=1))},
    email="John.Doe@example.com",
)

HARNESS_TOKEN_URL = "https://oauth.test/token"
GOOGLE_ADS_LEGACY = Platform(
    name="google_ads_legacy",
    settings={"customer_id": "1234567890", "client_id": "cid.apps.example",
              "client_secret": "gcs-secret", "refresh_token": "1//refresh-secret",
              "token_url": HARNESS_TOKEN_URL, "developer_token": "dev-token-secret"},
    api_url=re.compile(
        r"https://googleads\.googleapis\.com/v\d+/customers/1234567890:uploadClickConversions"),
    success=(200, {"results": [{"gclid": "Cj0", "conversionAction": "x"}]}),
    platform_event="987654",
    token_url=HARNESS_TOKEN_URL,
)


class TestGoogleAdsLegacyHarness(ConnectorHarness):
    platform = GOOGLE_ADS_LEGACY


def ads_partial_failure(index, code=("conversionUploadError", "UNPARSEABLE_GCLID")):
    """A 200 whose partialFailureError blames conversion `index`."""
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


ERROR_BODIES = [
    (200, ads_partial_failure(0), "permanent", "UNPARSEABLE_GCLID"),
    (200, ads_partial_failure(0, ("quotaError", "RESOURCE_EXHAUSTED")),
     "retryable", "RESOURCE_EXHAUSTED"),
    (403, rpc_error(403, "PERMISSION_DENIED", "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE"),
     "permanent", "PERMISSION_DENIED"),
]


@pytest.mark.parametrize(ERROR_BODY_FIELDS, ERROR_BODIES, ids=error_body_ids(ERROR_BODIES))
def test_error_body(status, body, kind, code):
    check_error_body(GOOGLE_ADS_LEGACY, status, body, kind, code)


def test_exact_request():
    (req,) = conn().build_requests([ev()])
    assert req.url == URL
    assert req.headers == {"Content-Type": "application/json", "developer-token": "devtok",
                           "login-customer-id": "1112223333"}
    assert json.loads(req.body) == {
        "conversions": [{
            "gclid": "Cj0-gclid",
            "conversionAction": "customers/1234567890/conversionActions/555001",
            "conversionDateTime": "2026-03-01 12:00:05+00:00",
            "conversionValue": 42.0,
            "currencyCode": "USD",
            "orderId": "o-1",
            "userIdentifiers": [{"hashedEmail": sha("john.doe@example.com")}],
        }],
        "partialFailure": True,
        "validateOnly": False,
    }


def test_partial_failure_maps_to_events():
    c = conn()
    body = {"results": [{"gclid": "a"}, {}, {"gclid": "c"}],
            "partialFailureError": {"code": 3, "message": "partial", "details": [{
                "@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
                "errors": [{"errorCode": {"conversionUploadError": "EXPIRED_EVENT"},
                            "message": "The click is too old.",
                            "location": {"fieldPathElements": [
                                {"fieldName": "conversions", "index": 1}]}}]}]}}
    events = [ev(message_id=f"m{i}", event_time=datetime.now(UTC)) for i in range(3)]
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, TOKEN_URL, json={"access_token": "tok", "expires_in": 3600})
        rsps.add(responses.POST, URL, json=body)
        res = c.send(events)
        sent = [x.request for x in rsps.calls if x.request.url == URL][0]
    assert sent.headers["Authorization"] == "Bearer tok"
    assert sent.headers["developer-token"] == "devtok"
    assert [res.outcomes[f"m{i}"].kind for i in range(3)] == ["success", "permanent", "success"]
    assert res.outcomes["m1"].code == "EXPIRED_EVENT"
    assert "too old" in res.outcomes["m1"].error
    for ex in res.exchanges:
        assert "devtok" not in json.dumps(asdict(ex), default=str)
        assert "tok" not in ex.request_headers.get("Authorization", "")


def test_too_recent_conversion_action_retries_later():
    out = connectors.get("google_ads_legacy").errors_outcome(
        [("TOO_RECENT_CONVERSION_ACTION", "new action")])
    assert out.kind == "retryable" and out.retry_after == 3600.0
