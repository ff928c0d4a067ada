"""The `sst` command line (Click). `sst --help` lists every command."""

from __future__ import annotations

import os
import secrets
import sys
import time
from pathlib import Path

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from .errors import ConfigError


def _create_app():
    from .app import create_app

    try:
        return create_app()
    except ConfigError as exc:
        click.echo(f"sst: {exc}", err=True)
        sys.exit(2)


@click.group(cls=FlaskGroup, create_app=_create_app, add_default_commands=False,
             set_debug_flag=False, load_dotenv=False)
def main():
    """sst: self-hosted server-side event tracking."""


# --- schema ---------------------------------------------------------------------------------


@main.group()
def db():
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@with_appcontext
def db_upgrade(revision):
    """Create or migrate the schema; safe to run again."""
    from . import migrate

    try:
        migrate.upgrade(revision)
    except Exception as exc:  # an operator needs the reason, not a traceback
        from sqlalchemy.exc import OperationalError

        if isinstance(exc, OperationalError):
            click.echo(f"sst: database unavailable: {exc.orig}", err=True)
            sys.exit(1)
        raise
    click.echo(f"schema at revision {migrate.current()}")


@db.command("current")
@with_appcontext
def db_current():
    """Print the schema's revision."""
    from . import migrate

    click.echo(migrate.current() or "(empty)")


# --- keys and serving -----------------------------------------------------------------------


def new_write_key() -> str:
    return "sk_" + secrets.token_urlsafe(24)


@main.command()
def keygen():
    """Print a new random write key for a [[source]]."""
    click.echo(new_write_key())


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@with_appcontext
def serve(host, port):
    """Run the development server (use gunicorn wsgi:app in production)."""
    current_app.run(host=host, port=port, threaded=True, use_reloader=False)


DEV_CONFIG = """\
# Written by `sst dev`: a local, embedded set-up (SQLite, in-process queue).
[server]
cookie_name = "sst_aid"

[identity]
otp_provider = "file"
otp_outbox = "otp-outbox.jsonl"

[[source]]
name = "dev"
write_key = "{write_key}"
origins = ["http://localhost:{port}", "http://127.0.0.1:{port}"]
"""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--dir", "folder", default=".sst-dev", show_default=True,
              help="Where the embedded database, config and OTP outbox live.")
def dev(host, port, folder):
    """Start a working sst on SQLite with an embedded queue; no servers needed."""
    for var in ("SST_DATABASE_URL", "SST_REDIS_URL"):
        if os.environ.get(var):
            click.echo(f"sst dev is the embedded mode: unset {var} (or use sst serve)", err=True)
            sys.exit(2)
    base = Path(folder).resolve()
    base.mkdir(parents=True, exist_ok=True)
    config_path = base / "config.toml"
    if not config_path.exists():
        config_path.write_text(DEV_CONFIG.format(write_key=new_write_key(), port=port))
    from .app import create_app

    try:
        app = create_app({"CONFIG": str(config_path), "INSTANCE_PATH": str(base),
                          "DATABASE_URL": "sqlite:///" + str(base / "sst.sqlite"),
                          "COOKIE_SECURE": False})
    except ConfigError as exc:
        click.echo(f"sst: {exc}", err=True)
        sys.exit(2)
    from . import migrate

    with app.app_context():
        migrate.upgrade()
    write_key = next(iter(app.extensions["sst"].sources))
    url = f"http://{host}:{port}"
    click.echo(f"sst (embedded: SQLite at {base / 'sst.sqlite'}, in-process queue)")
    click.echo(f"config:    {config_path}")
    click.echo(f"write key: {write_key}")
    click.echo("try:")
    click.echo(f"  curl -s -u '{write_key}:' -H 'Content-Type: application/json' "
               f"-d '{{\"event\":\"Signed Up\",\"userId\":\"u1\",\"properties\":{{\"plan\":\"pro\"}}}}' "
               f"{url}/v1/track")
    click.echo("  sst events tail   (with SST_CONFIG and SST_DATABASE_URL as above)")
    _start_embedded_worker(app)
    app.run(host=host, port=port, threaded=True, use_reloader=False)


def _start_embedded_worker(app):
    """The in-process queue of embedded mode, when the delivery layer is installed."""
    try:
        from .jobs import start_embedded_worker
    except ImportError:
        return
    start_embedded_worker(app)


# --- events ---------------------------------------------------------------------------------


@main.group()
def events():
    """Look at stored events."""


@events.command("tail")
@click.option("-n", "--lines", default=20, show_default=True, help="How many events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events.")
@click.option("--source", default=None, help="Only this source.")
@with_appcontext
def events_tail(lines, as_json, follow, source):
    """Print the latest stored events, oldest first."""
    from sqlalchemy import select

    from .extensions import db
    from .models import Event

    def fetch(after_id=None, limit=lines):
        q = select(Event).order_by(Event.id.desc()).limit(limit)
        if after_id is not None:
            q = select(Event).where(Event.id > after_id).order_by(Event.id).limit(500)
        if source:
            q = q.where(Event.source == source)
        rows = db.session.execute(q).scalars().all()
        db.session.rollback()  # end the read so the next poll sees new rows
        return rows if after_id is not None else list(reversed(rows))

    last = None
    for ev in fetch():
        _print_event(ev, as_json)
        last = ev.id
    while follow:
        time.sleep(1)
        for ev in fetch(after_id=last or 0):
            _print_event(ev, as_json)
            last = ev.id


def _print_event(ev, as_json):
    from .clock import iso
    from .jsonutil import dumps

    if as_json:
        click.echo(dumps({
            "id": ev.id, "source": ev.source, "messageId": ev.message_id, "type": ev.type,
            "event": ev.event, "anonymousId": ev.anonymous_id, "userId": ev.user_id,
            "eventTime": iso(ev.event_time), "receivedAt": iso(ev.received_at),
            "isBot": ev.is_bot, "message": ev.message,
        }))
        return
    who = ev.user_id or ev.anonymous_id or "-"
    name = ev.event or ""
    click.echo(f"{iso(ev.event_time)}  {ev.source:<10} {ev.type:<8} {name[:40]:<40} "
               f"{who[:36]:<36} {ev.message_id}")


if __name__ == "__main__":
    main()
