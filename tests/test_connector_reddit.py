"""Reddit Conversions API v2.0: exact payload (Reddit's email canonicalisation and its
documented hash), Bearer auth, test_mode, Custom events, error bodies."""

import hashlib
import json
from datetime import UTC, datetime, timedelta

import requests
import responses

from sst import connectors
from sst.connectors.base import ClickId, EventData

T = datetime(2026, 3, 1, 12, 0, 5, 900000, tzinfo=UTC)
URL = "https://ads-api.reddit.com/api/v2.0/conversions/events/t2_acct1"
# Reddit's Manual Advanced Matching page: Al.ice$+Apple@Example.Com hashes to this.
REDDIT_ALICE = "ff8d9819fc0e12bf0d24892e45987e249a28dce836a85cad60e28eaaa8c6d976"


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def conn(**extra):
    raw = {"name": "rd", "connector": "reddit", "account_id": "t2_acct1",
           "access_token": "rd-secret-token", **extra}
    return connectors.get("reddit")(connectors.validate_destination(raw), requests.Session())


def ev(**kw):
    base = dict(
        message_id="m-1", type="track", event="Order Completed", platform_event="Purchase",
        event_time=T,
        properties={"order_id": "o-9", "revenue": 25.5, "currency": "usd",
                    "products": [{"product_id": "p1", "name": "Shirt", "category": "Tops",
                                  "price": 10, "quantity": 2},
                                 {"product_id": "p2", "price": 5.5}]},
        user_id=" User-7 ", ip=" 203.0.113.7", user_agent="Mozilla/5.0",
        page_url="https://shop.example/thanks",
        click_ids={"rdt_cid": ClickId("t2_abc_rdt_click", T - timedelta(hours=5))},
        cookies={"_rdt_uuid": "1684189007728.7c73f2ae-a433-4d7b-9838-f467da98f48e"},
        phone="+1 (650) 555-1212", email="Al.ice$+Apple@Example.Com",
    )
    base.update(kw)
    return EventData(**base)


def test_exact_payload():
    (req,) = conn().build_requests([ev()])
    assert req.url == URL
    assert req.headers == {"Content-Type": "application/json",
                           "Authorization": "Bearer rd-secret-token"}
    assert json.loads(req.body) == {"events": [{
        "event_at": "2026-03-01T12:00:05.900Z",
        "event_type": {"tracking_type": "Purchase"},
        "click_id": "t2_abc_rdt_click",
        "user": {
            "email": REDDIT_ALICE,
            "phone_number": sha("+16505551212"),
            "external_id": sha("User-7"),  # trimmed, case kept
            "ip_address": sha("203.0.113.7"),
            "user_agent": "Mozilla/5.0",
            "uuid": "1684189007728.7c73f2ae-a433-4d7b-9838-f467da98f48e",
        },
        "event_metadata": {
            "conversion_id": "m-1", "value_decimal": 25.5, "currency": "USD",
            "item_count": 3,
            "products": [{"id": "p1", "name": "Shirt", "category": "Tops"}, {"id": "p2"}],
        },
    }]}


def test_documented_hash_independently():
    assert sha("alice@example.com") == REDDIT_ALICE


def test_other_names_go_as_custom_events():
    (req,) = conn().build_requests([ev(platform_event="Newsletter Joined")])
    assert json.loads(req.body)["events"][0]["event_type"] == {
        "tracking_type": "Custom", "custom_event_name": "Newsletter Joined"}


def test_test_mode_is_a_top_level_flag():
    assert json.loads(conn(test_mode=True).build_requests([ev()])[0].body)["test_mode"] is True
    assert "test_mode" not in json.loads(conn().build_requests([ev()])[0].body)


def test_batches_of_1000_and_base_url():
    reqs = conn(base_url="http://stub.local").build_requests(
        [ev(message_id=f"m{i}") for i in range(1001)])
    assert [len(r.message_ids) for r in reqs] == [1000, 1]
    assert reqs[0].url == "http://stub.local/api/v2.0/conversions/events/t2_acct1"


def test_too_old_cutoff_is_seven_days():
    c = conn()
    assert c.too_old(ev(), T + timedelta(days=6)) is None
    assert "too old" in c.too_old(ev(), T + timedelta(days=7))


def send(status, body, **kw):
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, URL, status=status, json=body, **kw)
        return conn().send([ev(event_time=datetime.now(UTC))])


def test_error_body_message_is_kept_and_auth_is_masked():
    res = send(400, {"error": {"code": 400, "message": "invalid action_source: web"}})
    out = res.outcomes["m-1"]
    assert (out.kind, out.code) == ("permanent", "HTTP 400")
    assert "invalid action_source" in out.error
    assert res.exchanges[0].request_headers["Authorization"] == "Bearer ***"


def test_error_inside_a_2xx_is_not_success():
    out = send(200, {"error": {"code": 400, "message": "unknown field"}}).outcomes["m-1"]
    assert out.kind == "permanent" and "unknown field" in out.error


def test_rate_limit_retries_after_the_header():
    out = send(429, {"error": {"code": 429, "message": "Too Many Requests"}},
               headers={"Retry-After": "3"}).outcomes["m-1"]
    assert (out.kind, out.retry_after) == ("retryable", 3.0)


# --- the shared harness (tests/support/connectors.py) and Reddit's own error bodies -----------

import pytest  # noqa: E402

from support.connectors import (  # noqa: E402
    ERROR_BODY_FIELDS,
    ConnectorHarness,
    Platform,
    check_error_body,
    error_body_ids,
)

REDDIT = Platform(
    name="reddit",
    settings={"account_id": "t2_acct1", "access_token": "reddit-secret-token"},
    api_url="https://ads-api.reddit.com/api/v2.0/conversions/events/t2_acct1",
    success=(200, {"message": "Successfully processed 1 conversion events."}),
    max_event_age=timedelta(days=7),
)


class TestRedditHarness(ConnectorHarness):
    platform = REDDIT


ERROR_BODIES = [
    (400, {"error": {"code": 400, "message": "invalid action_source: web"}}, "permanent",
     "HTTP 400"),
    (200, {"error": {"code": 400, "message": "JSON error unknown field"}}, "permanent",
     "HTTP 200"),
    (503, {"error": {"code": 503, "message": "Service Unavailable"}}, "retryable", "HTTP 503"),
]


@pytest.mark.parametrize(ERROR_BODY_FIELDS, ERROR_BODIES, ids=error_body_ids(ERROR_BODIES))
def test_error_body(status, body, kind, code):
    check_error_body(REDDIT, status, body, kind, code)


# --- what Reddit says it did: counts, and the invalid events it names ----------------------

def send_many(status, body, n=3):
    now = datetime.now(UTC)
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, URL, status=status, json=body)
        return conn().send([ev(message_id=f"m{i}", event_time=now) for i in range(n)])


def test_success_message_gives_the_count():
    res = send_many(200, {"message": "Successfully processed 3 conversion events."})
    ack = res.exchanges[0].acknowledgement
    assert (ack.accepted, ack.rejected, ack.reasons) == (3, 0, [])


def test_invalid_events_are_refused_and_the_rest_go_again():
    body = {"message": "There were 1 invalid conversion events. None were processed.",
            "invalid_events": [{"error_message": "event_type with custom_event_name must be "
                                                 "a Custom event: Purchase",
                                "event": {"event_metadata": {"conversion_id": "m1"}}}]}
    res = send_many(400, body)
    assert (res.outcomes["m1"].kind, res.outcomes["m1"].code) == ("permanent", "invalid_event")
    assert "must be a Custom event" in res.outcomes["m1"].error
    assert {res.outcomes[m].kind for m in ("m0", "m2")} == {"retryable"}
    assert res.outcomes["m0"].code == "rejected_with_batch"
    ack = res.exchanges[0].acknowledgement
    assert (ack.accepted, ack.rejected) == (0, 1)
    assert ack.reasons == ["event_type with custom_event_name must be a Custom event: Purchase"]


def test_invalid_events_that_cannot_be_placed_fail_the_batch():
    body = {"message": "There were 1 invalid conversion events. None were processed.",
            "invalid_events": [{"error_message": "bad", "event": {}}]}
    res = send_many(400, body, n=2)
    assert {(o.kind, o.code) for o in res.outcomes.values()} == {("permanent", "invalid_events")}
