"""Retries that run out end `failed` with the last error, where `sst replay` finds them; a
replay that matches nothing says where the deliveries are; `sst status` gives the reason of
the latest skip and failure per destination."""

from __future__ import annotations

import json

import pytest

from sst import create_app, migrate
from sst.cli import main
from sst.delivery.worker import run_inline
from support.apps import base_config
from support.delivery import (
    deliveries,
    past,
    set_deliveries,
    track,
    webhook_dest,
)
from support.stub_platform import Reply, StubPlatform


@pytest.fixture
def stub():
    with StubPlatform(Reply(500, {"error": "upstream down"})) as s:
        yield s


def _app(tmp_path, *dests):
    app = create_app(base_config(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}",
                                 DESTINATIONS=list(dests)))
    with app.app_context():
        migrate.upgrade()
    return app


def _deliver(app):
    with app.app_context():
        return run_inline(app.extensions["sst"])


def test_retries_that_run_out_end_failed_with_the_last_error(tmp_path, stub):
    app = _app(tmp_path, webhook_dest(stub.url, retry_max=3))
    track(app, "m-1")
    _deliver(app)
    (row,) = deliveries(app)
    assert row.state == "pending"
    assert row.reason.startswith("retrying: attempt 1 of 3 failed: HTTP 500")
    for _attempt in (2, 3):
        set_deliveries(app, next_attempt_at=past(1))  # the backoff is over
        _deliver(app)
    (row,) = deliveries(app)
    assert (row.state, row.attempts) == ("failed", 3)
    assert row.last_error.startswith("HTTP 500")
    assert row.reason.startswith("HTTP 500")
    assert len(stub.requests) == 3
    # Plain `sst replay` (failed, the default) finds it.
    result = app.test_cli_runner().invoke(main, ["replay", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("matched 1, would enqueue 1")
    assert "would send m-1 to hook" in result.output


def test_a_replay_that_matches_nothing_says_where_the_deliveries_are(tmp_path, stub):
    app = _app(tmp_path, webhook_dest(stub.url, retry_max=6))
    track(app, "m-1")
    _deliver(app)  # attempt 1 failed: pending, retrying
    result = app.test_cli_runner().invoke(main, ["replay"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == "matched 0, enqueued 0"
    assert lines[1] == "  no delivery is failed; with the same filters: 1 pending"
    assert lines[2].startswith("  pending ones are still being retried (next attempt due ")
    assert lines[2].endswith(": --status pending sends them now")


def test_a_replay_with_nothing_anywhere_says_so(tmp_path, stub):
    app = _app(tmp_path, webhook_dest(stub.url))
    result = app.test_cli_runner().invoke(main, ["replay", "--destination", "hook"])
    assert result.output.strip().splitlines()[1] == (
        "  no delivery is failed for these filters, and none in another state")


def test_status_shows_the_latest_skip_and_failure_with_their_reason(tmp_path, stub):
    app = _app(tmp_path, webhook_dest(stub.url, retry_max=1),
               {**webhook_dest(stub.url, name="consented"), "consent_categories": ["ads"]})
    track(app, "m-fail")
    track(app, "m-skip", context={"userAgent": "Mozilla/5.0 (X11) Firefox/133.0",
                                  "consent": {"categoryPreferences": {"ads": False}}})
    _deliver(app)
    result = app.test_cli_runner().invoke(main, ["status", "--json"])
    doc = json.loads(result.output)
    hook = next(r for r in doc["hour"] if r["destination"] == "hook")
    assert hook["last_failure"]["reason"].startswith("HTTP 500")
    assert hook["last_failure"]["messageId"] in ("m-fail", "m-skip")
    consented = next(r for r in doc["hour"] if r["destination"] == "consented")
    assert consented["last_skip"]["messageId"] == "m-skip"
    assert consented["last_skip"]["reason"] == "consent denied:ads"
    text = app.test_cli_runner().invoke(main, ["status"]).output
    assert "    consented: last skip " in text and "(m-skip): consent denied:ads" in text
    assert "    hook: last failure " in text and ": HTTP 500" in text
