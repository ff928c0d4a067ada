"""Embedded mode (no REDIS_URL, SQLite): the in-process queue delivers through the same
claim / send / record path as the RQ worker."""

import pytest
from sqlalchemy import select

from sst import create_app, migrate
from sst.cli import main as sst_cli
from sst.delivery.worker import run_inline, run_worker
from sst.extensions import db
from sst.models import Delivery, Exchange
from support.apps import SERVER_KEY, base_config
from support.delivery import BROWSER_UA, webhook_dest
from support.stub_platform import Reply, StubPlatform


@pytest.fixture
def stub():
    with StubPlatform() as s:
        yield s


@pytest.fixture
def app(tmp_path, stub):
    """The SQLite app of the unit tests, with a webhook destination on the stub."""
    app = create_app(base_config(DATABASE_URL=f"sqlite:///{tmp_path / 'sst.sqlite'}",
                                 DESTINATIONS=[webhook_dest(stub.url)]))
    assert app.extensions["sst"].redis_url is None
    with app.app_context():
        migrate.upgrade()
    yield app
    with app.app_context():
        db.engine.dispose()


def _track(app, message_id):
    r = app.test_client().post("/v1/track", auth=(SERVER_KEY, ""), json={
        "event": "Signed Up", "userId": "u-1", "messageId": message_id,
        "context": {"userAgent": BROWSER_UA}})
    assert r.status_code == 200, r.data


def _deliveries(app):
    with app.app_context():
        return db.session.execute(select(Delivery.state, Delivery.attempts)
                                  .order_by(Delivery.id)).all()


def test_run_inline_delivers(app, stub):
    _track(app, "emb-1")
    _track(app, "emb-2")
    with app.app_context():
        assert run_inline(app.extensions["sst"]) == 2
        assert run_inline(app.extensions["sst"]) == 0  # nothing left

    assert sorted(r.json()["messageId"] for r in stub.requests) == ["emb-1", "emb-2"]
    assert _deliveries(app) == [("succeeded", 1), ("succeeded", 1)]
    with app.app_context():
        assert db.session.execute(select(Exchange.status)).scalars().all() == [200, 200]


def test_burst_worker_without_redis_runs_retries(app, stub):
    stub.replies = [Reply(500)]
    _track(app, "emb-retry")
    run_worker(app, burst=True)  # no REDIS_URL: the embedded loop

    assert [r.json()["messageId"] for r in stub.requests] == ["emb-retry"] * 2
    assert _deliveries(app) == [("succeeded", 2)]


def test_sweep_cli_in_embedded_mode_sends_pending(app, stub):
    _track(app, "emb-sweep")
    result = app.test_cli_runner().invoke(sst_cli, ["sweep"])

    assert result.exit_code == 0, result.output
    assert "enqueued 1" in result.output
    assert [r.json()["messageId"] for r in stub.requests] == ["emb-sweep"]
    assert _deliveries(app) == [("succeeded", 1)]
