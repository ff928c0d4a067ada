"""GA4 Measurement Protocol: client_id from _ga, per-visitor requests, names, debug mode."""

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from sst.connectors.ga4 import client_id_from_ga, event_name
from support.connectors import (
    ConnectorHarness,
    Platform,
    connector_factory,
    event_factory,
    harness_connector,
    run,
)

T = datetime(2026, 3, 1, 12, 0, 5, 123456, tzinfo=UTC)


conn = connector_factory("ga4", measurement_id="G-ABC123", api_secret="ga-secret")
ev = event_factory(
    message_id="m-1", type="track", event="Order Completed",
    platform_event="Order Completed", event_time=T,
    properties={"order_id": "T-1", "revenue": 30.03, "currency": "usd",
                "session_id": 1700000000, "engagement_time_msec": 100,
                "products": [{"product_id": "SKU_1", "name": "Tee", "price": 10.01,
                              "quantity": 3, "category": "Apparel"}]},
    anonymous_id="anon-1", user_id="U-1", page_url="https://shop.example/done",
    referrer="https://shop.example/cart",
    cookies={"_ga": "GA1.1.1234567890.1700000000"},
)

GA4 = Platform(
    name="ga4",
    settings={"measurement_id": "G-TEST123", "api_secret": "ga4-api-secret"},
    api_url=re.compile(r"https://www\.google-analytics\.com/mp/collect.*"),
    success=(204, None),
    max_event_age=timedelta(hours=72),
)


class TestGa4Harness(ConnectorHarness):
    platform = GA4


def test_validation_messages_are_permanent():
    """GA4 answers every hit with 2xx; only the debug endpoint (validate=True) says what is
    wrong, and that is permanent."""
    body = {"validationMessages": [{"fieldPath": "events", "validationCode": "NAME_INVALID",
                                    "description": "Event at index: [0] has invalid name."}]}
    debug = replace(GA4, api_url=re.compile(
        r"https://www\.google-analytics\.com/debug/mp/collect.*"))
    res = run(debug, {"json": body}, conn=harness_connector(GA4, validate=True))
    out = res.outcomes["msg-1"]
    assert (out.kind, out.code) == ("permanent", "NAME_INVALID")
    assert "invalid name" in out.error


def test_exact_payload():
    (req,) = conn().build_requests([ev()])
    url = urlsplit(req.url)
    assert url.path == "/mp/collect"
    assert parse_qs(url.query) == {"measurement_id": ["G-ABC123"], "api_secret": ["ga-secret"]}
    assert json.loads(req.body) == {
        "client_id": "1234567890.1700000000",
        "user_id": "U-1",
        "timestamp_micros": 1772366405123456,
        "events": [{
            "name": "order_completed",
            "params": {
                "session_id": 1700000000, "engagement_time_msec": 100,
                "page_location": "https://shop.example/done",
                "page_referrer": "https://shop.example/cart",
                "value": 30.03, "currency": "USD", "transaction_id": "T-1",
                "items": [{"item_id": "SKU_1", "item_name": "Tee", "price": 10.01,
                           "quantity": 3, "item_category": "Apparel"}],
            },
            "timestamp_micros": 1772366405123456,
        }],
    }


@pytest.mark.parametrize(("cookie", "expected"), [
    ("GA1.1.1234567890.1700000000", "1234567890.1700000000"),
    ("GA1.2.987.654", "987.654"),
    ("1234.5678", "1234.5678"),
    ("garbage", None),
    (None, None),
])
def test_client_id_from_ga(cookie, expected):
    assert client_id_from_ga(cookie) == expected


def test_client_id_falls_back_to_anonymous_id():
    body = json.loads(conn().build_requests([ev(cookies={})])[0].body)
    assert body["client_id"] == "anon-1"


def test_requests_split_per_client_id_and_25_events():
    events = [ev(message_id=f"a{i}") for i in range(26)]
    events += [ev(message_id="b0", cookies={"_ga": "GA1.1.111.222"})]
    reqs = conn().build_requests(events)
    assert [len(r.message_ids) for r in reqs] == [25, 1, 1]
    assert {json.loads(r.body)["client_id"] for r in reqs} == {"1234567890.1700000000",
                                                               "111.222"}


@pytest.mark.parametrize(("raw", "expected"), [
    ("Order Completed", "order_completed"),
    ("PageView", "page_view"),
    ("purchase", "purchase"),
    ("add-to-cart!", "add_to_cart"),
    ("x" * 50, "x" * 40),
])
def test_event_name(raw, expected):
    assert event_name(raw) == expected


@pytest.mark.parametrize(
    "name", ["session_start", "first_visit", "ga_custom", "firebase_x", "9lives", "!!!"])
def test_reserved_or_invalid_names_are_skipped(name):
    res = conn().send([ev(platform_event=name, event_time=datetime.now(UTC))])
    assert res.outcomes["m-1"].kind == "skipped" and res.exchanges == []


def test_validate_mode_uses_debug_endpoint():
    (req,) = conn(validate=True).build_requests([ev()])
    assert urlsplit(req.url).path == "/debug/mp/collect"
    assert json.loads(req.body)["validation_behavior"] == "ENFORCE_RECOMMENDATIONS"


def test_too_old_cutoff_is_72_hours():
    c = conn()
    assert c.too_old(ev(), T + timedelta(hours=71)) is None
    assert "too old" in c.too_old(ev(), T + timedelta(hours=72))
