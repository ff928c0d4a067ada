"""The fan-out (marked events -> deliveries), the relay (pending deliveries -> jobs) and the
sweep (lost deliveries -> pending).

The event row is the outbox of its deliveries: ingest commits each event with `fanout = 1`
in one INSERT and answers; fan_out() turns a batch of marked events into delivery rows and
clears the mark in one transaction, so an event committed without its deliveries is found
by the next pass (after a crash too) and never lost, and never fanned out twice (the
deliveries' unique key on event and destination). The Delivery table is then the record
and the queue: the relay polls due rows, marks them queued and enqueues one job per group
of a destination, so one job amortises RQ's per-job cost over many deliveries and batches
form under load while a lone event waits at most one poll interval. Ingest never talks
to Redis.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta

from sqlalchemy import and_, or_, select, update

from sst.clock import to_db, utcnow
from sst.models import Delivery, DestinationControl, Event, Exchange, insert_ignore

logger = logging.getLogger(__name__)

deliveries_t = Delivery.__table__
events_t = Event.__table__
FANOUT_BATCH = 1000  # events per fan-out transaction
QUEUED_GRACE = timedelta(seconds=30)  # a queued row younger than this is not checked yet
JOB_GROUP_MAX = 200  # deliveries per job for one-event-per-request connectors


def job_group_size(connector_cls) -> int:
    """A platform batch for batching connectors; a few hundred requests for the others."""
    batch = int(getattr(connector_cls, "max_batch", 1) or 1)
    return min(batch if batch > 1 else JOB_GROUP_MAX, 1000)


def job_id_for(destination: str, rows) -> str:
    """Deterministic: the same rows at the same attempt give the same job id."""
    digest = hashlib.sha1(",".join(f"{i}:{a}" for i, a in rows).encode()).hexdigest()[:20]
    return f"sst-deliver-{destination}-{digest}"


def paused_destinations(conn) -> set:
    """Names of the destinations an operator paused (`sst destination pause`)."""
    return {n for (n,) in conn.execute(select(DestinationControl.name)
                                       .where(DestinationControl.paused.is_(True))).all()}


def fan_out(state, limit: int = FANOUT_BATCH) -> int:
    """Make the deliveries of up to `limit` marked events and clear their mark, in one
    transaction. Returns how many events it fanned out.

    READ COMMITTED: the locking read takes no gap locks, so ingest's INSERTs of new marked
    events never wait on it; SKIP LOCKED lets two relays share the work."""
    e = events_t.c
    fan = state.fanout
    engine = state.engine
    options = ({"isolation_level": "READ COMMITTED"}
               if engine.dialect.name in ("mysql", "mariadb") else {})
    cols = [e.id, e.type, e.event, e.is_bot, e.event_time, e.received_at]
    if fan is not None and fan.needs_message:
        cols.append(e.message)
    with engine.connect().execution_options(**options) as conn, conn.begin():
        events = conn.execute(select(*cols).where(e.fanout == 1).order_by(e.id).limit(limit)
                              .with_for_update(skip_locked=True)).all()
        if not events:
            return 0
        rows = [r for ev in events for r in fan.rows(ev._mapping)] if fan is not None else []
        if rows:
            conn.execute(insert_ignore(deliveries_t), rows)
        conn.execute(update(events_t).where(e.id.in_([ev.id for ev in events]))
                     .values(fanout=None))
    return len(events)


def fan_out_all(state) -> int:
    """fan_out() until no marked event is left (tests, `sst relay`, bursts)."""
    total = 0
    while True:
        n = fan_out(state)
        total += n
        if n < FANOUT_BATCH:
            return total


FANOUT_ROUNDS = 5  # fan-out batches per relay pass, at most
RELAY_LIMIT = 2000  # due deliveries moved to jobs per relay pass, at most


def relay(state, enqueue, limit: int = RELAY_LIMIT) -> int:
    """Fan marked events out, then move due pending deliveries to jobs.
    `enqueue(destination, ids, job_id)` may raise: then the transaction rolls back and the
    rows stay pending. Returns how many deliveries moved."""
    for _ in range(FANOUT_ROUNDS):
        if fan_out(state) < FANOUT_BATCH:
            break
    d = deliveries_t.c
    now = utcnow()
    with state.engine.begin() as conn:
        paused = paused_destinations(conn)
        q = (select(d.id, d.destination, d.attempts)
             .where(d.state == "pending", d.next_attempt_at <= to_db(now))
             .order_by(d.next_attempt_at).limit(limit)
             .with_for_update(skip_locked=True))
        if paused:
            q = q.where(d.destination.not_in(paused))
        rows = conn.execute(q).all()
        groups: dict = {}
        for r in rows:
            groups.setdefault(r.destination, []).append((r.id, r.attempts))
        moved = enqueue_groups(state, conn, groups, enqueue, now)
    return moved


def enqueue_groups(state, conn, groups: dict, enqueue, now, extra_values=None) -> int:
    """Mark {destination: [(id, attempts)]} queued and enqueue them in job-sized groups,
    inside the caller's transaction. Returns how many rows were enqueued."""
    d = deliveries_t.c
    moved = 0
    for destination, items in groups.items():
        dest = state.destinations.get(destination)
        size = job_group_size(dest.connector_cls) if dest else JOB_GROUP_MAX
        for start in range(0, len(items), size):
            chunk = items[start:start + size]
            ids = [i for i, _ in chunk]
            job_id = job_id_for(destination, chunk)
            conn.execute(update(deliveries_t).where(d.id.in_(ids))
                         .values(**{"state": "queued", "job_id": job_id,
                                    "locked_until": None,  # no running job holds it yet
                                    "updated_at": to_db(now), **(extra_values or {})}))
            enqueue(destination, ids, job_id)
            moved += len(ids)
    return moved


def sweep(state, job_alive=None) -> dict:
    """Put lost deliveries back to pending; safe alongside workers and other sweeps.

    Lost: 'sending' past its claim deadline (the worker died mid-request); 'queued' held by
    a running job past the hold's deadline (the worker died mid-job: its RQ job still looks
    started); or 'queued', not held, whose job is gone from Redis (flushed, restarted) —
    `job_alive(job_ids) -> set` tells which jobs still exist; without it (embedded mode)
    every old queued row is lost.
    """
    d = deliveries_t.c
    now = utcnow()
    counts = {"sending": 0, "queued": 0}
    with state.engine.begin() as conn:
        stuck = conn.execute(
            select(d.id).where(d.state == "sending", d.locked_until < to_db(now))
            .with_for_update(skip_locked=True)).scalars().all()
        if stuck:
            conn.execute(update(deliveries_t).where(d.id.in_(stuck), d.state == "sending")
                         .values(state="pending", claim=None, locked_until=None,
                                 next_attempt_at=to_db(now), reason="lost while sending",
                                 updated_at=to_db(now)))
            counts["sending"] = len(stuck)
            # Their requests were recorded before they went out (L3); no answer will come.
            t = Exchange.__table__.c
            conn.execute(update(Exchange.__table__).where(
                t.delivery_id.in_(stuck), t.outcome == "sending").values(
                outcome="unknown", error_message="the worker stopped before the answer was "
                "recorded; the platform may have received the request"))
        queued = conn.execute(
            select(d.id, d.job_id, d.locked_until)
            .where(d.state == "queued", or_(d.updated_at < to_db(now - QUEUED_GRACE),
                                            d.locked_until < to_db(now)))
            .with_for_update(skip_locked=True)).all()
        if queued:
            unheld = {j for _, j, held in queued if j and held is None}
            alive = job_alive(unheld) if job_alive and unheld else set()
            lost = [i for i, j, held in queued
                    if (held < to_db(now) if held is not None else j not in alive)]
            if lost:
                conn.execute(update(deliveries_t).where(d.id.in_(lost), d.state == "queued")
                             .values(state="pending", job_id=None, locked_until=None,
                                     next_attempt_at=to_db(now), updated_at=to_db(now)))
            counts["queued"] = len(lost)
    if counts["sending"] or counts["queued"]:
        logger.warning("sweep: %s lost while sending, %s whose job was gone, back to pending",
                       counts["sending"], counts["queued"])
    return counts


def pending_due(state) -> int:
    """Deliveries due or queued, plus events not fanned out yet (each owes at least one)."""
    d = deliveries_t.c
    from sqlalchemy import func

    with state.engine.connect() as conn:
        waiting = conn.execute(select(func.count()).select_from(events_t)
                               .where(events_t.c.fanout == 1)).scalar() or 0
        paused = paused_destinations(conn)
        q = select(func.count()).select_from(deliveries_t).where(
            or_(and_(d.state == "pending", d.next_attempt_at <= to_db(utcnow())),
                d.state == "queued"))
        if paused:
            q = q.where(d.destination.not_in(paused))
        return (conn.execute(q).scalar() or 0) + waiting
