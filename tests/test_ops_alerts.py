"""The alert hook: thresholds, once per window (across racing workers), the webhook post."""

from __future__ import annotations

import itertools
import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select

from sst.clock import to_db
from sst.errors import ConfigError
from sst.extensions import db
from sst.models import AlertState, Delivery, DestinationControl, Exchange
from sst.ops.alerts import alert_settings, check_alerts, run_alerts
from support.apps import make_mysql_app, truncate_all
from support.stub_platform import Reply, StubPlatform

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=900)
_event_ids = itertools.count(1)


def add_deliveries(app, destination, state, n, *, updated_at=T0, next_attempt_at=None):
    rows = [{"event_id": next(_event_ids), "destination": destination, "connector": "webhook",
             "platform_event": "Purchase", "state": state, "attempts": 1,
             "next_attempt_at": to_db(next_attempt_at or updated_at),
             "event_time": to_db(updated_at), "created_at": to_db(updated_at),
             "updated_at": to_db(updated_at), "last_code": "http_400" if state == "failed"
             else None} for _ in range(n)]
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(insert(Delivery.__table__), rows)


def configure(app, url, **extra):
    app.config["ALERTS"] = {"webhook_url": url + "/hook", "min_deliveries": 4, **extra}


@pytest.fixture
def hook():
    with StubPlatform() as stub:
        yield stub


def check(app, now, **kw):
    with app.app_context():
        return check_alerts(app.extensions["sst"], now=now, **kw)


def test_alert_hook_fires_once_per_window(app, hook):
    configure(app, hook.url)
    add_deliveries(app, "meta", "failed", 6)
    add_deliveries(app, "meta", "succeeded", 2)

    first = check(app, T0 + timedelta(minutes=1))
    second = check(app, T0 + timedelta(minutes=2))  # same window: found, not sent again

    assert [a["key"] for a in first] == ["failure_rate:meta"] and first[0]["sent"]
    assert [a["key"] for a in second] == ["failure_rate:meta"] and not second[0]["sent"]
    assert len(hook.requests) == 1
    sent = hook.requests[0]
    assert sent.path == "/hook" and sent.headers["Content-Type"] == "application/json"
    assert "meta: 6 of 8 deliveries failed (75%)" in sent.json()["text"]
    assert "http_400" in sent.json()["text"]

    later = T0 + timedelta(minutes=1) + WINDOW + timedelta(seconds=1)
    add_deliveries(app, "meta", "failed", 5, updated_at=later)  # still failing after the window
    third = check(app, later)
    assert third[0]["sent"] and len(hook.requests) == 2


def test_no_alert_config_posts_nothing(app, hook):
    add_deliveries(app, "meta", "failed", 20)
    assert check(app, T0) == []
    app.config["ALERTS"] = {"failure_rate": 0.1}  # thresholds but no webhook
    assert check(app, T0) == []
    assert hook.requests == []


def test_below_min_deliveries_posts_nothing(app, hook):
    configure(app, hook.url, min_deliveries=10)
    add_deliveries(app, "meta", "failed", 9)
    assert check(app, T0) == []
    assert hook.requests == []


def test_failure_rate_under_threshold_posts_nothing(app, hook):
    configure(app, hook.url, failure_rate=0.5)
    add_deliveries(app, "meta", "failed", 4)
    add_deliveries(app, "meta", "succeeded", 6)
    add_deliveries(app, "meta", "failed", 10, updated_at=T0 - WINDOW - timedelta(seconds=1))
    assert check(app, T0) == []
    assert hook.requests == []


def test_queue_age_alert(app, hook):
    configure(app, hook.url, queue_age_seconds=600)
    add_deliveries(app, "meta", "pending", 2, updated_at=T0 - timedelta(minutes=30),
                   next_attempt_at=T0 - timedelta(minutes=20))
    add_deliveries(app, "meta", "pending", 1, next_attempt_at=T0 + timedelta(hours=1))  # not due

    alerts = check(app, T0)

    assert [(a["key"], a["value"]) for a in alerts] == [("queue_age", 1200.0)]
    text = hook.requests[0].json()["text"]
    assert "waited 20 min (threshold 10 min); 2 deliveries are due" in text


def test_young_queue_posts_nothing(app, hook):
    configure(app, hook.url, queue_age_seconds=600)
    add_deliveries(app, "meta", "queued", 3, next_attempt_at=T0 - timedelta(minutes=5))
    assert check(app, T0) == []
    assert hook.requests == []


def test_paused_destination_backlog_is_not_an_alert(app, hook):
    configure(app, hook.url, queue_age_seconds=600)
    add_deliveries(app, "meta", "pending", 3, next_attempt_at=T0 - timedelta(hours=2))
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(insert(DestinationControl.__table__),
                     {"name": "meta", "paused": True, "updated_at": to_db(T0)})
    assert check(app, T0) == []


def test_failed_post_is_retried_at_the_next_check(app, hook):
    configure(app, hook.url)
    hook.replies.append(Reply(status=500))
    add_deliveries(app, "meta", "failed", 5)

    assert not check(app, T0)[0]["sent"]
    assert check(app, T0 + timedelta(minutes=1))[0]["sent"]
    assert check(app, T0 + timedelta(minutes=2))[0]["sent"] is False
    assert len(hook.requests) == 2


def test_several_alerts_go_in_one_post(app, hook):
    configure(app, hook.url, queue_age_seconds=60)
    add_deliveries(app, "meta", "failed", 5)
    add_deliveries(app, "tiktok", "failed", 5)
    add_deliveries(app, "ga4", "pending", 1, next_attempt_at=T0 - timedelta(minutes=5))

    alerts = check(app, T0)

    assert sorted(a["key"] for a in alerts) == ["failure_rate:meta", "failure_rate:tiktok",
                                                "queue_age"]
    assert len(hook.requests) == 1
    assert len(hook.requests[0].json()["text"].splitlines()) == 3


def test_dry_run_neither_posts_nor_takes_the_window(app, hook):
    configure(app, hook.url)
    add_deliveries(app, "meta", "failed", 5)
    assert check(app, T0, dry_run=True)[0]["sent"] is False
    assert hook.requests == []
    assert check(app, T0)[0]["sent"]


def test_webhook_url_reads_env_refs(app, hook, monkeypatch):
    monkeypatch.setenv("SST_TEST_ALERT_HOOK", hook.url + "/from-env")
    app.config["ALERTS"] = {"webhook_url": "env:SST_TEST_ALERT_HOOK", "min_deliveries": 1}
    add_deliveries(app, "meta", "failed", 1)
    check(app, T0)
    assert hook.paths() == ["/from-env"]


@pytest.mark.parametrize("section, needle", [
    ({"webhook_url": "env:SST_TEST_NOT_SET_ANYWHERE"}, "SST_TEST_NOT_SET_ANYWHERE"),
    ({"webhook_url": "http://x", "failure_rte": 0.2}, "key 'failure_rte': unknown key"),
    ({"webhook_url": "http://x", "failure_rate": 2}, "key 'failure_rate'"),
])
def test_bad_alerts_section_is_a_config_error(section, needle):
    with pytest.raises(ConfigError, match="alerts"):
        alert_settings({"ALERTS": section})
    with pytest.raises(ConfigError) as exc:
        alert_settings({"ALERTS": section})
    assert needle in str(exc.value)


def test_run_alerts_logs_and_goes_on(app, caplog):
    app.config["ALERTS"] = {"webhook_url": "http://x", "bogus": 1}
    with caplog.at_level(logging.ERROR, logger="sst.ops.alerts"):
        assert run_alerts(app) == []
    assert "alert check failed" in caplog.text


def test_run_alerts_posts(app, hook):
    configure(app, hook.url, min_deliveries=1)
    add_deliveries(app, "meta", "failed", 1, updated_at=datetime.now(UTC))
    assert run_alerts(app)[0]["sent"]
    assert len(hook.requests) == 1


def _race(state, now, n=8) -> int:
    """n workers check at the same moment; returns how many posted."""
    barrier = threading.Barrier(n)
    sent = []

    def worker(i):
        barrier.wait()
        alerts = check_alerts(state, now=now + timedelta(microseconds=i))
        sent.extend(a["sent"] for a in alerts)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return sum(sent)


def test_racing_workers_post_once_on_mariadb(mysql_url, hook):
    app = make_mysql_app(mysql_url)
    truncate_all(app)
    configure(app, hook.url)
    state = app.extensions["sst"]
    with app.app_context():
        state.engine  # noqa: B018  (built once, in the app context)
    add_deliveries(app, "meta", "failed", 6)

    assert _race(state, T0) == 1  # the first send: racing inserts
    later = T0 + WINDOW * 2
    add_deliveries(app, "meta", "failed", 6, updated_at=later)
    assert _race(state, later) == 1  # after the window: racing conditional updates

    assert len(hook.requests) == 2
    with app.app_context():
        assert db.session.execute(select(AlertState.key)).scalars().all() == [
            "failure_rate:meta"]
        db.engine.dispose()


def add_tracks(app, destination, sent, accepted, *, at=T0):
    row = {"destination": destination, "connector": destination, "attempt": 1,
           "outcome": "success", "method": "POST", "url": "https://x.test/", "status": 200,
           "created_at": to_db(at), "events_sent": sent, "events_accepted": accepted,
           "events_rejected": 0}
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(insert(Exchange.__table__), [row])


def test_low_acceptance_alerts_per_destination(app, hook):
    configure(app, hook.url, acceptance_below=0.9)
    add_tracks(app, "meta", 10, 6)  # Meta counted 6 of 10: below 90 %
    add_tracks(app, "tiktok", 10, 10)
    add_tracks(app, "ga4", 10, None)  # GA4 does not confirm: never an acceptance alert

    found = check(app, T0 + timedelta(minutes=1))

    assert [a["key"] for a in found] == ["acceptance:meta"]
    assert "accepted 6 of 10 events (60%)" in hook.requests[0].json()["text"]


def test_acceptance_needs_min_deliveries_sent(app, hook):
    configure(app, hook.url)  # min_deliveries 4
    add_tracks(app, "meta", 3, 0)
    assert check(app, T0 + timedelta(minutes=1)) == []
