"""Build what a connector reads about an event (EventData) from the stored rows.

The person's identifiers come from the identity graph at send time, so every delivery sent
after a phone verification carries them; deliveries already sent are not changed.
"""

from __future__ import annotations

from sqlalchemy import select

from sst.clock import from_db
from sst.connectors.base import ClickId, EventData
from sst.identity.clicks import Touch, best_click_ids
from sst.identity.people import PERSON_LINKS
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
        touches = [t for a in device_ids for t in clicks.get(a, [])]
        event_time = from_db(e.event_time)
        best = best_click_ids(touches, event_time)
        traits = _traits(message)
        ad_cookies = {**cookies.get(e.anonymous_id, {}),
                      **((e.request or {}).get("ad_cookies") or {})}
        props = message.get("properties") if isinstance(message.get("properties"), dict) else {}
        context = message.get("context") if isinstance(message.get("context"), dict) else {}
        enriched = dict(message)
        enriched["context"] = {**context, "ip": e.ip, "userAgent": e.user_agent,
                               "clickIds": {p: t.value for p, t in best.items()}}
        email = traits.get("email") if isinstance(traits.get("email"), str) else None
        phone = verified.get(person) if person else None
        if phone is None and isinstance(traits.get("phone"), str):
            phone = traits["phone"]
        out[d["id"]] = EventData(
            message_id=e.message_id, type=e.type, event=e.event,
            platform_event=d["platform_event"], event_time=event_time,
            properties=props, traits=traits, context=context, message=enriched,
            anonymous_id=e.anonymous_id, user_id=person or e.user_id,
            ip=e.ip, user_agent=e.user_agent, page_url=e.page_url, referrer=e.referrer,
            click_ids={p: ClickId(t.value, t.seen_at) for p, t in best.items()},
            cookies=ad_cookies, phone=phone, email=email,
        )
    return out
