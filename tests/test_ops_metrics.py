"""GET /metrics: ingest counters, delivery numbers from the database, queue numbers from
Redis, each source failing on its own without failing the scrape."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert

from sst import create_app, migrate
from sst.clock import to_db, utcnow
from sst.extensions import db
from sst.ingest import counters
from sst.models import Delivery, Exchange
from support.apps import WRITE_KEY, base_config, make_mysql_app, truncate_all

HOOK = {"name": "hook", "connector": "webhook", "url": "http://127.0.0.1:9/hook",
        "secret": "s3cret", "events": {"*": "*"}}
_event_ids = itertools.count(1)


def sqlite_app(tmp_path, **extra):
    app = create_app(base_config(DATABASE_URL=f"sqlite:///{tmp_path / 'sst.sqlite'}", **extra))
    with app.app_context():
        migrate.upgrade()
    return app


def scrape(app, **headers):
    r = app.test_client().get("/metrics", headers=headers)
    assert r.status_code == 200, r.data
    assert r.headers["Content-Type"].startswith("text/plain")
    return r.get_data(as_text=True)


def value(body, name, **labels):
    """The sample `name{labels}` in a scrape, or None."""
    want = {k: str(v) for k, v in labels.items()}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name == name and s.labels == want:
                return s.value
    return None


def add_deliveries(app, state, n, *, destination="hook", updated_at=None, next_attempt_at=None):
    now = utcnow()
    rows = [{"event_id": next(_event_ids), "destination": destination, "connector": "webhook",
             "platform_event": "Purchase", "state": state, "attempts": 1,
             "next_attempt_at": to_db(next_attempt_at or now), "event_time": to_db(now),
             "created_at": to_db(now), "updated_at": to_db(updated_at or now)}
            for _ in range(n)]
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(insert(Delivery.__table__), rows)


def add_tracks(app, outcomes_ms, destination="hook", created_at=None):
    rows = [{"destination": destination, "connector": "webhook", "attempt": 1,
             "outcome": outcome, "method": "POST", "url": "http://127.0.0.1:9/hook",
             "status": 200 if outcome == "success" else 500, "duration_ms": ms,
             "created_at": to_db(created_at or utcnow())} for outcome, ms in outcomes_ms]
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(insert(Exchange.__table__), rows)


# --- ingest counters --------------------------------------------------------------------------


def test_ingest_counters_count_requests_by_endpoint_and_status(tmp_path):
    app = sqlite_app(tmp_path)

    def counts(body):
        return {key: value(body, "sst_ingest_requests_total", endpoint=key[0], status=key[1])
                or 0 for key in [("track", 200), ("track", 400), ("pixel", 200),
                                 ("other", 404), ("batch", 401)]}

    before = counts(scrape(app))
    client = app.test_client()
    assert client.post("/v1/track", json={"event": "A", "anonymousId": "a"},
                       auth=(WRITE_KEY, "")).status_code == 200
    assert client.post("/v1/track", data=b"{nope", auth=(WRITE_KEY, "")).status_code == 400
    assert client.get("/v1/pixel/track?event=A&anonymousId=a").status_code == 200
    assert client.post("/v1/nope", json={}, auth=(WRITE_KEY, "")).status_code == 404
    assert client.post("/v1/batch", json={"batch": []}).status_code == 401
    after = counts(scrape(app))

    assert {k: after[k] - before[k] for k in after} == {
        ("track", 200): 1, ("track", 400): 1, ("pixel", 200): 1, ("other", 404): 1,
        ("batch", 401): 1}


def test_ingest_message_counters_by_source(tmp_path):
    app = sqlite_app(tmp_path)

    def stored_rejected(body):
        return tuple(value(body, "sst_ingest_messages_total", source="web", result=r) or 0
                     for r in ("stored", "rejected"))

    before = stored_rejected(scrape(app))
    counters.count_messages("web", 3, 1)
    counters.count_messages("web", 2, 0)
    counters.count_messages(None, 0, 4)
    body = scrape(app)

    after = stored_rejected(body)
    assert (after[0] - before[0], after[1] - before[1]) == (5, 1)
    assert value(body, "sst_ingest_messages_total", source="unknown", result="rejected") >= 4


def test_counters_add_up_across_processes_in_multiprocess_mode(tmp_path):
    prom = tmp_path / "prom"
    prom.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(prom)}
    count = "from sst.ingest import counters; counters.count_request('track', 200); " \
            "counters.count_messages('web', 3, 1)"
    for _ in range(2):  # two gunicorn workers, say
        subprocess.run([sys.executable, "-c", count], env=env, check=True, timeout=60)
    scrape_code = textwrap.dedent(f"""
        from sst import create_app, migrate
        from sst.ops import metrics
        app = create_app({{"TESTING": True, "DATABASE_URL": "sqlite:///{tmp_path}/mp.sqlite"}})
        with app.app_context():
            migrate.upgrade()
        print(app.test_client().get("/metrics").get_data(as_text=True))
    """)
    out = subprocess.run([sys.executable, "-c", scrape_code], env=env, check=True, timeout=60,
                         capture_output=True, text=True).stdout

    assert value(out, "sst_ingest_requests_total", endpoint="track", status="200") == 2
    assert value(out, "sst_ingest_messages_total", source="web", result="stored") == 6
    assert value(out, "sst_database_up") == 1


# --- from the database --------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "mariadb"])
def dest_app(request, tmp_path):
    if request.param == "sqlite":
        app = sqlite_app(tmp_path, DESTINATIONS=[HOOK])
    else:
        app = make_mysql_app(request.getfixturevalue("mysql_url"), DESTINATIONS=[HOOK])
        truncate_all(app)
    yield app
    with app.app_context():
        db.engine.dispose()


def test_delivery_numbers_come_from_the_database(dest_app):
    now = utcnow()
    add_deliveries(dest_app, "pending", 3, next_attempt_at=now - timedelta(seconds=120))
    add_deliveries(dest_app, "pending", 1, next_attempt_at=now + timedelta(hours=1))
    add_deliveries(dest_app, "queued", 1)
    add_deliveries(dest_app, "succeeded", 2)
    add_deliveries(dest_app, "failed", 1)
    add_deliveries(dest_app, "succeeded", 7, updated_at=now - timedelta(hours=1))  # too old
    add_tracks(dest_app, [("success", 100), ("success", 200), ("success", 300),
                          ("success", 400), ("retryable", 500)])
    add_tracks(dest_app, [("permanent", 9000)], created_at=now - timedelta(hours=1))

    body = scrape(dest_app)

    def deliveries(state):
        return value(body, "sst_deliveries", destination="hook", state=state)

    def finished(state):
        return value(body, "sst_deliveries_finished_5m", destination="hook", state=state)

    assert value(body, "sst_database_up") == 1
    assert (deliveries("pending"), deliveries("queued"), deliveries("sending")) == (4, 1, 0)
    assert (finished("succeeded"), finished("failed"), finished("skipped")) == (2, 1, 0)
    assert value(body, "sst_delivery_requests_5m", destination="hook", outcome="success") == 4
    assert value(body, "sst_delivery_requests_5m", destination="hook", outcome="retryable") == 1
    assert value(body, "sst_delivery_requests_5m", destination="hook",
                 outcome="permanent") is None
    assert value(body, "sst_delivery_latency_seconds_5m", destination="hook",
                 quantile="0.5") == pytest.approx(0.3)
    assert value(body, "sst_delivery_latency_seconds_5m", destination="hook",
                 quantile="0.95") == pytest.approx(0.5)
    assert 120 <= value(body, "sst_delivery_oldest_waiting_seconds") < 180
    assert value(body, "sst_destination_paused", destination="hook") == 0
    assert value(body, "sst_redis_up") is None  # no Redis configured: no queue numbers


def test_an_empty_database_reports_zeros(tmp_path):
    body = scrape(sqlite_app(tmp_path, DESTINATIONS=[HOOK]))
    assert value(body, "sst_deliveries", destination="hook", state="pending") == 0
    assert value(body, "sst_delivery_oldest_waiting_seconds") == 0


def test_database_down_still_answers(tmp_path):
    app = create_app(base_config(DATABASE_URL="mysql+pymysql://root@127.0.0.1:1/none"))
    body = scrape(app)
    assert value(body, "sst_database_up") == 0
    assert "# TYPE sst_ingest_requests_total counter" in body  # the counters are still there


# --- from Redis --------------------------------------------------------------------------------


def test_redis_down_still_answers_with_redis_up_zero(tmp_path):
    app = sqlite_app(tmp_path, REDIS_URL="redis://127.0.0.1:1/0")
    body = scrape(app)
    assert value(body, "sst_redis_up") == 0
    assert value(body, "sst_database_up") == 1
    assert value(body, "sst_queue_depth", queue="deliveries") is None


def test_queue_depth_from_redis(tmp_path, redis_url):
    import redis
    from rq import Queue

    own_db = redis_url.rsplit("/", 1)[0] + "/12"  # a queue no other test fills meanwhile
    app = sqlite_app(tmp_path, REDIS_URL=own_db)
    conn = redis.Redis.from_url(own_db)
    queue = Queue("deliveries", connection=conn)
    queue.empty()
    queue.enqueue("sst.jobs.deliver", "hook", [1])
    queue.enqueue("sst.jobs.deliver", "hook", [2])
    try:
        body = scrape(app)
    finally:
        queue.empty()
    assert value(body, "sst_redis_up") == 1
    assert value(body, "sst_queue_depth", queue="deliveries") == 2
    assert value(body, "sst_queue_jobs", queue="deliveries", registry="failed") == 0


# --- access ---------------------------------------------------------------------------------


def test_admin_token_protects_the_scrape(tmp_path, monkeypatch):
    monkeypatch.setenv("SST_TEST_ADMIN_TOKEN", "admin-token-0123456789")
    app = sqlite_app(tmp_path, ADMIN={"token": "env:SST_TEST_ADMIN_TOKEN"})
    client = app.test_client()

    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    assert wrong.get_json()["error"] == "unauthorized"
    ok = scrape(app, Authorization="Bearer admin-token-0123456789")
    assert value(ok, "sst_database_up") == 1


def test_without_a_token_the_scrape_is_open(tmp_path):
    assert value(scrape(sqlite_app(tmp_path)), "sst_database_up") == 1


def test_openmetrics_when_asked(tmp_path):
    r = sqlite_app(tmp_path).test_client().get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.headers["Content-Type"].startswith("application/openmetrics-text")
    assert r.get_data(as_text=True).rstrip().endswith("# EOF")


def test_sst_admin_token_also_protects_the_scrape(tmp_path, monkeypatch):
    """M4: the token from SST_ADMIN_TOKEN guarded /admin but left /metrics open."""
    monkeypatch.setenv("SST_ADMIN_TOKEN", "admin-token-from-env-0123")
    app = sqlite_app(tmp_path)
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/admin/").status_code == 401
    ok = scrape(app, Authorization="Bearer admin-token-from-env-0123")
    assert value(ok, "sst_database_up") == 1


def test_production_without_a_token_closes_the_scrape(tmp_path):
    """M4: production requires a credential for /metrics, or an explicit private bind."""
    prod = {"ENV": "production", "SECRET_KEY": "a-private-random-secret-0123456789"}
    assert sqlite_app(tmp_path, **prod).test_client().get("/metrics").status_code == 404
    opened = sqlite_app(tmp_path, ADMIN={"metrics": "open"}, **prod)
    assert value(scrape(opened), "sst_database_up") == 1


def test_a_configured_but_unusable_token_fails_start_up_rather_than_open_the_scrape(
        tmp_path, monkeypatch):
    from sst.config import ConfigError

    monkeypatch.delenv("SST_TEST_ADMIN_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="SST_TEST_ADMIN_TOKEN is not set"):
        sqlite_app(tmp_path, ADMIN={"token": "env:SST_TEST_ADMIN_TOKEN"})


def test_a_bad_metrics_mode_fails_start_up(tmp_path):
    from sst.config import ConfigError

    with pytest.raises(ConfigError, match="metrics"):
        sqlite_app(tmp_path, ADMIN={"metrics": "public"})
