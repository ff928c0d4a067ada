"""Rollup bookkeeping: watermarks, the lock and settled horizons.

A watermark is an id: every row of the source table with a smaller or equal id is in the
rollup (or listed as open). Ids are handed out when a row is inserted, not when it commits,
so a pass reads only up to a horizon it noted at least `settle` seconds earlier: a
transaction that took an id below it has committed by then (ingest transactions last
milliseconds). A transaction open longer than that would be missed until
`sst report rebuild`; 30 s is 1,000 times longer than the slowest ingest commit measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update

from sst.clock import to_db
from sst.models import RollupState, insert_ignore

state_t = RollupState.__table__

LOCK = "lock"
SETTLE_SECONDS = 30


@dataclass
class Mark:
    name: str
    last_id: int
    horizon: int | None
    horizon_at: object
    info: dict | None


def _ensure(conn, name: str) -> None:
    conn.execute(insert_ignore(state_t), {"name": name, "last_id": 0})


def lock(conn, now) -> None:
    """Take the rollup mutex for this transaction: every pass and every change that takes
    rows out of a rollup (replay, erasure) holds it, so none reads a row the other is
    changing. An UPDATE: a row lock on MariaDB, the database write lock on SQLite."""
    res = conn.execute(update(state_t).where(state_t.c.name == LOCK)
                       .values(updated_at=to_db(now)))
    if not res.rowcount:
        _ensure(conn, LOCK)
        conn.execute(update(state_t).where(state_t.c.name == LOCK)
                     .values(updated_at=to_db(now)))


def read(conn, name: str, locking: bool = False) -> Mark:
    """The rollup's state; `locking`: the latest committed one, whatever snapshot this
    transaction reads (MariaDB's REPEATABLE READ would otherwise show the one of its first
    read, which may be older than the lock it took since)."""
    q = select(state_t).where(state_t.c.name == name)
    row = conn.execute(q.with_for_update() if locking else q).first()
    if row is None:
        return Mark(name, 0, None, None, None)
    return Mark(name, int(row.last_id or 0), row.horizon, row.horizon_at, row.info)


def marks(conn, names) -> dict[str, int]:
    """{name: last_id} (0 for a rollup never run)."""
    found = dict(conn.execute(select(state_t.c.name, state_t.c.last_id)
                              .where(state_t.c.name.in_(list(names)))).all())
    return {n: int(found.get(n) or 0) for n in names}


def save(conn, name: str, **values) -> None:
    _ensure(conn, name)
    conn.execute(update(state_t).where(state_t.c.name == name).values(**values))


def settled(conn, name: str, table_id, now, settle: float) -> int:
    """The id a pass may roll `name` up to now (see the module's docstring), noting the
    current newest id as the next horizon when the last one has settled."""
    newest = int(conn.execute(select(func.max(table_id))).scalar() or 0)
    mark = read(conn, name)
    if settle <= 0:
        return newest
    if mark.horizon is None or mark.horizon_at is None:
        save(conn, name, horizon=newest, horizon_at=to_db(now))
        return mark.last_id
    at = mark.horizon_at
    if to_db(now) - at >= timedelta(seconds=settle):
        save(conn, name, horizon=newest, horizon_at=to_db(now))
        return max(mark.last_id, int(mark.horizon))
    return mark.last_id
