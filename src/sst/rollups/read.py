"""The reports, answered from the rollups and the raw rows they do not cover."""

from __future__ import annotations

from sst import reports
from sst.rollups import conversions, deliveries, events, requests, state


def run(engine, window: reports.Window, which=reports.REPORTS,
        conversion_events=reports.DEFAULT_CONVERSION_EVENTS) -> dict:
    """reports.run's answer, read from the rollups. One transaction, one snapshot: a pass
    committing meanwhile cannot make a row count twice or not at all."""
    names = list(conversion_events)
    out: dict = {"window": window.as_dict()}
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN")  # pysqlite opens no transaction for reads
        marks = state.marks(conn, [events.NAME, deliveries.NAME, requests.NAME,
                                   conversions.NAME])
        if "events" in which:
            out["events"] = events.report(conn, window, marks[events.NAME])
        if "deliveries" in which:
            st = deliveries.states(conn, window, marks[deliveries.NAME])
            if window.source:
                outcomes, hist = {}, {}
            else:
                outcomes, hist = requests.histogram(conn, window, marks[requests.NAME])
            out["deliveries"] = reports.deliveries_table(window, st, outcomes, hist)
        if "attribution" in which:
            out["attribution"] = reports.attribution_table(
                names, conversions.counts(conn, window, names, marks[conversions.NAME]))
        if "reconciliation" in which:
            out["reconciliation"] = requests.reconciliation(conn, window,
                                                            marks[requests.NAME])
        conn.rollback()
    return out
