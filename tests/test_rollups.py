"""The rollup-backed reports (sst.rollups) answer exactly what the raw queries
(sst.reports) answer, on MariaDB and SQLite, at every step of a history that changes after
it is rolled up: late events with old event times, deliveries that end, retry or are
replayed after being counted, requests answered after being seen in flight, links and
Persons made after a conversion, bots, `sst forget` and retention.

On erasure the rollups take out what is deleted: a forgotten person's events, deliveries,
requests and conversions stop counting in the rollups exactly as in the raw rows (no
aggregate keeps them), and other devices' conversions their click ids or links credited
are worked out again.
"""

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from sst import privacy, reports
from sst.delivery import replay
from sst.extensions import db
from sst.models import Delivery, Link
from sst.reports import Window
from sst.rollups import passes, read, state
from support import rollup_data
from support.apps import make_mysql_app, truncate_all

NAMES = ["Order Completed", "Signed Up"]
START = rollup_data.START.replace(tzinfo=UTC)


@pytest.fixture(params=["mariadb", "sqlite"])
def app(request):
    if request.param == "mariadb":
        app = make_mysql_app(request.getfixturevalue("mysql_url"), CONVERSION_EVENTS=NAMES)
        truncate_all(app)
    else:
        app = request.getfixturevalue("app")
        app.config["CONVERSION_EVENTS"] = NAMES
    with app.app_context():
        yield app


def windows(seed: int) -> list[Window]:
    """Whole days, partial days, less than a day, open ends, each source."""
    rng = random.Random(seed)
    out = [Window(), Window(START, START + timedelta(days=7)),
           Window(START + timedelta(days=1), START + timedelta(days=3), "web"),
           Window(None, START + timedelta(days=2, hours=5)),
           Window(START + timedelta(hours=30), None, "server")]
    for _ in range(7):
        lo = START + timedelta(hours=rng.uniform(-10, 150))
        out.append(Window(lo, lo + timedelta(hours=rng.choice([3, 20, 30, 49, 100])),
                          rng.choice([None, "web", "server"])))
    return out


def assert_same(engine, seed: int) -> None:
    for w in windows(seed):
        raw = reports.run(engine, w, reports.REPORTS, NAMES)
        rolled = read.run(engine, w, reports.REPORTS, NAMES)
        for key in reports.REPORTS:
            assert rolled[key] == raw[key], (key, w)


def roll_up(engine) -> None:
    passes.run_pass(engine, NAMES, settle=0, batch=37, budget=float("inf"))


def test_rollups_answer_what_the_raw_rows_answer_through_a_changing_history(app):
    engine = db.engine
    h = rollup_data.History(engine, seed=11)
    h.identities()
    h.events(400)
    assert_same(engine, 1)  # nothing rolled up yet: all raw

    roll_up(engine)
    with engine.connect() as conn:
        assert state.read(conn, "events").last_id == 400
        rolled = conn.execute(select(db.metadata.tables["rollup_conversions"].c.event_id)).all()
    assert rolled, "the conversions are rolled up"
    assert_same(engine, 2)

    # After the roll-up: late events with old times (and their click ids, some earlier than
    # the ones known), links and Persons made after the conversions, deliveries ending,
    # retrying and requests answered. Compared before the next pass (read raw) and after.
    h.events(60, day_lo=0, day_hi=2)
    h.identities(n_links=10, n_persons=2)
    h.settle_deliveries()
    assert_same(engine, 3)
    roll_up(engine)
    assert_same(engine, 4)

    # A replay puts failed and succeeded deliveries back to pending: they leave the rollup.
    d = Delivery.__table__.c
    with engine.begin() as conn:
        picked = conn.execute(select(d.id, d.destination, d.attempts).where(
            d.state.in_(("failed", "succeeded"))).limit(25)).all()
        groups = {}
        for i, dest, attempts in picked:
            groups.setdefault(dest, []).append((i, attempts))
        replay._hand_over(app.extensions["sst"], conn, groups, None,
                          datetime.now(UTC).replace(tzinfo=None))
    assert_same(engine, 5)
    h.settle_deliveries()  # some end again, in another state
    assert_same(engine, 6)
    roll_up(engine)
    assert_same(engine, 7)


def test_rollups_take_out_what_erasure_deletes(app):
    engine = db.engine
    h = rollup_data.History(engine, seed=5)
    h.identities(n_links=16, n_persons=4)
    h.events(300)
    roll_up(engine)
    assert_same(engine, 8)

    # sst forget of a Person: its devices' events, deliveries, requests and links go.
    with engine.connect() as conn:
        person = conn.execute(select(Link.value).where(Link.kind == "person")
                              .order_by(Link.id)).scalars().first()
    subject = privacy.resolve_subject(engine, app.config["SECRET_KEY"], user_id=person)
    counts = privacy.forget(engine, subject)
    assert counts["events"] > 0
    assert_same(engine, 9)
    roll_up(engine)
    assert_same(engine, 10)

    # Retention: events older than the third day, requests older than the fourth.
    now = rollup_data.START + timedelta(days=6)
    privacy.purge(engine, {"events_days": 3, "tracks_days": 2}, now=now)
    assert_same(engine, 11)
    with engine.connect() as conn:
        assert not conn.execute(select(Delivery.id).where(
            Delivery.event_time < now - timedelta(days=3))).first()
    roll_up(engine)
    assert_same(engine, 12)


def test_a_new_link_after_a_conversion_is_read_raw_until_the_pass(app):
    engine = db.engine
    h = rollup_data.History(engine, seed=3)
    h.identities(n_links=2, n_persons=2)
    h.events(200)
    roll_up(engine)
    before = read.run(engine, Window(), ("attribution",), NAMES)["attribution"]
    with engine.begin() as conn:  # every device now verified through one Person
        person = conn.execute(select(db.metadata.tables["persons"].c.user_id)).scalars().first()
        conn.execute(db.metadata.tables["links"].insert(), [
            {"anonymous_id": dev, "kind": "person", "value": person,
             "created_at": rollup_data.START} for dev in h.devices
            if not conn.execute(select(Link.id).where(Link.anonymous_id == dev,
                                                      Link.kind == "person",
                                                      Link.value == person)).first()])
    after = read.run(engine, Window(), ("attribution",), NAMES)["attribution"]
    assert after == reports.run(engine, Window(), ("attribution",), NAMES)["attribution"]
    assert after["verified"] > before["verified"]
    roll_up(engine)
    assert read.run(engine, Window(), ("attribution",), NAMES)["attribution"] == after


def test_rebuild_gives_the_rollups_the_pass_built(app):
    engine = db.engine
    h = rollup_data.History(engine, seed=9)
    h.identities()
    h.events(250)
    roll_up(engine)
    h.settle_deliveries()
    roll_up(engine)
    tables = ("rollup_events", "rollup_deliveries", "rollup_requests", "rollup_attribution")

    def snapshot():
        with engine.connect() as conn:
            out = {}
            for name in tables:
                t = db.metadata.tables[name]
                cols = [c for c in t.c if c.name not in ("id", "k")]
                sums = {}
                for row in conn.execute(select(*cols)):
                    *keys, = row
                    nkeys = len([c for c in cols if c.name in
                                 ("day", "source", "name", "destination", "state", "outcome",
                                  "ms", "dim", "k1", "k2", "k3", "k4")])
                    k = tuple(str(x) for x in keys[:nkeys])
                    sums[k] = tuple(a + b for a, b in zip(sums.get(k, (0,) * (len(keys) - nkeys)),
                                                          keys[nkeys:], strict=True))
                out[name] = {k: v for k, v in sums.items() if any(v)}
            return out

    incremental = snapshot()
    passes.rebuild(engine, NAMES)
    assert snapshot() == incremental
    assert_same(engine, 13)


def test_changed_conversion_events_are_read_raw_then_rolled_up_again(app):
    engine = db.engine
    h = rollup_data.History(engine, seed=4)
    h.identities()
    h.events(150)
    roll_up(engine)
    other = ["Add To Cart"]
    w = Window()
    raw = reports.run(engine, w, ("attribution",), other)["attribution"]
    assert read.run(engine, w, ("attribution",), other)["attribution"] == raw
    passes.run_pass(engine, other, settle=0, budget=float("inf"))
    with engine.connect() as conn:
        assert state.read(conn, "conversions").info == {"names": other}
    assert read.run(engine, w, ("attribution",), other)["attribution"] == raw


def test_a_pass_waits_for_ids_to_settle(app):
    engine = db.engine
    h = rollup_data.History(engine, seed=2)
    h.events(20)
    passes.run_pass(engine, NAMES, settle=30, budget=float("inf"))
    with engine.connect() as conn:
        assert state.read(conn, "events").last_id == 0  # noted as the horizon only
    with engine.begin() as conn:  # the horizon was noted long enough ago
        conn.execute(update(state.state_t).values(
            horizon_at=datetime(2026, 1, 1)))
    passes.run_pass(engine, NAMES, settle=30, budget=float("inf"))
    with engine.connect() as conn:
        assert state.read(conn, "events").last_id == 20
    assert_same(engine, 14)


def test_the_upgrade_backfills_the_rollups_of_a_database_with_history(tmp_path):
    from sst import create_app, migrate
    from support.apps import base_config

    app = create_app(base_config(DATABASE_URL=f"sqlite:///{tmp_path / 'old.sqlite'}",
                                 CONVERSION_EVENTS=NAMES))
    with app.app_context():
        migrate.upgrade("0010_perf")  # a database from before the rollups, with history
        h = rollup_data.History(db.engine, seed=8)
        h.identities()
        h.events(120)
        migrate.upgrade()
        with db.engine.connect() as conn:
            assert state.read(conn, "events").last_id == 120
            assert state.read(conn, "conversions").info == {"names": sorted(NAMES)}
        assert_same(db.engine, 15)
        db.engine.dispose()


def test_cli_report_reads_the_rollups_and_rollups_commands(app):
    import json

    from sst.cli.reports import report, rollups

    h = rollup_data.History(db.engine, seed=6)
    h.identities()
    h.events(80)
    runner = app.test_cli_runner()
    res = runner.invoke(rollups, ["run", "--settle", "0"])
    assert res.exit_code == 0, res.output
    assert "rolled up" in res.output
    args = ["--since", "2026-10-30", "--until", "2026-11-08T05:00:00", "--json"]
    rolled = json.loads(runner.invoke(report, args).output)
    raw = json.loads(runner.invoke(report, [*args, "--raw"]).output)
    assert rolled == raw and rolled["events"]
    res = runner.invoke(rollups, ["rebuild", "--settle", "0"])
    assert res.exit_code == 0, res.output
    assert "rebuilt" in res.output
    res = runner.invoke(rollups, ["status"])
    marks = dict(line.split(maxsplit=1) for line in res.output.splitlines())
    assert marks["events"].strip() == "80"
