"""RQ job functions, the enqueue helper the relay uses, and the worker loops.

Jobs take ids, never ORM objects; each worker process builds one app and reuses it (and
its connectors' HTTP sessions) for every job.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from sst.config import QUEUE
from sst.delivery.outbox import RELAY_LIMIT, relay, sweep
from sst.delivery.sender import process
from sst.ops.alerts import run_alerts
from sst.rollups.passes import Periodic

logger = logging.getLogger(__name__)

FAILURE_TTL = int(timedelta(days=7).total_seconds())
LIVE_STATUSES = {b"queued", b"started", b"scheduled", b"deferred"}

_app = None


def worker_app():
    """The app of this worker process, built once."""
    global _app
    if _app is None:
        from sst.app import create_app

        _app = create_app()
    return _app


def use_app(app) -> None:
    """Let jobs run in an app that already exists (the `sst worker` process, tests)."""
    global _app
    _app = app


def deliver(destination: str, delivery_ids: list[int]) -> dict:
    """RQ job: send these deliveries of one destination (the ones still claimable)."""
    app = worker_app()
    with app.app_context():
        result = process(app.extensions["sst"], destination, delivery_ids)
    return {"claimed": result.claimed, **result.counts}


# --- Redis / RQ -----------------------------------------------------------------------------


def rq_connection(state):
    import redis

    return redis.Redis.from_url(state.redis_url, socket_timeout=30, socket_connect_timeout=5)


def make_enqueuer(state, connection):
    """enqueue(destination, ids, job_id) for relay(): one RQ job per group of deliveries."""
    from rq import Queue

    queue = Queue(QUEUE, connection=connection)

    def enqueue(destination, ids, job_id):
        dest = state.destinations.get(destination)
        per_request = (dest.timeout if dest else 10.0) + 5
        queue.enqueue(deliver, destination, ids, job_id=job_id,
                      job_timeout=int(per_request * len(ids) + 60), result_ttl=0,
                      failure_ttl=FAILURE_TTL, description=f"deliver {len(ids)} to {destination}")

    return enqueue


def job_checker(connection):
    """job_alive(job_ids) -> the ids whose RQ job still waits or runs."""

    def job_alive(job_ids):
        ids = list(job_ids)
        if not ids:
            return set()
        pipe = connection.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(f"rq:job:{job_id}", "status")
        return {j for j, status in zip(ids, pipe.execute(), strict=True)
                if status in LIVE_STATUSES}

    return job_alive


# --- embedded mode (no Redis) ---------------------------------------------------------------


def run_inline(state, limit: int = 500) -> int:
    """Embedded queue: send due deliveries in this process. Returns how many were handled."""
    handled = 0

    def enqueue(destination, ids, _job_id):
        nonlocal handled
        groups.append((destination, ids))
        handled += len(ids)

    groups: list = []
    relay(state, enqueue, limit=limit)
    for destination, ids in groups:
        process(state, destination, ids)
    return handled


PURGE_EVERY = 6 * 3600.0  # seconds between the workers' own passes of the body retention


def purge_bodies(app) -> None:
    """Drop ledger and refused bodies past [retention] bodies_days (default 30 days)."""
    from sst import privacy

    try:
        counts = privacy.purge_bodies(app.extensions["sst"].engine,
                                      app.config.get("RETENTION"))
    except Exception:  # retention must never stop deliveries; `sst purge` says why
        logger.exception("body retention")
        return
    if any(counts.values()):
        logger.info("body retention: %s", counts)


def start_embedded_worker(app, poll: float = 0.5, sweep_every: float = 30.0):
    """A daemon thread that plays the worker for `sst dev`."""
    state = app.extensions["sst"]
    roll_up = Periodic()  # the reports' rollups, kept current off the request path

    def loop():
        last_sweep = 0.0
        last_purge = time.monotonic() - PURGE_EVERY + 60.0
        while True:
            try:
                with app.app_context():
                    roll_up(app)
                    if time.monotonic() - last_sweep > sweep_every:
                        sweep(state)
                        last_sweep = time.monotonic()
                        run_alerts(app)
                    if time.monotonic() - last_purge > PURGE_EVERY:
                        last_purge = time.monotonic()
                        purge_bodies(app)
                    if run_inline(state):
                        continue
            except Exception:  # keep the embedded worker alive; the rows stay in the outbox
                logger.exception("embedded worker")
            time.sleep(poll)

    thread = threading.Thread(target=loop, name="sst-embedded-worker", daemon=True)
    thread.start()
    return thread


# --- `sst worker` ---------------------------------------------------------------------------


BURST_HOUSEKEEPING_TRIES = 5


def run_worker(app, *, burst: bool = False, queues=(QUEUE,), worker_class: str = "simple",
               poll: float = 0.5, sweep_every: float = 60.0, with_relay: bool = True) -> None:
    """RQ worker(s) with the scheduler, plus the relay and periodic sweep."""
    state = app.extensions["sst"]
    use_app(app)
    if not state.redis_url:
        _run_embedded(app, burst, poll)
        return
    from rq import Queue, SimpleWorker, Worker

    connection = rq_connection(state)
    connection.ping()  # Redis down: say so now (one line from the CLI), not deep inside RQ
    enqueue = make_enqueuer(state, connection)
    alive = job_checker(connection)
    cls = SimpleWorker if worker_class == "simple" else Worker
    rq_queues = [Queue(name, connection=connection) for name in queues]

    if burst:
        failures = 0
        while True:
            try:
                with app.app_context():
                    sweep(state, alive)
                    moved = relay(state, enqueue) if with_relay else 0
            except Exception:
                # Another worker's claim can deadlock with this sweep or relay (InnoDB then
                # rolls this transaction back, rows untouched): try again, as the
                # long-running relay loop below does, rather than exit with work left.
                failures += 1
                if failures >= BURST_HOUSEKEEPING_TRIES:
                    raise
                logger.warning("relay or sweep failed (try %s), retrying", failures,
                               exc_info=True)
                time.sleep(0.05 * failures)
                continue
            failures = 0
            cls(rq_queues, connection=connection).work(burst=True, with_scheduler=True,
                                                       logging_level="WARNING")
            if not moved:
                return

    stop = threading.Event()
    roll_up = Periodic()  # the reports' rollups, kept current off the request path

    def rollup_loop():
        # A thread of its own: a pass (a second of work, more while many deliveries wait)
        # held the relay up when it ran in relay_loop, and the job queue ran dry meanwhile
        # (bench_e2e at 300 events/s: flat without the pass, backlog growing with it).
        while not stop.is_set():
            with app.app_context():
                roll_up(app)
            stop.wait(1.0)

    def relay_loop():
        last_sweep = 0.0
        last_purge = time.monotonic() - PURGE_EVERY + 60.0  # a minute after start-up
        while not stop.is_set():
            try:
                with app.app_context():
                    if time.monotonic() - last_sweep > sweep_every:
                        sweep(state, alive)
                        last_sweep = time.monotonic()
                        run_alerts(app)
                    if time.monotonic() - last_purge > PURGE_EVERY:
                        last_purge = time.monotonic()
                        purge_bodies(app)
                    # Go on at once only when more was due than a pass takes: a relay that
                    # looped on every trickle of new events made jobs of a few deliveries
                    # and spent the worker's CPU on RQ; waiting a poll makes jobs of a poll's
                    # worth of events (and batches for the batching platforms).
                    if relay(state, enqueue) >= RELAY_LIMIT:
                        continue
            except Exception:  # the relay retries; rows stay pending in the outbox
                logger.exception("relay")
            stop.wait(poll)

    if with_relay:
        threading.Thread(target=relay_loop, name="sst-relay", daemon=True).start()
        threading.Thread(target=rollup_loop, name="sst-rollups", daemon=True).start()
    try:
        cls(rq_queues, connection=connection).work(with_scheduler=True)
    finally:
        stop.set()


def _run_embedded(app, burst, poll):
    state = app.extensions["sst"]
    with app.app_context():
        sweep(state)
        while True:
            if run_inline(state):
                continue
            if burst:
                return
            time.sleep(poll)
