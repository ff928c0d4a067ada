"""`sst audience`: audiences from the [[audience]] config, listed and exported as hashed
customer lists."""

from __future__ import annotations

import os
import sys

import click
from flask import current_app
from flask.cli import with_appcontext

from sst.cli.common import SETUP, app_state, fail, failures_exit


def _audiences(command):
    from sst.audiences import load_audiences
    from sst.errors import ConfigError

    try:
        return load_audiences(current_app.config.get("AUDIENCES") or [])
    except ConfigError as exc:
        fail(f"sst {command}: {exc}", SETUP)


@click.group()
def audience():
    """Audiences from the [[audience]] config: list and export."""


@audience.command("list")
@with_appcontext
def audience_list():
    """Configured audiences and their rules."""
    audiences = _audiences("audience list")
    if not audiences:
        click.echo("no [[audience]] configured")
    for a in audiences.values():
        click.echo(f"{a.name:<24} include={list(a.include)} exclude={list(a.exclude)} "
                   f"window={a.window} sources={list(a.sources) or 'all'} "
                   f"verified_only={a.verified_only}")


def _open_output(path):
    if path == "-":
        return click.get_text_stream("stdout"), False
    # The file holds hashed personal data: readable by its owner only.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return open(fd, "w", encoding="utf-8", newline=""), True


@audience.command("export")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["meta", "google", "csv"]), required=True,
              help="meta: Meta customer list; google: Customer Match; csv: sst's own.")
@click.option("-o", "--output", default="-", show_default=True,
              help="File to write (created mode 600); - for stdout.")
@click.option("--json", "as_json", is_flag=True, help="Counts as JSON on stderr.")
@with_appcontext
def audience_export(name, fmt, output, as_json):
    """Write an audience's SHA-256 hashed identifiers in a platform's file layout."""
    from sst import audiences as aud
    from sst.jsonutil import dumps

    audiences = _audiences("audience export")
    if name not in audiences:
        raise click.BadParameter(f"unknown audience {name!r}; known: "
                                 f"{', '.join(sorted(audiences)) or '(none)'}",
                                 param_hint="NAME")
    a = audiences[name]
    state = app_state()
    secret = current_app.config["SECRET_KEY"]
    out, close = _open_output(output)
    try:
        with failures_exit("audience export"):  # database down, disk full
            total = aud.count_include_events(state, a)
            if sys.stderr.isatty() and total and not as_json:
                with click.progressbar(length=total, label=f"exporting {name}",
                                       file=sys.stderr) as bar:
                    stats = aud.export(state, a, out, fmt, secret=secret, progress=bar.update)
            else:
                stats = aud.export(state, a, out, fmt, secret=secret)
    finally:
        if close:
            out.close()
    doc = {"audience": name, "format": fmt, **stats.as_dict()}
    if as_json:
        click.echo(dumps(doc), err=True)
        return
    click.echo(f"{name}: {stats.members} member(s) from {stats.events} event(s); "
               f"{stats.excluded} excluded; {stats.written} row(s) written "
               f"({stats.with_email} with email, {stats.with_phone} with phone, "
               f"{stats.with_external_id} with external id); "
               f"{stats.without_identifiers} without a usable identifier", err=True)
