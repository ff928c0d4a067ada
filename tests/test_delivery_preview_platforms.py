"""`preview` for the connectors of issue #16 (Snapchat, Reddit, Pinterest, LinkedIn, Microsoft
Advertising, X): the exact request each would receive for a stored event, secrets masked, and
the reasons one would be skipped (unmapped, too old, no match key). SQLite app; any request
that went out would fail the test."""

import json
from datetime import UTC, datetime, timedelta

import pytest
import responses

from sst import create_app, migrate
from sst.delivery.preview import UNMAPPED, preview
from sst.extensions import db
from support.apps import SERVER_KEY, base_config

BROWSER_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/131.0.0.0 Safari/537.36")
DESTINATIONS = [
    {"name": "snapchat", "connector": "snapchat", "pixel_id": "SNAPPIX",
     "access_token": "snap-secret-value", "events": {"Order Completed": "PURCHASE"}},
    {"name": "reddit", "connector": "reddit", "account_id": "t2_acct",
     "access_token": "reddit-secret-value", "events": {"Order Completed": "Purchase"}},
    {"name": "pinterest", "connector": "pinterest", "ad_account_id": "549755885175",
     "access_token": "pin-secret-value", "events": {"Order Completed": "checkout"}},
    {"name": "linkedin", "connector": "linkedin", "access_token": "li-secret-value",
     "events": {"Order Completed": "104012"}},
    {"name": "microsoft", "connector": "microsoft_ads", "tag_id": "343000123",
     "access_token": "ms-secret-value", "events": {"Order Completed": "purchase"}},
    {"name": "x", "connector": "x_ads", "pixel_id": "o8z6j", "consumer_key": "x-ck-value",
     "consumer_secret": "x-cs-value", "access_token": "x-at-value",
     "access_token_secret": "x-ats-value", "events": {"Order Completed": "tw-o8z6j-o87ne"}},
    {"name": "linkedin-unmapped", "connector": "linkedin", "access_token": "li-secret-value",
     "events": {"Signed Up": "104013"}},
]
SECRETS = ["snap-secret-value", "reddit-secret-value", "pin-secret-value", "li-secret-value",
           "ms-secret-value", "x-ck-value", "x-cs-value", "x-at-value", "x-ats-value"]
CLICKS = "ScCid=sc-1&rdt_cid=rd-1&epik=ep-1&li_fat_id=li-1&msclkid=ms-1&twclid=tw-1"


@pytest.fixture
def app(tmp_path):
    app = create_app(base_config(DATABASE_URL=f"sqlite:///{tmp_path / 'sst.sqlite'}",
                                 DESTINATIONS=DESTINATIONS))
    with app.app_context():
        migrate.upgrade()
    yield app
    with app.app_context():
        db.engine.dispose()


def send(app, message_id, *, age=timedelta(minutes=5), email="Jane@Example.com"):
    when = datetime.now(UTC) - age
    r = app.test_client().post("/v1/track", auth=(SERVER_KEY, ""), json={
        "event": "Order Completed", "userId": "user-7", "anonymousId": "anon-7",
        "messageId": message_id,
        "timestamp": when.isoformat(),
        "context": {"userAgent": BROWSER_UA, "ip": "203.0.113.7",
                    "page": {"url": f"https://www.example.com/buy?{CLICKS}"},
                    "traits": {"email": email} if email else {}},
        "properties": {"order_id": "o-1", "total": 42.5, "currency": "EUR"}})
    assert r.status_code == 200, r.data


def previews(app, message_id, destination=None):
    with app.app_context(), responses.RequestsMock() as mock:  # any request out fails
        found = preview(app.extensions["sst"], message_id, destination)
        assert len(mock.calls) == 0
    return {p.destination: p for p in found}


def test_each_connector_shows_its_request_with_secrets_masked(app):
    send(app, "m-ok")
    found = previews(app, "m-ok")
    for name in ("snapchat", "reddit", "pinterest", "linkedin", "microsoft", "x"):
        p = found[name]
        assert p.skip_reason is None, (name, p.skip_reason)
        [req] = p.requests
        blob = json.dumps(req)
        assert not [s for s in SECRETS if s in blob], name
        assert "m-ok" in req["body"], name  # each platform's dedup id is the message id
    body = {name: json.loads(found[name].requests[0]["body"]) for name in found
            if found[name].requests}
    assert body["snapchat"]["data"][0]["user_data"]["sc_click_id"] == "sc-1"
    assert body["reddit"]["events"][0]["click_id"] == "rd-1"
    assert body["pinterest"]["data"][0]["user_data"]["click_id"] == "ep-1"
    assert {"idType": "LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID", "idValue": "li-1"} in \
        body["linkedin"]["elements"][0]["user"]["userIds"]
    assert body["microsoft"]["data"][0]["userData"]["msclkid"] == "ms-1"
    assert body["x"]["conversions"][0]["identifiers"][0]["twclid"] == "tw-1"
    assert found["snapchat"].requests[0]["url"].endswith("access_token=***")
    assert found["linkedin"].requests[0]["headers"]["Authorization"] == "Bearer ***"
    assert found["x"].requests[0]["headers"]["Authorization"] == "OAuth ***"
    assert found["linkedin-unmapped"].skip_reason == UNMAPPED
    assert found["linkedin-unmapped"].requests == []


def test_skip_reasons_too_old_and_no_match_key(app):
    send(app, "m-old", age=timedelta(days=10))
    old = previews(app, "m-old")
    assert old["microsoft"].skip_reason.startswith("event too old for microsoft_ads:")
    assert old["pinterest"].skip_reason.startswith("event too old for pinterest:")
    assert old["reddit"].skip_reason.startswith("event too old for reddit:")
    # Their limits are longer (Snap 37 days, LinkedIn 90) or unpublished (X).
    for name in ("snapchat", "linkedin", "x"):
        assert old[name].skip_reason is None and old[name].requests, name

    send(app, "m-far", age=timedelta(days=100))
    far = previews(app, "m-far")
    assert far["linkedin"].skip_reason.startswith("event too old for linkedin:")
    assert far["snapchat"].skip_reason.startswith("event too old for snapchat:")
