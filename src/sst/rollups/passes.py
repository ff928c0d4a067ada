"""The incremental pass (run by the worker's periodic loop) and the rebuild
(`sst report rebuild`, and the migration's backfill)."""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext

from sqlalchemy import delete
from sqlalchemy.engine import Connection

from sst import reports
from sst.clock import utcnow
from sst.models import (
    RollupAttribution,
    RollupConversion,
    RollupDelivery,
    RollupEvent,
    RollupOpenDelivery,
    RollupOpenTrack,
    RollupReason,
    RollupRequest,
)
from sst.rollups import conversions, deliveries, events, requests, state

logger = logging.getLogger(__name__)

BATCH = 5000  # ids a pass reads per rollup per transaction: short transactions
TABLE_OF = {events.NAME: reports.events_t, deliveries.NAME: reports.deliveries_t,
            requests.NAME: reports.tracks_t}
ROLL = {events.NAME: events.roll, deliveries.NAME: deliveries.roll,
        requests.NAME: requests.roll}
ROLLUP_TABLES = (RollupEvent, RollupDelivery, RollupOpenDelivery, RollupRequest,
                 RollupOpenTrack, RollupReason, RollupConversion, RollupAttribution)


def _conversion_tables():
    return {conversions.NAME: reports.events_t,
            **{name: table for name, table, _d, _u in conversions.SOURCES}}


def run_pass(engine, conversion_events, *, settle: float = state.SETTLE_SECONDS,
             batch: int = BATCH, budget: float = 1.0) -> int:
    """Roll up what is new since the watermarks, one transaction per batch, until nothing
    is left or `budget` seconds have gone; returns the ids consumed. Safe to run from
    several workers at once (the rollup lock serialises them)."""
    names = sorted(conversion_events)
    deadline = time.monotonic() + budget
    total = 0
    while True:
        with engine.begin() as conn:
            now = utcnow()
            state.lock(conn, now)
            if conversions.names_of(conn) != names:
                # The conversion events changed: start the conversions over from id 0; the
                # passes catch up batch by batch (the report reads raw what is not yet).
                conversions.reset(conn, names)
            done = 0
            for name, table in TABLE_OF.items():
                upto = state.settled(conn, name, table.c.id, now, settle)
                done += ROLL[name](conn, upto, batch)
            upto = {k: state.settled(conn, k, t.c.id, now, settle)
                    for k, t in _conversion_tables().items()}
            done += conversions.roll(conn, names, upto, batch)
        total += done
        if not done or time.monotonic() > deadline:
            return total


def _tx(bind):
    """A transaction of the engine, or the caller's own connection (the migration's)."""
    return nullcontext(bind) if isinstance(bind, Connection) else bind.begin()


def rebuild(bind, conversion_events, *, batch: int = 50000, progress=None,
            settle: float = 0.0) -> dict:
    """Empty every rollup and roll everything up again (up to the newest ids at its start);
    the incremental pass carries on from there. `bind`: an engine (a transaction per batch)
    or a connection (the migration's, all in its transaction). `settle`: ingest may be
    running, so the newest ids are noted first and read only `settle` seconds later (a
    transaction that took one has committed by then, state module); an empty database
    waits for nothing."""
    names = sorted(conversion_events)
    counts = {}
    started = time.monotonic()
    with _tx(bind) as conn:
        state.lock(conn, utcnow())
        for model in ROLLUP_TABLES:
            conn.execute(delete(model.__table__))
        for name in (*TABLE_OF, *_conversion_tables()):
            state.save(conn, name, last_id=0, horizon=None, horizon_at=None)
        state.save(conn, conversions.NAME, info=None)
        tops = {name: state.settled(conn, name, table.c.id, utcnow(), 0)
                for name, table in {**TABLE_OF, **_conversion_tables()}.items()}
    if any(tops.values()):
        time.sleep(max(0.0, settle - (time.monotonic() - started)))
    for name in TABLE_OF:
        roll = ROLL[name]
        t0 = time.perf_counter()
        while True:
            with _tx(bind) as conn:
                state.lock(conn, utcnow())
                upto = tops[name]
                # The open list is checked once the ids are done, not per batch: it only
                # grows during a rebuild, and checking it each time made it quadratic.
                done = roll(conn, upto, batch, recheck=False) or roll(conn, upto, batch)
                if not done:
                    break
                if progress:
                    progress(name, state.read(conn, name).last_id)
        counts[name] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    with _tx(bind) as conn:
        state.lock(conn, utcnow())
        upto = {k: tops[k] for k in _conversion_tables()}
        counts["conversion_rows"] = conversions.rebuild(conn, names, upto)
    counts[conversions.NAME] = round(time.perf_counter() - t0, 1)
    return counts


class Periodic:
    """The worker loops' call: a pass every `every` seconds, bounded by `budget` seconds,
    off the request path. A failed pass only logs: the reports stay exact meanwhile (they
    read raw whatever is not rolled up), just slower."""

    def __init__(self, every: float = 5.0, budget: float = 1.0):
        self.every, self.budget, self.last = every, budget, 0.0

    def __call__(self, app) -> None:
        if time.monotonic() - self.last < self.every:
            return
        self.last = time.monotonic()
        try:
            run_pass(app.extensions["sst"].engine,
                     reports.configured_conversion_events(app.config),
                     settle=float(app.config.get("ROLLUP_SETTLE_SECONDS",
                                                 state.SETTLE_SECONDS)),
                     budget=self.budget)
        except Exception:
            logger.exception("rollup pass")
