"""The /admin dashboard with Flask's test client: off unless configured, auth, pages."""

import base64

import pytest

from sst.extensions import db
from sst.ops import admin
from support import reports as fx

TOKEN = "admin-token-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
STATUS_SINCE = "2026-10-01"  # the status page's window reaches back to the data set


def with_admin(app, **section):
    if "admin" not in app.blueprints:  # the app may already register it
        app.register_blueprint(admin.bp)
    if section:
        app.config["ADMIN"] = section
    return app


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def admin_client(app):
    with_admin(app, token=TOKEN)
    with app.app_context():
        fx.load(db.engine)
    return app.test_client()


# --- off unless configured, and auth ---------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post"])
def test_off_without_a_token(app, method):
    client = with_admin(app).test_client()
    r = getattr(client, method)("/admin/", headers=BEARER)
    assert r.status_code == 404


def test_a_short_token_keeps_it_off(app):
    client = with_admin(app, token="short").test_client()
    assert client.get("/admin/", headers={"Authorization": "Bearer short"}).status_code == 404


def test_token_from_the_environment(app, monkeypatch):
    monkeypatch.setenv("SST_TEST_ADMIN_TOKEN", TOKEN)
    client = with_admin(app, token="env:SST_TEST_ADMIN_TOKEN").test_client()
    assert client.get("/admin/", headers=BEARER).status_code == 200


def test_missing_environment_variable_keeps_it_off(app, monkeypatch):
    monkeypatch.delenv("SST_TEST_ADMIN_TOKEN", raising=False)
    client = with_admin(app, token="env:SST_TEST_ADMIN_TOKEN").test_client()
    assert client.get("/admin/", headers=BEARER).status_code == 404


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-token-0123456789abc"},
    {"Authorization": f"Bearer {TOKEN}x"},
    basic("admin", "wrong"),
    basic("root", TOKEN),
    {"Authorization": f"Token {TOKEN}"},
])
@pytest.mark.parametrize("path", ["/admin/", "/admin/failures", "/admin/events?message_id=m-4",
                                  "/admin/reports", "/admin/reconciliation"])
def test_refused_without_the_right_credentials(admin_client, headers, path):
    r = admin_client.get(path, headers=headers)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith('Basic realm="sst admin"')
    assert b"Order Completed" not in r.data


@pytest.mark.parametrize("headers", [BEARER, basic("admin", TOKEN)])
def test_bearer_or_basic(admin_client, headers):
    assert admin_client.get("/admin/", headers=headers).status_code == 200


def test_configured_user_name(app):
    client = with_admin(app, token=TOKEN, user="ops").test_client()
    assert client.get("/admin/", headers=basic("ops", TOKEN)).status_code == 200
    assert client.get("/admin/", headers=basic("admin", TOKEN)).status_code == 401


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_read_only(admin_client, method):
    r = getattr(admin_client, method)("/admin/", headers=BEARER)
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, HEAD"


def test_security_headers(admin_client):
    r = admin_client.get("/admin/", headers=BEARER)
    assert r.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert "script-src" not in r.headers["Content-Security-Policy"]  # no script runs at all


# --- pages ----------------------------------------------------------------------------------


def test_status_page(admin_client):
    r = admin_client.get(f"/admin/?window={STATUS_SINCE}", headers=BEARER)
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    # meta: deliveries 1, 3, 5, 7, 8, 10, 11 (succeeded 5, failed 1, skipped 1); 6 requests.
    assert '<td class="n">5</td>' in page
    assert "Invalid parameter" in page  # meta's last error, from track 3's answer
    assert 'class="mark"' in page


def test_status_page_bad_window(admin_client):
    r = admin_client.get("/admin/?window=soon", headers=BEARER)
    assert r.status_code == 400
    assert "is not" in r.get_data(as_text=True)


def test_failures_show_masked_request_and_answer(admin_client):
    page = admin_client.get("/admin/failures?destination=meta", headers=BEARER) \
        .get_data(as_text=True)
    assert page.count("<details>") == 2  # tracks 2 (retryable) and 3 (permanent)
    assert "&#34;access_token&#34;: &#34;***&#34;" in page  # the body as recorded, masked
    assert "Invalid parameter" in page
    hook = admin_client.get("/admin/failures?destination=hook", headers=BEARER) \
        .get_data(as_text=True)
    assert "Timeout read timed out" in hook


def test_event_lookup(admin_client):
    r = admin_client.get("/admin/events?message_id=m-8", headers=BEARER)
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    assert "Order Completed" in page and "source web" in page
    deliveries = page.split('<table class="deliveries">')[1].split("</table>")[0]
    assert deliveries.count("<tr>") == 3  # header + meta (failed) + hook (succeeded)
    tracks = page.split('<table class="tracks">')[1].split("</table>")[0]
    assert tracks.count("<tr>") == 4  # header + tracks 2, 3 (meta) and 8 (hook)


def test_event_lookup_of_a_batch_request(admin_client):
    page = admin_client.get("/admin/events?message_id=m-16", headers=BEARER) \
        .get_data(as_text=True)
    tracks = page.split('<table class="tracks">')[1].split("</table>")[0]
    assert tracks.count("<tr>") == 2  # track 5 carried events 14 and 16; incoming_id is 14


def test_event_lookup_unknown(admin_client):
    r = admin_client.get("/admin/events?message_id=nope", headers=BEARER)
    assert r.status_code == 404
    assert "No event with messageId, userId or anonymousId nope" in r.get_data(as_text=True)


@pytest.mark.parametrize("query, message_ids", [
    ("a3", ["m-18", "m-9", "m-8", "m-7", "m-6"]),  # an anonymousId: its events, newest first
    ("p-1", ["m-17", "m-16"]),  # a userId
    ("m-8", ["m-8"]),
])
def test_event_lookup_by_user_or_anonymous_id(admin_client, query, message_ids):
    r = admin_client.get(f"/admin/events?q={query}", headers=BEARER)
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    shown = [part.split("&#34;")[0] for part in page.split("&#34;messageId&#34;: &#34;")[1:]]
    assert shown == message_ids


def test_failures_link_to_their_event(admin_client):
    page = admin_client.get("/admin/failures?destination=meta", headers=BEARER) \
        .get_data(as_text=True)
    assert 'event <a href="/admin/events?q=m-8">m-8</a>' in page


def test_status_counts_requests_apart_from_deliveries(admin_client):
    page = admin_client.get(f"/admin/?window={STATUS_SINCE}", headers=BEARER) \
        .get_data(as_text=True)
    assert "deliveries (one per event and destination)" in page
    assert "HTTP requests made" in page
    assert 'latest failure: <a href="/admin/events?q=m-8">m-8</a>' in page


def test_event_lookup_escapes(admin_client):
    r = admin_client.get("/admin/events?message_id=<script>x</script>", headers=BEARER)
    assert b"<script>" not in r.data


def test_reports_page(admin_client):
    r = admin_client.get("/admin/reports?since=2026-11-01&until=2026-11-04", headers=BEARER)
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    assert page.count('<svg class="chart"') == 7
    assert "<b>5</b> conversions: 3 verified, 2 anonymous" in page
    assert "3 (60.0 %) credited" in page


def test_reports_page_one_source(admin_client):
    page = admin_client.get("/admin/reports?since=2026-11-01&until=2026-11-04&source=web",
                            headers=BEARER).get_data(as_text=True)
    assert "<b>4</b> conversions" in page


def test_reports_page_bad_date(admin_client):
    r = admin_client.get("/admin/reports?since=last+week", headers=BEARER)
    assert r.status_code == 400
    assert "since: " in r.get_data(as_text=True)


def test_reports_page_empty_window(admin_client):
    r = admin_client.get("/admin/reports?since=2020-01-01&until=2020-01-02", headers=BEARER)
    assert r.status_code == 200
    assert "No data in this window." in r.get_data(as_text=True)


def test_reconciliation_page_shows_each_platforms_answer_escaped(admin_client, app):
    from sqlalchemy import insert

    from sst.clock import to_db, utcnow
    from sst.models import Exchange

    row = {"connector": "meta", "attempt": 1, "outcome": "success", "method": "POST",
           "url": "https://graph.test/", "status": 200, "created_at": to_db(utcnow())}
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(insert(Exchange.__table__), [
            {**row, "destination": "meta", "events_sent": 4, "events_accepted": 3,
             "events_rejected": 0, "platform_reasons": ["<script>alert(1)</script>"]},
            {**row, "destination": "ga4", "events_sent": 2, "events_accepted": None,
             "events_rejected": 0, "platform_reasons": None}])

    page = admin_client.get("/admin/reconciliation?since=1d", headers=BEARER)

    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<td>meta</td>" in html and "75.0%" in html
    assert "<td>ga4</td>" in html and "<td>2</td><td>0</td><td>0</td>" in html.replace(
        "\n      ", "")
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
