"""Pinterest API for Conversions v5: exact payload, epik click id and _epik cookie,
?test=true, per-event statuses, Pinterest error codes."""

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
import requests
import responses

from sst import connectors
from sst.connectors.base import ClickId, EventData

T = datetime(2026, 3, 1, 12, 0, 5, 900000, tzinfo=UTC)
URL = "https://api.pinterest.com/v5/ad_accounts/549755885175/events"
EPIK = "dj0yJnU9b2JDcFFHekV4SHJNcmVrbFBkUEdqakh0akdUT1VjVVUmcD0yJm49cnNBQ3F2Q2dOVDBXWWhk"


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def conn(**extra):
    raw = {"name": "pin", "connector": "pinterest", "ad_account_id": "549755885175",
           "access_token": "pina_secret_token", **extra}
    return connectors.get("pinterest")(connectors.validate_destination(raw), requests.Session())


def ev(**kw):
    base = dict(
        message_id="m-1", type="track", event="Order Completed", platform_event="checkout",
        event_time=T,
        properties={"order_id": "my_order_id", "revenue": 72.39, "currency": "usd",
                    "products": [{"product_id": "red-pinterest-shirt-logo-1", "name": "Shirt",
                                  "price": 1325.12, "quantity": 5}]},
        traits={"firstName": "Mary", "address": {"city": "San Francisco", "state": "California",
                                                 "postalCode": "94107", "country": "US"}},
        user_id="USER-42", ip="216.3.128.12", user_agent="Mozilla/5.0",
        page_url="https://www.my-clothing-shop.org/",
        click_ids={"epik": ClickId(EPIK, T - timedelta(days=1))},
        cookies={"_epik": "older-cookie-epik"},
        phone="+1 (650) 555-1212", email=" Mary@Example.com",
    )
    base.update(kw)
    return EventData(**base)


def test_exact_payload():
    (req,) = conn().build_requests([ev()])
    assert req.url == URL
    assert req.headers == {"Content-Type": "application/json",
                           "Authorization": "Bearer pina_secret_token"}
    assert json.loads(req.body) == {"data": [{
        "event_name": "checkout",
        "action_source": "web",
        "event_time": 1772366405,
        "event_id": "m-1",
        "user_data": {
            "em": [sha("mary@example.com")],
            "ph": [sha("16505551212")],
            "fn": [sha("mary")],
            "ct": [sha("sanfrancisco")],
            "st": [sha("ca")],
            "zp": [sha("94107")],
            "country": [sha("us")],
            "external_id": [sha("user-42")],
            "client_ip_address": "216.3.128.12",
            "client_user_agent": "Mozilla/5.0",
            "click_id": EPIK,  # the URL's epik wins over the cookie
        },
        "event_source_url": "https://www.my-clothing-shop.org/",
        "custom_data": {
            "value": "72.39", "currency": "USD",
            "content_ids": ["red-pinterest-shirt-logo-1"],
            "contents": [{"id": "red-pinterest-shirt-logo-1", "item_price": "1325.12",
                          "quantity": 5, "item_name": "Shirt"}],
            "num_items": 5, "order_id": "my_order_id",
        },
    }]}


def test_epik_cookie_when_no_click_id_was_seen():
    (req,) = conn().build_requests([ev(click_ids={})])
    assert json.loads(req.body)["data"][0]["user_data"]["click_id"] == "older-cookie-epik"


def test_test_flag_is_the_query_parameter():
    assert conn(test=True).build_requests([ev()])[0].url == URL + "?test=true"


def test_ad_account_id_must_be_digits():
    with pytest.raises(connectors.ConnectorConfigError, match="ad_account_id"):
        conn(ad_account_id="act_12")


def test_event_needs_email_or_ip_and_user_agent():
    assert conn().skip_reason(ev(email=None, traits={})) is None
    assert "pinterest" in conn().skip_reason(ev(email=None, ip=None))


def test_batches_of_1000():
    reqs = conn().build_requests([ev(message_id=f"m{i}") for i in range(1001)])
    assert [len(r.message_ids) for r in reqs] == [1000, 1]


def send(c, status, body, n=1, **kw):
    now = datetime.now(UTC)
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, URL, status=status, json=body, **kw)
        return c.send([ev(message_id=f"m{i}", event_time=now) for i in range(n)])


def test_per_event_statuses_of_a_200():
    body = {"num_events_received": 2, "num_events_processed": 1, "events": [
        {"status": "processed", "error_message": None, "warning_message": "no currency"},
        {"status": "failed", "error_message": "event_time is too far in the past"}]}
    res = send(conn(), 200, body, n=2)
    assert (res.outcomes["m0"].kind, res.outcomes["m0"].code) == ("success", "processed")
    assert (res.outcomes["m1"].kind, res.outcomes["m1"].code) == ("permanent", "failed")
    assert "too far in the past" in res.outcomes["m1"].error
    assert res.exchanges[0].request_headers["Authorization"] == "Bearer ***"


def test_422_partial_failure_reads_the_details():
    body = {"code": 4196, "message": "Not all events were successfully processed.",
            "details": {"num_events_received": 2, "num_events_processed": 1, "events": [
                {"status": "failed", "error_message": "user_data is missing"},
                {"status": "processed"}]}}
    res = send(conn(), 422, body, n=2)
    assert res.outcomes["m0"].kind == "permanent" and "user_data" in res.outcomes["m0"].error
    assert res.outcomes["m1"].kind == "success"


@pytest.mark.parametrize(("status", "code", "kind"), [
    (429, 8, "retryable"), (503, 4197, "retryable"), (401, 2, "permanent"),
    (403, 29, "permanent"), (400, 4196, "permanent"), (400, 1234, "permanent"),
    (500, 1234, "retryable"),
])
def test_error_codes(status, code, kind):
    out = send(conn(), status, {"code": code, "message": "m"},
               headers={"Retry-After": "4"}).outcomes["m0"]
    assert (out.kind, out.code) == (kind, str(code))
    if kind == "retryable":
        assert out.retry_after == 4.0


# --- the shared harness (tests/support/connectors.py) and Pinterest's own error bodies -----------

from support.connectors import (  # noqa: E402
    ERROR_BODY_FIELDS,
    ConnectorHarness,
    Platform,
    check_error_body,
    error_body_ids,
)

PINTEREST = Platform(
    name="pinterest",
    settings={"ad_account_id": "549755885175", "access_token": "pina_secret/+token"},
    api_url="https://api.pinterest.com/v5/ad_accounts/549755885175/events",
    success=(200, {"num_events_received": 1, "num_events_processed": 1,
                   "events": [{"status": "processed"}]}),
    max_event_age=timedelta(days=7),
)


class TestPinterestHarness(ConnectorHarness):
    platform = PINTEREST


ERROR_BODIES = [
    (200, {"num_events_received": 1, "num_events_processed": 0,
           "events": [{"status": "failed", "error_message": "bad event_time"}]},
     "permanent", "failed"),
    (429, {"code": 8, "message": "This request exceeded a rate limit."}, "retryable", "8"),
    (503, {"code": 4197, "message": "The endpoint has been ramped down"}, "retryable", "4197"),
    (401, {"code": 2, "message": "Authentication failed."}, "permanent", "2"),
    (403, {"code": 29, "message": "You are not permitted"}, "permanent", "29"),
]


@pytest.mark.parametrize(ERROR_BODY_FIELDS, ERROR_BODIES, ids=error_body_ids(ERROR_BODIES))
def test_error_body(status, body, kind, code):
    check_error_body(PINTEREST, status, body, kind, code)


# --- what Pinterest says it did: its counts and each failed event's words -------------------

def test_acknowledgement_counts_and_reasons():
    body = {"num_events_received": 3, "num_events_processed": 1, "events": [
        {"status": "processed"},
        {"status": "failed", "error_message": "event_time is too far in the past"},
        {"status": "failed", "error_message": "event_time is too far in the past"}]}
    ack = send(conn(), 200, body, n=3).exchanges[0].acknowledgement
    assert (ack.accepted, ack.rejected) == (1, 2)
    assert ack.reasons == ["event_time is too far in the past"]


def test_acknowledgement_of_a_422_and_of_an_error():
    body = {"code": 4196, "message": "Not all events were successfully processed.",
            "details": {"num_events_received": 2, "num_events_processed": 1, "events": [
                {"status": "failed", "error_message": "user_data is missing"},
                {"status": "processed"}]}}
    ack = send(conn(), 422, body, n=2).exchanges[0].acknowledgement
    assert (ack.accepted, ack.rejected, ack.reasons) == (1, 1, ["user_data is missing"])
    ack = send(conn(), 401, {"code": 2, "message": "Authentication failed."}) \
        .exchanges[0].acknowledgement
    assert (ack.accepted, ack.reasons) == (None, ["Authentication failed."])
