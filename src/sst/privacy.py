"""Erasure of one person (`sst forget`) and retention (`sst purge`).

forget: the person is everything the identity graph joins to the selector: the verified
Person, its userId, every anonymous id linked to it (links, and events that carry both an
anonymousId and a userId). Their events go with their deliveries and track items; a Exchange
(outgoing request) that carried only their events is deleted, one that also carried other
people's events loses its request body and has their identifiers scrubbed from its answer.
Visitors, click ids, links, the Person row, live OTP codes and refused payloads that name
them go too. What is kept is an Erasure row: kind of selector, times, operator and counts,
never the selector (even a hash of a phone number is personal data under the GDPR).

purge: retention from config (app.config["RETENTION"]): bodies_days (Exchange request and
answer bodies, refused payload bodies), events_days (events with their deliveries and
track items), rejected_days (refused payloads), tracks_days (Exchange rows and their items).

Both work in small batches, each its own short transaction, so no lock is held for long
and a run cut short can simply be run again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Text, and_, cast, delete, func, insert, or_, select, update

from sst.clock import to_db, utcnow
from sst.config import DEFAULT_PHONE_REGION
from sst.errors import SstError
from sst.identity import hashing as h
from sst.identity.crypto import PhoneCipher, phone_lookup_key
from sst.identity.people import PERSON_LINKS
from sst.jsonutil import loads
from sst.models import (
    ClickId,
    Delivery,
    Erasure,
    Event,
    Exchange,
    ExchangeItem,
    Link,
    OtpCode,
    Person,
    RejectedPayload,
    Replay,
    UtmTouch,
    Visitor,
)
from sst.operator import operator_name
from sst.rollups import erasure as rollup_erasure

logger = logging.getLogger(__name__)

BATCH = 500
MAX_IDS = 1000  # an identity graph this large is a shared device or a bad link: stop
KINDS = ("phone", "user_id", "anonymous_id")
RETENTION_KEYS = ("bodies_days", "events_days", "rejected_days", "tracks_days")

events_t = Event.__table__
deliveries_t = Delivery.__table__
tracks_t = Exchange.__table__
items_t = ExchangeItem.__table__
visitors_t = Visitor.__table__
clicks_t = ClickId.__table__
utm_t = UtmTouch.__table__
links_t = Link.__table__
persons_t = Person.__table__
codes_t = OtpCode.__table__
rejected_t = RejectedPayload.__table__


erasures_t = Erasure.__table__
replays_t = Replay.__table__


class PrivacyError(SstError):
    """An erasure or purge that cannot go ahead as asked."""


def _record_start(engine, kind) -> int:
    with engine.begin() as conn:
        return conn.execute(insert(erasures_t), {
            "kind": kind, "requested_at": to_db(utcnow()), "operator": operator_name()}
        ).inserted_primary_key[0]


def _record_finish(engine, record_id, counts) -> None:
    with engine.begin() as conn:
        conn.execute(update(erasures_t).where(erasures_t.c.id == record_id)
                     .values(finished_at=to_db(utcnow()), counts=counts))


# --- forget: who --------------------------------------------------------------------------------


@dataclass
class Subject:
    """The person to erase, held in memory only for the run."""

    kind: str
    anon_ids: set = field(default_factory=set)
    user_ids: set = field(default_factory=set)
    person_ids: set = field(default_factory=set)
    phone_keys: set = field(default_factory=set)
    phones: set = field(default_factory=set)  # E.164
    emails: set = field(default_factory=set)  # as sent in traits

    def events_cond(self):
        e = events_t.c
        conds = []
        if self.anon_ids:
            conds += [e.anonymous_id.in_(self.anon_ids), e.client_anonymous_id.in_(self.anon_ids)]
        if self.user_ids:
            conds.append(e.user_id.in_(self.user_ids))
        return or_(*conds) if conds else None

    def tokens(self) -> set:
        """Every string that identifies them: ids, clear phone and email, and the hashes
        the connectors send (both phone layouts, both email rules, external ids)."""
        out = set(self.anon_ids) | set(self.user_ids) | set(self.phones) | set(self.emails)
        for p in self.phones:
            out |= {p.lstrip("+"), h.sha256_hex(p), h.sha256_hex(p.lstrip("+"))}
        for em in self.emails:
            for rule in (False, True):
                norm = h.normalize_email(em, gmail_dots=rule)
                if norm:
                    out |= {norm, h.sha256_hex(norm)}
        for u in self.user_ids:
            out.add(h.external_id(u))
        return {t for t in out if t}


def resolve_subject(engine, secret, *, phone=None, user_id=None, anonymous_id=None,
                    default_region=DEFAULT_PHONE_REGION) -> Subject:
    """Who `--phone`, `--user-id` or `--anonymous-id` names, closed over the identity graph.

    Raises PrivacyError for a bad selector or a graph too large to be one person.
    """
    from sst.identity.phone import InvalidPhoneError, normalize_phone

    given = [(k, v) for k, v in (("phone", phone), ("user_id", user_id),
                                 ("anonymous_id", anonymous_id)) if v is not None]
    if len(given) != 1 or not str(given[0][1]).strip():
        raise PrivacyError("give exactly one of --phone, --user-id, --anonymous-id")
    kind, value = given[0]
    s = Subject(kind=kind)
    if kind == "phone":
        try:
            e164 = normalize_phone(value, default_region)
        except InvalidPhoneError as exc:
            raise PrivacyError(f"not a valid phone number ({exc.reason})") from None
        s.phones.add(e164)
        s.phone_keys.add(phone_lookup_key(e164, secret))
    elif kind == "user_id":
        s.user_ids.add(value)
    else:
        s.anon_ids.add(value)

    e, ln, p = events_t.c, links_t.c, persons_t.c
    with engine.connect() as conn:
        if s.phone_keys:
            s.user_ids |= set(conn.execute(select(p.user_id)
                                           .where(p.phone_key.in_(s.phone_keys))).scalars())
        for _ in range(20):  # to a fixed point; each round follows one more edge
            before = (len(s.anon_ids), len(s.user_ids))
            if s.user_ids:
                s.anon_ids |= set(conn.execute(select(ln.anonymous_id).distinct().where(
                    ln.kind.in_(PERSON_LINKS), ln.value.in_(s.user_ids))).scalars())
                s.anon_ids |= {a for a in conn.execute(select(e.anonymous_id).distinct().where(
                    e.user_id.in_(s.user_ids))).scalars() if a}
            if s.anon_ids:
                s.user_ids |= set(conn.execute(select(ln.value).distinct().where(
                    ln.kind.in_(PERSON_LINKS), ln.anonymous_id.in_(s.anon_ids))).scalars())
                s.user_ids |= {u for u in conn.execute(select(e.user_id).distinct().where(
                    e.anonymous_id.in_(s.anon_ids))).scalars() if u}
                s.anon_ids |= set(conn.execute(select(ln.value).distinct().where(
                    ln.kind == "anonymous_id", ln.anonymous_id.in_(s.anon_ids))).scalars())
                s.anon_ids |= set(conn.execute(select(ln.anonymous_id).distinct().where(
                    ln.kind == "anonymous_id", ln.value.in_(s.anon_ids))).scalars())
                s.anon_ids |= {a for a in conn.execute(select(e.client_anonymous_id).distinct()
                               .where(e.anonymous_id.in_(s.anon_ids))).scalars() if a}
            if len(s.anon_ids) + len(s.user_ids) > MAX_IDS:
                raise PrivacyError(
                    f"the identity graph reached over {MAX_IDS} ids (a shared device or a "
                    "wrong link?); erase its ids one by one with --anonymous-id")
            if (len(s.anon_ids), len(s.user_ids)) == before:
                break
        cipher = PhoneCipher(secret)
        if s.user_ids:
            for pid, key, token in conn.execute(select(p.id, p.phone_key, p.phone_enc)
                                                .where(p.user_id.in_(s.user_ids))).all():
                s.person_ids.add(pid)
                s.phone_keys.add(key)
                try:
                    s.phones.add(cipher.decrypt(token))
                except ValueError:  # another secret: the lookup key still finds its rows
                    pass
        cond = s.events_cond()
        if cond is not None:
            own = e.message["traits"]["email"].as_string()
            ctx = e.message["context"]["traits"]["email"].as_string()
            for a, b in conn.execute(select(own, ctx).distinct().where(
                    cond, or_(own.isnot(None), ctx.isnot(None)))).all():
                s.emails |= {x for x in (a, b) if isinstance(x, str) and "@" in x}
    return s


# --- forget: what -------------------------------------------------------------------------------


def _rejected_cond(s: Subject):
    r = rejected_t.c
    texts = (r.body, r.message, cast(r.details, Text))
    conds = []
    for token in s.anon_ids | s.user_ids:
        conds += [col.contains(token, autoescape=True) for col in texts]
    for token in {x for p in s.phones for x in (p, p.lstrip("+"))}:
        conds += [col.contains(token, autoescape=True) for col in texts]
    for token in {em.strip().lower() for em in s.emails}:
        conds += [func.lower(col).contains(token, autoescape=True) for col in texts]
    return or_(*conds) if conds else None


def _replays_naming_events(engine, s: Subject) -> list[int]:
    """Replay runs whose --event list names one of the subject's events. Found before the
    events go: afterwards nothing ties those messageIds to the person (L1)."""
    cond = s.events_cond()
    if cond is None:
        return []
    with engine.connect() as conn:
        named = {}
        for rid, filters in conn.execute(select(replays_t.c.id, replays_t.c.filters)).all():
            if isinstance(filters, str):
                filters = loads(filters)
            ids = filters.get("events") if isinstance(filters, dict) else None
            if ids:
                named[rid] = {str(i) for i in ids}
        if not named:
            return []
        listed = set().union(*named.values())
        mine = set(conn.execute(select(events_t.c.message_id).where(
            cond, events_t.c.message_id.in_(listed))).scalars())
    return [rid for rid, ids in named.items() if ids & mine]


def _scrub_replays(engine, s: Subject, naming_events=()) -> int:
    """`sst replay` keeps its filters (--event names a messageId, which may embed a userId):
    those naming the subject or one of its events are replaced by a note (L1); the run's
    counts stay."""
    tokens = s.anon_ids | s.user_ids | {x for p in s.phones for x in (p, p.lstrip("+"))}
    if not tokens and not naming_events:
        return 0
    text = cast(replays_t.c.filters, Text)
    cond = or_(*[text.contains(t, autoescape=True) for t in tokens],
               replays_t.c.id.in_(list(naming_events)))
    with engine.begin() as conn:
        return conn.execute(update(replays_t).where(cond).values(
            filters={"erased": "named an erased person"})).rowcount


def _links_cond(s: Subject):
    ln = links_t.c
    conds = []
    if s.anon_ids:
        conds += [ln.anonymous_id.in_(s.anon_ids),
                  and_(ln.kind == "anonymous_id", ln.value.in_(s.anon_ids))]
    if s.user_ids:  # claims of the userId by browser keys too (M3 keeps them apart)
        conds.append(and_(ln.kind.in_((*PERSON_LINKS, "claimed_user_id")),
                          ln.value.in_(s.user_ids)))
    return or_(*conds) if conds else None


def _count(conn, table, cond) -> int:
    if cond is None:
        return 0
    return conn.execute(select(func.count()).select_from(table).where(cond)).scalar() or 0


def plan_forget(engine, s: Subject) -> dict:
    """What forget would delete (dry run): counts per table."""
    counts = dict.fromkeys(("events", "deliveries", "track_items", "tracks_deleted",
                            "tracks_anonymised", "visitors", "click_ids", "utm_touches",
                            "links",
                            "persons", "otp_codes", "rejected_payloads"), 0)
    cond = s.events_cond()
    with engine.connect() as conn:
        if cond is not None:
            ids = select(events_t.c.id).where(cond)
            counts["events"] = _count(conn, events_t, cond)
            counts["deliveries"] = _count(conn, deliveries_t, deliveries_t.c.event_id.in_(ids))
            counts["track_items"] = _count(conn, items_t, items_t.c.event_id.in_(ids))
            touched = select(items_t.c.track_id).where(items_t.c.event_id.in_(ids))
            shared = select(items_t.c.track_id).where(items_t.c.event_id.notin_(ids))
            counts["tracks_deleted"] = _count(conn, tracks_t, and_(
                tracks_t.c.id.in_(touched), tracks_t.c.id.notin_(shared)))
            counts["tracks_anonymised"] = _count(conn, tracks_t, and_(
                tracks_t.c.id.in_(touched), tracks_t.c.id.in_(shared)))
        if s.anon_ids:
            counts["visitors"] = _count(conn, visitors_t,
                                        visitors_t.c.anonymous_id.in_(s.anon_ids))
            counts["click_ids"] = _count(conn, clicks_t, clicks_t.c.anonymous_id.in_(s.anon_ids))
            counts["utm_touches"] = _count(conn, utm_t, utm_t.c.anonymous_id.in_(s.anon_ids))
        counts["links"] = _count(conn, links_t, _links_cond(s))
        if s.person_ids:
            counts["persons"] = _count(conn, persons_t, persons_t.c.id.in_(s.person_ids))
        if s.phone_keys:
            counts["otp_codes"] = _count(conn, codes_t, codes_t.c.key.in_(s.phone_keys))
        counts["rejected_payloads"] = _count(conn, rejected_t, _rejected_cond(s))
    return counts


def _scrub(text, tokens):
    if not text:
        return text
    for t in sorted(tokens, key=len, reverse=True):
        if t in text:
            text = text.replace(t, "[erased]")
    return text


def _erase_events(engine, s: Subject, counts: dict, pause: float) -> None:
    cond = s.events_cond()
    if cond is None:
        return
    e, d, t, i = events_t.c, deliveries_t.c, tracks_t.c, items_t.c
    tokens = s.tokens()
    while True:
        with engine.begin() as conn:
            ids = list(conn.execute(select(e.id).where(cond).order_by(e.id)
                                    .limit(BATCH)).scalars())
            if not ids:
                return
            dlv = list(conn.execute(select(d.id).where(d.event_id.in_(ids))).scalars())
            track_ids = set(conn.execute(select(i.track_id).where(i.event_id.in_(ids)))
                            .scalars())
            track_ids |= set(conn.execute(select(t.id).where(t.incoming_id.in_(ids))).scalars())
            if dlv:
                track_ids |= set(conn.execute(select(t.id).where(t.delivery_id.in_(dlv)))
                                 .scalars())
            # Other people's events in the same request: keep the row, drop the body.
            shared = set()
            if track_ids:
                shared = set(conn.execute(select(i.track_id).distinct().where(
                    i.track_id.in_(track_ids), i.event_id.notin_(ids),
                    i.event_id.notin_(select(e.id).where(cond)))).scalars())
            own = track_ids - shared
            rollup_erasure.before_deleting(conn, event_ids=ids, delivery_ids=dlv,
                                           track_ids=sorted(own))
            counts["track_items"] += conn.execute(delete(items_t).where(
                i.event_id.in_(ids))).rowcount
            if own:
                conn.execute(delete(items_t).where(i.track_id.in_(own)))
                counts["tracks_deleted"] += conn.execute(delete(tracks_t).where(
                    t.id.in_(own))).rowcount
            for tr in conn.execute(select(t.id, t.response_body, t.error_message, t.incoming_id,
                                          t.delivery_id).where(t.id.in_(shared))).all():
                conn.execute(update(tracks_t).where(t.id == tr.id).values(
                    request_body=None, response_body=_scrub(tr.response_body, tokens),
                    error_message=_scrub(tr.error_message, tokens),
                    incoming_id=None if tr.incoming_id in ids else tr.incoming_id,
                    delivery_id=None if tr.delivery_id in dlv else tr.delivery_id))
                counts["tracks_anonymised"] += 1
            if dlv:
                counts["deliveries"] += conn.execute(delete(deliveries_t).where(
                    d.id.in_(dlv))).rowcount
            counts["events"] += conn.execute(delete(events_t).where(e.id.in_(ids))).rowcount
        if pause:
            time.sleep(pause)


def _delete_where(engine, table, pk, cond, pause=0.0) -> int:
    """Delete rows under `cond` a batch at a time (each its own transaction)."""
    if cond is None:
        return 0
    total = 0
    while True:
        with engine.begin() as conn:
            keys = list(conn.execute(select(pk).where(cond).limit(BATCH)).scalars())
            if not keys:
                return total
            total += conn.execute(delete(table).where(pk.in_(keys))).rowcount
        if pause:
            time.sleep(pause)


def forget(engine, s: Subject, *, pause: float = 0.0) -> dict:
    """Erase the subject; returns the counts, also kept (alone) in an Erasure row.

    Links and the Person go last, so a run cut short can be repeated with the same
    selector and still find everything.
    """
    record = _record_start(engine, s.kind)
    counts = dict.fromkeys(("events", "deliveries", "track_items", "tracks_deleted",
                            "tracks_anonymised"), 0)
    naming_events = _replays_naming_events(engine, s)
    # Conversions of other devices their click ids or links credit: worked out again last.
    credited = rollup_erasure.affected(engine, s.anon_ids, s.user_ids)
    _erase_events(engine, s, counts, pause)
    if s.anon_ids:
        counts["click_ids"] = _delete_where(engine, clicks_t, clicks_t.c.id,
                                            clicks_t.c.anonymous_id.in_(s.anon_ids), pause)
        counts["utm_touches"] = _delete_where(engine, utm_t, utm_t.c.id,
                                              utm_t.c.anonymous_id.in_(s.anon_ids), pause)
        counts["visitors"] = _delete_where(engine, visitors_t, visitors_t.c.anonymous_id,
                                           visitors_t.c.anonymous_id.in_(s.anon_ids), pause)
    else:
        counts["click_ids"] = counts["visitors"] = counts["utm_touches"] = 0
    counts["rejected_payloads"] = _delete_where(engine, rejected_t, rejected_t.c.id,
                                                _rejected_cond(s), pause)
    counts["replays"] = _scrub_replays(engine, s, naming_events)
    counts["otp_codes"] = _delete_where(engine, codes_t, codes_t.c.key,
                                        codes_t.c.key.in_(s.phone_keys)
                                        if s.phone_keys else None)
    counts["links"] = _delete_where(engine, links_t, links_t.c.id, _links_cond(s), pause)
    counts["persons"] = _delete_where(engine, persons_t, persons_t.c.id,
                                      persons_t.c.id.in_(s.person_ids)
                                      if s.person_ids else None)
    rollup_erasure.redo(engine, credited)
    _record_finish(engine, record, counts)
    logger.info("erasure %s (%s) done: %s", record, s.kind, counts)
    return counts


# --- purge --------------------------------------------------------------------------------------


# Request and response bodies of the delivery ledger (and refused payloads) hold personal
# data in platform form; they are for debugging recent failures, so they go after this many
# days unless [retention] bodies_days says otherwise (0: keep them) (M5).
DEFAULT_BODIES_DAYS = 30


def retention_policy(config: dict | None) -> dict[str, int]:
    """Validated `[retention]`: {key: days}; raises PrivacyError on a bad value.

    bodies_days defaults to DEFAULT_BODIES_DAYS; 0 turns it off."""
    config = dict(config or {})
    config.setdefault("bodies_days", DEFAULT_BODIES_DAYS)
    out = {}
    for key, value in config.items():
        if key not in RETENTION_KEYS:
            raise PrivacyError(f"[retention]: unknown key '{key}'; known: "
                               f"{', '.join(RETENTION_KEYS)}")
        if value is None or (key == "bodies_days" and value == 0):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PrivacyError(f"[retention]: key '{key}': a whole number of days, 1 or more")
        out[key] = value
    return out


def purge_bodies(engine, config: dict | None, *, now=None) -> dict:
    """The body rule alone, as the workers apply it on their own (bodies only: deleting
    events or Tracks stays an operator's `sst purge --yes`)."""
    policy = retention_policy(config)
    if "bodies_days" not in policy:
        return {}
    return purge(engine, {"bodies_days": policy["bodies_days"]}, now=now)


def _steps(policy: dict, now):
    """(name, table, pk, time column, cutoff, action) for each configured rule."""
    def cut(key):
        return to_db(now - timedelta(days=policy[key]))

    steps = []
    if "bodies_days" in policy:
        c = cut("bodies_days")
        steps.append(("track_bodies", tracks_t, tracks_t.c.id, tracks_t.c.created_at, c,
                      "null_bodies"))
        steps.append(("rejected_bodies", rejected_t, rejected_t.c.id,
                      rejected_t.c.received_at, c, "null_bodies"))
    if "tracks_days" in policy:
        steps.append(("tracks", tracks_t, tracks_t.c.id, tracks_t.c.created_at,
                      cut("tracks_days"), "delete"))
    if "events_days" in policy:
        steps.append(("events", events_t, events_t.c.id, events_t.c.event_time,
                      cut("events_days"), "delete"))
    if "rejected_days" in policy:
        steps.append(("rejected_payloads", rejected_t, rejected_t.c.id,
                      rejected_t.c.received_at, cut("rejected_days"), "delete"))
    return steps


def _body_cols(table):
    if table is tracks_t:
        return {"request_body": None, "response_body": None}
    return {"body": None}


def _step_cond(table, col, cutoff, action):
    cond = col < cutoff
    if action == "null_bodies":
        cond = and_(cond, or_(*(table.c[k].isnot(None) for k in _body_cols(table))))
    return cond


def plan_purge(engine, policy: dict, now=None) -> dict:
    """Rows each rule would touch (dry run)."""
    now = now or utcnow()
    with engine.connect() as conn:
        return {name: _count(conn, table, _step_cond(table, col, cutoff, action))
                for name, table, _pk, col, cutoff, action in _steps(policy, now)}


def purge(engine, policy: dict, *, now=None, pause: float = 0.0, progress=None,
          batch: int = BATCH) -> dict:
    """Apply retention in batches of `batch` rows, each its own short transaction."""
    now = now or utcnow()
    record = _record_start(engine, "retention")
    counts: dict = {}
    for name, table, pk, col, cutoff, action in _steps(policy, now):
        cond = _step_cond(table, col, cutoff, action)
        # The newest id the rule can touch bounds the scan to the old end of the table.
        with engine.connect() as conn:
            top = conn.execute(select(func.max(pk)).where(col < cutoff)).scalar()
        done, after = 0, 0
        while top is not None:
            with engine.begin() as conn:
                keys = list(conn.execute(select(pk).where(cond, pk > after, pk <= top)
                                         .order_by(pk).limit(batch)).scalars())
                if not keys:
                    break
                after = keys[-1]
                if action == "null_bodies":
                    done += conn.execute(update(table).where(pk.in_(keys))
                                         .values(**_body_cols(table))).rowcount
                elif table is events_t:
                    done += _delete_events(conn, keys)
                elif table is tracks_t:
                    rollup_erasure.before_deleting(conn, track_ids=keys)
                    conn.execute(delete(items_t).where(items_t.c.track_id.in_(keys)))
                    done += conn.execute(delete(table).where(pk.in_(keys))).rowcount
                else:
                    done += conn.execute(delete(table).where(pk.in_(keys))).rowcount
            if progress:
                progress(name, len(keys))
            if pause:
                time.sleep(pause)
        counts[name] = done
    _record_finish(engine, record, counts)
    return counts


def _delete_events(conn, ids) -> int:
    """Events with their deliveries and track items (the Exchange rows follow tracks_days)."""
    rollup_erasure.before_deleting(conn, event_ids=ids, delivery_ids=list(conn.execute(
        select(deliveries_t.c.id).where(deliveries_t.c.event_id.in_(ids))).scalars()))
    conn.execute(delete(items_t).where(items_t.c.event_id.in_(ids)))
    conn.execute(delete(deliveries_t).where(deliveries_t.c.event_id.in_(ids)))
    return conn.execute(delete(events_t).where(events_t.c.id.in_(ids))).rowcount
