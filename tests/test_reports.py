"""Reports against the hand-made data set of support/reports.py, on MariaDB and on SQLite.

Every expected figure below is worked out by hand from that module's tables; the comments
say how.
"""

import csv
import io
import json

import pytest

from sst import reports
from sst.cli.reports import report
from sst.extensions import db
from sst.reports import Window
from support import reports as fx
from support.apps import make_mysql_app, truncate_all

ALL = Window(fx.SINCE, fx.UNTIL)


@pytest.fixture(params=["mariadb", "sqlite"])
def engine(request):
    if request.param == "mariadb":
        app = make_mysql_app(request.getfixturevalue("mysql_url"))
        truncate_all(app)
    else:
        app = request.getfixturevalue("app")
    with app.app_context():
        fx.load(db.engine)
        yield db.engine


@pytest.fixture
def mysql_app(mysql_url):
    app = make_mysql_app(mysql_url, CONVERSION_EVENTS=["Order Completed"])
    truncate_all(app)
    with app.app_context():
        fx.load(db.engine)
    return app


# --- events by day --------------------------------------------------------------------------


def test_events_by_day(engine):
    with engine.connect() as conn:
        rows = reports.events_by_day(conn, ALL)
    # Nov 1: pages 1, 2, 5; Add To Cart 3; Order Completed 4.
    # Nov 2: pages 6, 7, 11 and the bot's 13; Order Completed 8, 10 and the bot's 12; Signed Up 9.
    # Nov 3: page 15; Order Completed 14, 16; identify 17. Event 18 (Oct 30) is outside.
    assert rows == [
        {"day": "2026-11-01", "name": "$page", "events": 3, "bots": 0},
        {"day": "2026-11-01", "name": "Add To Cart", "events": 1, "bots": 0},
        {"day": "2026-11-01", "name": "Order Completed", "events": 1, "bots": 0},
        {"day": "2026-11-02", "name": "$page", "events": 4, "bots": 1},
        {"day": "2026-11-02", "name": "Order Completed", "events": 3, "bots": 1},
        {"day": "2026-11-02", "name": "Signed Up", "events": 1, "bots": 0},
        {"day": "2026-11-03", "name": "$identify", "events": 1, "bots": 0},
        {"day": "2026-11-03", "name": "$page", "events": 1, "bots": 0},
        {"day": "2026-11-03", "name": "Order Completed", "events": 2, "bots": 0},
    ]


def test_events_by_day_one_source_and_no_window(engine):
    with engine.connect() as conn:
        server = reports.events_by_day(conn, Window(source="server"))
        everything = reports.events_by_day(conn, Window())
    assert server == [{"day": "2026-11-03", "name": "$identify", "events": 1, "bots": 0},
                      {"day": "2026-11-03", "name": "Order Completed", "events": 1, "bots": 0}]
    assert everything[0] == {"day": "2026-10-30", "name": "Order Completed", "events": 1,
                             "bots": 0}
    assert sum(r["events"] for r in everything) == len(fx.EVENTS)


# --- deliveries -----------------------------------------------------------------------------


def test_deliveries_by_destination_and_outcome(engine):
    with engine.connect() as conn:
        rows = {r["destination"]: r for r in reports.deliveries(conn, ALL)}
    # Deliveries of events in the window (delivery 11, of event 18, is not):
    # meta 1, 5, 8, 10 succeeded, 3 failed, 7 skipped; hook 2, 4 succeeded, 6 pending, 9 queued.
    # Requests made in the window: meta tracks 1-5 (6 is Oct 30), hook 7-9.
    # meta durations sorted 50, 100, 200, 300, 500 (n=5): nearest rank round(p*(n-1))+1
    # -> p50 rank 3 = 200, p95 rank 5 = 500, p99 rank 5 = 500.
    # hook durations 10, 30 (track 9 timed out: no duration), n=2: every rank is 2 -> 30.
    assert rows["meta"] == {
        "destination": "meta", "deliveries": 6,
        "states": {"succeeded": 4, "failed": 1, "skipped": 1},
        "succeeded": 4, "failed": 1, "skipped": 1, "waiting": 0,
        "requests": 5, "outcomes": {"success": 3, "retryable": 1, "permanent": 1},
        "p50_ms": 200.0, "p95_ms": 500.0, "p99_ms": 500.0}
    assert rows["hook"] == {
        "destination": "hook", "deliveries": 4,
        "states": {"succeeded": 2, "pending": 1, "queued": 1},
        "succeeded": 2, "failed": 0, "skipped": 0, "waiting": 2,
        "requests": 3, "outcomes": {"success": 2, "retryable": 1},
        "p50_ms": 30.0, "p95_ms": 30.0, "p99_ms": 30.0}


def test_deliveries_of_one_source(engine):
    with engine.connect() as conn:
        rows = reports.deliveries(conn, Window(fx.SINCE, fx.UNTIL, "server"))
    # Only event 16 is from "server": delivery 10 (meta). Requests are not split by source.
    assert rows == [{
        "destination": "meta", "deliveries": 1, "states": {"succeeded": 1},
        "succeeded": 1, "failed": 0, "skipped": 0, "waiting": 0,
        "requests": None, "outcomes": None, "p50_ms": None, "p95_ms": None, "p99_ms": None}]


def test_deliveries_of_the_web_source(engine):
    with engine.connect() as conn:
        rows = reports.deliveries(conn, Window(fx.SINCE, fx.UNTIL, "web"))
    # All of the window's deliveries but 10 (event 16, server).
    assert [(r["destination"], r["states"]) for r in rows] == [
        ("hook", {"succeeded": 2, "pending": 1, "queued": 1}),
        ("meta", {"succeeded": 3, "failed": 1, "skipped": 1})]


# --- attribution ----------------------------------------------------------------------------


def test_attribution(engine):
    with engine.connect() as conn:
        out = reports.attribution(conn, ALL)
    # Conversions: C1 = 4 (a2), C2 = 8 (a3), C3 = 10 (a4, userId p-2), C4 = 14 (a6),
    # C5 = 16 (server, no device, userId p-1). Not: 12 (bot), 18 (Oct 30), 9 (Signed Up).
    assert out["conversions"] == 5
    # Verified: C1 (a2 linked to p-1), C3 (userId p-2), C5 (userId p-1); a3's userId link
    # names no Person.
    assert (out["verified"], out["anonymous"]) == (3, 2)
    assert out["by_event"] == [{"event": "Order Completed", "conversions": 5}]
    # First touch: C1 gclid (google); C2 ttclid 08:00 (tiktok) before gclid 09:00;
    # C3 and C5 no device click; C4's fbclid came after the purchase.
    assert out["first_touch"] == [{"platform": None, "conversions": 3},
                                  {"platform": "google", "conversions": 1},
                                  {"platform": "tiktok", "conversions": 1}]
    # Last touch: C1 google, C2 gclid 09:00 (google), the rest none.
    assert out["last_touch"] == [{"platform": None, "conversions": 3},
                                 {"platform": "google", "conversions": 2}]
    # UTM touches of the converting device at or before the conversion: C1 (a2, 12:00)
    # google/brand both; C2 (a3, 10:00) first tiktok/spring 08:00, last google/brand 09:00,
    # not newsletter/dec at 11:00 (after it); C4 (a6, 09:00) none: facebook/retarget came at
    # 10:00, after the purchase; C3 (a4) none; C5 no device. a1's facebook/bf is p-1's phone,
    # not the converting device.
    assert out["utm_first"] == [
        {"utm_source": None, "utm_campaign": None, "conversions": 3},
        {"utm_source": "google", "utm_campaign": "brand", "conversions": 1},
        {"utm_source": "tiktok", "utm_campaign": "spring", "conversions": 1}]
    assert out["utm_last"] == [
        {"utm_source": None, "utm_campaign": None, "conversions": 3},
        {"utm_source": "google", "utm_campaign": "brand", "conversions": 2}]
    # Across devices: C1 meta via a1 (a2 has only google); C3 meta via a5 (a5's msclkid is
    # later than the purchase); C5 meta via a1 and google via a2. 3 of 5 conversions.
    assert out["cross_device"] == {
        "conversions": 3, "share": 0.6,
        "by_platform": [{"platform": "meta", "conversions": 3},
                        {"platform": "google", "conversions": 1}]}


def test_attribution_one_source(engine):
    with engine.connect() as conn:
        out = reports.attribution(conn, Window(fx.SINCE, fx.UNTIL, "web"))
    # C1-C4: verified C1 and C3; cross-device C1 and C3 (meta).
    assert (out["conversions"], out["verified"], out["anonymous"]) == (4, 2, 2)
    assert out["last_touch"] == [{"platform": "google", "conversions": 2},
                                 {"platform": None, "conversions": 2}]
    assert out["cross_device"] == {"conversions": 2, "share": 0.5,
                                   "by_platform": [{"platform": "meta", "conversions": 2}]}


def test_attribution_configured_conversion_events(engine):
    with engine.connect() as conn:
        out = reports.attribution(conn, ALL, ["Order Completed", "Signed Up"])
    # Signed Up (9, a3 at 10:30): first touch tiktok, last google, anonymous.
    assert out["conversions"] == 6
    assert out["by_event"] == [{"event": "Order Completed", "conversions": 5},
                               {"event": "Signed Up", "conversions": 1}]
    assert {"platform": "tiktok", "conversions": 2} in out["first_touch"]
    assert out["cross_device"]["conversions"] == 3
    assert out["cross_device"]["share"] == 0.5


def test_attribution_with_no_conversions(engine):
    with engine.connect() as conn:
        out = reports.attribution(conn, Window(source="nowhere"))
    assert (out["conversions"], out["cross_device"]["share"], out["first_touch"]) == (0, 0.0, [])


def test_conversion_events_setting():
    configured = reports.configured_conversion_events
    assert configured({}) == ["Order Completed"]
    assert configured({"CONVERSION_EVENTS": "Purchase"}) == ["Purchase"]
    assert configured({"ADMIN": {"conversion_events": ["A", "B"]}}) == ["A", "B"]
    assert configured({"CONVERSION_EVENTS": ["X"], "ADMIN": {"conversion_events": ["A"]}}) == ["X"]


# --- the command ----------------------------------------------------------------------------


def _invoke(app, *args):
    result = app.test_cli_runner().invoke(report, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_report_json(mysql_app):
    out = json.loads(_invoke(mysql_app, "--since", "2026-11-01", "--until", "2026-11-04",
                             "--json"))
    assert out["window"] == {"since": "2026-11-01T00:00:00.000Z",
                             "until": "2026-11-04T00:00:00.000Z", "source": None}
    assert sum(r["events"] for r in out["events"]) == 17  # all but event 18
    assert [d["destination"] for d in out["deliveries"]] == ["hook", "meta"]
    assert out["attribution"]["cross_device"]["conversions"] == 3


def test_report_text_tables(mysql_app):
    out = _invoke(mysql_app, "attribution", "--since", "2026-11-01", "--until", "2026-11-04",
                  "--source", "web")
    assert out.startswith("window 2026-11-01T00:00:00.000Z .. 2026-11-04T00:00:00.000Z, "
                          "source web\n")
    summary = out.split("Conversions (Order Completed)\n")[1].split("\n\n")[0].splitlines()
    assert summary[2].split() == ["4", "2", "2", "2", "50.0%"]
    last = out.split("Last touch (platform)\n")[1].split("\n\n")[0].splitlines()
    assert [line.split() for line in last] == [
        ["platform", "conversions", "share"], ["--------", "-----------", "-----"],
        ["google", "2", "50.0%"], ["(none)", "2", "50.0%"]]


def test_report_csv_one_table(mysql_app):
    out = _invoke(mysql_app, "deliveries", "--since", "2026-11-01", "--until", "2026-11-04",
                  "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["destination"], r["succeeded"], r["p95_ms"]) for r in rows] == [
        ("hook", "2", "30.0"), ("meta", "4", "500.0")]


def test_report_csv_every_table(mysql_app):
    out = _invoke(mysql_app, "--since", "2026-11-01", "--until", "2026-11-04", "--csv")
    titles = [line for line in out.splitlines() if line.startswith("# ")]
    assert titles == ["# events", "# deliveries", "# attribution_summary",
                      "# attribution_first_touch", "# attribution_last_touch",
                      "# attribution_utm_first", "# attribution_utm_last",
                      "# attribution_cross_device", "# reconciliation"]


def test_report_rejects_a_bad_date(mysql_app):
    result = mysql_app.test_cli_runner().invoke(report, ["--since", "yesterday"])
    assert result.exit_code == 2
    assert "--since" in result.output


def test_attribution_from_ingest_never_credits_a_later_touch(mysql_url):
    # Through the real write path: a device lands from a Google ad, buys, then comes back
    # from a newsletter and a Meta ad. The purchase keeps Google, for click ids and UTM.
    from support.apps import SERVER_KEY

    app = make_mysql_app(mysql_url)
    truncate_all(app)
    client = app.test_client()

    def send(kind, ts, url=None, **body):
        msg = {"anonymousId": "dev-1", "timestamp": ts, **body}
        if url:
            msg["context"] = {"page": {"url": url}}
        r = client.post(f"/v1/{kind}", json=msg, auth=(SERVER_KEY, ""))
        assert r.status_code == 200, r.data

    site = "https://www.example.com/"
    send("page", "2026-11-01T09:00:00Z", site + "?utm_source=google&utm_campaign=brand&gclid=G1")
    send("track", "2026-11-01T10:00:00Z", event="Order Completed")
    send("page", "2026-11-01T11:00:00Z", site + "?utm_source=newsletter&utm_campaign=dec")
    send("page", "2026-11-01T12:00:00Z", site + "?utm_source=facebook&fbclid=F1")
    with app.app_context(), db.engine.connect() as conn:
        out = reports.attribution(conn, ALL)
    assert out["conversions"] == 1
    assert out["first_touch"] == out["last_touch"] == [{"platform": "google", "conversions": 1}]
    google = [{"utm_source": "google", "utm_campaign": "brand", "conversions": 1}]
    assert out["utm_first"] == out["utm_last"] == google
