"""Meta Conversions API: exact payload, fbc building, auth, age cut-off."""

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from sst.connectors.base import ClickId, EventData
from support.connectors import (
    ERROR_BODY_FIELDS,
    ConnectorHarness,
    Platform,
    check_error_body,
    connector_factory,
    error_body_ids,
    event_factory,
)

T = datetime(2026, 3, 1, 12, 0, 5, 987654, tzinfo=UTC)  # .987 s must floor, not round
CLICK = datetime(2026, 2, 28, 9, 30, 0, 123456, tzinfo=UTC)


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


conn = connector_factory("meta", pixel_id="1234567890", access_token="EAAB-secret")
ev = event_factory(
    message_id="m-1", type="track", event="Order Completed", platform_event="Purchase",
    event_time=T,
    properties={"order_id": "50314b8e", "total": 27.5, "revenue": 25.0, "currency": "usd",
                "products": [{"product_id": "507f1f77", "sku": "45790-32", "price": 19,
                              "quantity": 1},
                             {"sku": "46493-32", "price": 3, "quantity": 2}]},
    traits={"firstName": "Mary", "lastName": "O'Brien",
            "address": {"city": "New York", "state": "New York", "postalCode": "10001-1234",
                        "country": "United States"}},
    user_id="USER-42", ip="203.0.113.7", user_agent="Mozilla/5.0",
    page_url="https://shop.example/thanks", referrer="https://shop.example/cart",
    click_ids={"fbclid": ClickId("IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRx",
                                 CLICK)},
    cookies={"_fbp": "fb.1.1596403881668.1116446470"},
    phone="+16505551212", email=" Mary.OBrien@Example.com",
)

META = Platform(
    name="meta",
    settings={"pixel_id": "1234567890", "access_token": "EAAB-meta-secret/+=="},
    api_url=re.compile(r"https://graph\.facebook\.com/v[\d.]+/1234567890/events.*"),
    success=(200, {"events_received": 1, "messages": [], "fbtrace_id": "AbC"}),
    max_event_age=timedelta(days=7),
)


class TestMetaHarness(ConnectorHarness):
    platform = META


def graph_error(code, sub=None, transient=False, msg="Invalid parameter"):
    """A Graph API error body (code, optional subcode, is_transient)."""
    err = {"message": msg, "type": "OAuthException", "code": code, "is_transient": transient,
           "fbtrace_id": "A1"}
    if sub:
        err["error_subcode"] = sub
        err["error_user_title"] = "Event Timestamp Too Old"
    return {"error": err}


ERROR_BODIES = [
    (400, graph_error(100, 2804003), "permanent", "100/2804003"),
    (500, graph_error(2, transient=True, msg="Service temporarily unavailable"),
     "retryable", "2"),
    (400, graph_error(1, msg="An unknown error occurred"), "retryable", "1"),
    (400, graph_error(4, msg="Application request limit reached"), "retryable", "4"),
    (400, graph_error(17), "retryable", "17"),
    (400, graph_error(80003), "retryable", "80003"),
    (400, graph_error(999, transient=True), "retryable", "999"),
    (400, graph_error(190, msg="Error validating access token"), "permanent", "190"),
    (400, graph_error(10), "permanent", "10"),
    (403, graph_error(200), "permanent", "200"),
    (400, graph_error(100, 33), "permanent", "100/33"),
]


@pytest.mark.parametrize(ERROR_BODY_FIELDS, ERROR_BODIES, ids=error_body_ids(ERROR_BODIES))
def test_error_body(status, body, kind, code):
    check_error_body(META, status, body, kind, code)


def test_exact_payload():
    (req,) = conn().build_requests([ev()])
    url = urlsplit(req.url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == (
        "https://graph.facebook.com/v25.0/1234567890/events")
    assert parse_qs(url.query) == {"access_token": ["EAAB-secret"]}
    body = json.loads(req.body)
    assert body == {"data": [{
        "event_name": "Purchase",
        "event_time": 1772366405,
        "event_id": "m-1",
        "action_source": "website",
        "user_data": {
            "em": [sha("mary.obrien@example.com")],
            "ph": [sha("16505551212")],
            "fn": [sha("mary")],
            "ln": [sha("obrien")],
            "ct": [sha("newyork")],
            "st": [sha("ny")],
            "zp": [sha("10001")],
            "country": [sha("us")],
            "external_id": [sha("user-42")],
            "client_ip_address": "203.0.113.7",
            "client_user_agent": "Mozilla/5.0",
            "fbc": "fb.1.1772271000123.IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRx",
            "fbp": "fb.1.1596403881668.1116446470",
        },
        "event_source_url": "https://shop.example/thanks",
        "referrer_url": "https://shop.example/cart",
        "custom_data": {
            "value": 25.0, "currency": "USD", "content_ids": ["507f1f77", "46493-32"],
            "contents": [{"id": "507f1f77", "quantity": 1, "item_price": 19.0},
                         {"id": "46493-32", "quantity": 2, "item_price": 3.0}],
            "content_type": "product", "num_items": 3, "order_id": "50314b8e",
        },
    }]}


def test_event_time_is_floored_seconds():
    assert int(T.timestamp()) == 1772366405
    (req,) = conn().build_requests([ev(event_time=T.replace(microsecond=999999))])
    assert json.loads(req.body)["data"][0]["event_time"] == 1772366405


def test_fbc_built_from_click_time_in_ms():
    ms = int(CLICK.timestamp() * 1000)
    assert ms == 1772271000123
    ud = json.loads(conn().build_requests([ev()])[0].body)["data"][0]["user_data"]
    assert ud["fbc"].split(".")[2] == str(ms)


def test_fbc_cookie_wins_over_built_value():
    e = ev(cookies={"_fbc": "fb.1.1554763741205.AbCdEf"})
    ud = json.loads(conn().build_requests([e])[0].body)["data"][0]["user_data"]
    assert ud["fbc"] == "fb.1.1554763741205.AbCdEf" and "fbp" not in ud


def test_minimal_event_has_no_empty_keys():
    e = EventData(message_id="m", type="page", event=None, platform_event="PageView",
                  event_time=T, user_agent="UA")
    data = json.loads(conn().build_requests([e])[0].body)["data"][0]
    assert data == {"event_name": "PageView", "event_time": 1772366405, "event_id": "m",
                    "action_source": "website", "user_data": {"client_user_agent": "UA"}}


def test_already_hashed_email_is_not_hashed_again():
    digest = sha("someone@example.com")
    ud = json.loads(conn().build_requests([ev(email=digest)])[0].body)["data"][0]["user_data"]
    assert ud["em"] == [digest]


def test_test_event_code_and_api_version():
    (req,) = conn(test_event_code="TEST123", api_version="v26.0").build_requests([ev()])
    assert json.loads(req.body)["test_event_code"] == "TEST123"
    assert "/v26.0/" in req.url


def test_base_url_override():
    (req,) = conn(base_url="http://localhost:8080/").build_requests([ev()])
    assert req.url.startswith("http://localhost:8080/v25.0/1234567890/events?")


def test_event_without_visitor_user_agent_is_system_generated_not_website():
    # Contract §5: no visitor user agent known -> an action_source valid without one.
    (req,) = conn().build_requests([ev(user_agent=None, ip=None)])
    [event] = json.loads(req.body)["data"]
    assert event["action_source"] == "system_generated"
    assert "client_user_agent" not in event["user_data"]
    assert "client_ip_address" not in event["user_data"]
    assert event["user_data"]["external_id"] == [sha("user-42")]


def test_event_with_nothing_to_match_is_skipped():
    c = conn()
    res = c.send([ev(user_agent=None, ip=None, user_id=None, phone=None, email=None,
                     traits={}, click_ids={}, cookies={})], now=T)
    assert res.outcomes["m-1"].kind == "skipped" and res.exchanges == []
    assert "no customer information" in res.outcomes["m-1"].error


@pytest.mark.parametrize(("age", "reason"), [
    (timedelta(days=6, hours=23), None),
    (timedelta(days=7) - timedelta(minutes=4), "too old"),
    (timedelta(days=8), "too old"),
])
def test_too_old_cutoff(age, reason):
    now = T + age
    got = conn().too_old(ev(), now)
    assert (got is None) if reason is None else (reason in got)


def test_send_success_masks_token():
    c = conn()
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, "https://graph.facebook.com/v25.0/1234567890/events",
                 json={"events_received": 1, "messages": [], "fbtrace_id": "x"})
        res = c.send([ev(event_time=datetime.now(UTC))])
        sent = rsps.calls[0].request
    assert "access_token=EAAB-secret" in sent.url
    assert sent.headers["Content-Type"] == "application/json"
    assert res.outcomes["m-1"].kind == "success"
    (ex,) = res.exchanges
    assert "EAAB-secret" not in ex.url and "access_token=***" in ex.url
    # The ledger keeps the request with hashed identifiers masked (M5), nothing else changed.
    from sst.identity.hashing import mask_hashes

    assert ex.request_body == mask_hashes(sent.body.decode())
    assert "sha256~masked" in ex.request_body


def test_batch_rejected_as_a_whole():
    c = conn()
    events = [ev(message_id=f"m{i}", event_time=datetime.now(UTC)) for i in range(3)]
    err = {"error": {"code": 100, "error_subcode": 2804019, "message": "Invalid parameter",
                     "is_transient": False}}
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, "https://graph.facebook.com/v25.0/1234567890/events",
                 status=400, json=err)
        res = c.send(events)
    assert {o.kind for o in res.outcomes.values()} == {"permanent"}
    assert {o.code for o in res.outcomes.values()} == {"100/2804019"}
    assert len(res.exchanges) == 1
