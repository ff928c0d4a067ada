"""The event row is the outbox: ingest writes one row per event, the relay fans marked events
out to deliveries in batches, and an event committed without its deliveries is found and
fanned out, never lost and never twice (a crashed fan-out, `sst worker` killed with SIGKILL
while events keep arriving). MariaDB, Redis, real `sst worker` subprocesses, the stub."""

import signal
import threading
import time
from collections import Counter

import pytest
from sqlalchemy import select, text, update

from sst.delivery import outbox
from sst.delivery.destinations import BOT_REASON
from sst.delivery.worker import run_worker
from sst.extensions import db
from sst.models import Delivery, Event
from support.apps import SERVER_KEY
from support.delivery import (
    batch,
    kill_group,
    meta_dest,
    mysql_app,
    start_worker,
    toml_config,
    track,
    tracks_of,
    wait_for,
    webhook_dest,
    worker_env,
)
from support.stub_platform import StubPlatform


def _raw(app, sql):
    with app.app_context(), db.engine.connect() as conn:
        return conn.execute(text(sql)).all()


def _marks(app):
    return dict(_raw(app, "SELECT message_id, fanout FROM events"))


def _deliveries_per_event(app):
    return Counter((e, d) for e, d in _raw(app, "SELECT event_id, destination FROM deliveries"))


def test_ingest_writes_the_event_alone_and_the_relay_fans_it_out(mysql_url, redis_url):
    app = mysql_app(mysql_url, redis_url, webhook_dest("http://127.0.0.1:9"),
                    meta_dest("http://127.0.0.1:9"))
    track(app, "one")
    batch(app, tracks_of(3, prefix="b"))
    assert _marks(app) == {"one": 1, "b-0": 1, "b-1": 1, "b-2": 1}
    assert _raw(app, "SELECT COUNT(*) FROM deliveries") == [(0,)]  # not in the request

    state = app.extensions["sst"]
    with app.app_context():
        assert outbox.fan_out(state) == 4
        assert outbox.fan_out(state) == 0
    assert set(_marks(app).values()) == {None}
    counts = _deliveries_per_event(app)
    assert len(counts) == 8 and set(counts.values()) == {1}  # 4 events x 2 destinations
    assert {r[0] for r in _raw(app, "SELECT state FROM deliveries")} == {"pending"}


def test_a_fan_out_that_dies_midway_leaves_every_event_marked(mysql_url, redis_url,
                                                             monkeypatch):
    app = mysql_app(mysql_url, redis_url, webhook_dest("http://127.0.0.1:9"))
    batch(app, tracks_of(5))
    state = app.extensions["sst"]
    rows = state.fanout.rows
    seen = []

    def crash_on_third(event):
        seen.append(event["id"])
        if len(seen) == 3:
            raise ConnectionError("the relay's process died")
        return rows(event)

    monkeypatch.setattr(state.fanout, "rows", crash_on_third)
    with app.app_context(), pytest.raises(ConnectionError):
        outbox.fan_out(state)
    assert set(_marks(app).values()) == {1}
    assert _raw(app, "SELECT COUNT(*) FROM deliveries") == [(0,)]
    monkeypatch.undo()
    with app.app_context():
        assert outbox.fan_out(state) == 5
    assert sorted(_deliveries_per_event(app).values()) == [1] * 5


def test_an_event_fanned_out_twice_gets_its_deliveries_once(mysql_url, redis_url):
    """A relay that committed its deliveries but whose mark reads back as set (a second
    relay, a restored backup) only adds what is missing."""
    app = mysql_app(mysql_url, redis_url, webhook_dest("http://127.0.0.1:9"))
    batch(app, tracks_of(3))
    state = app.extensions["sst"]
    with app.app_context():
        outbox.fan_out(state)
        with db.engine.begin() as conn:
            conn.execute(update(Event.__table__).values(fanout=1))
        assert outbox.fan_out(state) == 3
    assert sorted(_deliveries_per_event(app).values()) == [1] * 3


def test_consent_and_bots_are_decided_at_fan_out(mysql_url, redis_url):
    app = mysql_app(mysql_url, redis_url,
                    webhook_dest("http://127.0.0.1:9", consent_categories=["marketing"]),
                    meta_dest("http://127.0.0.1:9"))
    consent = {"consent": {"categoryPreferences": {"marketing": False}}}
    track(app, "denied", context={**consent, "userAgent": "Mozilla/5.0 Chrome/131"})
    track(app, "bot", context={"userAgent": "Googlebot/2.1"})
    state = app.extensions["sst"]
    with app.app_context():
        outbox.fan_out(state)
        got = {(m, d.destination): (d.state, d.reason) for m, d in db.session.execute(
            select(Event.message_id, Delivery).join(Delivery, Delivery.event_id == Event.id))}
    assert got[("denied", "hook")] == ("skipped", "consent denied:marketing")
    assert got[("denied", "meta")][0] == "pending"
    # The contract's default forward_bots: the webhook gets bots' events, ad platforms not.
    assert got[("bot", "hook")] == ("pending", None)
    assert got[("bot", "meta")] == ("skipped", BOT_REASON)


def test_events_stored_without_destinations_are_not_marked(mysql_app, mysql_client):
    r = mysql_client.post("/v1/track", json={"event": "E", "userId": "u", "messageId": "x"},
                          auth=(SERVER_KEY, ""))
    assert r.status_code == 200
    assert _marks(mysql_app) == {"x": None}


def test_a_marked_event_is_counted_in_the_backlog(mysql_url, redis_url):
    app = mysql_app(mysql_url, redis_url, webhook_dest("http://127.0.0.1:9"))
    batch(app, tracks_of(4))
    state = app.extensions["sst"]
    with app.app_context():
        assert outbox.pending_due(state) == 4  # events owing deliveries
        outbox.fan_out(state)
        assert outbox.pending_due(state) == 4  # now as due deliveries


def test_workers_killed_while_events_arrive_lose_nothing(tmp_path, mysql_url, redis_url):
    """Ingest keeps posting batches while `sst worker` (relay + fan-out + sender) is killed
    with SIGKILL three times and restarted; at the end every event has exactly one delivery
    per destination, every one of them delivered."""
    with StubPlatform() as stub:
        dests = [webhook_dest(stub.url), meta_dest(stub.url)]
        app = mysql_app(mysql_url, redis_url, *dests)
        env = worker_env(mysql_url, redis_url, toml_config(tmp_path / "sst.toml", dests))
        stop = threading.Event()
        sent = []

        def ingest():
            k = 0
            # Bounded (at most 1,000 events): the stub answers one webhook request at a time.
            while not stop.is_set() and k < 50:
                batch(app, tracks_of(20, prefix=f"k{k}"))
                sent.extend(f"k{k}-{i}" for i in range(20))
                k += 1
                stop.wait(0.05)

        feeder = threading.Thread(target=ingest)
        feeder.start()
        try:
            for round_ in range(3):
                before = len(stub.requests)
                proc = start_worker(env, "--sweep-interval", "1",
                                    log=tmp_path / f"worker{round_}.log")
                wait_for(lambda b=before: len(stub.requests) > b, what="a delivery")
                time.sleep(0.3 * (round_ + 1))  # die at different points of a pass
                kill_group(proc, signal.SIGKILL)
                assert proc.returncode == -signal.SIGKILL
        finally:
            stop.set()
            feeder.join()
        # What a restarted worker does: the sweep finds what the dead ones held.
        from support.delivery import past, set_deliveries

        set_deliveries(app, locked_until=past(1), updated_at=past(600))
        with app.app_context():
            outbox.sweep(app.extensions["sst"])
        run_worker(app, burst=True)

        assert set(_marks(app).values()) == {None}
        assert sorted(m for (m,) in _raw(app, "SELECT message_id FROM events")) == sorted(sent)
        per_event = _deliveries_per_event(app)
        assert len(per_event) == 2 * len(sent) and set(per_event.values()) == {1}
        assert {s for (s,) in _raw(app, "SELECT state FROM deliveries")} == {"succeeded"}
        hook_ids = {r.json()["messageId"] for r in stub.requests if r.path == "/hook"}
        assert hook_ids == set(sent)


def test_a_running_worker_rolls_up_while_it_delivers(tmp_path, mysql_url, redis_url):
    """`sst worker` keeps the reports' rollups current in a thread of its own, beside the
    relay: the events and their deliveries, once final, are counted in the rollups."""
    from sst.rollups import state as rollup_state

    with StubPlatform() as stub:
        dests = [webhook_dest(stub.url)]
        app = mysql_app(mysql_url, redis_url, *dests)
        env = worker_env(mysql_url, redis_url, toml_config(tmp_path / "sst.toml", dests))
        env["SST_ROLLUP_SETTLE_SECONDS"] = "0"  # nothing else is in flight here
        batch(app, tracks_of(30))
        top = max(i for (i,) in _raw(app, "SELECT id FROM events"))

        def marks():
            with db.engine.connect() as conn:
                return {name: rollup_state.read(conn, name).last_id
                        for name in ("events", "deliveries")}

        proc = start_worker(env, log=tmp_path / "worker.log")
        try:
            with app.app_context():
                wait_for(lambda: len(stub.requests) == 30, what="30 webhook requests")
                wait_for(lambda: marks()["events"] >= top, what="events rolled up")
                wait_for(lambda: _raw(app, "SELECT COALESCE(SUM(n), 0) FROM rollup_deliveries "
                                           "WHERE state = 'succeeded'")[0][0] == 30,
                         what="the 30 deliveries counted once final")
        finally:
            kill_group(proc, signal.SIGTERM)
