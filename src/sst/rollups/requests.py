"""Requests (tracks) per UTC day of sending, destination, outcome and duration to the
millisecond, with reconciliation's sums: the request half of the deliveries report and the
reconciliation report.

A request row is written before it goes out (outcome "sending") and gets its answer later;
after that it never changes (erasure only scrubs bodies, or deletes it: rollups.erasure).
So a pass counts requests with an answer and lists those still "sending" as open, read raw
until a later pass finds their answer. Reconciliation's reasons come from the few requests
that carried platform reasons, copied to rollup_reasons with their exact time.
"""

from __future__ import annotations

from sqlalchemy import case, delete, func, insert, select

from sst import reports
from sst.models import RollupOpenTrack, RollupReason, RollupRequest
from sst.rollups import days, state
from sst.rollups.counters import bump

rollup_t = RollupRequest.__table__
open_t = RollupOpenTrack.__table__
reasons_t = RollupReason.__table__
tracks_t = reports.tracks_t
NAME = "tracks"
IN_FLIGHT = "sending"


def _add(conn, conds, sign: int) -> None:
    t = tracks_t.c
    recon = t.events_sent > 0
    day = func.date(t.created_at).label("day")
    ms = func.round(t.duration_ms).label("ms")
    q = (select(day, t.destination, t.outcome, ms, func.count().label("n"),
                   func.sum(case((recon, 1), else_=0)).label("recon_n"),
                   func.sum(case((recon, t.events_sent), else_=0)).label("sent"),
                   func.sum(case((recon, func.coalesce(t.events_accepted, 0)), else_=0))
                   .label("accepted"),
                   func.sum(case((recon, func.coalesce(t.events_rejected, 0)), else_=0))
                   .label("rejected"))
         .where(*conds).group_by("day", t.destination, t.outcome, "ms"))
    # Taking out reads the rows' latest version (a locking read), not an older snapshot's.
    bump(conn, rollup_t, [
        ({"day": days.as_date(r.day), "destination": r.destination, "outcome": r.outcome,
          "ms": None if r.ms is None else float(r.ms)},
         {k: sign * int(getattr(r, k) or 0)
          for k in ("n", "recon_n", "sent", "accepted", "rejected")})
        for r in conn.execute(q.with_for_update() if sign < 0 else q)])
    if sign > 0:
        rows = conn.execute(select(t.id, t.destination, t.created_at, t.platform_reasons)
                            .where(*conds, recon, t.platform_reasons.is_not(None))).all()
        if rows:
            conn.execute(insert(reasons_t), [
                {"track_id": r.id, "destination": r.destination, "created_at": r.created_at,
                 "reasons": r.platform_reasons} for r in rows])


def roll(conn, upto: int, batch: int, recheck: bool = True) -> int:
    t = tracks_t.c
    lo = state.read(conn, NAME).last_id
    hi = min(upto, lo + batch)
    done = 0
    if hi > lo:
        span = [t.id > lo, t.id <= hi]
        _add(conn, [*span, t.outcome != IN_FLIGHT], 1)
        waiting = list(conn.execute(select(t.id).where(*span, t.outcome == IN_FLIGHT))
                       .scalars())
        if waiting:
            conn.execute(insert(open_t), [{"track_id": i} for i in waiting])
        state.save(conn, NAME, last_id=hi)
        done = hi - lo
    if not recheck:  # a rebuild checks the open list once, at its end
        return done
    answered = list(conn.execute(
        select(open_t.c.track_id).join(tracks_t, t.id == open_t.c.track_id)
        .where(t.outcome != IN_FLIGHT).limit(batch)).scalars())
    if answered:
        _add(conn, [t.id.in_(answered)], 1)
        conn.execute(delete(open_t).where(open_t.c.track_id.in_(answered)))
    return done + len(answered)


def take_out(conn, ids) -> None:
    """Requests about to be deleted (rollup lock held): out of their counters and lists."""
    if not ids:
        return
    t = tracks_t.c
    mark = state.read(conn, NAME, locking=True).last_id
    ids = list(ids)
    for i in range(0, len(ids), 1000):
        chunk = ids[i:i + 1000]
        already = set(conn.execute(select(open_t.c.track_id)
                                   .where(open_t.c.track_id.in_(chunk))
                                   .with_for_update()).scalars())
        counted = [x for x in chunk if x <= mark and x not in already]
        if counted:
            _add(conn, [t.id.in_(counted)], -1)
            conn.execute(delete(reasons_t).where(reasons_t.c.track_id.in_(counted)))
        if already:
            conn.execute(delete(open_t).where(open_t.c.track_id.in_(already)))


def _raw_parts(whole, partials, mark):
    """The condition lists of the raw rows a report over these days reads."""
    t = tracks_t.c
    out = []
    if whole is not None:
        on = whole.on(t.created_at)
        out += [[*on, t.id > mark], [*on, t.id.in_(select(open_t.c.track_id))]]
    out += [part.on(t.created_at) for part in partials]
    return out


def histogram(conn, window: reports.Window, mark: int) -> tuple[dict, dict]:
    """reports.request_histogram over the window."""
    whole, partials = days.split(window)
    outcomes: dict = {}
    hist: dict = {}

    def take(found_outcomes, found_hist):
        for dest, by in found_outcomes.items():
            mine = outcomes.setdefault(dest, {})
            for k, n in by.items():
                mine[k] = mine.get(k, 0) + n
        for dest, by in found_hist.items():
            mine = hist.setdefault(dest, {})
            for k, n in by.items():
                mine[k] = mine.get(k, 0) + n

    if whole is not None:
        r = rollup_t.c
        fo: dict = {}
        fh: dict = {}
        for dest, outcome, ms, n in conn.execute(
                select(r.destination, r.outcome, r.ms, func.sum(r.n))
                .where(*days.day_conds(r.day, whole))
                .group_by(r.destination, r.outcome, r.ms)):
            n = int(n or 0)
            by = fo.setdefault(dest, {})
            by[outcome] = by.get(outcome, 0) + n
            if ms is not None:
                b = fh.setdefault(dest, {})
                b[float(ms)] = b.get(float(ms), 0) + n
        take(fo, fh)
    for conds in _raw_parts(whole, partials, mark):
        take(*reports.request_histogram(conn, conds))
    outcomes = {d: {k: n for k, n in by.items() if n} for d, by in outcomes.items()}
    outcomes = {d: by for d, by in outcomes.items() if by}
    hist = {d: {k: n for k, n in by.items() if n} for d, by in hist.items()}
    return outcomes, {d: by for d, by in hist.items() if by}


def reconciliation(conn, window: reports.Window, mark: int) -> list[dict]:
    """reports.reconciliation from the rollup and raw rows."""
    whole, partials = days.split(window)
    sums: dict = {}

    def take(found: dict):
        for k, v in found.items():
            mine = sums.setdefault(k, [0, 0, 0, 0])
            for i in range(3):
                mine[i] += v[i]
            mine[3] += v[3] if len(v) > 3 else 1

    t = tracks_t.c
    if whole is not None:
        r = rollup_t.c
        take({(dest, str(days.as_date(day))): [int(s or 0), int(a or 0), int(j or 0),
                                                int(rn or 0)]
              for dest, day, rn, s, a, j in conn.execute(
                  select(r.destination, r.day, func.sum(r.recon_n), func.sum(r.sent),
                         func.sum(r.accepted), func.sum(r.rejected))
                  .where(*days.day_conds(r.day, whole)).group_by(r.destination, r.day))})
    for conds in _raw_parts(whole, partials, mark):
        take(reports.reconciliation_sums(conn, conds))
    sums = {k: v[:3] for k, v in sums.items() if v[3] > 0}

    # Reasons: the latest REASON_ROWS requests with reasons, rolled up or raw.
    rows = []
    rr = reasons_t.c
    rows += [tuple(r) for r in conn.execute(
        select(rr.created_at, rr.destination, rr.reasons)
        .where(*window.on(rr.created_at)).order_by(rr.created_at.desc())
        .limit(reports.REASON_ROWS))]
    on = window.on(t.created_at)
    for cond in (t.id > mark, t.id.in_(select(open_t.c.track_id))):
        rows += reports.reasons_rows(conn, [*on, cond])
    rows.sort(key=lambda r: r[0], reverse=True)
    return reports.reconciliation_table(sums, rows[:reports.REASON_ROWS])
