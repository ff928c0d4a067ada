"""Reconciliation: what each platform said it did with the events sst sent (MariaDB, Redis,
a real RQ worker, local stubs answering as Meta, TikTok and a webhook receiver)."""

from datetime import timedelta

from sst import reports
from sst.cli import main as sst_cli
from sst.clock import utcnow
from sst.delivery.worker import run_worker
from sst.jsonutil import loads
from support.delivery import (
    batch,
    meta_dest,
    mysql_app,
    tiktok_dest,
    tracks,
    tracks_of,
    webhook_dest,
)
from support.stub_platform import Reply, StubPlatform

# Meta took two of the three events of its batch request and said why not the third.
META_PARTIAL = Reply(200, {"events_received": 2, "fbtrace_id": "FBTRACE-1",
                           "messages": ["event m-2: invalid currency"]})
TIKTOK_REFUSED = Reply(400, {"code": 40002, "message": "Invalid pixel_code",
                             "request_id": "tt-req-9"})


def _run(mysql_url, redis_url):
    with StubPlatform(default=META_PARTIAL) as meta, \
            StubPlatform(default=TIKTOK_REFUSED) as tiktok, StubPlatform() as hook:
        app = mysql_app(mysql_url, redis_url, meta_dest(meta.url), tiktok_dest(tiktok.url),
                        webhook_dest(hook.url))
        batch(app, tracks_of(3))
        run_worker(app, burst=True)
        assert len(meta.requests) == 1 and len(hook.requests) == 3
    return app


def test_each_request_records_what_the_platform_accepted(mysql_url, redis_url):
    app = _run(mysql_url, redis_url)
    by_dest = {}
    for t in tracks(app):
        by_dest.setdefault(t.destination, []).append(t)

    [m] = by_dest["meta"]
    assert (m.events_sent, m.events_accepted, m.events_rejected) == (3, 2, 0)
    assert m.platform_request_id == "FBTRACE-1"
    assert m.platform_reasons == ["event m-2: invalid currency"]
    tt = by_dest["tiktok"]
    assert sum(t.events_sent for t in tt) == 3 and sum(t.events_rejected for t in tt) == 3
    assert {t.platform_request_id for t in tt} == {"tt-req-9"}
    assert all("40002" in t.platform_reasons[0] for t in tt)
    assert [(t.events_sent, t.events_accepted) for t in by_dest["hook"]] == [(1, 1)] * 3


def test_report_shows_sent_accepted_rejected_and_the_gap_per_destination(mysql_url,
                                                                         redis_url):
    app = _run(mysql_url, redis_url)
    window = reports.Window(utcnow() - timedelta(days=1), utcnow() + timedelta(minutes=1))
    with app.app_context():
        rows = {r["destination"]: r for r in reports.run(
            app.extensions["sst"].engine, window, ("reconciliation",))["reconciliation"]}

    assert {k: (r["sent"], r["accepted"], r["rejected"], r["unconfirmed"])
            for k, r in rows.items()} == {"meta": (3, 2, 0, 1), "tiktok": (3, 0, 3, 0),
                                          "hook": (3, 3, 0, 0)}
    assert rows["meta"]["acceptance"] == round(2 / 3, 4)
    assert rows["meta"]["reasons"] == ["event m-2: invalid currency"]
    assert "Invalid pixel_code" in rows["tiktok"]["reasons"][0]

    out = app.test_cli_runner().invoke(sst_cli, ["report", "reconciliation", "--json"])
    assert out.exit_code == 0, out.output
    doc = loads(out.output)
    assert {r["destination"]: r["accepted"] for r in doc["reconciliation"]} == {
        "meta": 2, "tiktok": 0, "hook": 3}
    text = app.test_cli_runner().invoke(sst_cli, ["report", "reconciliation"])
    assert "What each platform accepted" in text.output and "66.7%" in text.output
