"""Build what a connector reads about an event (EventData) from the stored rows.

The person's identifiers come from the identity graph at send time, so every delivery sent
after a phone verification carries them; deliveries already sent are not changed.
"""

from __future__ import annotations

from sqlalchemy import select

from sst.clock import from_db, iso
from sst.connectors.base import ClickId, EventData
from sst.identity.clicks import Touch, best_click_ids
from sst.identity.people import PERSON_LINKS
from sst.ingest.touch import parse_touch
from sst.models import ClickId as ClickRow
from sst.models import Event, Link, Person, Visitor


def _traits(message: dict) -> dict:
    traits = {}
    context = message.get("context")
    if isinstance(context, dict) and isinstance(context.get("traits"), dict):
        traits.update(context["traits"])
    if isinstance(message.get("traits"), dict):
        traits.update(message["traits"])
    return traits


def _people(conn, anon_ids: set, user_ids: set) -> tuple[dict, set, dict]:
    """Who the devices are: ({anonymous id: userId of a verified Person}, the Persons among
    these events' userIds, {userId: every anonymous id linked to it})."""
    known = select(Person.user_id)
    person_of = {}
    if anon_ids:
        person_of = {a: u for a, u in conn.execute(
            select(Link.anonymous_id, Link.value).where(
                Link.kind.in_(PERSON_LINKS), Link.anonymous_id.in_(anon_ids), Link.value.in_(known))
            .order_by(Link.id)).all()}
    persons = set()
    if user_ids:  # only the trusted events' userIds (server-only keys, OTP): see the caller
        persons = set(conn.execute(known.where(Person.user_id.in_(user_ids))).scalars())
    devices: dict = {}
    wanted = set(person_of.values()) | persons
    if wanted:
        for a, u in conn.execute(select(Link.anonymous_id, Link.value).where(
                Link.kind.in_(PERSON_LINKS), Link.value.in_(wanted))).all():
            devices.setdefault(u, set()).add(a)
    return person_of, persons, devices


def _trusted(e) -> bool:
    """Whether the event's own userId may name a Person: sent with a server-only key or
    recorded by the OTP verification (prepare marks those); a browser key's userId is
    public knowledge and claims nobody."""
    return bool((e.request or {}).get("trusted"))


def _last_seen_browser(conn, device_ids: set) -> tuple[str | None, str | None]:
    """(ip, user agent) of the latest event on these devices that knew its visitor's: the
    fallback for a server event of a linked person (contract §5). Only visitor values are
    stored in events.ip / events.user_agent, never a backend's."""
    if not device_ids:
        return None, None
    row = conn.execute(select(Event.ip, Event.user_agent)
                       .where(Event.anonymous_id.in_(device_ids),
                              Event.user_agent.is_not(None))
                       .order_by(Event.id.desc()).limit(1)).first()
    return (row.ip, row.user_agent) if row else (None, None)


def own_click_ids(page_url, event_time, touches) -> dict[str, ClickId]:
    """The click ids of the event's own page URL (contract §3/§5: used for the event that
    carries them, with or without an anonymous id), each with the time it was first seen."""
    clicks, _ = parse_touch(page_url)
    out = {}
    for param, value in clicks.items():
        seen = [t.seen_at for t in touches if t.param == param and t.value == value]
        out[param] = ClickId(value, min([*seen, event_time]))
    return out


def webhook_body(e, message: dict, context: dict, user_id, click_ids: dict, ip, user_agent):
    """The message as Segment's webhooks carry it (contract §5): who, when, and the visitor."""
    body = dict(message)
    body["type"] = e.type
    body["messageId"] = e.message_id
    if e.anonymous_id is not None:
        body["anonymousId"] = e.anonymous_id
    if user_id is not None:
        body["userId"] = user_id
    original = message.get("originalTimestamp") or message.get("timestamp")
    if original is not None:
        body["originalTimestamp"] = original
    body["timestamp"] = iso(e.event_time)
    sent_at = message.get("sentAt") or iso(e.sent_at)
    if sent_at is not None:
        body["sentAt"] = sent_at
    body["receivedAt"] = iso(e.received_at)
    body["context"] = {**context, "ip": ip, "userAgent": user_agent,
                       "clickIds": {p: c.value for p, c in click_ids.items()},
                       "bot": bool(e.is_bot)}
    body.pop("writeKey", None)
    return body


def build_event_data(engine, deliveries: list[dict], phones=None) -> dict:
    """{delivery id: EventData} for claimed delivery rows.

    `phones(conn, user_ids) -> {userId: E.164}` supplies verified phones (identity layer).
    """
    event_ids = {d["event_id"] for d in deliveries}
    out: dict = {}
    with engine.connect() as conn:
        events = {e.id: e for e in conn.execute(
            select(Event.__table__).where(Event.__table__.c.id.in_(event_ids))).all()}
        own_ids = set()
        for e in events.values():
            own_ids.update(x for x in (e.anonymous_id, e.client_anonymous_id) if x)
        person_of, persons, devices = _people(
            conn, own_ids, {e.user_id for e in events.values() if e.user_id and _trusted(e)})
        all_ids = set(own_ids)
        for ids in devices.values():
            all_ids |= ids
        clicks: dict = {}
        if all_ids:
            for c in conn.execute(select(ClickRow.anonymous_id, ClickRow.param, ClickRow.value,
                                         ClickRow.first_seen_at)
                                  .where(ClickRow.anonymous_id.in_(all_ids))).all():
                clicks.setdefault(c.anonymous_id, []).append(
                    Touch(c.param, c.value, from_db(c.first_seen_at), c.anonymous_id))
        cookies = {}
        if own_ids:
            cookies = {v.anonymous_id: v.cookies or {} for v in conn.execute(
                select(Visitor.anonymous_id, Visitor.cookies)
                .where(Visitor.anonymous_id.in_(own_ids))).all()}
        user_ids = set(person_of.values()) | persons
        verified = phones(conn, user_ids) if phones and user_ids else {}

    fallback_cache: dict = {}
    for d in deliveries:
        e = events.get(d["event_id"])
        if e is None:
            continue
        message = e.message or {}
        own = {x for x in (e.anonymous_id, e.client_anonymous_id) if x}
        person = e.user_id if e.user_id in persons and _trusted(e) else next(
            (person_of[a] for a in sorted(own) if a in person_of), None)
        device_ids = set(own)
        if person:
            device_ids |= devices.get(person, set())
        device_ids = frozenset(device_ids)
        touches = [t for a in device_ids for t in clicks.get(a, [])]
        event_time = from_db(e.event_time)
        click_ids = {p: ClickId(t.value, t.seen_at)
                     for p, t in best_click_ids(touches, event_time).items()}
        click_ids.update(own_click_ids(e.page_url, event_time, touches))
        ip, user_agent = e.ip, e.user_agent
        if ip is None or user_agent is None:
            if device_ids not in fallback_cache:
                with engine.connect() as conn:
                    fallback_cache[device_ids] = _last_seen_browser(conn, device_ids)
            seen_ip, seen_ua = fallback_cache[device_ids]
            ip = ip if ip is not None else seen_ip
            user_agent = user_agent if user_agent is not None else seen_ua
        traits = _traits(message)
        ad_cookies = {**cookies.get(e.anonymous_id, {}),
                      **((e.request or {}).get("ad_cookies") or {})}
        props = message.get("properties") if isinstance(message.get("properties"), dict) else {}
        context = message.get("context") if isinstance(message.get("context"), dict) else {}
        enriched = webhook_body(e, message, context, e.user_id or person, click_ids, ip,
                                user_agent)
        email = traits.get("email") if isinstance(traits.get("email"), str) else None
        phone = verified.get(person) if person else None
        if phone is None and isinstance(traits.get("phone"), str):
            phone = traits["phone"]
        out[d["id"]] = EventData(
            message_id=e.message_id, type=e.type, event=e.event,
            platform_event=d["platform_event"], event_time=event_time,
            properties=props, traits=traits, context=context, message=enriched,
            anonymous_id=e.anonymous_id, user_id=person or e.user_id,
            ip=ip, user_agent=user_agent, page_url=e.page_url, referrer=e.referrer,
            click_ids=click_ids,
            cookies=ad_cookies, phone=phone, email=email,
        )
    return out
