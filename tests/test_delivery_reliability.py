"""Nothing is lost and nothing is sent twice: Redis flushed, workers killed with SIGKILL, two
workers at once, Retry-After and the retry budget. MariaDB, Redis, real workers (in process
and `sst worker` subprocesses) and the local stub platform."""

import signal
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import redis
from rq import Queue

from sst.cli import main as sst_cli
from sst.connectors.base import PERMANENT, RECORD_AHEAD, RETRYABLE, SKIPPED, SUCCESS, Outcome
from sst.delivery import outbox as dispatch
from sst.delivery import sender as delivery
from sst.delivery import worker as jobs
from sst.delivery.sender import RETRY_WINDOW, SEND_GROUP, next_state, retry_delay
from sst.delivery.worker import run_worker
from support.delivery import (
    batch,
    deliveries,
    kill_group,
    meta_dest,
    mysql_app,
    past,
    set_deliveries,
    start_worker,
    toml_config,
    tracks,
    tracks_of,
    wait_for,
    webhook_dest,
    worker_env,
)
from support.stub_platform import Reply, StubPlatform


def _message_ids(stub):
    return Counter(r.json()["messageId"] for r in stub.requests)


def _sweep_cli(app):
    result = app.test_cli_runner().invoke(sst_cli, ["sweep"])
    assert result.exit_code == 0, result.output
    return result.output


def _relay(app):
    state = app.extensions["sst"]
    with app.app_context():
        return dispatch.relay(state, jobs.make_enqueuer(state, jobs.rq_connection(state)))


def _assert_all_sent_once(app, stub, n):
    counts = _message_ids(stub)
    assert len(counts) == n and set(counts.values()) == {1}, counts.most_common(3)
    rows = deliveries(app)
    assert len(rows) == n
    assert {(d.state, d.attempts) for d in rows} == {("succeeded", 1)}
    assert len(tracks(app)) == n


# --- Redis loses its data -------------------------------------------------------------------


def test_redis_flushed_after_ingest_loses_nothing(mysql_url, redis_url):
    with StubPlatform() as stub:
        app = mysql_app(mysql_url, redis_url, webhook_dest(stub.url))
        batch(app, tracks_of(20))
        redis.Redis.from_url(redis_url).flushdb()  # ingest never needed Redis: the outbox has it

        assert "enqueued 20" in _sweep_cli(app)
        run_worker(app, burst=True)
        _assert_all_sent_once(app, stub, 20)


def test_redis_flushed_after_relay_sweep_requeues_each_once(mysql_url, redis_url):
    with StubPlatform() as stub:
        app = mysql_app(mysql_url, redis_url, webhook_dest(stub.url))
        batch(app, tracks_of(20))
        assert _relay(app) == 20
        assert {d.state for d in deliveries(app)} == {"queued"}
        redis.Redis.from_url(redis_url).flushdb()

        # Too young to judge: a job may be on its way.
        assert "0 whose job was gone; enqueued 0" in _sweep_cli(app)
        set_deliveries(app, updated_at=past(60))  # older than QUEUED_GRACE, without sleeping
        assert "recovered 0 lost while sending, 20 whose job was gone; enqueued 20" \
            in _sweep_cli(app)
        run_worker(app, burst=True)
        _assert_all_sent_once(app, stub, 20)


def test_sweep_leaves_deliveries_whose_job_waits(mysql_url, redis_url):
    with StubPlatform() as stub:
        app = mysql_app(mysql_url, redis_url, webhook_dest(stub.url))
        batch(app, tracks_of(5))
        _relay(app)
        set_deliveries(app, updated_at=past(600))  # a long backlog: old, but the job is there

        assert "0 whose job was gone; enqueued 0" in _sweep_cli(app)
        assert Queue(jobs.QUEUE, connection=redis.Redis.from_url(redis_url)).count == 1
        run_worker(app, burst=True)
        _assert_all_sent_once(app, stub, 5)


# --- workers die or compete -----------------------------------------------------------------


def _kill_mid_request(tmp_path, mysql_url, redis_url, stub, n):
    """Start `sst worker`, SIGKILL it while the stub holds its first request."""
    dest = webhook_dest(stub.url, timeout=2)
    app = mysql_app(mysql_url, redis_url, dest)
    env = worker_env(mysql_url, redis_url, toml_config(tmp_path / "sst.toml", [dest]))
    batch(app, tracks_of(n, prefix="kill"))
    proc = start_worker(env, "--sweep-interval", "3600", log=tmp_path / "worker.log")
    try:
        wait_for(lambda: stub.requests or proc.poll() is not None, what="the first request")
    finally:
        kill_group(proc)  # SIGKILL to the worker and its scheduler child
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "worker.log").read_text()
    return app


def test_worker_killed_mid_request_delivers_after_restart(tmp_path, mysql_url, redis_url):
    with StubPlatform() as stub:
        stub.replies = [Reply(delay=3)]  # holds the request until the worker is dead
        app = _kill_mid_request(tmp_path, mysql_url, redis_url, stub, 1)
        [d] = deliveries(app)
        assert (d.state, d.attempts) == ("sending", 1)
        # L3: the request went out, so the ledger has it, recorded before it was sent.
        [t] = tracks(app)
        assert (t.attempt, t.outcome, t.status) == (1, "sending", None)
        assert "kill-0" in t.request_body

        assert "recovered 0 lost while sending" in _sweep_cli(app)  # its claim is still live
        set_deliveries(app, locked_until=past(1))  # instead of waiting timeout + margin
        assert "recovered 1 lost while sending, 0 whose job was gone; enqueued 1" \
            in _sweep_cli(app)
        run_worker(app, burst=True)

        assert [r.json()["messageId"] for r in stub.requests] == ["kill-0", "kill-0"]
        [d] = deliveries(app)
        assert (d.state, d.attempts) == ("succeeded", 2)
        assert [(t.attempt, t.outcome, t.status) for t in tracks(app)] == [
            (1, "unknown", None), (2, "success", 200)]


def test_worker_killed_mid_job_recovers_the_rest_of_its_job(tmp_path, mysql_url, redis_url):
    n = SEND_GROUP + 10  # one claimed group in flight, the rest of the job still waiting
    with StubPlatform() as stub:
        stub.replies = [Reply(delay=3)]
        app = _kill_mid_request(tmp_path, mysql_url, redis_url, stub, n)
        assert Counter(d.state for d in deliveries(app)) == {"sending": SEND_GROUP,
                                                             "queued": 10}
        assert {d.locked_until is not None for d in deliveries(app)} == {True}

        # The dead worker's job still looks "started" in Redis: only the deadlines tell.
        set_deliveries(app, updated_at=past(60))
        assert "recovered 0 lost while sending, 0 whose job was gone" in _sweep_cli(app)
        set_deliveries(app, locked_until=past(1))
        assert (f"recovered {SEND_GROUP} lost while sending, 10 whose job was gone; "
                f"enqueued {n}") in _sweep_cli(app)
        run_worker(app, burst=True)

        counts = _message_ids(stub)
        in_flight = stub.requests[0].json()["messageId"]
        assert counts[in_flight] == 2 and len(counts) == n and sum(counts.values()) == n + 1
        assert {d.state for d in deliveries(app)} == {"succeeded"}
        # L3: every request the platform received is in the ledger, the killed one too. The
        # requests are recorded RECORD_AHEAD at a time before the first of them goes out, so
        # the killed window's other rows are "unknown" too (never received, sent again).
        answered = [t for t in tracks(app) if t.outcome == "success"]
        unknown = [t for t in tracks(app) if t.outcome == "unknown"]
        assert len(answered) == n and len(tracks(app)) == n + RECORD_AHEAD
        assert in_flight in unknown[0].request_body and len(unknown) == RECORD_AHEAD
        assert {t.delivery_id for t in unknown} <= {t.delivery_id for t in answered}


def test_two_workers_never_send_a_delivery_twice(tmp_path, mysql_url, redis_url):
    n = 200
    with StubPlatform() as stub:
        dest = webhook_dest(stub.url)
        app = mysql_app(mysql_url, redis_url, dest)
        env = worker_env(mysql_url, redis_url, toml_config(tmp_path / "sst.toml", [dest]))
        batch(app, tracks_of(n, prefix="race"))
        ids = [d.id for d in deliveries(app)]
        # Every delivery in two extra jobs, in opposite orders: both workers fight for each row
        # (besides the job their own relay makes).
        queue = Queue(jobs.QUEUE, connection=redis.Redis.from_url(redis_url))
        for k in range(0, n, 20):
            chunk = ids[k:k + 20]
            queue.enqueue(jobs.deliver, "hook", chunk, job_id=f"race-a-{k}", result_ttl=0)
            queue.enqueue(jobs.deliver, "hook", chunk[::-1], job_id=f"race-b-{k}",
                          result_ttl=0)
        procs = [start_worker(env, "--burst", log=tmp_path / f"worker{i}.log") for i in (1, 2)]
        try:
            codes = [p.wait(timeout=120) for p in procs]
        finally:
            for p in procs:
                kill_group(p)  # a burst worker's scheduler child may outlive it
        logs = "\n".join((tmp_path / f"worker{i}.log").read_text() for i in (1, 2))
        assert codes == [0, 0], logs

        _assert_all_sent_once(app, stub, n)
        assert queue.count == 0


def test_a_burst_worker_retries_a_sweep_that_lost_a_lock_race(mysql_url, redis_url,
                                                               monkeypatch):
    # What InnoDB does to one of two workers whose sweep, relay and claims cross: it rolls
    # one transaction back with a deadlock. The worker must try again, not exit with the
    # deliveries still waiting.
    from sqlalchemy.exc import OperationalError

    real_sweep, calls = jobs.sweep, []

    def sweep_that_deadlocks_twice(state, alive=None):
        calls.append(1)
        if len(calls) <= 2:
            raise OperationalError("SELECT ... FOR UPDATE", {},
                                   Exception(1213, "Deadlock found when trying to get lock"))
        return real_sweep(state, alive)

    monkeypatch.setattr(jobs, "sweep", sweep_that_deadlocks_twice)
    with StubPlatform() as stub:
        app = mysql_app(mysql_url, redis_url, webhook_dest(stub.url))
        batch(app, tracks_of(3))
        run_worker(app, burst=True)

        assert len(calls) > 2
        assert Counter(d.state for d in deliveries(app)) == {"succeeded": 3}


def test_a_stale_job_does_not_send_a_retry_before_it_is_due(mysql_url, redis_url):
    with StubPlatform(default=Reply(503)) as stub:
        app = mysql_app(mysql_url, redis_url, webhook_dest(stub.url, retry_backoff=300))
        batch(app, tracks_of(1))
        run_worker(app, burst=True)
        [d] = deliveries(app)
        assert (d.state, d.attempts) == ("pending", 1)
        # A duplicate of the first job (a relay that rolled back after enqueueing, say).
        queue = Queue(jobs.QUEUE, connection=redis.Redis.from_url(redis_url))
        queue.enqueue(jobs.deliver, "hook", [d.id], job_id="stale-1", result_ttl=0)
        run_worker(app, burst=True)

        assert len(stub.requests) == 1
        [after] = deliveries(app)
        assert (after.state, after.attempts, after.next_attempt_at) == (
            "pending", 1, d.next_attempt_at)


def test_a_slow_platform_hands_the_rest_of_a_claim_back_unsent(mysql_url, redis_url,
                                                               monkeypatch):
    monkeypatch.setattr(delivery, "SEND_WINDOW", timedelta(seconds=0.3))
    with StubPlatform() as stub:
        stub.replies = [Reply(delay=0.5)]  # the first request outlasts the send window
        app = mysql_app(mysql_url, redis_url, webhook_dest(stub.url))
        batch(app, tracks_of(5))
        state = app.extensions["sst"]
        with app.app_context():
            groups = []
            dispatch.relay(state, lambda dest, ids, _job: groups.append((dest, ids)))
            [(dest, ids)] = groups
            result = delivery.process(state, dest, ids)
        assert (result.claimed, result.counts) == (5, {"succeeded": 1, "pending": 4})
        # The other 4 were recorded ahead with the first (RECORD_AHEAD) but never went out:
        # no row says they did.
        assert [(t.outcome, t.status) for t in tracks(app)] == [("success", 200)]
        assert Counter((d.state, d.attempts, d.claim) for d in deliveries(app)) == {
            ("succeeded", 1, None): 1, ("pending", 0, None): 4}

        run_worker(app, burst=True)
        _assert_all_sent_once(app, stub, 5)  # attempts are 1: a handed-back try is no try


# --- retry policy -----------------------------------------------------------------------------


def test_429_retry_after_is_honoured(mysql_url, redis_url):
    with StubPlatform(default=Reply(429, {"error": "slow down"},
                                    headers={"Retry-After": "120"})) as stub:
        app = mysql_app(mysql_url, redis_url, webhook_dest(stub.url))
        batch(app, tracks_of(1))
        before = datetime.now(UTC).replace(tzinfo=None)
        run_worker(app, burst=True)

        assert len(stub.requests) == 1
        [d] = deliveries(app)
        assert (d.state, d.attempts, d.last_code) == ("pending", 1, "HTTP 429")
        assert d.last_status == 429  # shown on the admin's event page
        assert d.next_attempt_at >= before + timedelta(seconds=120)
        assert d.next_attempt_at <= before + timedelta(seconds=130)
        run_worker(app, burst=True)  # not due yet: nothing sent
        assert len(stub.requests) == 1


def test_exhausted_retries_fail_with_the_platform_error_kept(mysql_url, redis_url):
    down = Reply(500, {"error": {"code": 2, "message": "Service temporarily unavailable",
                                 "is_transient": True, "fbtrace_id": "Zz9"}})
    with StubPlatform(default=down) as stub:
        app = mysql_app(mysql_url, redis_url, meta_dest(stub.url, retry_max=2))
        batch(app, tracks_of(1))
        run_worker(app, burst=True)
        [d] = deliveries(app)
        assert (d.state, d.attempts) == ("pending", 1)
        # The last try waits out a one-hour outage whatever the backoff.
        assert d.next_attempt_at >= d.created_at + RETRY_WINDOW

        set_deliveries(app, next_attempt_at=past(1))
        run_worker(app, burst=True)
        run_worker(app, burst=True)

        assert len(stub.requests) == 2
        [d] = deliveries(app)
        assert (d.state, d.attempts, d.last_code, d.last_status) == ("failed", 2, "2", 500)
        assert "Service temporarily unavailable" in d.last_error
        assert "Service temporarily unavailable" in d.reason
        assert [(t.attempt, t.status, t.outcome) for t in tracks(app)] == [
            (1, 500, "retryable"), (2, 500, "retryable")]


# --- next_state / retry_delay (pure) ----------------------------------------------------------

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("attempt, expected", [(1, 30), (2, 60), (3, 120), (5, 480)])
def test_retry_delay_doubles_per_attempt(attempt, expected):
    assert retry_delay(attempt, 30, rng=lambda: 0.5) == pytest.approx(expected)


@pytest.mark.parametrize("rng, factor", [(lambda: 0.0, 0.8), (lambda: 0.999999, 1.2)])
def test_retry_delay_jitter_stays_within_20_percent(rng, factor):
    assert retry_delay(2, 10, rng=rng) == pytest.approx(20 * factor, rel=1e-5)


@pytest.mark.parametrize("retry_after, expected", [(600, 600), (5, 30), (None, 30), (0, 30)])
def test_retry_delay_never_sooner_than_retry_after(retry_after, expected):
    assert retry_delay(1, 30, retry_after, rng=lambda: 0.5) == pytest.approx(expected)


@pytest.mark.parametrize("kind, expected", [(SUCCESS, "succeeded"), (SKIPPED, "skipped"),
                                            (PERMANENT, "failed")])
def test_next_state_final_outcomes(kind, expected):
    assert next_state(Outcome(kind), 1, 6, 30, NOW, NOW) == (expected, None)


def test_next_state_retryable_waits_with_backoff():
    state, when = next_state(Outcome(RETRYABLE), 2, 6, 30, NOW, NOW)
    assert state == "pending"
    assert NOW + timedelta(seconds=48) <= when <= NOW + timedelta(seconds=72)


def test_next_state_retryable_honours_retry_after():
    state, when = next_state(Outcome(RETRYABLE, retry_after=3600), 1, 6, 0, NOW, NOW)
    assert (state, when) == ("pending", NOW + timedelta(seconds=3600))


def test_next_state_last_retry_waits_out_an_hour_long_outage():
    first = NOW - timedelta(minutes=5)
    state, when = next_state(Outcome(RETRYABLE), 5, 6, 0, NOW, first)
    assert (state, when) == ("pending", first + RETRY_WINDOW)


def test_next_state_retryable_fails_when_the_budget_is_spent():
    assert next_state(Outcome(RETRYABLE, error="HTTP 503"), 6, 6, 30, NOW, NOW) == (
        "failed", None)


def test_next_state_single_attempt_budget_never_retries():
    assert next_state(Outcome(RETRYABLE), 1, 1, 30, NOW, NOW) == ("failed", None)

