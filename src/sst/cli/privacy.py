"""`sst audience`, `sst forget` and `sst purge`. Attached to `main` in cli.py."""

from __future__ import annotations

import os
import sys

import click
from flask import current_app
from flask.cli import with_appcontext


def _state():
    return current_app.extensions["sst"]


def _fail(command, exc):
    click.echo(f"sst {command}: {exc}", err=True)
    sys.exit(1)


def _audiences(command):
    from sst.audiences import load_audiences
    from sst.errors import ConfigError

    try:
        return load_audiences(current_app.config.get("AUDIENCES") or [])
    except ConfigError as exc:
        click.echo(f"sst {command}: {exc}", err=True)
        sys.exit(2)


# --- audiences ---------------------------------------------------------------------------------


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
    state = _state()
    secret = current_app.config["SECRET_KEY"]
    out, close = _open_output(output)
    try:
        total = aud.count_include_events(state, a)
        if sys.stderr.isatty() and total and not as_json:
            with click.progressbar(length=total, label=f"exporting {name}",
                                   file=sys.stderr) as bar:
                stats = aud.export(state, a, out, fmt, secret=secret, progress=bar.update)
        else:
            stats = aud.export(state, a, out, fmt, secret=secret)
    except Exception as exc:  # database down, disk full: the reason, not a traceback
        _fail("audience export", f"{exc.__class__.__name__}: {exc}")
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


# --- forget ------------------------------------------------------------------------------------


@click.command()
@click.option("--phone", default=None, help="A phone number (any format; default region "
              "from [identity] default_region).")
@click.option("--user-id", default=None)
@click.option("--anonymous-id", default=None)
@click.option("--yes", is_flag=True, help="Erase. Without it only the counts are printed.")
@click.option("--dry-run", is_flag=True, help="Print what would be erased (the default).")
@click.option("--pause", default=0.0, show_default=True, help="Seconds between batches.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def forget(phone, user_id, anonymous_id, yes, dry_run, pause, as_json):
    """Erase a person: events, visitors, links, OTP codes, Track bodies (GDPR Art. 17).

    Without --yes this is a dry run. An erasure record with counts only is kept.
    """
    from sst import privacy
    from sst.jsonutil import dumps

    state = _state()
    region = (current_app.config.get("IDENTITY") or {}).get("default_region") or "US"
    try:
        subject = privacy.resolve_subject(state.engine, current_app.config["SECRET_KEY"],
                                          phone=phone, user_id=user_id,
                                          anonymous_id=anonymous_id, default_region=region)
    except privacy.PrivacyError as exc:
        raise click.UsageError(str(exc)) from None
    execute = yes and not dry_run
    try:
        counts = (privacy.forget(state.engine, subject, pause=pause) if execute
                  else privacy.plan_forget(state.engine, subject))
    except Exception as exc:
        _fail("forget", f"{exc.__class__.__name__}: {exc}")
    doc = {"dryRun": not execute, "ids": {"anonymousIds": len(subject.anon_ids),
                                          "userIds": len(subject.user_ids)}, "counts": counts}
    if as_json:
        click.echo(dumps(doc))
        return
    click.echo(("erased" if execute else "would erase (dry run; --yes to erase)")
               + f": a person with {len(subject.anon_ids)} anonymous id(s) and "
               f"{len(subject.user_ids)} user id(s)")
    for table, n in counts.items():
        click.echo(f"  {table:<20} {n}")


# --- purge -------------------------------------------------------------------------------------


@click.command()
@click.option("--yes", is_flag=True, help="Delete. Without it only the counts are printed.")
@click.option("--dry-run", is_flag=True, help="Print what would be deleted (the default).")
@click.option("--batch-size", default=500, show_default=True, help="Rows per transaction.")
@click.option("--pause", default=0.0, show_default=True, help="Seconds between batches.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def purge(yes, dry_run, batch_size, pause, as_json):
    """Apply [retention]: drop old bodies, events, refused payloads and Track rows."""
    from sst import privacy
    from sst.jsonutil import dumps

    try:
        policy = privacy.retention_policy(current_app.config.get("RETENTION"))
    except privacy.PrivacyError as exc:
        click.echo(f"sst purge: {exc}", err=True)
        sys.exit(2)
    if not policy:
        click.echo("sst purge: no [retention] configured; nothing to do", err=True)
        sys.exit(2)
    state = _state()
    execute = yes and not dry_run
    try:
        if execute:
            counts = privacy.purge(state.engine, policy, pause=pause, batch=max(1, batch_size))
        else:
            counts = privacy.plan_purge(state.engine, policy)
    except Exception as exc:
        _fail("purge", f"{exc.__class__.__name__}: {exc}")
    if as_json:
        click.echo(dumps({"dryRun": not execute, "policy": policy, "counts": counts}))
        return
    click.echo(("purged" if execute else "would purge (dry run; --yes to purge)")
               + f" with {policy}:")
    for name, n in counts.items():
        click.echo(f"  {name:<20} {n}")
