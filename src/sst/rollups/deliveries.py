"""Deliveries per UTC day of event time, source, destination and state: the state half of
the deliveries report.

A delivery changes state after it is stored (pending -> sending -> succeeded, a retry back
to pending, exhausted -> failed). Counting it at once and adjusting on every change would
need a hook in the sender for each change; instead a delivery is counted only once it is
final (succeeded, failed, skipped): a pass counts the final ones above its watermark and
lists the others in rollup_open_deliveries, read raw until a later pass finds them final.
The one way out of a final state is a replay (sst.delivery.replay), which calls
`reopen` in its own transaction: it takes the delivery out of its counter and lists it as
open again. Erasure takes deleted deliveries out (rollups.erasure). Both hold the rollup
lock, as the pass does, so a delivery is never counted in one state while it is in another.
"""

from __future__ import annotations

from sqlalchemy import delete, func, insert, literal, select

from sst import reports
from sst.models import RollupDelivery, RollupOpenDelivery
from sst.rollups import days, state
from sst.rollups.counters import bump

rollup_t = RollupDelivery.__table__
open_t = RollupOpenDelivery.__table__
deliveries_t, events_t = reports.deliveries_t, reports.events_t
NAME = "deliveries"
FINAL = ("succeeded", "failed", "skipped")
NO_SOURCE = ""  # a delivery whose event is gone: in every report without a source only


def _add(conn, conds, sign: int) -> None:
    """Count the deliveries that match `conds` in (sign -1: out of) their counters. Taking
    out reads the rows' latest state (a locking read), not an older snapshot's."""
    d, e = deliveries_t.c, events_t.c
    source = func.coalesce(e.source, literal(NO_SOURCE)).label("source")
    day = func.date(d.event_time).label("day")
    q = (select(day, source, d.destination, d.state, func.count().label("n"))
         .select_from(deliveries_t.outerjoin(events_t, e.id == d.event_id))
         .where(*conds).group_by("day", "source", d.destination, d.state))
    bump(conn, rollup_t, [
        ({"day": days.as_date(r.day), "source": r.source, "destination": r.destination,
          "state": r.state}, {"n": sign * int(r.n)})
        for r in conn.execute(q.with_for_update() if sign < 0 else q)])


def _open(conn, conds) -> None:
    """List the deliveries that match `conds` as open, with their event's source."""
    d, e = deliveries_t.c, events_t.c
    rows = conn.execute(select(d.id, func.coalesce(e.source, literal(NO_SOURCE)))
                        .select_from(deliveries_t.outerjoin(events_t, e.id == d.event_id))
                        .where(*conds)).all()
    if rows:
        conn.execute(insert(open_t), [{"delivery_id": i, "source": s} for i, s in rows])


def roll(conn, upto: int, batch: int, recheck: bool = True) -> int:
    """Count the final deliveries with ids in (watermark, min(upto, watermark + batch)],
    list the others as open, and count the open ones that became final."""
    d = deliveries_t.c
    lo = state.read(conn, NAME).last_id
    hi = min(upto, lo + batch)
    done = 0
    if hi > lo:
        span = [d.id > lo, d.id <= hi]
        _add(conn, [*span, d.state.in_(FINAL)], 1)
        _open(conn, [*span, d.state.notin_(FINAL)])
        state.save(conn, NAME, last_id=hi)
        done = hi - lo
    if not recheck:  # a rebuild checks the open list once, at its end
        return done
    settled = _ended(conn, max(hi, lo))[:batch]
    if settled:
        _add(conn, [d.id.in_(settled)], 1)
        conn.execute(delete(open_t).where(open_t.c.delivery_id.in_(settled)))
    return done + len(settled)


def take_out(conn, ids, *, reopen: bool) -> None:
    """Deliveries leaving their counted state (call with the rollup lock held, BEFORE the
    rows change): take the counted ones out of their counters; list them as open if they
    stay (a replay), or forget them if they go (erasure)."""
    if not ids:
        return
    d = deliveries_t.c
    mark = state.read(conn, NAME, locking=True).last_id
    ids = list(ids)
    for i in range(0, len(ids), 1000):
        chunk = ids[i:i + 1000]
        already = set(conn.execute(select(open_t.c.delivery_id)
                                   .where(open_t.c.delivery_id.in_(chunk))
                                   .with_for_update()).scalars())
        counted = [x for x in chunk if x <= mark and x not in already]
        if counted:
            _add(conn, [d.id.in_(counted)], -1)
        if reopen:
            if counted:
                _open(conn, [d.id.in_(counted)])
        elif already:
            conn.execute(delete(open_t).where(open_t.c.delivery_id.in_(already)))


def reopen(conn, ids, now) -> None:
    """A replay is about to put these deliveries back to pending (in this transaction)."""
    state.lock(conn, now)
    take_out(conn, ids, reopen=True)


def states(conn, window: reports.Window, mark: int) -> dict:
    """reports.delivery_states from the rollup (whole days, counted deliveries) and raw rows
    (partial days; above the watermark or open)."""
    d = deliveries_t.c
    whole, partials = days.split(window)
    acc: dict = {}

    def take(found: dict):
        for dest, by_state in found.items():
            mine = acc.setdefault(dest, {})
            for s, n in by_state.items():
                mine[s] = mine.get(s, 0) + n

    if whole is not None:
        r = rollup_t.c
        q = (select(r.destination, r.state, func.sum(r.n))
             .where(*days.day_conds(r.day, whole)).group_by(r.destination, r.state))
        if window.source:
            q = q.where(r.source == window.source)
        found: dict = {}
        for dest, s, n in conn.execute(q):
            found.setdefault(dest, {})[s] = int(n or 0)
        take(found)
        take(_tail_states(conn, whole, d.id > mark))
        take(_open_states(conn, whole, mark))
    for part in partials:
        take(_partial_states(conn, part))
    return {dest: {s: n for s, n in st.items() if n}
            for dest, st in acc.items() if any(st.values())}


WAITING = ("pending", "queued", "sending")


def _open_states(conn, window: reports.Window, mark: int) -> dict:
    """reports.delivery_states of the open deliveries (at or below the watermark, not
    counted). Most are waiting, and at or below the watermark every waiting delivery is
    open: those are counted from ix_deliveries_destination_state alone (destination, state,
    event time and id are in it), not by looking each one up (124,000 lookups were 4 s at
    10 M events). Only the open ones that ended since the last pass are looked up."""
    d = deliveries_t.c
    dests = sorted(set(conn.execute(select(d.destination).group_by(d.destination)).scalars()))
    if not dests:
        return {}
    open_source = dict(conn.execute(select(open_t.c.delivery_id, open_t.c.source)).all())
    found: dict = {}
    for i, dest, st in conn.execute(
            select(d.id, d.destination, d.state)
            .where(d.destination.in_(dests), d.state.in_(WAITING), d.id <= mark,
                   *window.on(d.event_time))):
        if window.source and open_source.get(i) != window.source:
            continue
        by = found.setdefault(dest, {})
        by[st] = by.get(st, 0) + 1
    ended = _ended(conn, mark, set(open_source))
    for i in range(0, len(ended), 1000):
        for dest, by in _tail_states(conn, window, d.id.in_(ended[i:i + 1000])).items():
            mine = found.setdefault(dest, {})
            for st, n in by.items():
                mine[st] = mine.get(st, 0) + n
    return found


def _ended(conn, mark: int, open_ids: set | None = None) -> list[int]:
    """The open deliveries that are final now. At or below the watermark every waiting
    delivery is open, so these are the open ones not waiting: a set difference of two id
    lists read from narrow indexes (ix_deliveries_state_next holds state and id), instead of
    looking every open delivery up."""
    d = deliveries_t.c
    if open_ids is None:
        open_ids = set(conn.execute(select(open_t.c.delivery_id)).scalars())
    if not open_ids:
        return []
    waiting = set(conn.execute(select(d.id).where(d.state.in_(WAITING), d.id <= mark))
                  .scalars())
    return sorted(open_ids - waiting)


def _tail_states(conn, window: reports.Window, cond) -> dict:
    """reports.delivery_states of the deliveries that match `cond` (few: above the
    watermark, or open), found from deliveries first whatever the source."""
    d, e = deliveries_t.c, events_t.c
    q = (select(d.destination, d.state, func.count())
         .where(cond, *window.on(d.event_time)).group_by(d.destination, d.state))
    if window.source:
        q = (q.select_from(deliveries_t.join(events_t, e.id == d.event_id))
             .where(e.source == window.source, *window.on(e.event_time)))
    found: dict = {}
    for dest, s, n in conn.execute(q):
        found.setdefault(dest, {})[s] = int(n)
    return found


def _partial_states(conn, window: reports.Window) -> dict:
    """reports.delivery_states of a partial day. Without a source, naming every destination
    and state lets the database read only the day's range of
    ix_deliveries_destination_state instead of the whole index."""
    if window.source:
        return reports.delivery_states(conn, window)
    d = deliveries_t.c
    pairs = conn.execute(select(d.destination, d.state).group_by(d.destination, d.state)).all()
    if not pairs:
        return {}
    return reports.delivery_states(conn, window, extra=[
        d.destination.in_(sorted({p[0] for p in pairs})),
        d.state.in_(sorted({p[1] for p in pairs}))])
