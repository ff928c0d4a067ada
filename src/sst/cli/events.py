"""`sst events`: look at the stored (incoming) events."""

from __future__ import annotations

import time

import click
from flask.cli import AppGroup, with_appcontext


@click.group(cls=AppGroup)
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
