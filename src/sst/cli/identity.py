"""`sst identity`: people verified by phone, their devices and clicks."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from sst.cli.common import app_state, default_region, fail


@click.group(cls=AppGroup)
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
    from sst.identity.crypto import PhoneCipher
    from sst.identity.phone import mask_phone
    from sst.jsonutil import dumps
    from sst.models import ClickId, Event, Visitor

    if sum(x is not None for x in (phone, user_id, anonymous_id)) != 1:
        raise click.UsageError("give exactly one of --phone, --user-id, --anonymous-id")
    state = app_state()
    secret = current_app.config["SECRET_KEY"]
    if phone is not None:
        person = _person_with_phone(state.engine, secret, phone)
    else:
        person = people.find_person(state.engine, user_id=user_id, anonymous_id=anonymous_id)
    if person is None:
        fail("no verified person found")
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


def _person_with_phone(engine, secret, phone):
    """The verified person a phone number names, or None. The phone is read as `sst forget`
    reads it (privacy.resolve_subject: default region, validation, lookup key)."""
    from sqlalchemy import select

    from sst import privacy
    from sst.identity.crypto import phone_lookup_key
    from sst.identity.phone import normalize_phone
    from sst.models import Person

    region = default_region()
    try:
        subject = privacy.resolve_subject(engine, secret, phone=phone, default_region=region)
    except privacy.PrivacyError as exc:
        raise click.UsageError(str(exc)) from None
    with engine.connect() as conn:
        persons = conn.execute(select(Person.__table__)
                               .where(Person.id.in_(subject.person_ids))).all()
    if len(persons) > 1:
        # A device shared by several verified people joins them in one identity graph: the
        # one to show is the person with this very phone (resolve_subject has checked it).
        key = phone_lookup_key(normalize_phone(phone, region), secret)
        persons = [p for p in persons if p.phone_key == key]
    return persons[0] if persons else None
