"""Ingest -> outbox -> relay -> RQ job -> connector -> stub platform, on MariaDB and Redis."""

import hashlib
import hmac

from sqlalchemy import select

from sst.delivery.worker import run_worker
from sst.extensions import db
from sst.models import Delivery, Exchange
from support.apps import SERVER_KEY, make_mysql_app, truncate_all
from support.stub_platform import Reply, StubPlatform


def _app(mysql_url, redis_url, stub_url, **dest):
    webhook = {"name": "hook", "connector": "webhook", "url": stub_url + "/hook",
               "secret": "s3cret", "events": {"*": "*"}, "retry_backoff": 0, **dest}
    app = make_mysql_app(mysql_url, redis_url, DESTINATIONS=[webhook])
    truncate_all(app)
    return app


def _track(app, message_id="m-1", **extra):
    body = {"event": "Order Completed", "userId": "u-1", "messageId": message_id,
            "properties": {"order_id": "o-1", "total": 12.5}, **extra}
    r = app.test_client().post("/v1/track", json=body, auth=(SERVER_KEY, ""))
    assert r.status_code == 200, r.data


def test_event_reaches_webhook_once_with_signature(mysql_url, redis_url):
    with StubPlatform() as stub:
        app = _app(mysql_url, redis_url, stub.url)
        _track(app)
        run_worker(app, burst=True)
        assert stub.paths() == ["/hook"]
        req = stub.requests[0]
        expected = hmac.new(b"s3cret", req.body, hashlib.sha256).hexdigest()
        assert req.headers["X-SST-Signature"] == f"sha256={expected}"
        assert req.json()["messageId"] == "m-1"
        with app.app_context():
            d = db.session.execute(select(Delivery)).scalar_one()
            assert (d.state, d.attempts) == ("succeeded", 1)
            t = db.session.execute(select(Exchange)).scalar_one()
            assert (t.status, t.outcome, t.incoming_id) == (200, "success", d.event_id)
        run_worker(app, burst=True)  # nothing left to send
        assert len(stub.requests) == 1


def test_retry_then_success_keeps_event_id(mysql_url, redis_url):
    with StubPlatform() as stub:
        stub.replies = [Reply(500), Reply(503)]
        app = _app(mysql_url, redis_url, stub.url)
        _track(app)
        for _ in range(3):
            run_worker(app, burst=True)
        assert len(stub.requests) == 3
        assert {r.json()["messageId"] for r in stub.requests} == {"m-1"}
        with app.app_context():
            d = db.session.execute(select(Delivery)).scalar_one()
            assert (d.state, d.attempts) == ("succeeded", 3)
            attempts = db.session.execute(select(Exchange.attempt, Exchange.status)
                                          .order_by(Exchange.id)).all()
            assert attempts == [(1, 500), (2, 503), (3, 200)]


def test_permanent_failure_stops_after_one_attempt(mysql_url, redis_url):
    with StubPlatform(default=Reply(400, {"error": "bad"})) as stub:
        app = _app(mysql_url, redis_url, stub.url)
        _track(app)
        run_worker(app, burst=True)
        run_worker(app, burst=True)
        assert len(stub.requests) == 1
        with app.app_context():
            d = db.session.execute(select(Delivery)).scalar_one()
            assert d.state == "failed"
            assert "bad" in d.last_error
