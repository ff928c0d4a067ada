"""One row per conversion with its attribution worked out: the attribution report's rollup.

What a conversion is credited with depends on data that changes after it is stored: its
device's click ids and UTM touches (a late event with an old time adds one, or moves a
click id's first_seen_at earlier), its links and Person (a phone verified later makes it
verified), and the click ids of the Person's other devices (cross-device). All of that is
written either while storing an event (clicks, UTM touches, user_id links: the event's own
device and userId) or as a new row (links, persons, click ids, UTM touches). So the devices
and userIds whose conversions may have changed are those of the events, links, persons,
click ids and UTM touches above this rollup's watermarks, widened to every device linked to
the same Person / userId. A pass works those conversions out again; a report reads them raw
until it has (`dirty`), so the answer is exact at any time.
"""

from __future__ import annotations

from sqlalchemy import and_, delete, func, insert, or_, select

from sst import reports
from sst.identity.people import PERSON_LINKS
from sst.models import RollupAttribution, RollupConversion
from sst.rollups import days, state
from sst.rollups.counters import bump

rollup_t = RollupConversion.__table__
daily_t = RollupAttribution.__table__
events_t, links_t, persons_t = reports.events_t, reports.links_t, reports.persons_t
clicks_t, utm_t = reports.clicks_t, reports.utm_touches_t
NAME = "conversions"  # watermark on events; info: {"names": [...]} the conversion names
# The identity tables whose new rows mark devices / userIds dirty: (state name, table, the
# device column, the userId-like column).
SOURCES = (("conv_links", links_t, links_t.c.anonymous_id, links_t.c.value),
           ("conv_persons", persons_t, None, persons_t.c.user_id),
           ("conv_clicks", clicks_t, clicks_t.c.anonymous_id, None),
           ("conv_utm", utm_t, utm_t.c.anonymous_id, None))
MAX_DIRTY = 5000  # more devices + userIds than this: the report reads everything raw
CHUNK = 500
# Every watermark of the conversion rollup: events, then each identity source.
MARKS = (NAME, *(src[0] for src in SOURCES))


def facts(conn, conds) -> list[dict]:
    """The rollup rows of the conversions that match `conds` (conditions on events, e.g.
    reports.conversion_filter)."""
    conv = reports.conversions_query(conds).subquery("conv")
    rows = {r.id: {"event_id": r.id, "event_time": r.event_time, "source": r.source,
                   "name": r.name, "anonymous_id": r.anonymous_id, "user_id": r.user_id,
                   "first_platform": _platform(r.first_param),
                   "last_platform": _platform(r.last_param),
                   "verified": r.person is not None}
            for r in conn.execute(select(conv))}
    if not rows:
        return []
    for which, picked in reports.utm_touch_ids(conv).items():
        t = utm_t.alias(f"{which}_t")
        for cid, src, camp in conn.execute(
                select(picked.c.id, t.c.utm_source, t.c.utm_campaign)
                .select_from(picked.outerjoin(t, t.c.id == picked.c.touch_id))):
            rows[cid][f"{which}_source"] = src
            rows[cid][f"{which}_campaign"] = camp
    cross = reports.cross_device_platforms(conn, conds)
    for cid, row in rows.items():
        found = cross.get(cid)
        row["cross_platforms"] = ",".join(sorted(found)) if found else None
    return list(rows.values())


def _platform(param):
    return None if param is None else reports.PLATFORMS.get(param, param)


def names_of(conn) -> list[str] | None:
    info = state.read(conn, NAME).info
    return sorted(info.get("names") or []) if isinstance(info, dict) else None


def _write(conn, names, conds) -> int:
    found = facts(conn, reports.conversion_filter(reports.Window(), names, extra=conds))
    for i in range(0, len(found), CHUNK):
        conn.execute(insert(rollup_t), found[i:i + CHUNK])
    _count_daily(conn, found, 1)
    return len(found)


def remove(conn, cond) -> None:
    """Delete the conversion rows that match `cond`, and their daily counts. The rows are
    read as they are now (a locking read), not as an older snapshot saw them."""
    rows = [dict(r._mapping) for r in conn.execute(
        select(rollup_t).where(cond).with_for_update())]
    if rows:
        _count_daily(conn, rows, -1)
        for i in range(0, len(rows), CHUNK):
            conn.execute(delete(rollup_t).where(
                rollup_t.c.event_id.in_([r["event_id"] for r in rows[i:i + CHUNK]])))


def _dims(row) -> list[tuple]:
    """The (dim, k1, k2, k3, k4) keys one conversion counts under."""
    out = [("cube", row["name"], row["first_platform"], row["last_platform"],
            "1" if row["verified"] else "0"),
           ("utm_first", row["utm_first_source"], row["utm_first_campaign"], None, None),
           ("utm_last", row["utm_last_source"], row["utm_last_campaign"], None, None)]
    if row["cross_platforms"]:
        out.append(("cross", row["cross_platforms"], None, None, None))
    return out


def _count_daily(conn, rows, sign: int) -> None:
    acc: dict = {}
    for row in rows:
        day = days.as_date(row["event_time"])
        for dim in _dims(row):
            key = (day, row["source"], *dim)
            acc[key] = acc.get(key, 0) + sign
    bump(conn, daily_t, [
        ({"day": day, "source": source, "dim": dim, "k1": k1, "k2": k2, "k3": k3, "k4": k4},
         {"n": n}) for (day, source, dim, k1, k2, k3, k4), n in acc.items() if n])


def _add_rows(out: reports.AttributionCounts, rows, sign: int) -> None:
    """Count per-conversion rows into `out` (sign -1: take them out)."""
    for row in rows:
        for dim, k1, k2, k3, k4 in _dims(row):
            _add_key(out, dim, k1, k2, k3, k4, sign)


def _add_key(out, dim, k1, k2, k3, k4, n) -> None:
    if dim == "cube":
        key = (k1, k2, k3, k4 == "1")
        out.cube[key] = out.cube.get(key, 0) + n
    elif dim in ("utm_first", "utm_last"):
        found = getattr(out, dim)
        found[(k1, k2)] = found.get((k1, k2), 0) + n
    else:
        out.cross_total += n
        for p in k1.split(","):
            out.cross_by[p] = out.cross_by.get(p, 0) + n


def _dirty_from(conn, marks: dict, uppers: dict | None) -> tuple[set, set]:
    """(devices, userIds) of the rows above the watermarks (up to `uppers`, or all)."""
    devices, users = set(), set()
    e = events_t.c
    conds = [e.id > marks[NAME]] + ([e.id <= uppers[NAME]] if uppers else [])
    for aid, uid in conn.execute(select(e.anonymous_id, e.user_id).distinct().where(*conds)):
        devices.add(aid)
        users.add(uid)
    for name, table, dev, user in SOURCES:
        conds = [table.c.id > marks[name]] + ([table.c.id <= uppers[name]] if uppers else [])
        cols = [c for c in (dev, user) if c is not None]
        for row in conn.execute(select(*cols).distinct().where(*conds)):
            if dev is not None:
                devices.add(row[0])
            if user is not None:
                users.add(row[-1])
    devices.discard(None)
    users.discard(None)
    return devices, users


def widen(conn, devices: set, users: set) -> tuple[set, set]:
    """Every device linked to the same Person / userId as these, and those values."""
    lk = links_t.c
    users = set(users)
    for chunk in _chunks(devices):
        users |= set(conn.execute(select(lk.value).distinct().where(
            lk.anonymous_id.in_(chunk), lk.kind.in_(PERSON_LINKS))).scalars())
    devices = set(devices)
    for chunk in _chunks(users):
        devices |= set(conn.execute(select(lk.anonymous_id).distinct().where(
            lk.value.in_(chunk), lk.kind.in_(PERSON_LINKS))).scalars())
    return devices, users


def _chunks(values):
    values = sorted(values)
    for i in range(0, len(values), CHUNK):
        yield values[i:i + CHUNK]


def dirty(conn) -> tuple[set, set] | None:
    """The (devices, userIds) whose rolled-up conversions may be out of date now; None when
    there are too many to list (the report then reads everything raw)."""
    marks = state.marks(conn, list(MARKS))
    devices, users = _dirty_from(conn, marks, None)
    if len(devices) + len(users) > MAX_DIRTY:
        return None
    devices, users = widen(conn, devices, users)
    if len(devices) + len(users) > MAX_DIRTY:
        return None
    return devices, users


def redo(conn, names, devices, users, upto: int) -> None:
    """Work out again the rolled-up conversions (ids <= upto) of these devices / userIds."""
    e, r = events_t.c, rollup_t.c
    for col, rcol, values in ((e.anonymous_id, r.anonymous_id, devices),
                              (e.user_id, r.user_id, users)):
        for chunk in _chunks(values):
            remove(conn, and_(rcol.in_(chunk), r.event_id <= upto))
            _write(conn, names, [col.in_(chunk), e.id <= upto])


def roll(conn, names, upto: dict, batch: int) -> int:
    """Add the conversions with event ids in (watermark, min(upto, watermark + batch)] and
    work out again those the new identity rows (up to their own bounds) may have changed."""
    marks = state.marks(conn, list(MARKS))
    his = {k: min(upto[k], marks[k] + batch) for k in marks}
    if all(his[k] <= marks[k] for k in marks):
        return 0
    devices, users = widen(conn, *_dirty_from(conn, marks, his))
    lo, hi = marks[NAME], his[NAME]
    redo(conn, names, devices, users, lo)
    e = events_t.c
    if hi > lo:
        _write(conn, names, [e.id > lo, e.id <= hi])
    for k, v in his.items():
        state.save(conn, k, last_id=v)
    return sum(his[k] - marks[k] for k in marks)


def counts(conn, window: reports.Window, names, mark: int) -> reports.AttributionCounts:
    """reports.attribution_counts over the window, from the rollup and raw rows."""
    e = events_t.c
    # Rolled up for other conversion names: nothing to reuse, and no dirty scan to pay for.
    if sorted(names) != (names_of(conn) or None):
        return reports.attribution_counts(conn, reports.conversion_filter(window, names))
    found = dirty(conn)
    if found is None:
        return reports.attribution_counts(conn, reports.conversion_filter(window, names))
    devices, users = found
    r = rollup_t.c
    out = reports.AttributionCounts()
    whole, partials = days.split(window)
    source = [r.source == window.source] if window.source else []
    if whole is not None:
        # Whole days: the daily counts, less the rows of dirty devices / userIds (read raw).
        a = daily_t.c
        q = (select(a.dim, a.k1, a.k2, a.k3, a.k4, func.sum(a.n))
             .where(*days.day_conds(a.day, whole))
             .group_by(a.dim, a.k1, a.k2, a.k3, a.k4))
        if window.source:
            q = q.where(a.source == window.source)
        for dim, k1, k2, k3, k4, n in conn.execute(q):
            if n:
                _add_key(out, dim, k1, k2, k3, k4, int(n))
        stale: dict = {}
        for col, values in ((r.anonymous_id, devices), (r.user_id, users)):
            for chunk in _chunks(values):
                for row in conn.execute(select(rollup_t).where(
                        col.in_(chunk), *whole.on(r.event_time), *source)):
                    stale[row.event_id] = row._mapping
        _add_rows(out, stale.values(), -1)
    # Partial days: the conversion rows themselves (exact times), less the dirty ones.
    conds = []
    for col, values in ((r.anonymous_id, devices), (r.user_id, users)):
        for chunk in _chunks(values):
            conds.append(or_(col.is_(None), col.notin_(chunk)))
    for part in partials:
        _add_rows(out, (row._mapping for row in conn.execute(
            select(rollup_t).where(*part.on(r.event_time), *source, *conds))), 1)
    # Raw: conversions above the watermark and those of dirty devices / userIds.
    ids = set(conn.execute(select(e.id).where(
        *reports.conversion_filter(window, names, extra=[e.id > mark]))).scalars())
    for col, values in ((e.anonymous_id, devices), (e.user_id, users)):
        for chunk in _chunks(values):
            ids |= set(conn.execute(select(e.id).where(*reports.conversion_filter(
                window, names, extra=[col.in_(chunk)]))).scalars())
    for chunk in _chunks(ids):
        out.add(reports.attribution_counts(conn, reports.conversion_filter(
            window, names, extra=[e.id.in_(chunk)])))
    return out


def reset(conn, names) -> None:
    """No conversion rolled up, for these conversion names: the passes start from id 0."""
    conn.execute(delete(rollup_t))
    conn.execute(delete(daily_t))
    for k in MARKS:
        state.save(conn, k, last_id=0)
    state.save(conn, NAME, info={"names": sorted(names)})


def rebuild(conn, names, upto: dict) -> int:
    """All conversions again, from nothing, up to these ids (rollups.passes.rebuild)."""
    reset(conn, names)
    e = events_t.c
    n = 0
    step = 20000
    for lo in range(0, upto[NAME], step):
        n += _write(conn, names, [e.id > lo, e.id <= min(upto[NAME], lo + step)])
    for k, v in upto.items():
        state.save(conn, k, last_id=v)
    return n

