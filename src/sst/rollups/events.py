"""Events per UTC day, source and name: the events report's rollup.

Events never change once stored, so a pass only adds the events above its watermark (late
ones with old event times land in their old day); erasure takes out what it deletes
(rollups.erasure)."""

from __future__ import annotations

from sqlalchemy import case, func, select

from sst import reports
from sst.models import RollupEvent
from sst.rollups import days, state
from sst.rollups.counters import bump

rollup_t = RollupEvent.__table__
events_t = reports.events_t
NAME = "events"


def _grouped(conn, conds):
    e = events_t.c
    return conn.execute(
        select(func.date(e.event_time).label("day"), e.source,
               reports.event_name(e).label("name"), func.count().label("events"),
               func.sum(case((e.is_bot, 1), else_=0)).label("bots"))
        .where(*conds).group_by("day", e.source, "name")).all()


def add(conn, conds, sign: int = 1) -> None:
    """Add (sign -1: take out) the events that match `conds` to the daily counters."""
    bump(conn, rollup_t, [
        ({"day": days.as_date(r.day), "source": r.source, "name": r.name},
         {"events": sign * int(r.events), "bots": sign * int(r.bots or 0)})
        for r in _grouped(conn, conds)])


def roll(conn, upto: int, batch: int, recheck: bool = True) -> int:
    """Roll up events with ids in (watermark, min(upto, watermark + batch)]; how many ids.
    (`recheck`: events have no open list.)"""
    lo = state.read(conn, NAME).last_id
    hi = min(upto, lo + batch)
    if hi <= lo:
        return 0
    e = events_t.c
    add(conn, [e.id > lo, e.id <= hi])
    state.save(conn, NAME, last_id=hi)
    return hi - lo


def report(conn, window: reports.Window, mark: int) -> list[dict]:
    """reports.events_by_day from the rollup (whole days, ids <= mark) and raw rows."""
    whole, partials = days.split(window)
    acc: dict = {}

    def take(rows):
        for r in rows:
            k = (r["day"], r["name"])
            ev, bots = acc.get(k, (0, 0))
            acc[k] = (ev + r["events"], bots + r["bots"])

    if whole is not None:
        r = rollup_t.c
        q = (select(r.day, r.name, func.sum(r.events), func.sum(r.bots))
             .where(*days.day_conds(r.day, whole)).group_by(r.day, r.name))
        if window.source:
            q = q.where(r.source == window.source)
        take({"day": str(days.as_date(d)), "name": n, "events": int(ev or 0),
              "bots": int(b or 0)} for d, n, ev, b in conn.execute(q))
        take(reports.events_by_day(conn, whole, extra=[events_t.c.id > mark]))
    for part in partials:
        take(reports.events_by_day(conn, part))
    return [{"day": d, "name": n, "events": ev, "bots": b}
            for (d, n), (ev, b) in sorted(acc.items(),
                                          key=lambda kv: (kv[0][0], kv[0][1] is not None,
                                                          kv[0][1] or ""))
            if ev]
