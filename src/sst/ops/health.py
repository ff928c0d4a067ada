"""Blueprint "health": liveness and readiness probes."""

import logging

from flask import Blueprint, jsonify

from sst.dbcheck import schema_problem
from sst.extensions import db
from sst.extensions import state as current_state

logger = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process is up."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Ready when the database answers and its schema is at the code's head revision: that
    is all ingest needs. Redis is reported but does not fail readiness, since ingest keeps
    working without it (deliveries wait in the outbox); a load balancer must not pull
    healthy ingest nodes during a Redis outage."""
    checks = {}
    reason = None
    try:
        with db.engine.connect() as conn:
            problem = schema_problem(conn)
        checks["database"] = "ok"
        checks["schema"] = "ok" if problem is None else "behind"
        reason = problem
    except Exception as exc:  # any failure means not ready; the probe must answer
        logger.warning("readyz: database: %s", exc.__class__.__name__)
        checks["database"] = "unavailable"
        reason = f"database unavailable ({exc.__class__.__name__})"
    state = current_state()
    if state.redis_url:
        try:
            state.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            logger.warning("readyz: redis: %s", exc.__class__.__name__)
            checks["redis"] = "down"
    else:
        checks["queue"] = "embedded"
    ready = reason is None
    body = {"status": "ready" if ready else "unavailable", "checks": checks}
    if reason:
        body["reason"] = reason
    resp = jsonify(body)
    if not ready:
        resp.status_code = 503
        resp.headers["Retry-After"] = "5"
    return resp
