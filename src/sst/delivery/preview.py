"""`sst preview`: the exact requests each destination would receive for a stored event, and
why a destination would skip it, without sending anything.

It runs what a worker runs up to the wire: the delivery rows the fan-out wrote, or will
write for an event not fanned out yet (their consent and bot decisions), `build_event_data` (the identity graph as it is now), the
connector's age and skip rules and its pure `build_requests`. Secrets are masked as they are
in the Exchange ledger. Headers a connector adds only at send time (an OAuth access token) are
not shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace

from sqlalchemy import select

from sst.clock import utcnow
from sst.delivery.event_data import build_event_data
from sst.models import Delivery, Event

UNMAPPED = "unmapped: the destination's events map does not take this event"


@dataclass
class Preview:
    """What one destination would receive for one stored event."""

    destination: str
    connector: str
    message_id: str
    source: str
    platform_event: str | None = None
    delivery: dict | None = None  # the stored delivery's state and reason, if there is one
    skip_reason: str | None = None  # why nothing would be sent
    requests: list[dict] = field(default_factory=list)  # method, url, headers, body (masked)


class UnknownDestination(LookupError):
    pass


def preview(state, message_id: str, destination: str | None = None,
            now: datetime | None = None) -> list[Preview]:
    """Previews for every stored event with this messageId (any source) and every configured
    destination, or only `destination`. Raises UnknownDestination for a name not configured."""
    if destination is not None and destination not in state.destinations:
        raise UnknownDestination(destination)
    dests = [state.destinations[destination]] if destination else list(
        state.destinations.values())
    now = now or utcnow()
    e, d = Event.__table__.c, Delivery.__table__.c
    with state.engine.connect() as conn:
        events = conn.execute(select(Event.__table__).where(e.message_id == message_id)
                              .order_by(e.id)).all()
        stored = {(r.event_id, r.destination): r for r in conn.execute(
            select(d.event_id, d.destination, d.state, d.reason, d.platform_event)
            .where(d.event_id.in_([ev.id for ev in events])))} if events else {}
    for ev in events:
        if ev.fanout == 1 and state.fanout is not None:
            # Not fanned out yet (the relay does it within a poll interval): the rows it
            # will write, with the same consent and bot decisions.
            for r in state.fanout.rows(ev._mapping):
                stored.setdefault((ev.id, r["destination"]), SimpleNamespace(**r))
    out = []
    for ev in events:
        for dest in dests:
            out.append(_one(state, dest, ev, stored.get((ev.id, dest.name)), now))
    return out


def _one(state, dest, ev, delivery, now) -> Preview:
    p = Preview(destination=dest.name, connector=dest.connector, message_id=ev.message_id,
                source=ev.source)
    if delivery is not None:
        p.delivery = {"state": delivery.state, "reason": delivery.reason}
        p.platform_event = delivery.platform_event
        if delivery.state == "skipped" and delivery.reason:
            p.skip_reason = delivery.reason  # consent or bot, decided when it was stored
    else:
        p.platform_event = dest.platform_event(ev.type, ev.event)
        if p.platform_event is None:
            p.skip_reason = UNMAPPED
            return p
    if not dest.enabled:
        p.skip_reason = p.skip_reason or "destination disabled"
    if p.skip_reason:
        return p
    connector = state.connector(dest)
    row = {"id": 0, "event_id": ev.id, "platform_event": p.platform_event}
    data = build_event_data(state.engine, [row], state.phones).get(0)
    if data is None:
        p.skip_reason = "event not found"
        return p
    p.skip_reason, p.requests = requests_for(connector, data, now)
    return p


def requests_for(connector, event, now) -> tuple[str | None, list[dict]]:
    """(why the connector would skip the event, or None; the requests it would make, secrets
    masked): what a worker would do with it, short of sending."""
    reason = connector.too_old(event, now) or connector.skip_reason(event)
    if reason:
        return reason, []
    try:
        built = connector.build_requests([event])
    except Exception as exc:  # what a worker would record as a payload error
        return f"payload error: {exc}"[:500], []
    return None, shown_requests(connector, built)


def shown_requests(connector, built) -> list[dict]:
    """Requests as an operator may see them: secrets masked as in the Exchange ledger."""
    return [{"method": r.method, "url": connector.mask(r.url),
             "headers": connector.mask_headers(r.headers), "body": connector.mask(r.body)}
            for r in built]
