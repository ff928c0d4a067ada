"""X Conversions API: exact payload, twclid from the click or the pixel's cookie, hashed email
and phone, conversion_id for de-duplication, the OAuth 1.0a signature checked by an
independent RFC 5849 implementation (itself checked against X's published example), and X's
error bodies."""

import base64
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote

import pytest
import requests
import responses

from sst import connectors
from sst.connectors.base import ClickId, EventData

T = datetime(2026, 3, 1, 12, 0, 5, 900000, tzinfo=UTC)
URL = "https://ads-api.x.com/12/measurement/conversions/o8z6j"
TWCLID = "23opevjt88psuo13lu8d020qkn"  # X's example click id
KEYS = {"consumer_key": "xvz1evFS4wEEPTGEFPHBog",
        "consumer_secret": "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
        "access_token": "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
        "access_token_secret": "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE"}


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def _pe(s):
    return quote(s, safe="~")


def rfc5849_signature(method, url, params, consumer_secret, token_secret):
    """HMAC-SHA1 signature written from RFC 5849 section 3.4, independent of oauthlib."""
    pairs = sorted((_pe(k), _pe(v)) for k, v in params)
    base = "&".join([method.upper(), _pe(url), _pe("&".join(f"{k}={v}" for k, v in pairs))])
    key = f"{_pe(consumer_secret)}&{_pe(token_secret)}".encode()
    return base64.b64encode(hmac.new(key, base.encode(), hashlib.sha1).digest()).decode()


def oauth_params(header):
    assert header.startswith("OAuth ")
    return {k: unquote(v) for k, v in re.findall(r'(\w+)="([^"]*)"', header)}


def conn(**extra):
    raw = {"name": "x", "connector": "x_ads", "pixel_id": "o8z6j", **KEYS, **extra}
    return connectors.get("x_ads")(connectors.validate_destination(raw), requests.Session())


def ev(**kw):
    base = dict(
        message_id="m-1", type="track", event="Order Completed",
        platform_event="tw-o8z6j-o87ne", event_time=T,
        properties={"order_id": "o-9", "revenue": 100, "currency": "jpy", "query": "shoes",
                    "products": [{"product_id": "p1", "name": "Shoe", "price": 50,
                                  "quantity": 2}]},
        user_id="U-1", ip="203.0.113.7", user_agent="Mozilla/5.0",
        page_url="https://shop.example/thanks",
        click_ids={"twclid": ClickId(TWCLID, T - timedelta(days=1))},
        cookies={"_twclid": '{"twclid":"older-cookie-click","twclid_ts":1700000000}'},
        phone="+1 (650) 555-1234", email=" Jane@Example.com",
    )
    base.update(kw)
    return EventData(**base)


def test_signature_helper_reproduces_xs_published_example():
    # X's "Creating a signature" page: these inputs sign to hCtSmYh+iHYCEqBWrE7C7hYmtUk=.
    params = [("include_entities", "true"),
              ("status", "Hello Ladies + Gentlemen, a signed OAuth request!"),
              ("oauth_consumer_key", KEYS["consumer_key"]),
              ("oauth_nonce", "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg"),
              ("oauth_signature_method", "HMAC-SHA1"), ("oauth_timestamp", "1318622958"),
              ("oauth_token", KEYS["access_token"]), ("oauth_version", "1.0")]
    assert rfc5849_signature("POST", "https://api.twitter.com/1.1/statuses/update.json",
                             params, KEYS["consumer_secret"], KEYS["access_token_secret"]) \
        == "hCtSmYh+iHYCEqBWrE7C7hYmtUk="


def test_exact_payload():
    (req,) = conn().build_requests([ev()])
    assert req.url == URL
    assert req.headers == {"Content-Type": "application/json",
                           "Authorization": "OAuth (signed when sent)"}  # signed when sent
    assert json.loads(req.body) == {"conversions": [{
        "conversion_time": "2026-03-01T12:00:05.900Z",
        "event_id": "tw-o8z6j-o87ne",
        "identifiers": [{
            "twclid": TWCLID,
            "hashed_email": sha("jane@example.com"),
            "hashed_phone_number": sha("+16505551234"),
            "ip_address": "203.0.113.7",
            "user_agent": "Mozilla/5.0",
        }],
        "conversion_id": "m-1",
        "value": 100.0, "price_currency": "JPY",
        "number_items": 2,
        "contents": [{"content_id": "p1", "content_name": "Shoe", "content_price": 50.0,
                      "num_items": 2}],
        "search_string": "shoes",
    }]}


def test_authorization_header_is_a_valid_oauth1_signature():
    c = conn()
    (req,) = c.build_requests([ev()])
    params = oauth_params(c.authorization(req, nonce="fixednonce", timestamp="1772366405"))
    assert {k: params[k] for k in ("oauth_consumer_key", "oauth_token", "oauth_nonce",
                                   "oauth_timestamp", "oauth_signature_method",
                                   "oauth_version")} == {
        "oauth_consumer_key": KEYS["consumer_key"], "oauth_token": KEYS["access_token"],
        "oauth_nonce": "fixednonce", "oauth_timestamp": "1772366405",
        "oauth_signature_method": "HMAC-SHA1", "oauth_version": "1.0"}
    assert "oauth_body_hash" not in params  # the JSON body is not signed, as X's SDK does
    signed = [(k, v) for k, v in params.items() if k != "oauth_signature"]
    assert params["oauth_signature"] == rfc5849_signature(
        "POST", URL, signed, KEYS["consumer_secret"], KEYS["access_token_secret"])


def test_each_send_is_signed_afresh_and_the_header_is_masked():
    c = conn()
    now = datetime.now(UTC)
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, URL, json={"data": {"conversions_processed": 1,
                                                     "debug_id": "dbg-1"}})
        c.send([ev(event_time=now)])
        c.send([ev(event_time=now)])
        sent = [call.request.headers["Authorization"] for call in rsps.calls]
    first, second = (oauth_params(h) for h in sent)
    assert first["oauth_nonce"] != second["oauth_nonce"]
    for params in (first, second):
        signed = [(k, v) for k, v in params.items() if k != "oauth_signature"]
        assert params["oauth_signature"] == rfc5849_signature(
            "POST", URL, signed, KEYS["consumer_secret"], KEYS["access_token_secret"])


def test_signature_covers_the_base_url_override():
    c = conn(base_url="http://stub.local:8080")
    (req,) = c.build_requests([ev()])
    assert req.url == "http://stub.local:8080/12/measurement/conversions/o8z6j"
    params = oauth_params(c.authorization(req))
    signed = [(k, v) for k, v in params.items() if k != "oauth_signature"]
    assert params["oauth_signature"] == rfc5849_signature(
        "POST", req.url, signed, KEYS["consumer_secret"], KEYS["access_token_secret"])


def test_twclid_from_the_pixel_cookie_plain_or_url_encoded():
    for cookie in ('{"twclid":"cookie-click"}', "%7B%22twclid%22%3A%22cookie-click%22%7D"):
        (req,) = conn().build_requests([ev(click_ids={}, cookies={"_twclid": cookie})])
        ident = json.loads(req.body)["conversions"][0]["identifiers"][0]
        assert ident["twclid"] == "cookie-click"
    (req,) = conn().build_requests([ev(click_ids={}, cookies={"_twclid": "garbage"})])
    assert "twclid" not in json.loads(req.body)["conversions"][0]["identifiers"][0]


def test_event_must_map_to_an_x_event_id():
    assert conn().skip_reason(ev(platform_event="o87ne")) is None
    assert "not an X event id" in conn().skip_reason(ev(platform_event="Purchase"))


def test_item_counts_only_as_positive_integers():
    (req,) = conn().build_requests([ev(properties={"products": [
        {"product_id": "p1", "quantity": 1.5}]})])
    conversion = json.loads(req.body)["conversions"][0]
    assert "number_items" not in conversion
    assert conversion["contents"] == [{"content_id": "p1"}]


def test_ip_and_user_agent_alone_do_not_match():
    assert "no twclid" in conn().skip_reason(ev(click_ids={}, cookies={}, email=None,
                                                phone=None))
    assert conn().skip_reason(ev(click_ids={}, cookies={}, email=None)) is None


def test_batches_of_500_and_api_version():
    reqs = conn(api_version="11").build_requests([ev(message_id=f"m{i}") for i in range(501)])
    assert [len(r.message_ids) for r in reqs] == [500, 1]
    assert reqs[0].url == "https://ads-api.x.com/11/measurement/conversions/o8z6j"


def send(status, body, n=1, **kw):
    now = datetime.now(UTC)
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, URL, status=status, json=body, **kw)
        return conn().send([ev(message_id=f"m{i}", event_time=now) for i in range(n)])


def test_success_counts_and_debug_id():
    res = send(200, {"data": {"conversions_processed": 2, "debug_id": "dbg-9"},
                     "request": {"params": {}}}, n=2)
    assert {o.kind for o in res.outcomes.values()} == {"success"}
    ack = res.exchanges[0].acknowledgement
    assert (ack.accepted, ack.request_id) == (2, "dbg-9")
    assert res.exchanges[0].request_headers["Authorization"] == "OAuth ***"


def test_one_bad_conversion_fails_the_request():
    body = {"errors": [{"code": "INVALID_PARAMETER",
                        "message": "Hashed_email is not a valid SHA-256 hash"}],
            "request": {"params": {}}}
    res = send(400, body, n=2)
    assert {(o.kind, o.code) for o in res.outcomes.values()} == {
        ("permanent", "INVALID_PARAMETER")}
    assert "SHA-256" in res.outcomes["m0"].error
    assert res.exchanges[0].acknowledgement.reasons == [
        "Hashed_email is not a valid SHA-256 hash"]


def test_rate_limit_waits_for_the_reset_header():
    reset = int(datetime.now(UTC).timestamp()) + 120
    out = send(429, {"errors": [{"code": "TOO_MANY_REQUESTS", "message": "Rate limit"}]},
               headers={"x-rate-limit-reset": str(reset)}).outcomes["m0"]
    assert (out.kind, out.code) == ("retryable", "TOO_MANY_REQUESTS")
    assert 60 < out.retry_after <= 120


# --- the shared harness (tests/support/connectors.py) and X's own error bodies -------------

from support.connectors import (  # noqa: E402
    ERROR_BODY_FIELDS,
    ConnectorHarness,
    Platform,
    check_error_body,
    error_body_ids,
)

X_ADS = Platform(
    name="x_ads",
    settings={"pixel_id": "o8z6j", "consumer_key": "x-consumer/+key",
              "consumer_secret": "x-consumer/+secret==", "access_token": "x-token/+value",
              "access_token_secret": "x-token/+secret=="},
    api_url="https://ads-api.x.com/12/measurement/conversions/o8z6j",
    success=(200, {"data": {"conversions_processed": 1, "debug_id": "dbg-1"}}),
    max_event_age=None,
    platform_event="tw-o8z6j-o87ne",
)


class TestXAdsHarness(ConnectorHarness):
    platform = X_ADS


ERROR_BODIES = [
    (400, {"errors": [{"code": "INVALID_PARAMETER",
                       "message": "At least one user identifier must be provided"}]},
     "permanent", "INVALID_PARAMETER"),
    (400, {"errors": [{"code": "INVALID_PARAMETER", "message": "Conversion count limit is 500"}]},
     "permanent", "INVALID_PARAMETER"),
    (401, {"errors": [{"code": "UNAUTHORIZED_ACCESS",
                       "message": "This request is not properly authenticated"}]},
     "permanent", "UNAUTHORIZED_ACCESS"),
    (503, {"errors": [{"code": "SERVICE_UNAVAILABLE", "message": "Service unavailable"}]},
     "retryable", "SERVICE_UNAVAILABLE"),
    (200, {"errors": [{"code": "OVER_CAPACITY", "message": "Over capacity"}]},
     "retryable", "OVER_CAPACITY"),
]


@pytest.mark.parametrize(ERROR_BODY_FIELDS, ERROR_BODIES, ids=error_body_ids(ERROR_BODIES))
def test_error_body(status, body, kind, code):
    check_error_body(X_ADS, status, body, kind, code)
