"""`sst replay`: send again what failed, with each event's original time and id.

Streams: deliveries are read by keyset pagination on their id, a page at a time, and each
page is enqueued in job-sized groups before the next is read, so memory stays flat
however many rows match.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import insert, or_, select, update

from sst.clock import from_db, to_db, utcnow
from sst.delivery.outbox import enqueue_groups
from sst.models import Delivery, Event, Replay
from sst.operator import operator_name
from sst.rollups import deliveries as rollup_deliveries

logger = logging.getLogger(__name__)

deliveries_t = Delivery.__table__
events_t = Event.__table__
PAGE = 1000


@dataclass
class ReplayFilters:
    destinations: tuple = ()
    since: datetime | None = None
    until: datetime | None = None
    events: tuple = ()  # messageIds
    statuses: tuple = ("failed",)
    error: str | None = None
    sources: tuple = ()
    force: bool = False  # include deliveries that succeeded

    def as_dict(self) -> dict:
        return {"destinations": list(self.destinations),
                "since": self.since.isoformat() if self.since else None,
                "until": self.until.isoformat() if self.until else None,
                "events": list(self.events)[:1000], "statuses": list(self.statuses),
                "error": self.error, "sources": list(self.sources), "force": self.force}


@dataclass
class ReplaySummary:
    matched: int = 0
    enqueued: int = 0
    skipped: dict = field(default_factory=dict)  # reason -> count
    by_destination: dict = field(default_factory=dict)
    would_send: list = field(default_factory=list)  # dry run: a sample of what would go

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def as_dict(self) -> dict:
        return {"matched": self.matched, "enqueued": self.enqueued, "skipped": self.skipped,
                "byDestination": self.by_destination}


def _query(f: ReplayFilters, after_id: int):
    d, e = deliveries_t.c, events_t.c
    states = set(f.statuses) | ({"succeeded"} if f.force else set())
    q = (select(d.id, d.destination, d.state, d.attempts, d.event_time, d.last_code,
                d.last_error, e.message_id, e.source)
         .join(events_t, e.id == d.event_id)
         .where(d.id > after_id, d.state.in_(states)).order_by(d.id).limit(PAGE))
    if f.destinations:
        q = q.where(d.destination.in_(f.destinations))
    if f.since:
        q = q.where(d.event_time >= to_db(f.since))
    if f.until:
        q = q.where(d.event_time < to_db(f.until))
    if f.events:
        q = q.where(e.message_id.in_(f.events))
    if f.sources:
        q = q.where(e.source.in_(f.sources))
    if f.error:
        pattern = f"%{f.error}%"
        q = q.where(or_(d.last_code.like(pattern), d.last_error.like(pattern)))
    return q


def count_matches(state, f: ReplayFilters) -> int:
    from sqlalchemy import func

    q = _query(f, 0).limit(None).order_by(None)
    with state.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(q.subquery())).scalar() or 0


def other_states(state, f: ReplayFilters) -> dict:
    """For a replay that matched nothing: how many deliveries the same filters find in the
    other states, and when the soonest pending retry is due ({state: n, "next_retry": dt})."""
    from dataclasses import replace

    from sqlalchemy import func

    others = ("pending", "queued", "sending", "skipped", "failed", "succeeded")
    q = _query(replace(f, statuses=others, force=False), 0).limit(None).order_by(None)
    sub = q.add_columns(deliveries_t.c.next_attempt_at.label("due")).subquery()
    with state.engine.connect() as conn:
        counts = dict(conn.execute(select(sub.c.state, func.count()).group_by(sub.c.state))
                      .all())
        due = conn.execute(select(func.min(sub.c.due)).where(
            sub.c.state == "pending", sub.c.attempts > 0)).scalar()
    out = {k: v for k, v in counts.items() if k not in f.statuses and v}
    if due is not None:
        from sst.clock import from_db

        out["next_retry"] = from_db(due)
    return out


def run_replay(state, f: ReplayFilters, *, enqueue=None, dry_run=False, progress=None,
               now=None) -> ReplaySummary:
    """Replay matching deliveries. `enqueue(destination, ids, job_id)` sends to RQ; None
    (embedded mode) leaves them pending for the in-process worker."""
    now = now or utcnow()
    summary = ReplaySummary()
    record_id = _start_record(state, f, dry_run)
    after = 0
    while True:
        with state.engine.begin() as conn:
            rows = conn.execute(_query(f, after)).all()
            if not rows:
                break
            after = rows[-1].id
            groups: dict = {}
            for r in rows:
                summary.matched += 1
                reason = _skip_reason(state, r, now)
                if reason:
                    summary.skip(reason)
                    continue
                per = summary.by_destination.setdefault(r.destination, 0)
                summary.by_destination[r.destination] = per + 1
                if dry_run:
                    if len(summary.would_send) < 50:
                        summary.would_send.append({
                            "deliveryId": r.id, "destination": r.destination,
                            "messageId": r.message_id, "state": r.state,
                            "eventTime": from_db(r.event_time).isoformat(),
                            "lastError": (r.last_error or "")[:200]})
                    continue
                groups.setdefault(r.destination, []).append((r.id, r.attempts))
            if groups and not dry_run:
                summary.enqueued += _hand_over(state, conn, groups, enqueue, now)
        if progress:
            progress(len(rows))
    _finish_record(state, record_id, summary)
    return summary


def _skip_reason(state, row, now) -> str | None:
    dest = state.destinations.get(row.destination)
    if dest is None:
        return "destination not configured"
    if dest.connector_cls.refuses_age(from_db(row.event_time), now) is not None:
        return f"older than {dest.connector} accepts"
    return None


def _hand_over(state, conn, groups, enqueue, now) -> int:
    """Reset the retry budget and queue the rows (or leave them pending, embedded)."""
    d = deliveries_t.c
    replayed = {"retry_base": d.attempts, "next_attempt_at": to_db(now), "reason": "replayed",
                "claim": None, "locked_until": None}
    # The rows leave their final state: out of the deliveries rollup first (its lock).
    ids = [i for items in groups.values() for i, _ in items]
    rollup_deliveries.reopen(conn, ids, now)
    if enqueue is None:
        conn.execute(update(deliveries_t).where(d.id.in_(ids))
                     .values(state="pending", job_id=None, updated_at=to_db(now), **replayed))
        return len(ids)
    return enqueue_groups(state, conn, groups, enqueue, now, extra_values=replayed)


def _start_record(state, f, dry_run) -> int:
    with state.engine.begin() as conn:
        res = conn.execute(insert(Replay.__table__), {
            "started_at": to_db(utcnow()), "operator": operator_name(), "dry_run": dry_run,
            "force": f.force, "filters": f.as_dict()})
        return res.inserted_primary_key[0]


def _finish_record(state, record_id, summary) -> None:
    with state.engine.begin() as conn:
        conn.execute(update(Replay.__table__).where(Replay.__table__.c.id == record_id)
                     .values(finished_at=to_db(utcnow()), counts=summary.as_dict()))
