"""TikTok Events API 2.0: exact payload, Access-Token header, body-code classification."""

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
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
)

T = datetime(2026, 3, 1, 12, 0, 5, 900000, tzinfo=UTC)
URL = "https://business-api.tiktok.com/open_api/v1.3/event/track/"


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


conn = connector_factory("tiktok", pixel_code="C4PIXEL", access_token="tt-secret")
ev = event_factory(
    message_id="m-1", type="track", event="Order Completed", platform_event="Purchase",
    event_time=T,
    properties={"order_id": "o-9", "revenue": 100, "currency": "usd",
                "products": [{"product_id": "1077218", "name": "shirt", "price": 8,
                              "quantity": 2}]},
    user_id="User-7", ip="203.0.113.7", user_agent="Mozilla/5.0",
    page_url="https://shop.example/thanks", referrer="https://shop.example/cart",
    click_ids={"ttclid": ClickId("E.C.P.abc123", T - timedelta(hours=2))},
    cookies={"_ttp": "2Xy-ttp-cookie"}, phone="+16505551212", email="Person@Example.com",
)

TIKTOK = Platform(
    name="tiktok",
    settings={"pixel_code": "CPIXEL123", "access_token": "tt-secret-token"},
    api_url=URL,
    success=(200, {"code": 0, "message": "OK", "request_id": "r1", "data": {}}),
    max_event_age=timedelta(days=7),
)


class TestTikTokHarness(ConnectorHarness):
    platform = TIKTOK


# TikTok answers HTTP 200 with its own code in the body.
ERROR_BODIES = [
    (200, {"code": 40100, "message": "Too many requests"}, "retryable", "40100"),
    (200, {"code": 40700, "message": "Internal"}, "retryable", "40700"),
    (200, {"code": 40001, "message": "No permission"}, "permanent", "40001"),
    (200, {"code": 40002, "message": "Invalid parameter"}, "permanent", "40002"),
    (200, {"code": 51000, "message": "System error"}, "retryable", "51000"),
    (200, {"code": 20001, "message": "Partial success"}, "success", "20001"),
]


@pytest.mark.parametrize(ERROR_BODY_FIELDS, ERROR_BODIES, ids=error_body_ids(ERROR_BODIES))
def test_error_body(status, body, kind, code):
    check_error_body(TIKTOK, status, body, kind, code)


def test_exact_payload():
    (req,) = conn(test_event_code="TEST123").build_requests([ev()])
    assert req.url == URL
    assert req.headers == {"Content-Type": "application/json", "Access-Token": "tt-secret"}
    assert json.loads(req.body) == {
        "event_source": "web", "event_source_id": "C4PIXEL", "test_event_code": "TEST123",
        "data": [{
            "event": "Purchase", "event_time": 1772366405, "event_id": "m-1",
            "user": {
                "email": "542d240129883c019e106e3b1b2d3f3cb3537c43c425364de8e951d5a3083345",
                "phone": sha("+16505551212"),  # E.164 *with* "+", unlike Meta
                "external_id": sha("user-7"),
                "ttclid": "E.C.P.abc123", "ttp": "2Xy-ttp-cookie",
                "ip": "203.0.113.7", "user_agent": "Mozilla/5.0",
            },
            "page": {"url": "https://shop.example/thanks", "referrer": "https://shop.example/cart"},
            "properties": {
                "value": 100.0, "currency": "USD",
                "contents": [{"content_id": "1077218", "content_name": "shirt", "price": 8.0,
                              "quantity": 2}],
                "content_type": "product", "order_id": "o-9",
            },
        }],
    }


def test_no_test_event_code_by_default():
    assert "test_event_code" not in json.loads(conn().build_requests([ev()])[0].body)


def test_too_old_cutoff_is_seven_days():
    c = conn()
    assert c.too_old(ev(), T + timedelta(days=6)) is None
    assert "too old" in c.too_old(ev(), T + timedelta(days=7, seconds=1))


def test_http_200_with_error_code_is_not_success():
    c = conn()
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, URL, json={"code": 40002, "message": "Invalid event_time",
                                            "request_id": "rq"})
        res = c.send([ev(event_time=datetime.now(UTC))])
        assert rsps.calls[0].request.headers["Access-Token"] == "tt-secret"
    out = res.outcomes["m-1"]
    assert (out.kind, out.code) == ("permanent", "40002")
    assert "Invalid event_time" in out.error and "rq" in out.error
    assert res.exchanges[0].request_headers["Access-Token"] == "***"


def test_rate_limit_code_retries():
    c = conn()
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, URL, json={"code": 40100, "message": "QPS limit"})
        res = c.send([ev(event_time=datetime.now(UTC))])
    assert res.outcomes["m-1"].kind == "retryable"


def test_2xx_without_code_is_not_trusted():
    c = conn()
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, URL, body="<html>proxy</html>")
        res = c.send([ev(event_time=datetime.now(UTC))])
    assert res.outcomes["m-1"].kind == "retryable"
