"""`preview`: the exact request each destination would receive for a stored event (secrets
masked) and why one would skip it, with nothing sent. SQLite app; no server answers, so any
request that went out would fail the test."""

import json
from datetime import UTC, datetime, timedelta

import pytest
import responses

from sst import create_app, migrate
from sst.delivery.preview import UNMAPPED, UnknownDestination, preview
from sst.extensions import db
from support.apps import SERVER_KEY, base_config

BROWSER_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/131.0.0.0 Safari/537.36")
PURCHASE = {"Order Completed": "Purchase"}
GOOGLE = {"client_id": "cid.apps.example", "client_secret": "gcs-secret-value",
          "refresh_token": "1//refresh-secret-value", "token_url": "https://oauth.test/token"}
DESTINATIONS = [
    {"name": "meta", "connector": "meta", "pixel_id": "1234567890",
     "access_token": "EAAB-meta-secret-value", "events": PURCHASE,
     "consent_categories": ["Advertising"]},
    {"name": "tiktok", "connector": "tiktok", "pixel_code": "CPIXEL",
     "access_token": "tt-secret-value", "events": {"Order Completed": "CompletePayment"}},
    {"name": "ga4", "connector": "ga4", "measurement_id": "G-TEST1",
     "api_secret": "ga4-secret-value", "events": {"Order Completed": "purchase"}},
    {"name": "gads", "connector": "google_ads", "customer_id": "123-456-7890", **GOOGLE,
     "events": {"Order Completed": "987654"}},
    {"name": "gads-legacy", "connector": "google_ads_legacy", "customer_id": "1234567890",
     "developer_token": "dev-token-secret-value", **GOOGLE,
     "events": {"Order Completed": "987654"}},
    {"name": "hook", "connector": "webhook", "url": "https://hooks.test/sst",
     "secret": "whsec-secret-value", "events": {"*": "*"}},
    {"name": "pages-only", "connector": "webhook", "url": "https://hooks.test/pages",
     "secret": "whsec-secret-value", "events": {"$page": "*"}},
]
SECRETS = ["EAAB-meta-secret-value", "tt-secret-value", "ga4-secret-value", "gcs-secret-value",
           "1//refresh-secret-value", "dev-token-secret-value", "whsec-secret-value"]


@pytest.fixture
def app(tmp_path):
    app = create_app(base_config(DATABASE_URL=f"sqlite:///{tmp_path / 'sst.sqlite'}",
                                 DESTINATIONS=DESTINATIONS))
    with app.app_context():
        migrate.upgrade()
    yield app
    with app.app_context():
        db.engine.dispose()


def send(app, message_id, *, age=timedelta(minutes=5), user_agent=BROWSER_UA, consent=True):
    when = datetime.now(UTC) - age
    context = {"userAgent": user_agent, "ip": "203.0.113.7",
               "page": {"url": "https://www.example.com/buy?gclid=Cj0-click&fbclid=fb-click"},
               "consent": {"categoryPreferences": {"Advertising": consent}}}
    r = app.test_client().post("/v1/track", auth=(SERVER_KEY, ""), json={
        "event": "Order Completed", "userId": "user-7", "anonymousId": "anon-7",
        "messageId": message_id,
        "timestamp": when.isoformat(), "context": context,
        "traits": {"email": "Jane@Example.com"},
        "properties": {"order_id": "o-1", "total": 42.5, "currency": "EUR"}})
    assert r.status_code == 200, r.data


def previews(app, message_id, destination=None):
    with app.app_context(), responses.RequestsMock() as mock:  # any request out fails
        found = preview(app.extensions["sst"], message_id, destination)
        assert len(mock.calls) == 0
    return {p.destination: p for p in found}


def test_every_connector_shows_its_request_with_secrets_masked(app):
    send(app, "m-ok")
    found = previews(app, "m-ok")

    for name in ("meta", "tiktok", "ga4", "gads", "gads-legacy", "hook"):
        p = found[name]
        assert p.skip_reason is None and p.delivery == {"state": "pending", "reason": None}
        [req] = p.requests
        blob = json.dumps(req)
        assert not [s for s in SECRETS if s in blob], name
    assert json.loads(found["meta"].requests[0]["body"])["data"][0]["event_id"] == "m-ok"
    assert found["meta"].requests[0]["url"].endswith("access_token=***")
    assert json.loads(found["hook"].requests[0]["body"])["messageId"] == "m-ok"
    assert json.loads(found["tiktok"].requests[0]["body"])["data"][0]["event_id"] == "m-ok"
    assert "o-1" in found["gads"].requests[0]["body"]  # transactionId: the order id
    assert found["pages-only"].skip_reason == UNMAPPED and found["pages-only"].requests == []


def test_skip_reasons_consent_bot_too_old(app):
    send(app, "m-denied", consent=False)
    send(app, "m-bot", user_agent="Mozilla/5.0 (compatible; Googlebot/2.1; "
                                  "+http://www.google.com/bot.html)")
    send(app, "m-old", age=timedelta(days=10))

    assert previews(app, "m-denied", "meta")["meta"].skip_reason == "consent denied:Advertising"
    bot = previews(app, "m-bot", "tiktok")["tiktok"]
    assert bot.skip_reason and "bot" in bot.skip_reason and bot.requests == []
    old = previews(app, "m-old")
    assert old["meta"].skip_reason.startswith("event too old for meta:")
    assert old["ga4"].skip_reason.startswith("event too old for ga4:")
    assert old["hook"].skip_reason is None and old["hook"].requests


def test_unknown_destination_and_unknown_event(app):
    with app.app_context():
        with pytest.raises(UnknownDestination):
            preview(app.extensions["sst"], "m-x", "nope")
        assert preview(app.extensions["sst"], "never-stored") == []


def test_cli_prints_each_request_and_the_skip_reasons(app):
    from sst.cli import main as sst_cli

    send(app, "m-cli")
    runner = app.test_cli_runner()

    out = runner.invoke(sst_cli, ["preview", "--event", "m-cli"])
    assert out.exit_code == 0, out.output
    assert "meta (meta) <- m-cli from server as Purchase" in out.output
    assert "POST https://graph.facebook.com/" in out.output and "access_token=***" in out.output
    assert f"would skip: {UNMAPPED}" in out.output
    assert not [s for s in SECRETS if s in out.output]

    one = runner.invoke(sst_cli, ["preview", "--event", "m-cli", "--destination", "hook",
                                  "--json"])
    assert [p["destination"] for p in json.loads(one.output)] == ["hook"]
    unknown = runner.invoke(sst_cli, ["preview", "--event", "m-cli", "--destination", "x"])
    assert unknown.exit_code == 2 and "unknown destination 'x'" in unknown.output
    missing = runner.invoke(sst_cli, ["preview", "--event", "nope"])
    assert missing.exit_code == 1 and "no stored event has messageId 'nope'" in missing.output
