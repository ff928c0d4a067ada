"""The worker's send path (sst.delivery.sender) runs each claimed group through the
connector's own `send`: the loop the connector test table drives. SQLite app, a real local
HTTP stub as the webhook."""

from types import SimpleNamespace

import pytest

from sst import create_app, migrate
from sst.connectors.base import Connector
from sst.delivery.sender import distinct_message_ids
from sst.delivery.worker import run_inline
from sst.extensions import db
from support.apps import SERVER_KEY, base_config
from support.delivery import BROWSER_UA, webhook_dest
from support.stub_platform import StubPlatform


def test_rounds_never_repeat_a_message_id_and_keep_order():
    events = {i: SimpleNamespace(message_id=mid)
              for i, mid in enumerate(["a", "b", "a", "c", "a", "b"])}
    rows = [{"id": i} for i in events]

    rounds = distinct_message_ids(rows, events)

    assert [[r["id"] for r in round_] for round_ in rounds] == [[0, 1, 3], [2, 5], [4]]


@pytest.fixture
def stub():
    with StubPlatform() as s:
        yield s


def test_the_worker_sends_through_connector_send(tmp_path, stub, monkeypatch):
    calls = []
    real_send = Connector.send

    def spy(self, events, now=None, send_by=None, before_send=None):
        calls.append(([e.message_id for e in events], send_by is not None))
        return real_send(self, events, now=now, send_by=send_by, before_send=before_send)

    monkeypatch.setattr(Connector, "send", spy)
    app = create_app(base_config(DATABASE_URL=f"sqlite:///{tmp_path / 'sst.sqlite'}",
                                 DESTINATIONS=[webhook_dest(stub.url)]))
    with app.app_context():
        migrate.upgrade()
    client = app.test_client()
    for mid in ("one", "two"):
        r = client.post("/v1/track", auth=(SERVER_KEY, ""), json={
            "event": "Signed Up", "userId": "u-1", "messageId": mid,
            "context": {"userAgent": BROWSER_UA}})
        assert r.status_code == 200, r.data

    with app.app_context():
        assert run_inline(app.extensions["sst"]) == 2
        db.engine.dispose()

    assert sorted(m for mids, _ in calls for m in mids) == ["one", "two"]
    assert all(with_deadline for _, with_deadline in calls)
    assert sorted(r.json()["messageId"] for r in stub.requests) == ["one", "two"]
