"""`sst report`: events, deliveries and attribution as terminal tables, JSON or CSV."""

from __future__ import annotations

import csv
import io

import click
from flask import current_app
from flask.cli import with_appcontext

from sst import reports
from sst.cli.common import app_state, parse_time
from sst.clock import utcnow
from sst.rollups import conversions, passes
from sst.rollups import read as rollup_read
from sst.rollups import state as rollup_state


def _pct(part, whole):
    return round(part / whole, 4) if whole else 0.0


def tables(data: dict) -> list[tuple[str, str, list[str], list[list]]]:
    """The report dict as (name, title, columns, rows) tables, in a fixed order."""
    out = []
    if "events" in data:
        out.append(("events", "Events by day", ["day", "name", "events", "bots"],
                    [[r["day"], r["name"], r["events"], r["bots"]] for r in data["events"]]))
    if "deliveries" in data:
        cols = ["destination", "deliveries", "succeeded", "failed", "skipped", "waiting",
                "requests", "p50_ms", "p95_ms", "p99_ms"]
        out.append(("deliveries", "Deliveries by destination (latency: request duration)",
                    cols, [[r[c] for c in cols] for r in data["deliveries"]]))
    if "attribution" in data:
        a = data["attribution"]
        n = a["conversions"]
        names = ", ".join(a["conversion_events"])
        out.append(("attribution_summary", f"Conversions ({names})",
                    ["conversions", "verified", "anonymous", "cross_device",
                     "cross_device_share"],
                    [[n, a["verified"], a["anonymous"], a["cross_device"]["conversions"],
                      a["cross_device"]["share"]]]))
        for key, title in (("first_touch", "First touch (platform)"),
                           ("last_touch", "Last touch (platform)")):
            out.append((f"attribution_{key}", title, ["platform", "conversions", "share"],
                        [[r["platform"], r["conversions"], _pct(r["conversions"], n)]
                         for r in a[key]]))
        for key, title in (("utm_first", "First touch (utm)"),
                           ("utm_last", "Latest touch (utm)")):
            out.append((f"attribution_{key}", title,
                        ["utm_source", "utm_campaign", "conversions", "share"],
                        [[r["utm_source"], r["utm_campaign"], r["conversions"],
                          _pct(r["conversions"], n)] for r in a[key]]))
        out.append(("attribution_cross_device",
                    "Credited across devices through a verified phone (cross-device)",
                    ["platform", "conversions", "share"],
                    [[r["platform"], r["conversions"], _pct(r["conversions"], n)]
                     for r in a["cross_device"]["by_platform"]]))
    if "reconciliation" in data:
        cols = ["destination", "day", "sent", "accepted", "rejected", "unconfirmed",
                "acceptance_share"]
        out.append(("reconciliation", "What each platform accepted (by day of sending)",
                    cols + ["reasons"],
                    [[r[c] for c in cols[:-1]] + [r["acceptance"], "; ".join(r["reasons"])]
                     for r in data["reconciliation"]]))
    return out


LABELS = ("name", "platform", "utm_source", "utm_campaign", "reasons")  # None there means "no value"


def _cell(value, column) -> str:
    if value is None:
        return "(none)" if column in LABELS else "-"
    if column.endswith("share"):
        return f"{value * 100:.1f}%"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def render_text(table) -> str:
    _name, title, columns, rows = table
    cells = [[_cell(v, c) for v, c in zip(row, columns, strict=True)] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [bool(rows) and all(isinstance(r[i], int | float) or r[i] is None for r in rows)
               for i in range(len(columns))]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    out = [title, line(columns), line(["-" * w for w in widths])]
    out += [line(r) for r in cells] or ["(no rows)"]
    return "\n".join(out)


def render_csv(table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    _name, _title, columns, rows = table
    writer.writerow(columns)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return buf.getvalue()


@click.command("report")
@click.argument("which", type=click.Choice(["all", *reports.REPORTS]), default="all")
@click.option("--since", default="30d", show_default=True, callback=parse_time,
              help="Start of the window: '7d', '12h' before now, or an ISO date (UTC).")
@click.option("--until", default=None, callback=parse_time,
              help="End of the window, exclusive (default: now).")
@click.option("--source", default=None, help="Only events of this [[source]].")
@click.option("--conversion-event", "conversion_events", multiple=True,
              help="A conversion event name (repeat it); default: CONVERSION_EVENTS.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@click.option("--csv", "as_csv", is_flag=True,
              help="CSV; with several tables each starts with a '# name' line.")
@click.option("--raw", is_flag=True,
              help="Scan the raw rows only, not the rollups (the same answer, slower).")
@with_appcontext
def report(which, since, until, source, conversion_events, as_json, as_csv, raw):
    """Reports: events by day, deliveries by destination, conversion attribution, and what
    each platform accepted (reconciliation).

    WHICH is events, deliveries, attribution, reconciliation or all (the default). Every figure is computed
    in the database.
    """
    from sst.jsonutil import dumps

    if as_json and as_csv:
        raise click.UsageError("--json and --csv exclude each other")
    window = reports.Window(since, until or utcnow(), source)
    names = list(conversion_events) or reports.configured_conversion_events(current_app.config)
    which = reports.REPORTS if which == "all" else (which,)
    run = reports.run if raw else rollup_read.run
    data = run(app_state().engine, window, which, names)
    if as_json:
        click.echo(dumps(data))
        return
    parts = tables(data)
    if as_csv:
        if len(parts) == 1:
            click.echo(render_csv(parts[0]), nl=False)
            return
        click.echo("\n".join(f"# {t[0]}\n{render_csv(t)}" for t in parts), nl=False)
        return
    w = data["window"]
    click.echo(f"window {w['since']} .. {w['until']}"
               + (f", source {w['source']}" if w["source"] else ""))
    click.echo("\n\n".join(render_text(t) for t in parts))


@click.group("rollups")
def rollups():
    """The daily rollups `sst report` and /admin read (the worker keeps them current)."""


@rollups.command("rebuild")
@click.option("--settle", default=rollup_state.SETTLE_SECONDS, show_default=True,
              help="Read the newest ids only this many seconds after noting them (0: when "
              "ingest is stopped, nothing is in flight).")
@with_appcontext
def rollups_rebuild(settle):
    """Empty the rollups and roll every stored row up again (after a restore, or to check
    them); reports stay exact meanwhile, reading raw what is not rolled up yet."""
    import time

    names = reports.configured_conversion_events(current_app.config)
    t = time.perf_counter()

    def progress(name, last_id):
        click.echo(f"  {name}: up to id {last_id:,}", err=True)

    counts = passes.rebuild(app_state().engine, names, progress=progress, settle=settle)
    click.echo(f"rebuilt in {time.perf_counter() - t:.1f} s "
               f"({counts['conversion_rows']:,} conversions); seconds per rollup: "
               + ", ".join(f"{k} {v}" for k, v in counts.items() if k != "conversion_rows"))


@rollups.command("run")
@click.option("--settle", default=rollup_state.SETTLE_SECONDS, show_default=True,
              help="Roll up the ids seen this many seconds ago (it waits that long; 0: "
              "everything, when ingest is stopped).")
@with_appcontext
def rollups_run(settle):
    """An incremental pass now: notes the newest ids, waits `settle` seconds (a
    transaction that took an id before is committed by then), rolls up to them."""
    import time

    names = reports.configured_conversion_events(current_app.config)
    engine = app_state().engine
    n = passes.run_pass(engine, names, settle=settle, budget=float("inf"))
    if settle > 0:
        time.sleep(settle)
        n += passes.run_pass(engine, names, settle=settle, budget=float("inf"))
    click.echo(f"rolled up {n:,} ids")


@rollups.command("status")
@with_appcontext
def rollups_status():
    """Each rollup's watermark (the highest id it covers)."""
    with app_state().engine.connect() as conn:
        for name in (*passes.TABLE_OF, *conversions.MARKS):
            click.echo(f"{name:<12} {rollup_state.read(conn, name).last_id:>14,}")
