"""Snap Conversions API v3: exact payload with Snap's documented hashes, validate mode,
the 37-day cut-off, and classification of Snap's VALID/INVALID answers."""

import hashlib
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import requests
import responses

from sst import connectors
from sst.connectors.base import ClickId, EventData

T = datetime(2026, 3, 1, 12, 0, 5, 900000, tzinfo=UTC)
URL = "https://tr.snapchat.com/v3/PIXEL-1/events"
# Snap's Parameters page: the hashed outputs it documents for its own example inputs.
SNAP_EMAIL = "542d240129883c019e106e3b1b2d3f3cb3537c43c425364de8e951d5a3083345"  # Person@...
SNAP_PHONE = "dc008fda46e2e64002cf2f82a4906236282d431c4f75e5b60bfe79fc48546383"  # +44 844...
SNAP_JOHN = "96d9632f363564cc3032521409cf22a852f2032eec099ed5967c0d000cec607a"
SNAP_RAPHAEL = "e74bb89e718fe1e19c422a48382870399f8bf7ca8dfa008739e75b0be76627b7"


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def conn(**extra):
    raw = {"name": "snap", "connector": "snapchat", "pixel_id": "PIXEL-1",
           "access_token": "snap-secret/+token", **extra}
    return connectors.get("snapchat")(connectors.validate_destination(raw), requests.Session())


def ev(**kw):
    base = dict(
        message_id="m-1", type="track", event="Order Completed", platform_event="PURCHASE",
        event_time=T,
        properties={"order_id": "o-9", "revenue": 10, "currency": "usd",
                    "products": [{"product_id": "003", "price": 5, "quantity": 1},
                                 {"product_id": "004", "price": 5.5, "quantity": 1}]},
        traits={"firstName": "John", "lastName": "Raphaël", "address": {"country": "GB"}},
        user_id="User-7", ip="203.0.113.7", user_agent="Mozilla/5.0",
        page_url="https://www.example.com/", referrer="https://www.example.com/cart",
        click_ids={"ScCid": ClickId("7b3a7917-a82a-47e8-9728-e1b3b045abb2",
                                    T - timedelta(hours=3))},
        cookies={"_scid": "8f2c1e4a-5b6d-4c7e-9f80-1a2b3c4d5e6f"},
        phone="+44 844 412 4653", email="Person@Example.com",
    )
    base.update(kw)
    return EventData(**base)


def test_exact_payload():
    (req,) = conn().build_requests([ev()])
    url = urlsplit(req.url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == URL
    assert parse_qs(url.query) == {"access_token": ["snap-secret/+token"]}
    assert req.headers == {"Content-Type": "application/json"}
    assert json.loads(req.body) == {"data": [{
        "event_name": "PURCHASE",
        "event_time": 1772366405,  # seconds, floored
        "event_id": "m-1",
        "action_source": "WEB",
        "user_data": {
            "em": [SNAP_EMAIL],
            "ph": [SNAP_PHONE],
            "fn": [SNAP_JOHN],
            "ln": [SNAP_RAPHAEL],
            "country": [sha("gb")],
            "external_id": sha("user-7"),
            "client_ip_address": "203.0.113.7",
            "client_user_agent": "Mozilla/5.0",
            "sc_click_id": "7b3a7917-a82a-47e8-9728-e1b3b045abb2",
            "sc_cookie1": "8f2c1e4a-5b6d-4c7e-9f80-1a2b3c4d5e6f",
        },
        "event_source_url": "https://www.example.com/",
        "custom_data": {
            "value": 10.0, "currency": "USD",
            "content_ids": ["003", "004"],
            "contents": [{"id": "003", "quantity": "1", "item_price": "5"},
                         {"id": "004", "quantity": "1", "item_price": "5.5"}],
            "num_items": 2, "order_id": "o-9",
        },
    }]}


def test_hashes_match_snaps_documented_examples_independently():
    # The constants above are Snap's published outputs; check them against hashlib too.
    assert sha("person@example.com") == SNAP_EMAIL
    assert sha("448444124653") == SNAP_PHONE
    assert sha("john") == SNAP_JOHN and sha("raphaël") == SNAP_RAPHAEL


def test_validate_mode_posts_to_the_validate_endpoint():
    (req,) = conn(validate=True).build_requests([ev()])
    assert urlsplit(req.url).path == "/v3/PIXEL-1/events/validate"


def test_base_url_override_and_batches():
    c = conn(base_url="http://stub.local:8080/")
    reqs = c.build_requests([ev(message_id=f"m{i}") for i in range(2001)])
    assert [len(r.message_ids) for r in reqs] == [2000, 1]
    assert reqs[0].url.startswith("http://stub.local:8080/v3/PIXEL-1/events?")


def test_too_old_cutoff_is_37_days():
    c = conn()
    assert c.too_old(ev(), T + timedelta(days=36)) is None
    assert "too old" in c.too_old(ev(), T + timedelta(days=37))


def test_event_without_any_match_key_is_skipped():
    bare = ev(email=None, phone=None, traits={}, ip=None)
    assert "snapchat" in conn().skip_reason(bare)
    assert conn().skip_reason(ev(email=None, phone=None)) is None  # ip + user agent suffice


def send(c, status, body, **kw):
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, URL, status=status, json=body, **kw)
        res = c.send([ev(event_time=datetime.now(UTC))])
    return res


def test_valid_answer_is_success_and_token_is_masked():
    res = send(conn(), 200, {"status": "VALID", "reason": "All events processed."})
    assert (res.outcomes["m-1"].kind, res.outcomes["m-1"].code) == ("success", "VALID")
    assert "snap-secret" not in res.exchanges[0].url and "***" in res.exchanges[0].url


def test_invalid_answer_is_permanent_with_snaps_messages():
    body = {"status": "INVALID", "reason": "Some events were invalid.",
            "errors": {"codes": ["INVALID_EVENT_NAME"], "error_msgs": ["bad event_name"]}}
    out = send(conn(), 200, body).outcomes["m-1"]
    assert (out.kind, out.code) == ("permanent", "INVALID_EVENT_NAME")
    assert "bad event_name" in out.error


def test_rate_limit_keeps_retry_after():
    out = send(conn(), 429, {"status": "INVALID", "reason": "rate limited"},
               headers={"Retry-After": "12"}).outcomes["m-1"]
    assert (out.kind, out.retry_after) == ("retryable", 12.0)


def test_validate_event_logs_give_per_event_outcomes():
    c = conn(validate=True)
    body = {"status": "VALID", "test_event": True, "event_logs": [
        {"event": 0, "status": "VALID", "warnings": ["no event_id"]},
        {"event": 1, "status": "INVALID",
         "errors": {"codes": ["E1"], "error_msgs": ["event_time in the future"]}}]}
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, URL + "/validate", json=body)
        now = datetime.now(UTC)
        res = c.send([ev(message_id="a", event_time=now), ev(message_id="b", event_time=now)])
    assert res.outcomes["a"].kind == "success"
    assert (res.outcomes["b"].kind, res.outcomes["b"].code) == ("permanent", "E1")
    assert "future" in res.outcomes["b"].error


# --- the shared harness (tests/support/connectors.py) and Snap's own error bodies -----------

import re  # noqa: E402

import pytest  # noqa: E402

from support.connectors import (  # noqa: E402
    ERROR_BODY_FIELDS,
    ConnectorHarness,
    Platform,
    check_error_body,
    error_body_ids,
)

SNAPCHAT = Platform(
    name="snapchat",
    settings={"pixel_id": "snap-pixel-1", "access_token": "snap-secret/+token=="},
    api_url=re.compile(r"https://tr\.snapchat\.com/v3/snap-pixel-1/events\?access_token=.*"),
    success=(200, {"status": "VALID", "reason": "All events processed successfully"}),
    max_event_age=timedelta(days=37),
)


class TestSnapchatHarness(ConnectorHarness):
    platform = SNAPCHAT


ERROR_BODIES = [
    (200, {"status": "INVALID", "reason": "Some events were invalid",
           "errors": {"codes": ["INVALID_EVENT_NAME"],
                      "error_msgs": ["event_name is not supported"]}},
     "permanent", "INVALID_EVENT_NAME"),
    (400, {"status": "INVALID", "reason": "Invalid pixel id"}, "permanent", "HTTP 400"),
    (503, {"status": "INVALID", "reason": "Service unavailable"}, "retryable", "HTTP 503"),
]


@pytest.mark.parametrize(ERROR_BODY_FIELDS, ERROR_BODIES, ids=error_body_ids(ERROR_BODIES))
def test_error_body(status, body, kind, code):
    check_error_body(SNAPCHAT, status, body, kind, code)


# --- what Snap says it did: INVALID with its words; /validate's verdict per event -----------

def test_acknowledgement_of_invalid_and_valid_answers():
    body = {"status": "INVALID", "reason": "Some events were invalid.",
            "errors": {"codes": ["INVALID_EVENT_NAME"], "error_msgs": ["bad event_name"]}}
    ack = send(conn(), 200, body).exchanges[0].acknowledgement
    assert (ack.accepted, ack.rejected, ack.reasons) == (None, None, ["bad event_name"])
    assert send(conn(), 200, {"status": "VALID"}).exchanges[0].acknowledgement is None


def test_acknowledgement_counts_validate_event_logs():
    body = {"status": "VALID", "test_event": True, "event_logs": [
        {"event": 0, "status": "VALID"},
        {"event": 1, "status": "INVALID", "errors": {"error_msgs": ["no user_data"]}},
        {"event": 2, "status": "VALID"}]}
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, URL + "/validate", json=body)
        now = datetime.now(UTC)
        res = conn(validate=True).send([ev(message_id=m, event_time=now) for m in "abc"])
    ack = res.exchanges[0].acknowledgement
    assert (ack.accepted, ack.rejected, ack.reasons) == (2, 1, ["no user_data"])
