"""Blueprint "health": liveness and readiness probes."""

import logging

from flask import Blueprint, jsonify
from sqlalchemy import text

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
    """The database and Redis (when configured) answer."""
    checks = {}
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready; the probe must answer
        logger.warning("readyz: database: %s", exc.__class__.__name__)
        checks["database"] = "unavailable"
    state = current_state()
    if state.redis_url:
        try:
            state.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            logger.warning("readyz: redis: %s", exc.__class__.__name__)
            checks["redis"] = "unavailable"
    else:
        checks["queue"] = "embedded"
    ready = all(v in ("ok", "embedded") for v in checks.values())
    resp = jsonify(status="ready" if ready else "unavailable", checks=checks)
    if not ready:
        resp.status_code = 503
        resp.headers["Retry-After"] = "5"
    return resp
