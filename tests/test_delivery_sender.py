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


def test_requests_are_recorded_ahead_in_windows_and_answered_in_place(tmp_path, stub,
                                                                       monkeypatch):
    """L3 costs one ledger write per RECORD_AHEAD requests, not one per request; every
    request still has exactly one Exchange row, tied to its delivery, with its answer."""
    from sst.connectors.base import RECORD_AHEAD
    from sst.delivery import sender
    from sst.models import Exchange, ExchangeItem

    windows, received_before = [], []
    real = sender._record_in_flight

    def spy(engine, dest, by_id, id_of, pairs):
        windows.append(len(pairs))
        received_before.append(len(stub.requests))
        return real(engine, dest, by_id, id_of, pairs)

    monkeypatch.setattr(sender, "_record_in_flight", spy)
    n = RECORD_AHEAD + 5
    app = create_app(base_config(DATABASE_URL=f"sqlite:///{tmp_path / 'sst.sqlite'}",
                                 DESTINATIONS=[webhook_dest(stub.url)]))
    with app.app_context():
        migrate.upgrade()
    r = app.test_client().post("/v1/batch", auth=(SERVER_KEY, ""), json={"batch": [
        {"type": "track", "event": "Signed Up", "userId": f"u-{i}", "messageId": f"m-{i}",
         "context": {"userAgent": BROWSER_UA}} for i in range(n)]})
    assert r.status_code == 200, r.data

    with app.app_context():
        assert run_inline(app.extensions["sst"]) == n
        rows = db.session.query(Exchange).all()
        items = db.session.query(ExchangeItem).all()
        db.engine.dispose()

    assert windows == [RECORD_AHEAD, 5]
    assert received_before == [0, RECORD_AHEAD]  # each window written before it went out
    assert len(stub.requests) == len(rows) == len(items) == n
    assert {(t.outcome, t.status) for t in rows} == {("success", 200)}
    by_track = {i.track_id: i.delivery_id for i in items}
    assert all(by_track[t.id] == t.delivery_id for t in rows)
    assert all(f'"m-{t.delivery_id - 1}"' in t.request_body for t in rows)
    assert all(t.response_body and t.duration_ms is not None for t in rows)


def test_the_http_session_reads_the_environment_once_per_host(monkeypatch):
    from sst.connectors.base import HttpSession

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "direct.example")
    session = HttpSession()
    def proxy(url):
        return session.merge_environment_settings(url, {}, None, None, None)["proxies"].get(
            "https")

    assert proxy("https://api.example/v1") == "http://proxy.invalid:3128"
    assert proxy("https://direct.example/x") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://other.invalid:1")
    # Read at the first request to a host, like the rest of a worker's configuration.
    assert proxy("https://api.example/v2") == "http://proxy.invalid:3128"
    assert proxy("https://new.example/") == "http://other.invalid:1"
