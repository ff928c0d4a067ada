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
    _run_server(current_app._get_current_object(), host, port)


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
    click.echo(f"  SST_CONFIG={config_path} SST_DATABASE_URL=sqlite:///{base / 'sst.sqlite'} "
               ".venv/bin/sst events tail")
    _start_embedded_worker(app)
    _run_server(app, host, port)


def _run_server(app, host, port):
    # app.run() refuses to start under the flask CLI machinery; werkzeug's server does.
    from werkzeug.serving import run_simple

    run_simple(host, port, app, threaded=True, use_reloader=False)


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


# --- delivery ---------------------------------------------------------------------------------


@main.command()
@click.option("--burst", is_flag=True, help="Drain due deliveries (retries included), then exit.")
@click.option("--queue", "queues", multiple=True, default=["deliveries"], show_default=True)
@click.option("--worker-class", type=click.Choice(["simple", "fork"]), default="simple",
              show_default=True, help="simple: jobs run in the worker process (fast); "
              "fork: one child process per job (RQ's default).")
@click.option("--no-relay", is_flag=True, help="Do not move pending deliveries to the queue.")
@click.option("--sweep-interval", default=60.0, show_default=True,
              help="Seconds between sweeps for lost deliveries.")
@with_appcontext
def worker(burst, queues, worker_class, no_relay, sweep_interval):
    """Run an RQ worker with the scheduler, the relay and the periodic sweep."""
    from .jobs import run_worker

    run_worker(current_app._get_current_object(), burst=burst, queues=queues,
               worker_class=worker_class, sweep_every=sweep_interval, with_relay=not no_relay)


@main.command()
@with_appcontext
def sweep():
    """Re-enqueue deliveries that are pending, or lost by Redis or a dead worker."""
    from . import dispatch
    from .jobs import job_checker, make_enqueuer, rq_connection

    state = current_app.extensions["sst"]
    try:
        if state.redis_url:
            conn = rq_connection(state)
            counts = dispatch.sweep(state, job_checker(conn))
            moved = dispatch.relay(state, make_enqueuer(state, conn))
        else:
            from .jobs import run_inline

            counts = dispatch.sweep(state)
            moved = run_inline(state)
    except Exception as exc:
        click.echo(f"sst sweep: {exc.__class__.__name__}: {exc}", err=True)
        sys.exit(1)
    click.echo(f"recovered {counts['sending']} lost while sending, {counts['queued']} whose job "
               f"was gone; enqueued {moved}")


@main.command()
@click.option("--event", "event_ref", default=None,
              help="An event: its id, or its messageId.")
@click.option("--destination", default=None)
@click.option("-n", "--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--bodies", is_flag=True, help="Also print request and response bodies.")
@with_appcontext
def tracks(event_ref, destination, limit, as_json, bodies):
    """Outgoing requests and their answers (the delivery ledger), newest first."""
    from sqlalchemy import or_, select

    from .clock import iso
    from .extensions import db
    from .jsonutil import dumps
    from .models import Event, Track, TrackItem

    q = select(Track).order_by(Track.id.desc()).limit(limit)
    if event_ref:
        ids = select(Event.id).where(or_(Event.message_id == event_ref,
                                         Event.id == (int(event_ref) if event_ref.isdigit()
                                                      else -1)))
        q = q.where(Track.id.in_(select(TrackItem.track_id).where(TrackItem.event_id.in_(ids))))
    if destination:
        q = q.where(Track.destination == destination)
    for t in db.session.execute(q).scalars():
        item = {"id": t.id, "time": iso(t.created_at), "destination": t.destination,
                "connector": t.connector, "eventId": t.incoming_id, "deliveryId": t.delivery_id,
                "attempt": t.attempt, "outcome": t.outcome, "method": t.method, "url": t.url,
                "status": t.status, "error": t.error_message, "durationMs": t.duration_ms}
        if as_json:
            item.update(requestHeaders=t.request_headers, requestBody=t.request_body,
                        responseHeaders=t.response_headers, responseBody=t.response_body,
                        errorClass=t.error_class)
            click.echo(dumps(item))
            continue
        click.echo(f"{item['time']}  {t.destination:<12} #{t.attempt} {t.outcome:<9} "
                   f"{t.status or '-':<4} {t.duration_ms or 0:7.1f} ms  {t.method} {t.url}"
                   + (f"  {t.error_class}: {t.error_message}" if t.error_class else ""))
        if bodies:
            click.echo(f"    > {t.request_body}")
            click.echo(f"    < {t.response_body}")


# --- identity ---------------------------------------------------------------------------------


@main.group()
def identity():
    """People verified by phone, their devices and clicks."""


@identity.command("show")
@click.option("--phone", default=None, help="A phone number (any format; default region "
              "from [identity] default_region).")
@click.option("--user-id", default=None)
@click.option("--anonymous-id", default=None)
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def identity_show(phone, user_id, anonymous_id, as_json):
    """Print a person: userId, masked phone, devices and click history."""
    from sqlalchemy import select

    from . import people
    from .clock import iso
    from .identity.crypto import PhoneCipher, phone_lookup_key
    from .identity.phone import InvalidPhoneError, mask_phone, normalize_phone
    from .jsonutil import dumps
    from .models import ClickId, Event, Visitor

    if sum(x is not None for x in (phone, user_id, anonymous_id)) != 1:
        raise click.UsageError("give exactly one of --phone, --user-id, --anonymous-id")
    state = current_app.extensions["sst"]
    secret = current_app.config["SECRET_KEY"]
    key = None
    if phone is not None:
        region = (current_app.config.get("IDENTITY") or {}).get("default_region") or "US"
        try:
            key = phone_lookup_key(normalize_phone(phone, region), secret)
        except InvalidPhoneError as exc:
            raise click.UsageError(f"not a valid phone number ({exc.reason})") from None
    person = people.find_person(state.engine, phone_key=key, user_id=user_id,
                                anonymous_id=anonymous_id)
    if person is None:
        click.echo("no verified person found", err=True)
        sys.exit(1)
    try:
        masked = mask_phone(PhoneCipher(secret).decrypt(person.phone_enc))
    except ValueError:
        masked = "(encrypted with another secret)"
    devices = people.devices_of(state.engine, person.user_id)
    with state.engine.connect() as conn:
        visitors = {v.anonymous_id: v for v in conn.execute(
            select(Visitor).where(Visitor.anonymous_id.in_(devices))).all()}
        clicks = conn.execute(select(ClickId).where(ClickId.anonymous_id.in_(devices))
                              .order_by(ClickId.first_seen_at)).all()
        events = conn.execute(select(Event.anonymous_id, Event.type, Event.event,
                                     Event.event_time)
                              .where(Event.anonymous_id.in_(devices))
                              .order_by(Event.event_time.desc()).limit(20)).all()
    doc = {
        "userId": person.user_id, "phone": masked, "country": person.country,
        "createdAt": iso(person.created_at), "verifiedAt": iso(person.verified_at),
        "devices": [{"anonymousId": a,
                     "firstSeen": iso(visitors[a].first_seen_at) if a in visitors else None,
                     "lastSeen": iso(visitors[a].last_seen_at) if a in visitors else None}
                    for a in devices],
        "clicks": [{"param": c.param, "value": c.value, "anonymousId": c.anonymous_id,
                    "firstSeen": iso(c.first_seen_at), "lastSeen": iso(c.last_seen_at)}
                   for c in clicks],
        "recentEvents": [{"anonymousId": e.anonymous_id, "type": e.type, "event": e.event,
                          "time": iso(e.event_time)} for e in events],
    }
    if as_json:
        click.echo(dumps(doc))
        return
    click.echo(f"person   {doc['userId']}  phone {masked} ({person.country})")
    click.echo(f"verified {doc['verifiedAt']}  (first {doc['createdAt']})")
    click.echo(f"devices  {len(devices)}")
    for d in doc["devices"]:
        click.echo(f"  {d['anonymousId']:<40} first {d['firstSeen'] or '-'}  "
                   f"last {d['lastSeen'] or '-'}")
    click.echo(f"clicks   {len(clicks)}")
    for c in doc["clicks"]:
        click.echo(f"  {c['firstSeen']}  {c['param']:<9} {c['value'][:40]:<40} "
                   f"on {c['anonymousId']}")
    click.echo("recent events")
    for e in doc["recentEvents"]:
        click.echo(f"  {e['time']}  {e['type']:<8} {e['event'] or ''}  on {e['anonymousId']}")


if __name__ == "__main__":
    main()
