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

from sst.errors import ConfigError


def _create_app():
    from sst.app import create_app

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
    from sst import migrate

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
    from sst import migrate

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
    from sst.app import create_app

    try:
        app = create_app({"CONFIG": str(config_path), "INSTANCE_PATH": str(base),
                          "DATABASE_URL": "sqlite:///" + str(base / "sst.sqlite"),
                          "COOKIE_SECURE": False, "SERVE_EXAMPLES": True})
    except ConfigError as exc:
        click.echo(f"sst: {exc}", err=True)
        sys.exit(2)
    from sst import migrate

    with app.app_context():
        migrate.upgrade()
    write_key = next(iter(app.extensions["sst"].sources))
    url = f"http://{host}:{port}"
    click.echo(f"sst (embedded: SQLite at {base / 'sst.sqlite'}, in-process queue)")
    click.echo(f"config:    {config_path}")
    click.echo(f"write key: {write_key}")
    click.echo(f"example:   {url}/example/  (the form's codes go to "
               f"{base / 'otp-outbox.jsonl'})")
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
        from sst.delivery.worker import start_embedded_worker
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

    from sst.extensions import db
    from sst.models import Event

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
    from sst.clock import iso
    from sst.jsonutil import dumps

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
    from sst.delivery.worker import run_worker

    run_worker(current_app._get_current_object(), burst=burst, queues=queues,
               worker_class=worker_class, sweep_every=sweep_interval, with_relay=not no_relay)


@main.command()
@with_appcontext
def sweep():
    """Re-enqueue deliveries that are pending, or lost by Redis or a dead worker."""
    from sst.delivery import outbox
    from sst.delivery.worker import job_checker, make_enqueuer, rq_connection

    state = current_app.extensions["sst"]
    try:
        if state.redis_url:
            conn = rq_connection(state)
            counts = outbox.sweep(state, job_checker(conn))
            moved = outbox.relay(state, make_enqueuer(state, conn))
        else:
            from sst.delivery.worker import run_inline

            counts = outbox.sweep(state)
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

    from sst.clock import iso
    from sst.extensions import db
    from sst.jsonutil import dumps
    from sst.models import Event, Track, TrackItem

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

    from sst.clock import iso
    from sst.identity import people
    from sst.identity.crypto import PhoneCipher, phone_lookup_key
    from sst.identity.phone import InvalidPhoneError, mask_phone, normalize_phone
    from sst.jsonutil import dumps
    from sst.models import ClickId, Event, Visitor

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


# --- operations -------------------------------------------------------------------------------


def _parse_time_opt(ctx, param, value):
    from sst.clock import parse_relative

    if value is None:
        return None
    try:
        return parse_relative(value)
    except ValueError:
        raise click.BadParameter("an ISO date/time or a duration like 7d, 12h, 30m") from None


def _event_ids(values):
    out = []
    for v in values:
        if v.startswith("@"):
            try:
                out.extend(line.strip() for line in Path(v[1:]).read_text().splitlines()
                           if line.strip())
            except OSError as exc:
                raise click.BadParameter(f"cannot read {v[1:]}: {exc.strerror}") from None
        else:
            out.append(v)
    return tuple(out)


@main.command()
@click.option("--destination", "destinations", multiple=True, help="Repeatable.")
@click.option("--since", callback=_parse_time_opt, help="Event time from (ISO or 7d/12h).")
@click.option("--until", callback=_parse_time_opt, help="Event time before (ISO or 7d/12h).")
@click.option("--event", "events", multiple=True,
              help="A messageId (repeatable), or @FILE with one per line.")
@click.option("--status", "statuses", multiple=True, default=["failed"], show_default=True,
              type=click.Choice(["failed", "skipped", "pending"]))
@click.option("--error", default=None, help="Substring of the error, or a platform code.")
@click.option("--source", "sources", multiple=True)
@click.option("--dry-run", is_flag=True, help="Show what would be sent; send nothing.")
@click.option("--force", is_flag=True, help="Also re-send deliveries that succeeded.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation with --force.")
@click.option("--json", "as_json", is_flag=True, help="A JSON summary for scripts.")
@with_appcontext
def replay(destinations, since, until, events, statuses, error, sources, dry_run, force,
           yes, as_json):
    """Re-send failed deliveries with each event's original time and id."""
    from sst.delivery import replay as rp
    from sst.delivery.worker import make_enqueuer, rq_connection
    from sst.jsonutil import dumps

    state = current_app.extensions["sst"]
    unknown = [d for d in destinations if d not in state.destinations]
    if unknown:
        raise click.BadParameter(f"unknown destination {unknown[0]!r}; known: "
                                 f"{', '.join(sorted(state.destinations)) or '(none)'}",
                                 param_hint="--destination")
    filters = rp.ReplayFilters(destinations=destinations, since=since, until=until,
                               events=_event_ids(events), statuses=tuple(statuses),
                               error=error, sources=sources, force=force)
    if force and not dry_run and not yes:
        click.confirm("--force re-sends deliveries that already succeeded; the platforms "
                      "dedupe on the event id only within their window. Go on?", abort=True)
    try:
        total = rp.count_matches(state, filters)
        enqueue = None if dry_run or not state.redis_url else make_enqueuer(
            state, rq_connection(state))
        if sys.stdout.isatty() and not as_json and total:
            with click.progressbar(length=total, label="replaying", file=sys.stderr) as bar:
                summary = rp.run_replay(state, filters, enqueue=enqueue, dry_run=dry_run,
                                        progress=bar.update)
        else:
            summary = rp.run_replay(state, filters, enqueue=enqueue, dry_run=dry_run)
    except Exception as exc:  # its own failure: database or Redis down
        click.echo(f"sst replay: {exc.__class__.__name__}: {exc}", err=True)
        sys.exit(1)
    doc = {**summary.as_dict(), "dryRun": dry_run}
    if dry_run:
        doc["wouldSend"] = summary.would_send
    if as_json:
        click.echo(dumps(doc))
        return
    verb = "would enqueue" if dry_run else "enqueued"
    click.echo(f"matched {summary.matched}, {verb} "
               f"{sum(summary.by_destination.values()) if dry_run else summary.enqueued}")
    for name, n in sorted(summary.by_destination.items()):
        click.echo(f"  {name:<16} {n}")
    for reason, n in sorted(summary.skipped.items()):
        click.echo(f"  skipped: {reason}: {n}")
    if dry_run:
        for item in summary.would_send[:20]:
            click.echo(f"  would send {item['messageId']} to {item['destination']} "
                       f"(event time {item['eventTime']}; last error: {item['lastError']})")


@main.command()
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def status(as_json):
    """Per destination, last hour and day: sent, outcomes, latency, last error."""
    from datetime import timedelta

    from sst.jsonutil import dumps
    from sst.ops.status import delivery_backlog, destination_status

    state = current_app.extensions["sst"]
    windows = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
    doc = {name: destination_status(state, w) for name, w in windows.items()}
    doc["backlog"] = delivery_backlog(state)
    if as_json:
        click.echo(dumps(doc))
        return
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
    backlog = doc["backlog"]
    age = backlog["oldest_pending_age_s"]
    click.echo(f"deliveries by state: {backlog['states']}; oldest waiting: "
               f"{'-' if age is None else f'{age:.0f} s'}")


def _ms(value):
    return "-" if value is None else f"{value:.0f}"


@main.group()
def destination():
    """Pause, resume and list destinations."""


def _set_paused(name, paused):
    from sqlalchemy import insert, update

    from sst.clock import to_db, utcnow
    from sst.models import DestinationControl

    state = current_app.extensions["sst"]
    if name not in state.destinations:
        raise click.BadParameter(f"unknown destination {name!r}", param_hint="NAME")
    t = DestinationControl.__table__
    now = to_db(utcnow())
    with state.engine.begin() as conn:
        res = conn.execute(update(t).where(t.c.name == name).values(paused=paused,
                                                                     updated_at=now))
        if res.rowcount == 0:
            conn.execute(insert(t), {"name": name, "paused": paused, "updated_at": now})


@destination.command("pause")
@click.argument("name")
@with_appcontext
def destination_pause(name):
    """Hold a destination's deliveries pending (nothing fails) until resume."""
    _set_paused(name, True)
    click.echo(f"{name}: paused")


@destination.command("resume")
@click.argument("name")
@with_appcontext
def destination_resume(name):
    """Send a paused destination's deliveries again."""
    _set_paused(name, False)
    click.echo(f"{name}: resumed")


@destination.command("list")
@with_appcontext
def destination_list():
    """Configured destinations, their connector and whether they are paused."""
    from sst.connectors.base import mask_settings
    from sst.delivery.outbox import paused_destinations

    state = current_app.extensions["sst"]
    with state.engine.connect() as conn:
        paused = paused_destinations(conn)
    for name, dest in sorted(state.destinations.items()):
        settings = mask_settings(dest.connector_cls.settings_schema, dest.settings)
        shown = {k: v for k, v in settings.items() if k not in ("name", "connector", "events")}
        click.echo(f"{name:<16} {dest.connector:<18} {'paused' if name in paused else 'active'}"
                   f"  events={dest.events}  {shown}")


@main.group()
def queue():
    """RQ queues: stats, failed jobs, requeue, empty."""


def _rq(state):
    if not state.redis_url:
        click.echo("sst: no SST_REDIS_URL: the embedded queue has no RQ queues", err=True)
        sys.exit(2)
    from sst.delivery.worker import rq_connection

    return rq_connection(state)


@queue.command("stats")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def queue_stats_cmd(as_json):
    """Depth and registries per queue, workers, and the delivery backlog."""
    from rq import Worker

    from sst.delivery.worker import QUEUE
    from sst.jsonutil import dumps
    from sst.ops.status import delivery_backlog, queue_stats

    state = current_app.extensions["sst"]
    conn = _rq(state)
    try:
        doc = {"queues": queue_stats(conn, [QUEUE]),
               "workers": [{"name": w.name, "state": w.get_state(), "queues": w.queue_names()}
                           for w in Worker.all(connection=conn)],
               "deliveries": delivery_backlog(state)}
    except Exception as exc:
        click.echo(f"sst queue stats: {exc.__class__.__name__}: {exc}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(dumps(doc))
        return
    for q in doc["queues"]:
        click.echo(f"{q['queue']}: queued {q['queued']}, started {q['started']}, scheduled "
                   f"{q['scheduled']}, deferred {q['deferred']}, failed {q['failed']}")
    click.echo(f"workers: {len(doc['workers'])}")
    for w in doc["workers"]:
        click.echo(f"  {w['name']} {w['state']} {','.join(w['queues'])}")
    age = doc["deliveries"]["oldest_pending_age_s"]
    click.echo(f"deliveries: {doc['deliveries']['states']}; oldest waiting "
               f"{'-' if age is None else f'{age:.0f} s'}")


@queue.command("failed")
@click.option("-n", "--limit", default=50, show_default=True)
@with_appcontext
def queue_failed(limit):
    """Jobs that crashed (RQ's failed registry), with their error."""
    from rq import Queue
    from rq.job import Job
    from rq.registry import FailedJobRegistry

    from sst.delivery.worker import QUEUE

    conn = _rq(current_app.extensions["sst"])
    registry = FailedJobRegistry(queue=Queue(QUEUE, connection=conn))
    ids = registry.get_job_ids()[:limit]
    for job in Job.fetch_many(ids, connection=conn):
        if job is None:
            continue
        exc = (job.latest_result().exc_string if job.latest_result() else "") or ""
        last = exc.strip().splitlines()[-1] if exc.strip() else "?"
        click.echo(f"{job.id}  {job.description}  {last}")
    click.echo(f"{registry.count} failed job(s); failed deliveries: sst replay --dry-run")


@queue.command("requeue")
@click.option("--all", "all_", is_flag=True)
@click.argument("job_ids", nargs=-1)
@with_appcontext
def queue_requeue(all_, job_ids):
    """Put failed jobs back on their queue."""
    from rq import Queue
    from rq.registry import FailedJobRegistry

    from sst.delivery.worker import QUEUE

    if not all_ and not job_ids:
        raise click.UsageError("give job ids or --all")
    conn = _rq(current_app.extensions["sst"])
    registry = FailedJobRegistry(queue=Queue(QUEUE, connection=conn))
    ids = registry.get_job_ids() if all_ else list(job_ids)
    done = 0
    for job_id in ids:
        try:
            registry.requeue(job_id)
            done += 1
        except Exception as exc:
            click.echo(f"{job_id}: {exc}", err=True)
    click.echo(f"requeued {done} job(s)")


@queue.command("empty")
@click.argument("name")
@click.option("--yes", is_flag=True)
@with_appcontext
def queue_empty(name, yes):
    """Drop every job waiting in a queue. Deliveries are not lost: `sst sweep` puts
    their rows back to pending (pause a destination to stop sending)."""
    from rq import Queue

    conn = _rq(current_app.extensions["sst"])
    if not yes:
        click.confirm(f"Empty queue {name!r}?", abort=True)
    n = Queue(name, connection=conn).empty()
    click.echo(f"removed {n} job(s) from {name}")


# --- alerts -------------------------------------------------------------------------------------


@main.group()
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
        click.echo(f"sst: {exc}", err=True)
        sys.exit(2)
    if settings is None:
        click.echo("sst: no [alerts] webhook_url configured", err=True)
        sys.exit(2)
    try:
        found = check_alerts(current_app.extensions["sst"], dry_run=dry_run)
    except Exception as exc:
        click.echo(f"sst alerts check: {exc.__class__.__name__}: {exc}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(dumps(found))
        return
    for alert in found:
        click.echo(f"{alert.get('text')}  [{'sent' if alert.get('sent') else 'suppressed'}]")
    if not found:
        click.echo("no threshold crossed")


# Commands that live in their own modules.
from sst.cli.privacy import audience, forget, purge  # noqa: E402
from sst.cli.reports import report  # noqa: E402

for _command in (audience, forget, purge, report):
    main.add_command(_command)


if __name__ == "__main__":
    main()
