"""`sst forget` leaves no trace of the person in any table; `sst purge` applies retention."""

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select

from sst import privacy
from sst.cli.privacy import forget as forget_cmd
from sst.cli.privacy import purge as purge_cmd
from sst.clock import to_db
from sst.delivery.worker import run_worker
from sst.extensions import db
from sst.identity import people
from sst.models import Delivery, Event, Exchange, ExchangeItem, Person, RejectedPayload
from support.apps import ORIGIN, SERVER_KEY, WRITE_KEY, make_mysql_app, truncate_all
from support.stub_platform import Reply, StubPlatform

BASE = "https://t.example.com"
PHONE = "+1 (650) 253-0000"
E164 = "+16502530000"
EMAIL = "Jane.Doe@Example.com"
FBCLID = "FbClickErase123"


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def scan(app, tokens) -> list:
    """(table, column, token) for every text or JSON value that holds a token, any case."""
    wanted = {t.lower() for t in tokens if t}
    hits = []
    with app.app_context():
        with db.engine.connect() as conn:
            for table in db.metadata.sorted_tables:
                for row in conn.execute(select(table)).mappings():
                    for col, value in row.items():
                        if isinstance(value, (dict, list)):
                            value = json.dumps(value)
                        if not isinstance(value, str):
                            continue
                        low = value.lower()
                        hits += [(table.name, col, t) for t in wanted if t in low]
    return hits


def count(app, model):
    with app.app_context():
        return db.session.execute(select(func.count()).select_from(model)).scalar()


# --- the whole journey on MariaDB + Redis -------------------------------------------------------


def _read_code(outbox):
    lines = [json.loads(x) for x in outbox.read_text().splitlines()]
    return [x["code"] for x in lines if x["to"] == E164][-1]


def _verify(client, outbox):
    h = {"Origin": ORIGIN}
    r = client.post(BASE + "/v1/otp/send", json={"writeKey": WRITE_KEY, "phone": PHONE},
                    headers=h)
    assert r.status_code == 202, r.data
    r = client.post(BASE + "/v1/otp/verify", json={"writeKey": WRITE_KEY, "phone": PHONE,
                                                   "code": _read_code(outbox)}, headers=h)
    assert r.status_code == 200, r.data
    return r.get_json()["userId"]


def test_forget_leaves_no_trace(mysql_url, redis_url, tmp_path):
    import redis

    redis.Redis.from_url(redis_url).flushdb()  # the OTP send limits live there
    outbox = tmp_path / "outbox.jsonl"
    with StubPlatform(Reply(200, {"events_received": 2, "fbtrace_id": "x"})) as stub:
        dests = [{"name": "meta", "connector": "meta", "pixel_id": "123", "access_token": "tok",
                  "base_url": stub.url, "retry_backoff": 0,
                  "events": {"Order Completed": "Purchase", "$page": "PageView"}}]
        app = make_mysql_app(mysql_url, redis_url, DESTINATIONS=dests,
                             IDENTITY={"otp_provider": "file", "otp_outbox": str(outbox)})
        truncate_all(app)
        laptop, phone = app.test_client(), app.test_client()
        h = {"Origin": ORIGIN}
        r = laptop.post(BASE + "/v1/page", headers=h, json={
            "writeKey": WRITE_KEY, "anonymousId": "laptop-anon",
            "context": {"page": {"url": f"https://www.example.com/?fbclid={FBCLID}"}}})
        assert r.status_code == 200
        user_id = _verify(laptop, outbox)
        # The site identifies the user with clear traits: stored as received.
        r = laptop.post(BASE + "/v1/identify", headers=h, json={
            "writeKey": WRITE_KEY, "userId": user_id,
            "traits": {"email": EMAIL, "phone": PHONE, "name": "Jane Doe"}})
        assert r.status_code == 200
        assert _verify(phone, outbox) == user_id
        r = phone.post(BASE + "/v1/track", headers=h, json={
            "writeKey": WRITE_KEY, "event": "Order Completed", "messageId": "order-jane",
            "properties": {"order_id": "o-1", "total": 30, "currency": "USD"},
            "context": {"traits": {"email": EMAIL}}})
        assert r.status_code == 200
        # Someone else, in the same Meta batch request.
        r = app.test_client().post("/v1/track", auth=(SERVER_KEY, ""), json={
            "event": "Order Completed", "userId": "bystander-1", "messageId": "order-other",
            "context": {"traits": {"email": "other@example.com"}}})
        assert r.status_code == 200
        # A refused message that names the laptop, and a live code for the phone.
        r = laptop.post(BASE + "/v1/track", headers=h, json={
            "writeKey": WRITE_KEY, "anonymousId": "laptop-anon", "properties": {"x": 1}})
        assert r.status_code == 400
        r = laptop.post(BASE + "/v1/otp/send", headers=h,
                        json={"writeKey": WRITE_KEY, "phone": PHONE})
        assert r.status_code == 202
        # L1: a refused pixel hit whose base64 data names the laptop and the email, a
        # refused body that only the phone's cookie ties to Jane, and a replay naming her.
        data = base64.urlsafe_b64encode(json.dumps({
            "anonymousId": "laptop-anon", "properties": {"email": EMAIL}}).encode()).decode()
        assert laptop.get(BASE + f"/v1/pixel/track?data={data}").status_code == 200
        r = phone.post(BASE + "/v1/track", headers=h, json={
            "writeKey": WRITE_KEY, "properties": {"note": "COOKIE-ONLY-MARKER"}})
        assert r.status_code == 400
        with app.app_context():
            db.session.execute(insert(privacy.Replay.__table__).values(
                started_at=to_db(datetime.now(UTC)), operator="ops", dry_run=False,
                force=False, filters={"event": f"otp-conv-{user_id}"}))
            # ... and one that names her laptop's event only by its (opaque) messageId.
            [laptop_mid] = db.session.execute(
                select(Event.message_id).where(Event.anonymous_id == "laptop-anon")
                .order_by(Event.id).limit(1)).scalars().all()
            db.session.execute(insert(privacy.Replay.__table__).values(
                started_at=to_db(datetime.now(UTC)), operator="ops", dry_run=False,
                force=False, filters={"events": [laptop_mid, "someone-else"]}))
            db.session.commit()
        run_worker(app, burst=True)
        assert stub.requests, "Meta was not called"

    with app.app_context():
        devices = people.devices_of(app.extensions["sst"].engine, user_id)
    assert "laptop-anon" in devices and len(devices) == 2
    digits = E164.lstrip("+")
    tokens = {E164, digits, EMAIL, user_id, FBCLID, sha(E164), sha(digits),
              sha(EMAIL.lower()), sha(user_id.lower()), *devices, *(sha(d) for d in devices)}
    before = scan(app, tokens)
    tables = {t for t, _, _ in before}
    assert {"events", "tracks", "visitors", "click_ids", "links", "persons",
            "rejected_payloads"} <= tables, tables
    assert count(app, Person) == 1 and count(app, Exchange) >= 1

    runner = app.test_cli_runner()
    dry = runner.invoke(forget_cmd, ["--phone", PHONE])
    assert dry.exit_code == 0, dry.output
    assert "would erase" in dry.output
    assert scan(app, tokens) == before  # a dry run changes nothing

    result = runner.invoke(forget_cmd, ["--phone", PHONE, "--yes", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["dryRun"] is False
    assert doc["counts"]["persons"] == 1 and doc["counts"]["otp_codes"] == 1
    assert doc["counts"]["rejected_payloads"] == 3
    assert doc["counts"]["replays"] == 2
    with app.app_context():
        kept = [str(f) for f in db.session.execute(
            select(privacy.Replay.__table__.c.filters)).scalars()]
    assert not any(laptop_mid in f for f in kept), kept

    assert scan(app, tokens) == []
    assert scan(app, {"COOKIE-ONLY-MARKER"}) == []
    with app.app_context():
        left = db.session.execute(select(Event.message_id)).scalars().all()
        assert left == ["order-other"]  # the bystander keeps their event and delivery
        assert db.session.execute(select(Delivery.state)).scalars().all() == ["succeeded"]
        other = db.session.execute(select(ExchangeItem)).scalars().all()
        assert len(other) == 1
        track = db.session.get(Exchange, other[0].track_id)
        assert doc["counts"]["tracks_anonymised"] >= 1  # the batch also carried Jane's purchase
        assert track.request_body is None
        record = db.session.execute(select(privacy.Erasure)).scalars().one()
        assert record.kind == "phone" and record.finished_at is not None
        assert record.counts == doc["counts"]
    # Nothing left to find: a second run is a no-op with zero counts.
    again = runner.invoke(forget_cmd, ["--phone", PHONE, "--json"])
    assert set(json.loads(again.stdout)["counts"].values()) == {0}


# --- forget on SQLite -------------------------------------------------------------------------


def _post(app, kind, body, key=SERVER_KEY):
    r = app.test_client().post(f"/v1/{kind}", json=body, auth=(key, ""))
    assert r.status_code == 200, r.data


def test_forget_by_anonymous_id_follows_the_graph(app):
    state = app.extensions["sst"]
    user_id, _ = people.person_for_phone(state.engine, E164, app.config["SECRET_KEY"])
    for device in ("dev-a", "dev-b"):
        people.link_device(state.engine, device, user_id)
        _post(app, "track", {"event": "Viewed", "anonymousId": device})
    _post(app, "track", {"event": "Viewed", "anonymousId": "stranger"})
    with app.app_context(), db.engine.begin() as conn:
        # A request that carried only their event: the whole Exchange row goes.
        event_id = conn.execute(select(Event.id).where(Event.anonymous_id == "dev-a")).scalar()
        tid = conn.execute(insert(Exchange.__table__), {
            "destination": "meta", "connector": "meta", "attempt": 1, "outcome": "success",
            "method": "POST", "url": "https://graph.example/events", "created_at": _ago(0),
            "request_body": json.dumps({"ph": sha(E164.lstrip("+"))})}).inserted_primary_key[0]
        conn.execute(insert(ExchangeItem.__table__), {"track_id": tid, "delivery_id": 0,
                                                   "event_id": event_id})
    result = app.test_cli_runner().invoke(forget_cmd, ["--anonymous-id", "dev-b", "--yes"])
    assert result.exit_code == 0, result.output
    assert "tracks_deleted       1" in result.output
    assert scan(app, {"dev-a", "dev-b", user_id, E164, sha(E164.lstrip("+"))}) == []
    assert count(app, Person) == 0 and count(app, Exchange) == 0 and count(app, ExchangeItem) == 0
    with app.app_context():
        assert db.session.execute(select(Event.anonymous_id)).scalars().all() == ["stranger"]


def test_forget_user_without_person_takes_devices_seen_with_the_user_id(app):
    _post(app, "identify", {"userId": "cust-7", "anonymousId": "device-one-q",
                            "traits": {"email": "c7@example.com"}})
    _post(app, "track", {"event": "Viewed", "userId": "cust-7", "anonymousId": "device-two-q"})
    _post(app, "track", {"event": "Viewed", "anonymousId": "device-two-q"})  # no userId on this one
    _post(app, "track", {"event": "Viewed", "userId": "cust-8", "anonymousId": "device-three-q"})
    with app.app_context():
        engine = app.extensions["sst"].engine
        subject = privacy.resolve_subject(engine, app.config["SECRET_KEY"], user_id="cust-7")
        assert subject.anon_ids == {"device-one-q", "device-two-q"} and subject.user_ids == {"cust-7"}
        assert subject.emails == {"c7@example.com"}
        assert privacy.plan_forget(engine, subject)["events"] == 3
        privacy.forget(engine, subject)
    assert scan(app, {"cust-7", "device-one-q", "device-two-q", "c7@example.com"}) == []
    assert count(app, Event) == 1


def test_forget_without_yes_is_a_dry_run(app):
    _post(app, "track", {"event": "Viewed", "userId": "cust-7"})
    result = app.test_cli_runner().invoke(forget_cmd, ["--user-id", "cust-7"])
    assert result.exit_code == 0
    assert "would erase" in result.output and "events" in result.output
    assert count(app, Event) == 1
    assert count(app, privacy.Erasure) == 0
    result = app.test_cli_runner().invoke(forget_cmd, ["--user-id", "cust-7", "--yes",
                                                       "--dry-run"])
    assert count(app, Event) == 1


@pytest.mark.parametrize("args", [[], ["--user-id", "a", "--anonymous-id", "b"],
                                  ["--phone", "not a phone"]])
def test_forget_needs_one_valid_selector(app, args):
    result = app.test_cli_runner().invoke(forget_cmd, args)
    assert result.exit_code == 2


def test_forget_refuses_a_runaway_graph(app, monkeypatch):
    monkeypatch.setattr(privacy, "MAX_IDS", 3)
    for i in range(4):
        _post(app, "track", {"event": "Viewed", "userId": "shared", "anonymousId": f"d{i}"})
    result = app.test_cli_runner().invoke(forget_cmd, ["--user-id", "shared", "--yes"])
    assert result.exit_code == 2
    assert "identity graph" in result.output
    assert count(app, Event) == 4


def test_erasure_record_holds_no_selector(app):
    _post(app, "track", {"event": "Viewed", "userId": "cust-7@example.com"})
    app.test_cli_runner().invoke(forget_cmd, ["--user-id", "cust-7@example.com", "--yes"])
    with app.app_context():
        rec = db.session.execute(select(privacy.Erasure)).scalars().one()
    assert rec.kind == "user_id" and rec.counts["events"] == 1
    assert "cust-7" not in json.dumps(rec.counts)
    assert scan(app, {"cust-7", sha("cust-7@example.com")}) == []


# --- retention ----------------------------------------------------------------------------------

POLICY = {"bodies_days": 7, "events_days": 30, "rejected_days": 14, "tracks_days": 90}


def _ago(days):
    return to_db(datetime.now(UTC) - timedelta(days=days))


def seed_retention(app):
    for mid, days in (("e-new", 0), ("e-old", 40)):
        when = (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
        _post(app, "track", {"event": "Viewed", "userId": "u", "messageId": mid,
                             "timestamp": when})
    with app.app_context(), db.engine.begin() as conn:
        ids = dict(conn.execute(select(Event.message_id, Event.id)).all())
        for mid in ids:
            conn.execute(insert(Delivery.__table__), {
                "event_id": ids[mid], "destination": "meta", "connector": "meta",
                "platform_event": "Purchase", "state": "succeeded", "attempts": 1,
                "retry_base": 0, "next_attempt_at": _ago(0), "event_time": _ago(0),
                "created_at": _ago(0), "updated_at": _ago(0)})
        for name, days, event in (("t-new", 0, "e-new"), ("t-mid", 10, "e-new"),
                                  ("t-old", 100, "e-old")):
            tid = conn.execute(insert(Exchange.__table__), {
                "destination": "meta", "connector": "meta", "attempt": 1,
                "outcome": "success", "method": "POST", "url": f"https://x/{name}",
                "request_body": '{"em": "hash"}', "response_body": '{"ok": 1}',
                "created_at": _ago(days)}).inserted_primary_key[0]
            conn.execute(insert(ExchangeItem.__table__), {"track_id": tid, "delivery_id": 0,
                                                       "event_id": ids[event]})
        for name, days in (("r-new", 0), ("r-mid", 10), ("r-old", 20)):
            conn.execute(insert(RejectedPayload.__table__), {
                "received_at": _ago(days), "endpoint": "/v1/track", "status": 400,
                "error": "invalid_message", "message": name, "body": '{"raw": 1}'})


@pytest.fixture(params=["sqlite", "mariadb"])
def any_app(request):
    if request.param == "sqlite":
        yield request.getfixturevalue("app")
        return
    app = make_mysql_app(request.getfixturevalue("mysql_url"))
    truncate_all(app)
    yield app
    with app.app_context():
        db.engine.dispose()


def test_purge_plan_then_apply(any_app):
    seed_retention(any_app)
    with any_app.app_context():
        engine = any_app.extensions["sst"].engine
        plan = privacy.plan_purge(engine, POLICY)
        assert plan == {"track_bodies": 2, "rejected_bodies": 2, "tracks": 1, "events": 1,
                        "rejected_payloads": 1}
        assert count(any_app, Exchange) == 3  # the plan changed nothing
        done = privacy.purge(engine, POLICY, batch=1)
    assert done == plan
    with any_app.app_context():
        tracks = {t.url[-5:]: t for t in db.session.execute(select(Exchange)).scalars()}
        assert set(tracks) == {"t-new", "t-mid"}
        assert tracks["t-new"].request_body is not None
        assert tracks["t-mid"].request_body is None and tracks["t-mid"].response_body is None
        assert db.session.execute(select(Event.message_id)).scalars().all() == ["e-new"]
        assert count(any_app, Delivery) == 1
        assert count(any_app, ExchangeItem) == 2  # t-old's item and e-old's items are gone
        rejected = {r.message: r for r in db.session.execute(select(RejectedPayload)).scalars()}
        assert set(rejected) == {"r-new", "r-mid"}
        assert rejected["r-mid"].body is None and rejected["r-new"].body is not None
        record = db.session.execute(select(privacy.Erasure)).scalars().one()
        assert record.kind == "retention" and record.counts == done
        # Run again: nothing more to do.
        assert set(privacy.purge(engine, POLICY).values()) == {0}


def test_purge_cli_dry_run_by_default(app):
    seed_retention(app)
    app.config["RETENTION"] = {"events_days": 30}
    result = app.test_cli_runner().invoke(purge_cmd, [])
    assert result.exit_code == 0, result.output
    assert "would purge" in result.output and "events" in result.output
    assert count(app, Event) == 2
    result = app.test_cli_runner().invoke(purge_cmd, ["--yes", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"]["events"] == 1
    assert count(app, Event) == 1


def test_purge_cli_without_retention_applies_the_default_body_rule(app):
    """M5: request/response bodies have a default retention (30 days)."""
    result = app.test_cli_runner().invoke(purge_cmd, ["--yes", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["policy"] == {"bodies_days": 30}


def test_bodies_days_zero_keeps_bodies():
    assert privacy.retention_policy({"bodies_days": 0}) == {}
    assert privacy.retention_policy({}) == {"bodies_days": 30}


@pytest.mark.parametrize("policy", [{"events_days": 0}, {"events_days": "30"},
                                    {"events_days": True}, {"logs_days": 3}])
def test_retention_policy_refuses_bad_values(policy):
    with pytest.raises(privacy.PrivacyError):
        privacy.retention_policy(policy)


def test_retention_policy_skips_unset():
    assert privacy.retention_policy({"events_days": 30, "bodies_days": None}) == {
        "events_days": 30}  # None: that rule is off, the default body rule included
