"""Microsoft Advertising UET Conversions API: exact payload, msclkid from the click or the UET
cookie, hashed email and phone, eventId for de-duplication, per-index validation errors and
counts, Microsoft's error bodies."""

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
import requests
import responses

from sst import connectors
from sst.connectors.base import ClickId, EventData

T = datetime(2026, 3, 1, 12, 0, 5, 900000, tzinfo=UTC)
URL = "https://capi.uet.microsoft.com/v1/343000123/events"
MSCLKID = "a1b2c3d4e5f60718293a4b5c6d7e8f90"


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def conn(**extra):
    raw = {"name": "ms", "connector": "microsoft_ads", "tag_id": "343000123",
           "access_token": "uet-capi-secret/+token", **extra}
    return connectors.get("microsoft_ads")(connectors.validate_destination(raw),
                                            requests.Session())


def ev(**kw):
    base = dict(
        message_id="m-1", type="track", event="Order Completed", platform_event="purchase",
        event_time=T,
        properties={"order_id": "o-9", "revenue": 25.5, "currency": "usd", "query": "shoes",
                    "products": [{"product_id": "p1", "name": "Shoe", "price": 12.75,
                                  "quantity": 2}]},
        user_id="User-7", ip="203.0.113.7", user_agent="Mozilla/5.0",
        page_url="https://shop.example/thanks", referrer="https://shop.example/cart",
        click_ids={"msclkid": ClickId(MSCLKID, T - timedelta(days=1))},
        cookies={"_uetmsclkid": "_uetolder0cookie", "_uetvid": "5d8b2a60f0e011eeb0b1a1b2c3d4e5f6"},
        phone="+1 (425) 555-0100", email=" Jane.Doe@Example.com",
    )
    base.update(kw)
    return EventData(**base)


def test_exact_payload():
    (req,) = conn().build_requests([ev()])
    assert req.url == URL
    assert req.headers == {"Content-Type": "application/json",
                           "Authorization": "Bearer uet-capi-secret/+token"}
    assert json.loads(req.body) == {"continueOnValidationError": True, "data": [{
        "eventType": "custom",
        "eventName": "purchase",
        "eventId": "m-1",
        "eventTime": 1772366405,  # seconds, floored
        "eventSourceUrl": "https://shop.example/thanks",
        "referrerUrl": "https://shop.example/cart",
        "userData": {
            "em": sha("jane.doe@example.com"),
            "ph": sha("+14255550100"),
            "externalId": sha("user-7"),
            "anonymousId": "5d8b2a60f0e011eeb0b1a1b2c3d4e5f6",
            "msclkid": MSCLKID,
            "clientIpAddress": "203.0.113.7",
            "clientUserAgent": "Mozilla/5.0",
        },
        "customData": {
            "value": 25.5, "currency": "USD", "transactionId": "o-9",
            "itemIds": ["p1"],
            "items": [{"id": "p1", "name": "Shoe", "price": 12.75, "quantity": 2}],
            "searchTerm": "shoes",
        },
    }]}


def test_page_views_are_page_loads():
    (req,) = conn().build_requests([ev(type="page", platform_event="page_view",
                                       properties={})])
    event = json.loads(req.body)["data"][0]
    assert event["eventType"] == "pageLoad" and "eventName" not in event
    assert "needs the page URL" in conn().skip_reason(ev(type="page", page_url=None))


def test_msclkid_from_the_uet_cookie_without_its_prefix():
    (req,) = conn().build_requests([ev(click_ids={})])
    assert json.loads(req.body)["data"][0]["userData"]["msclkid"] == "older0cookie"


def test_event_without_any_match_key_is_skipped():
    bare = ev(click_ids={}, cookies={}, email=None, phone=None, ip=None)
    assert "microsoft_ads" in conn().skip_reason(bare)
    assert conn().skip_reason(ev(click_ids={}, cookies={}, email=None, phone=None)) is None


def test_batches_of_1000_and_base_url():
    reqs = conn(base_url="http://stub.local").build_requests(
        [ev(message_id=f"m{i}") for i in range(1001)])
    assert [len(r.message_ids) for r in reqs] == [1000, 1]
    assert reqs[0].url == "http://stub.local/v1/343000123/events"


def test_too_old_cutoff_is_seven_days():
    c = conn()
    assert c.too_old(ev(), T + timedelta(days=6)) is None
    assert "too old" in c.too_old(ev(), T + timedelta(days=7))


def send(status, body, n=1, **kw):
    now = datetime.now(UTC)
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, URL, status=status, json=body, **kw)
        return conn().send([ev(message_id=f"m{i}", event_time=now) for i in range(n)])


def test_validation_errors_by_index_and_counts():
    body = {"eventsReceived": 2, "traceId": "trace-42", "error": {
        "code": "InvalidEvents", "message": "Some events were invalid",
        "details": [{"index": 1, "propertyName": "eventTime", "attemptedValue": 1,
                     "errorMessage": "eventTime is older than 7 days"}]}}
    res = send(200, body, n=3)
    assert [res.outcomes[f"m{i}"].kind for i in range(3)] == ["success", "permanent", "success"]
    assert (res.outcomes["m1"].code, "older than 7 days" in res.outcomes["m1"].error) == \
        ("InvalidEvents", True)
    ack = res.exchanges[0].acknowledgement
    assert (ack.accepted, ack.rejected, ack.request_id) == (2, 1, "trace-42")
    assert ack.reasons == ["eventTime: eventTime is older than 7 days"]
    assert res.exchanges[0].request_headers["Authorization"] == "Bearer ***"


def test_whole_request_refused():
    res = send(401, {"error": {"code": "Unauthorized", "message": "Invalid token"},
                     "traceId": "t-1"})
    out = res.outcomes["m0"]
    assert (out.kind, out.code) == ("permanent", "Unauthorized")
    assert "Invalid token" in out.error
    assert res.exchanges[0].acknowledgement.request_id == "t-1"


# --- the shared harness (tests/support/connectors.py) and Microsoft's own error bodies -----

from support.connectors import (  # noqa: E402
    ERROR_BODY_FIELDS,
    ConnectorHarness,
    Platform,
    check_error_body,
    error_body_ids,
)

MICROSOFT = Platform(
    name="microsoft_ads",
    settings={"tag_id": "343000123", "access_token": "uet-capi-secret/+token=="},
    api_url="https://capi.uet.microsoft.com/v1/343000123/events",
    success=(200, {"eventsReceived": 1, "traceId": "trace-1"}),
    max_event_age=timedelta(days=7),
)


class TestMicrosoftAdsHarness(ConnectorHarness):
    platform = MICROSOFT


ERROR_BODIES = [
    (200, {"eventsReceived": 0, "error": {"code": "InvalidEvents", "message": "invalid",
                                          "details": [{"index": 0, "propertyName": "eventType",
                                                       "errorMessage": "unknown eventType"}]}},
     "permanent", "InvalidEvents"),
    (400, {"error": {"code": "BadRequest", "message": "data is required"}}, "permanent",
     "BadRequest"),
    (429, {"error": {"code": "TooManyRequests", "message": "slow down"}}, "retryable",
     "TooManyRequests"),
    (503, {"error": {"code": "ServiceUnavailable", "message": "try later"}}, "retryable",
     "ServiceUnavailable"),
]


@pytest.mark.parametrize(ERROR_BODY_FIELDS, ERROR_BODIES, ids=error_body_ids(ERROR_BODIES))
def test_error_body(status, body, kind, code):
    check_error_body(MICROSOFT, status, body, kind, code)
