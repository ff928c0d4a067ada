"""`sst replay`, pause/resume and status, on MariaDB + Redis with a stub platform."""

import json
from datetime import timedelta

from sqlalchemy import select, update

from sst.cli import main
from sst.clock import iso, to_db, utcnow
from sst.delivery.worker import run_worker
from sst.extensions import db
from sst.models import Delivery, Replay
from support.apps import SERVER_KEY, make_mysql_app, truncate_all
from support.stub_platform import Reply, StubPlatform


def _app(mysql_url, redis_url, stub_url):
    dests = [{"name": "hook", "connector": "webhook", "url": stub_url + "/hook",
              "secret": "s", "events": {"*": "*"}, "retry_max": 1},
             {"name": "meta", "connector": "meta", "pixel_id": "1", "access_token": "t",
              "base_url": stub_url, "events": {"Old": "Purchase"}, "retry_max": 1}]
    app = make_mysql_app(mysql_url, redis_url, DESTINATIONS=dests)
    truncate_all(app)
    return app


def _send(app, message_id, event="Order Completed", timestamp=None):
    body = {"event": event, "userId": "u1", "messageId": message_id,
            "context": {"userAgent": "Mozilla/5.0"}}
    if timestamp:
        body["timestamp"] = body["sentAt"] = timestamp
    r = app.test_client().post("/v1/track", json=body, auth=(SERVER_KEY, ""))
    assert r.status_code == 200


def _cli(app, *args):
    result = app.test_cli_runner().invoke(main, list(args), catch_exceptions=False)
    return result


def test_failed_delivery_replayed_once_with_original_time(mysql_url, redis_url):
    with StubPlatform(default=Reply(500)) as stub:
        app = _app(mysql_url, redis_url, stub.url)
        ts = iso(utcnow() - timedelta(hours=2))
        _send(app, "m-1", timestamp=ts)
        run_worker(app, burst=True)
        with app.app_context():
            assert db.session.execute(select(Delivery.state)).scalar_one() == "failed"
        stub.default = Reply(200)
        dry = _cli(app, "replay", "--dry-run", "--json")
        assert json.loads(dry.stdout)["byDestination"] == {"hook": 1}
        run_worker(app, burst=True)
        assert len(stub.requests) == 1  # the dry run sent nothing

        result = _cli(app, "replay", "--destination", "hook", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["enqueued"] == 1
        run_worker(app, burst=True)
        assert len(stub.requests) == 2
        sent = stub.requests[-1].json()
        # The replay carries the first attempt's corrected event time, and the client's
        # own time as originalTimestamp (contract §5).
        first = stub.requests[0].json()
        assert sent["messageId"] == "m-1" and sent["timestamp"] == first["timestamp"]
        assert sent["originalTimestamp"] == ts
        with app.app_context():
            d = db.session.execute(select(Delivery)).scalar_one()
            assert d.state == "succeeded"
            replays = db.session.execute(select(Replay)).scalars().all()
            assert [r.dry_run for r in replays] == [True, False]
            assert replays[1].counts["enqueued"] == 1

        again = _cli(app, "replay", "--json")
        assert json.loads(again.stdout)["matched"] == 0
        run_worker(app, burst=True)
        assert len(stub.requests) == 2


def test_too_old_events_are_skipped_and_counted(mysql_url, redis_url):
    with StubPlatform(default=Reply(500)) as stub:
        app = _app(mysql_url, redis_url, stub.url)
        _send(app, "old-1", event="Old", timestamp=iso(utcnow() - timedelta(days=6)))
        run_worker(app, burst=True)
        with app.app_context():
            db.session.execute(update(Delivery).where(Delivery.destination == "meta")
                               .values(event_time=to_db(utcnow() - timedelta(days=8))))
            db.session.commit()
        result = _cli(app, "replay", "--destination", "meta", "--json")
        doc = json.loads(result.stdout)
        assert doc["enqueued"] == 0
        assert doc["skipped"] == {"older than meta accepts": 1}


def test_pause_holds_deliveries_until_resume(mysql_url, redis_url):
    with StubPlatform() as stub:
        app = _app(mysql_url, redis_url, stub.url)
        assert _cli(app, "destination", "pause", "hook").exit_code == 0
        _send(app, "p-1")
        run_worker(app, burst=True)
        assert stub.requests == []
        with app.app_context():
            assert db.session.execute(select(Delivery.state)
                                      .where(Delivery.destination == "hook")).scalar_one() \
                == "pending"
        assert _cli(app, "destination", "resume", "hook").exit_code == 0
        run_worker(app, burst=True)
        assert [r.json()["messageId"] for r in stub.requests] == ["p-1"]
        status = json.loads(_cli(app, "status", "--json").stdout)
        hook = next(r for r in status["hour"] if r["destination"] == "hook")
        assert (hook["sent"], hook["succeeded"]) == (1, 1)
