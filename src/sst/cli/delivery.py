"""Outgoing deliveries: `sst worker`, `sweep`, `tracks`, `replay`, `destination` (pause,
resume, list) and `queue` (the RQ queues)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from sst.cli.common import SETUP, app_state, fail, failures_exit, parse_time, rq_connection
from sst.ops.status import no_destination_note

# --- the worker and the sweep ------------------------------------------------------------------


@click.command()
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


@click.command()
@with_appcontext
def sweep():
    """Re-enqueue deliveries that are pending, or lost by Redis or a dead worker."""
    from sst.delivery import outbox
    from sst.delivery.worker import job_checker, make_enqueuer, run_inline

    state = app_state()
    with failures_exit("sweep"):
        if state.redis_url:
            conn = rq_connection(state)
            counts = outbox.sweep(state, job_checker(conn))
            moved = outbox.relay(state, make_enqueuer(state, conn))
        else:
            counts = outbox.sweep(state)
            moved = run_inline(state)
    click.echo(f"recovered {counts['sending']} lost while sending, {counts['queued']} whose job "
               f"was gone; enqueued {moved}")


# --- the delivery ledger --------------------------------------------------------------------------


@click.command()
@click.option("--event", "event_ref", default=None,
              help="An event: its id, or its messageId.")
@click.option("--destination", default=None)
@click.option("-n", "--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--bodies", is_flag=True, help="Also print request and response bodies.")
@with_appcontext
def tracks(event_ref, destination, limit, as_json, bodies):
    """Outgoing requests and their answers (the delivery ledger), newest first.

    Deliveries skipped without a request (bot, consent, too old, ...) are listed too, with
    their reason: nothing leaves the ledger without a word."""
    from sqlalchemy import or_, select

    from sst.clock import iso
    from sst.extensions import db
    from sst.jsonutil import dumps
    from sst.models import Delivery, Event, Exchange, ExchangeItem

    note = no_destination_note(app_state())
    if note:
        click.echo(f"sst: {note}", err=True)
    q = select(Exchange).order_by(Exchange.id.desc()).limit(limit)
    skips = (select(Delivery, Event.message_id).join(Event, Event.id == Delivery.event_id)
             .where(Delivery.state == "skipped").order_by(Delivery.id.desc()).limit(limit))
    if event_ref:
        ids = select(Event.id).where(or_(Event.message_id == event_ref,
                                         Event.id == (int(event_ref) if event_ref.isdigit()
                                                      else -1)))
        q = q.where(Exchange.id.in_(select(ExchangeItem.track_id).where(ExchangeItem.event_id.in_(ids))))
        skips = skips.where(Delivery.event_id.in_(ids))
    if destination:
        q = q.where(Exchange.destination == destination)
        skips = skips.where(Delivery.destination == destination)
    rows = [(t.created_at, "track", t) for t in db.session.execute(q).scalars()]
    # A delivery skipped at send time (too old at the worker) may also have Tracks of its
    # earlier attempts; it is listed once more here, as its final word.
    rows += [(d.updated_at, "skip", (d, mid)) for d, mid in db.session.execute(skips).all()]
    rows.sort(key=lambda r: r[0], reverse=True)
    for _, kind, obj in rows[:limit]:
        if kind == "skip":
            d, mid = obj
            item = {"id": None, "time": iso(d.updated_at), "destination": d.destination,
                    "connector": d.connector, "eventId": d.event_id, "messageId": mid,
                    "deliveryId": d.id, "attempt": d.attempts, "outcome": "skipped",
                    "reason": d.reason}
            if as_json:
                click.echo(dumps(item))
            else:
                click.echo(f"{item['time']}  {d.destination:<12} -  skipped   no request  "
                           f"event {mid}: {d.reason or 'skipped'}")
            continue
        t = obj
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


# --- preview -----------------------------------------------------------------------------------


@click.command()
@click.option("--event", "message_id", required=True, help="The event's messageId.")
@click.option("--destination", default=None, help="Only this destination (default: all).")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def preview(message_id, destination, as_json):
    """Show the exact request each destination would receive for a stored event (secrets
    masked), or why it would skip the event. Sends nothing."""
    from dataclasses import asdict

    from sst.delivery.preview import UnknownDestination
    from sst.delivery.preview import preview as build_previews
    from sst.jsonutil import dumps

    state = app_state()
    try:
        found = build_previews(state, message_id, destination)
    except UnknownDestination:
        fail(f"sst preview: unknown destination {destination!r}; configured: "
             f"{', '.join(sorted(state.destinations)) or '(none)'}", SETUP)
    if not found:
        fail(f"sst preview: no stored event has messageId {message_id!r}"
             + ("" if state.destinations else "; and no destination is configured"))
    if as_json:
        click.echo(dumps([asdict(p) for p in found]))
        return
    for p in found:
        click.echo(f"{p.destination} ({p.connector}) <- {p.message_id} from {p.source}"
                   + (f" as {p.platform_event}" if p.platform_event else ""))
        if p.delivery:
            click.echo(f"  stored delivery: {p.delivery['state']}"
                       + (f" ({p.delivery['reason']})" if p.delivery["reason"] else ""))
        if p.skip_reason:
            click.echo(f"  would skip: {p.skip_reason}")
        for r in p.requests:
            click.echo(f"  {r['method']} {r['url']}")
            for k, v in r["headers"].items():
                click.echo(f"  {k}: {v}")
            click.echo(f"  {r['body']}" if r["body"] else "  (no body)")
        click.echo("")


# --- replay ------------------------------------------------------------------------------------


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


@click.command()
@click.option("--destination", "destinations", multiple=True, help="Repeatable.")
@click.option("--since", callback=parse_time, help="Event time from (ISO or 7d/12h).")
@click.option("--until", callback=parse_time, help="Event time before (ISO or 7d/12h).")
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
    from sst.delivery.worker import make_enqueuer
    from sst.jsonutil import dumps

    state = app_state()
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
    with failures_exit("replay"):  # its own failure: database or Redis down
        total = rp.count_matches(state, filters)
        enqueue = None if dry_run or not state.redis_url else make_enqueuer(
            state, rq_connection(state))
        if sys.stdout.isatty() and not as_json and total:
            with click.progressbar(length=total, label="replaying", file=sys.stderr) as bar:
                summary = rp.run_replay(state, filters, enqueue=enqueue, dry_run=dry_run,
                                        progress=bar.update)
        else:
            summary = rp.run_replay(state, filters, enqueue=enqueue, dry_run=dry_run)
    doc = {**summary.as_dict(), "dryRun": dry_run}
    if dry_run:
        doc["wouldSend"] = summary.would_send
    if as_json:
        click.echo(dumps(doc))
        return
    verb = "would enqueue" if dry_run else "enqueued"
    click.echo(f"matched {summary.matched}, {verb} "
               f"{sum(summary.by_destination.values()) if dry_run else summary.enqueued}")
    if not summary.matched:
        _explain_no_match(state, filters)
    for name, n in sorted(summary.by_destination.items()):
        click.echo(f"  {name:<16} {n}")
    for reason, n in sorted(summary.skipped.items()):
        click.echo(f"  skipped: {reason}: {n}")
    if dry_run:
        for item in summary.would_send[:20]:
            why = f"; last error: {item['lastError']}" if item.get("lastError") else ""
            click.echo(f"  would send {item['messageId']} to {item['destination']} "
                       f"(event time {item['eventTime']}{why})")


# --- destinations ------------------------------------------------------------------------------


@click.group(cls=AppGroup)
def destination():
    """Pause, resume and list destinations."""


def _set_paused(name, paused):
    from sqlalchemy import insert, update

    from sst.clock import to_db, utcnow
    from sst.models import DestinationControl

    state = app_state()
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

    state = app_state()
    note = no_destination_note(state)
    if note:
        click.echo(f"sst: {note}", err=True)
    with state.engine.connect() as conn:
        paused = paused_destinations(conn)
    for name, dest in sorted(state.destinations.items()):
        settings = mask_settings(dest.connector_cls.settings_schema, dest.settings)
        shown = {k: v for k, v in settings.items() if k not in ("name", "connector", "events")}
        click.echo(f"{name:<16} {dest.connector:<18} {'paused' if name in paused else 'active'}"
                   f"  events={dest.events}  {shown}")


@destination.command("test")
@click.argument("name")
@click.option("--event-file", type=click.File("r"),
              help="A Segment message (JSON) to use instead of the sample event.")
@click.option("--send", is_flag=True,
              help="Send it in the platform's test mode and print the platform's verdict.")
@click.option("--test-code", default=None,
              help="Meta / TikTok: the test event code from the platform's Test events tab.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def destination_test(name, event_file, send, test_code, as_json):
    """Show the request a destination gets for a sample (or given) event, secrets masked;
    with --send, send it in the platform's test mode (Meta/TikTok test_event_code, GA4
    /debug/mp/collect, Google validate_only, Snapchat /validate, Reddit test_mode,
    Pinterest test) and print the verdict. Exits 1 when the platform refuses it."""
    import json
    from dataclasses import asdict

    from sst.delivery.trial import TrialError, run_trial
    from sst.jsonutil import dumps

    state = app_state()
    if name not in state.destinations:
        fail(f"sst destination test: unknown destination {name!r}; configured: "
             f"{', '.join(sorted(state.destinations)) or '(none)'}", SETUP)
    message = None
    if event_file is not None:
        try:
            message = json.load(event_file)
        except ValueError as exc:
            fail(f"sst destination test: {event_file.name}: not JSON: {exc}", SETUP)
    try:
        trial = run_trial(state, name, message, send=send, test_code=test_code)
    except TrialError as exc:
        fail(f"sst destination test: {exc}", SETUP)
    if as_json:
        click.echo(dumps(asdict(trial)))
    else:
        _show_trial(trial)
    if send and trial.verdict != "accepted":
        sys.exit(1)


def _show_trial(trial) -> None:
    import json

    click.echo(f"{trial.destination} ({trial.connector}) <- {trial.message_id} as "
               f"{trial.platform_event}")
    if trial.test_mode:
        click.echo(f"test mode: {trial.test_mode}")
    if trial.skip_reason:
        click.echo(f"would skip: {trial.skip_reason}")
    for r in trial.requests:
        click.echo(f"{r['method']} {r['url']}")
        for k, v in r["headers"].items():
            click.echo(f"{k}: {v}")
        try:
            body = json.dumps(json.loads(r["body"]), indent=2, ensure_ascii=False)
        except (TypeError, ValueError):
            body = r["body"] or "(no body)"
        click.echo(body)
    if not trial.sent:
        if trial.requests:
            click.echo("not sent (add --send to send it in the platform's test mode)")
        return
    for a in trial.answers:
        click.echo(f"answer: {a['status'] if a['status'] is not None else '-'} "
                   f"{a['body'] or a['error'] or ''}".rstrip())
    out = trial.outcome or {}
    click.echo(f"verdict: {trial.verdict}"
               + (f" ({out.get('error') or out.get('code')})"
                  if out.get("error") or (out.get("code") and trial.verdict != "accepted")
                  else ""))


def _explain_no_match(state, filters) -> None:
    """Say why nothing matched: the deliveries these filters find are in other states
    (retries still running show as pending until their last attempt)."""
    from sst.clock import iso
    from sst.delivery.replay import other_states

    found = other_states(state, filters)
    due = found.pop("next_retry", None)
    asked = "/".join(filters.statuses)
    if not found:
        click.echo(f"  no delivery is {asked} for these filters, and none in another state")
        return
    click.echo(f"  no delivery is {asked}; with the same filters: "
               + ", ".join(f"{n} {st}" for st, n in sorted(found.items())))
    if found.get("pending"):
        click.echo("  pending ones are still being retried"
                   + (f" (next attempt due {iso(due)})" if due else "")
                   + ": --status pending sends them now")
    if found.get("skipped"):
        click.echo("  skipped ones (see sst status for why): --status skipped")
    if found.get("succeeded"):
        click.echo("  succeeded ones are re-sent only with --force")


# --- RQ queues ---------------------------------------------------------------------------------


@click.group(cls=AppGroup)
def queue():
    """RQ queues: stats, failed jobs, requeue, empty."""


@queue.command("stats")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def queue_stats_cmd(as_json):
    """Depth and registries per queue, workers, and the delivery backlog."""
    from rq import Worker

    from sst.delivery.worker import QUEUE
    from sst.jsonutil import dumps
    from sst.ops.status import delivery_backlog, queue_stats

    state = app_state()
    conn = rq_connection(state)
    with failures_exit("queue stats"):
        doc = {"queues": queue_stats(conn, [QUEUE]),
               "workers": [{"name": w.name, "state": w.get_state(), "queues": w.queue_names()}
                           for w in Worker.all(connection=conn)],
               "deliveries": delivery_backlog(state)}
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

    conn = rq_connection(app_state())
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
    conn = rq_connection(app_state())
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

    conn = rq_connection(app_state())
    if not yes:
        click.confirm(f"Empty queue {name!r}?", abort=True)
    n = Queue(name, connection=conn).empty()
    click.echo(f"removed {n} job(s) from {name}")
