"""What operators look at: per-destination status and queue statistics."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from sst.clock import iso, to_db, utcnow
from sst.models import Delivery, Exchange
from sst.reports import nearest_rank

deliveries_t = Delivery.__table__
tracks_t = Exchange.__table__


def percentile(conn, destination, since, p) -> float | None:
    """The p-th percentile of request durations, computed in the database."""
    t = tracks_t.c
    base = (t.destination == destination, t.created_at >= to_db(since),
            t.duration_ms.is_not(None))
    n = conn.execute(select(func.count()).where(*base)).scalar() or 0
    if not n:
        return None
    offset = nearest_rank(n, p)
    return conn.execute(select(t.duration_ms).where(*base).order_by(t.duration_ms)
                        .limit(1).offset(offset)).scalar()


def destination_status(state, window: timedelta) -> list[dict]:
    """Per destination over the window: requests sent, deliveries by outcome, latency,
    the last error."""
    since = utcnow() - window
    d, t = deliveries_t.c, tracks_t.c
    out = []
    with state.engine.connect() as conn:
        by_state = {}
        for dest, st, n in conn.execute(
                select(d.destination, d.state, func.count())
                .where(d.updated_at >= to_db(since)).group_by(d.destination, d.state)).all():
            by_state.setdefault(dest, {})[st] = n
        retrying = dict(conn.execute(
            select(d.destination, func.count())
            .where(d.state == "pending", d.attempts > d.retry_base)
            .group_by(d.destination)).all())
        sent = dict(conn.execute(select(t.destination, func.count())
                                 .where(t.created_at >= to_db(since))
                                 .group_by(t.destination)).all())
        names = sorted(set(state.destinations) | set(by_state) | set(sent))
        latest = {(name, st): _latest(conn, name, st, since) for name in names
                  for st in ("skipped", "failed")}
        for name in names:
            last = conn.execute(
                select(t.created_at, t.status, t.error_class, t.error_message, t.response_body)
                .where(t.destination == name, t.outcome != "success")
                .order_by(t.id.desc()).limit(1)).first()
            counts = by_state.get(name, {})
            out.append({
                "destination": name,
                "connector": state.destinations[name].connector
                if name in state.destinations else None,
                "sent": sent.get(name, 0),
                "succeeded": counts.get("succeeded", 0),
                "failed": counts.get("failed", 0),
                "skipped": counts.get("skipped", 0),
                "pending": counts.get("pending", 0) + counts.get("queued", 0),
                "retrying": retrying.get(name, 0),
                "p50_ms": percentile(conn, name, since, 0.5),
                "p95_ms": percentile(conn, name, since, 0.95),
                # Skips send no request, so they have no Exchange: the delivery keeps why.
                "last_skip": latest[(name, "skipped")],
                "last_failure": latest[(name, "failed")],
                "last_error": None if last is None else {
                    "time": iso(last.created_at), "status": last.status,
                    "error": (last.error_message or last.error_class
                              or (last.response_body or "")[:200])},
            })
    return out


def _latest(conn, destination: str, state: str, since) -> dict | None:
    """The newest delivery in `state` within the window: when, why, and its event."""
    d = deliveries_t.c
    from sst.models import Event

    e = Event.__table__.c
    row = conn.execute(
        select(d.updated_at, d.reason, d.last_error, d.last_code, e.message_id)
        .join(Event.__table__, e.id == d.event_id)
        .where(d.destination == destination, d.state == state, d.updated_at >= to_db(since))
        .order_by(d.updated_at.desc(), d.id.desc()).limit(1)).first()
    if row is None:
        return None
    return {"time": iso(row.updated_at), "messageId": row.message_id,
            "reason": row.reason or row.last_error or row.last_code or state}


def delivery_backlog(state) -> dict:
    """Deliveries by state, and the age of the oldest one waiting."""
    d = deliveries_t.c
    with state.engine.connect() as conn:
        counts = dict(conn.execute(select(d.state, func.count()).group_by(d.state)).all())
        oldest = conn.execute(select(func.min(d.next_attempt_at))
                              .where(d.state.in_(("pending", "queued")))).scalar()
    age = None
    if oldest is not None:
        from sst.clock import from_db

        age = max(0.0, (utcnow() - from_db(oldest)).total_seconds())
    return {"states": counts, "oldest_pending_age_s": age}


def queue_stats(connection, names) -> list[dict]:
    """RQ's view: depth and registries per queue."""
    from rq import Queue
    from rq.registry import (
        DeferredJobRegistry,
        FailedJobRegistry,
        ScheduledJobRegistry,
        StartedJobRegistry,
    )

    out = []
    for name in names:
        q = Queue(name, connection=connection)
        out.append({
            "queue": name, "queued": q.count,
            "started": StartedJobRegistry(queue=q).count,
            "scheduled": ScheduledJobRegistry(queue=q).count,
            "deferred": DeferredJobRegistry(queue=q).count,
            "failed": FailedJobRegistry(queue=q).count,
        })
    return out


NO_DESTINATION = ("no destination is configured{where}: events are stored and sent nowhere; "
                  "add a [[destination]] (`sst init` writes a commented example)")


def no_destination_note(state) -> str | None:
    """Why delivery tables are empty when nothing is configured to deliver to, else None."""
    if any(d.enabled for d in state.destinations.values()):
        return None
    from flask import current_app

    path = current_app.config.get("CONFIG")
    return NO_DESTINATION.format(where=f" in {path}" if path else " (no SST_CONFIG)")
