"""Operations: `sst status` (per-destination health) and `sst alerts` (threshold alerts)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from sst.cli.common import SETUP, app_state, fail, failures_exit
from sst.errors import ConfigError
from sst.ops.status import no_destination_note


@click.command()
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def status(as_json):
    """Per destination, last hour and day: sent, outcomes, latency, last error, last skip."""
    from datetime import timedelta

    from sst.jsonutil import dumps
    from sst.ops.status import delivery_backlog, destination_status

    state = app_state()
    windows = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
    doc = {name: destination_status(state, w) for name, w in windows.items()}
    doc["backlog"] = delivery_backlog(state)
    note = no_destination_note(state)
    if as_json:
        click.echo(dumps(doc))
        return
    if note:
        click.echo(f"sst: {note}", err=True)
    for name in ("hour", "day"):
        click.echo(f"last {name}:")
        click.echo(f"  {'destination':<16}{'sent':>7}{'ok':>7}{'failed':>7}{'skipped':>8}"
                   f"{'retrying':>9}{'p50 ms':>9}{'p95 ms':>9}  last error")
        for row in doc[name]:
            err = row["last_error"]
            click.echo(
                f"  {row['destination']:<16}{row['sent']:>7}{row['succeeded']:>7}"
                f"{row['failed']:>7}{row['skipped']:>8}{row['retrying']:>9}"
                f"{_ms(row['p50_ms']):>9}{_ms(row['p95_ms']):>9}  "
                + (f"{err['time']} {err['status'] or ''} {err['error'][:60]}" if err else "-"))
        for row in doc[name]:
            for label, key in (("last skip", "last_skip"), ("last failure", "last_failure")):
                item = row.get(key)
                if item:
                    click.echo(f"    {row['destination']}: {label} {item['time']} "
                               f"({item['messageId']}): {item['reason'][:200]}")
    backlog = doc["backlog"]
    age = backlog["oldest_pending_age_s"]
    click.echo(f"deliveries by state: {backlog['states']}; oldest waiting: "
               f"{'-' if age is None else f'{age:.0f} s'}")


def _ms(value):
    return "-" if value is None else f"{value:.0f}"


# --- alerts ------------------------------------------------------------------------------------


@click.group(cls=AppGroup)
def alerts():
    """Threshold alerts to a webhook ([alerts] in the config)."""


@alerts.command("check")
@click.option("--dry-run", is_flag=True, help="Evaluate and print; post nothing.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def alerts_check(dry_run, as_json):
    """Evaluate the thresholds now and post what crossed them (once per window)."""
    from sst.jsonutil import dumps
    from sst.ops.alerts import alert_settings, check_alerts

    try:
        settings = alert_settings(current_app.config)
    except ConfigError as exc:
        fail(f"sst: {exc}", SETUP)
    if settings is None:
        fail("sst: no [alerts] webhook_url configured", SETUP)
    with failures_exit("alerts check"):
        found = check_alerts(app_state(), dry_run=dry_run)
    if as_json:
        click.echo(dumps(found))
        return
    for alert in found:
        click.echo(f"{alert.get('text')}  [{'sent' if alert.get('sent') else 'suppressed'}]")
    if not found:
        click.echo("no threshold crossed")
