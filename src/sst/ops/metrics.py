"""Blueprint "metrics": `GET /metrics` in the Prometheus text format.

Two kinds of numbers:

- Ingest counters (sst.ingest.counters), counted in the request path:
  ``sst_ingest_requests_total{endpoint, status}`` and
  ``sst_ingest_messages_total{source, result="stored"|"rejected"}``. Under gunicorn each worker process counts on its own; set ``PROMETHEUS_MULTIPROC_DIR`` to
  an empty, writable folder in the environment before gunicorn starts (wipe it at each start)
  and every process writes its counters there and any process's scrape adds them up
  (prometheus_client's multiprocess mode). Without it the counters live in the process and,
  with them, the process_* and python_* metrics of that process are shown.
- Delivery and queue numbers, computed at scrape time from the database (and Redis), so they
  are right whichever web process is scraped and wherever the workers run. Windows are the
  last 5 minutes; those gauges are meant to be read as they are, not through rate():
  ``sst_deliveries{destination, state}`` (deliveries not finished: pending, queued, sending),
  ``sst_deliveries_finished_5m{destination, state}``, ``sst_delivery_requests_5m{destination,
  outcome}`` (Exchange rows: success, retryable, permanent, auth),
  ``sst_delivery_latency_seconds_5m{destination, quantile}`` (0.5 and 0.95 of the request
  durations), ``sst_delivery_oldest_waiting_seconds`` (paused destinations left out),
  ``sst_destination_paused{destination}``, ``sst_database_up``, and with ``SST_REDIS_URL``
  ``sst_redis_up``, ``sst_queue_depth{queue}`` and ``sst_queue_jobs{queue, registry}``.
  A database or Redis that does not answer turns its ``*_up`` into 0; the scrape still works.

Access (sst.config.admin_settings, shared with /admin): with an admin token (``[admin] token``
or ``SST_ADMIN_TOKEN``) the scrape must send ``Authorization: Bearer <token>`` (Prometheus:
``authorization: {credentials: ...}``) or the admin Basic credentials. Without one it is open
in development and off (404) under SST_ENV=production, unless ``[admin] metrics = "open"``
says /metrics is served where only the scraper reaches it.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta

from flask import Blueprint, Response, current_app, request
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from sqlalchemy import func, select

from sst.clock import to_db, utcnow
from sst.delivery.outbox import paused_destinations
from sst.errors import ApiError
from sst.extensions import state as current_state
from sst.ingest.counters import INGEST
from sst.models import Delivery, Exchange
from sst.ops.alerts import finished_counts, oldest_waiting
from sst.ops.status import percentile, queue_stats

logger = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)

WINDOW = timedelta(minutes=5)
OPEN_STATES = ("pending", "queued", "sending")
FINAL_STATES = ("succeeded", "failed", "skipped")
QUANTILES = (0.5, 0.95)

# --- from the database and Redis, at scrape time --------------------------------------------


def _gauge(name, doc, labels=()):
    return GaugeMetricFamily(name, doc, labels=list(labels))


class DeliveryCollector:
    """Reads deliveries, tracks and RQ at scrape time (a prometheus_client collector)."""

    def __init__(self, state, now: datetime | None = None):
        self.state = state
        self.now = now or utcnow()

    def collect(self):
        db_up = _gauge("sst_database_up", "1 when the database answered this scrape.")
        try:
            families = self._database()
        except Exception as exc:  # any failure: say so in the scrape rather than fail it
            logger.warning("metrics: database: %s", exc.__class__.__name__)
            db_up.add_metric([], 0)
            families = []
        else:
            db_up.add_metric([], 1)
        yield db_up
        yield from families
        if self.state.redis_url:
            yield from self._redis()

    def _database(self) -> list:
        since = self.now - WINDOW
        d, t = Delivery.__table__.c, Exchange.__table__.c
        configured = sorted(self.state.destinations)
        with self.state.engine.connect() as conn:
            open_counts = {(dest, st): n for dest, st, n in conn.execute(
                select(d.destination, d.state, func.count())
                .where(d.state.in_(OPEN_STATES)).group_by(d.destination, d.state)).all()}
            finished = finished_counts(conn, since, FINAL_STATES)
            requests_ = conn.execute(
                select(t.destination, t.outcome, func.count())
                .where(t.created_at >= to_db(since))
                .group_by(t.destination, t.outcome)).all()
            names = sorted(set(configured) | {dest for dest, _, _ in requests_})
            latency = {(name, q): percentile(conn, name, since, q)
                       for name in names for q in QUANTILES}
            paused = paused_destinations(conn)
            age = oldest_waiting(conn, self.now, sorted(paused))

        deliveries = _gauge("sst_deliveries", "Deliveries not finished, by destination and "
                            "state.", ["destination", "state"])
        for dest in configured:  # zeros too: a series that vanishes cannot be alerted on
            for st in OPEN_STATES:
                open_counts.setdefault((dest, st), 0)
        for (dest, st), n in sorted(open_counts.items()):
            deliveries.add_metric([dest, st], n)

        done = _gauge("sst_deliveries_finished_5m", "Deliveries that reached a final state in "
                      "the last 5 minutes.", ["destination", "state"])
        for dest in sorted(set(configured) | set(finished)):
            for st in FINAL_STATES:
                done.add_metric([dest, st], finished.get(dest, {}).get(st, 0))

        sent = _gauge("sst_delivery_requests_5m", "Requests sent to platforms in the last 5 "
                      "minutes, by outcome.", ["destination", "outcome"])
        for dest, outcome, n in sorted(requests_):
            sent.add_metric([dest, outcome], n)

        lat = _gauge("sst_delivery_latency_seconds_5m", "Quantiles of platform request "
                     "durations in the last 5 minutes.", ["destination", "quantile"])
        for (dest, q), ms in latency.items():
            if ms is not None:
                lat.add_metric([dest, str(q)], ms / 1000.0)

        oldest = _gauge("sst_delivery_oldest_waiting_seconds", "How long the oldest due "
                        "delivery has waited (0: none; paused destinations left out).")
        oldest.add_metric([], age or 0.0)

        paused_g = _gauge("sst_destination_paused", "1 when an operator paused the "
                          "destination.", ["destination"])
        for dest in sorted(set(configured) | paused):
            paused_g.add_metric([dest], 1 if dest in paused else 0)
        return [deliveries, done, sent, lat, oldest, paused_g]

    def _redis(self):
        from sst.config import QUEUE

        up = _gauge("sst_redis_up", "1 when Redis answered this scrape.")
        try:
            stats = queue_stats(self.state.redis, [QUEUE])
        except Exception as exc:  # Redis down must not fail the scrape
            logger.warning("metrics: redis: %s", exc.__class__.__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = _gauge("sst_queue_depth", "Jobs waiting in the RQ queue.", ["queue"])
        jobs = _gauge("sst_queue_jobs", "RQ jobs by registry.", ["queue", "registry"])
        for q in stats:
            depth.add_metric([q["queue"]], q["queued"])
            for reg in ("started", "scheduled", "deferred", "failed"):
                jobs.add_metric([q["queue"], reg], q[reg])
        yield depth
        yield jobs


# --- the view --------------------------------------------------------------------------------


def _multiproc_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get(
        "prometheus_multiproc_dir")


def scrape_registry(state, now=None) -> CollectorRegistry:
    """A registry holding everything one scrape shows."""
    registry = CollectorRegistry()
    path = _multiproc_dir()
    if path:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=path)
    else:
        registry.register(INGEST)
        registry.register(REGISTRY)  # process_* and python_* of this process
    registry.register(DeliveryCollector(state, now))
    return registry


@bp.record
def _setup(setup_state):
    """Read the access rule once, at start-up (a bad [admin] metrics fails it there)."""
    from sst.config import admin_settings

    app = setup_state.app
    app.extensions["sst.ops.metrics"] = admin_settings(app.config)


def _check_access(settings) -> None:
    if settings.metrics == "open":
        return
    if settings.metrics == "off":
        raise ApiError(404, "not_found", "no endpoint /metrics")
    from sst.ops.admin import authorized

    if not authorized(settings.user, settings.token):
        err = ApiError(401, "unauthorized", "send Authorization: Bearer <the [admin] token>")
        err.headers["WWW-Authenticate"] = 'Bearer realm="sst"'
        raise err


@bp.get("/metrics")
def metrics():
    """Prometheus scrape."""
    _check_access(current_app.extensions["sst.ops.metrics"])
    encoder, content_type = choose_encoder(request.headers.get("Accept"))
    registry = scrape_registry(current_state())
    return Response(encoder(registry), status=200, headers={"Content-Type": content_type,
                                                            "Cache-Control": "no-store"})
