"""What erasure does to the rollups: they answer what the raw rows answer, so what `sst
forget` and retention delete leaves the rollups too. A forgotten person's events stop
counting in the events report and their deliveries and requests in theirs, like in the
raw queries; their conversions go, and conversions of other devices that their click ids
or links credited are worked out again. The privacy module calls these in the
transaction that deletes, before it deletes (the rows must still be there to be counted
out), with the rollup lock held."""

from __future__ import annotations

from sst import reports
from sst.clock import utcnow
from sst.models import RollupConversion
from sst.rollups import conversions, deliveries, events, requests, state


def before_deleting(conn, *, event_ids=(), delivery_ids=(), track_ids=()) -> None:
    """Take rows about to be deleted out of the rollups."""
    if not (event_ids or delivery_ids or track_ids):
        return
    state.lock(conn, utcnow())
    e = reports.events_t.c
    if event_ids:
        mark = state.read(conn, events.NAME, locking=True).last_id
        ids = [i for i in event_ids if i <= mark]
        for i in range(0, len(ids), 1000):
            events.add(conn, [e.id.in_(ids[i:i + 1000])], -1)
        r = RollupConversion.__table__.c
        ids = list(event_ids)
        for i in range(0, len(ids), 1000):
            conversions.remove(conn, r.event_id.in_(ids[i:i + 1000]))
    deliveries.take_out(conn, delivery_ids, reopen=False)
    requests.take_out(conn, track_ids)


def affected(engine, devices, users) -> tuple[set, set]:
    """Before a forget deletes anything: every device and userId whose conversions its
    deletions may change (linked to the same Person / userId)."""
    devices = {d for d in devices if d}
    users = {u for u in users if u}
    with engine.connect() as conn:
        return conversions.widen(conn, devices, users)


def redo(engine, found: tuple[set, set]) -> None:
    """After the forget: work those conversions out again (the forgotten ones are gone
    with their events already)."""
    devices, users = found
    if not (devices or users):
        return
    with engine.begin() as conn:
        state.lock(conn, utcnow())
        names = conversions.names_of(conn)
        if names:
            mark = state.read(conn, conversions.NAME, locking=True).last_id
            conversions.redo(conn, names, devices, users, mark)
