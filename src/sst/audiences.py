"""Audiences: who did an include event within a window and none of the exclude events,
exported as the hashed customer files Meta Custom Audiences and Google Customer Match take.

A member is a verified person (every device linked to its phone) when there is one, else a
userId (with the anonymous ids an identify linked to it), else one anonymous id. Members are
read by keyset pagination over the include events; a member is written on the page that
holds its newest include event, so nothing is remembered between pages and memory stays
flat however large the audience.

File layouts (checked 2026-11; see docs/privacy.md for the links):
- Meta customer list: lower-case headers `email`, `phone`, `extern_id`, up to three email
  columns. `em`: trim + lowercase; `ph`: digits with country code, no "+", no leading zeros.
- Google Customer Match: English headers `Email`, `Phone` (several Email columns allowed).
  Email lowercase, no whitespace, gmail.com/googlemail.com without dots and "+suffix";
  phone E.164 with "+". Its contact-information file has no external-id column.
- csv: sst's own generic layout (email trim + lowercase, phone E.164 with "+").
Every value is the lowercase hex SHA-256 of the normalised identifier.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from marshmallow import RAISE, Schema, ValidationError, fields, validate
from sqlalchemy import and_, func, or_, select

from sst.clock import to_db, utcnow
from sst.errors import ConfigError
from sst.identity import hashing as h
from sst.identity.crypto import PhoneCipher
from sst.identity.people import PERSON_LINKS
from sst.models import Event, Link, Person

events_t = Event.__table__
links_t = Link.__table__
persons_t = Person.__table__

PAGE = 1000
MAX_EMAILS = 3  # Meta takes up to three email columns; the newest three are kept
CALL_TYPES = {"$page": "page", "$screen": "screen", "$identify": "identify",
              "$group": "group", "$alias": "alias"}
FORMATS = ("meta", "google", "csv")
_WINDOW = re.compile(r"^(\d+)\s*([hdw])$")


# --- configuration ---------------------------------------------------------------------------


class AudienceSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_\-.]{1,64}$"))
    description = fields.String()
    include_events = fields.List(fields.String(validate=validate.Length(min=1, max=255)),
                                 required=True, validate=validate.Length(min=1))
    exclude_events = fields.List(fields.String(validate=validate.Length(min=1, max=255)),
                                 load_default=list)
    window = fields.Raw(load_default="30d")  # "30d", "12h", "2w" or a number of days
    sources = fields.List(fields.String(), load_default=list)
    verified_only = fields.Boolean(load_default=False)


@dataclass(frozen=True)
class Audience:
    name: str
    include: tuple
    exclude: tuple = ()
    window: timedelta = timedelta(days=30)
    sources: tuple = ()
    verified_only: bool = False


def parse_window(value) -> timedelta:
    """"30d" / "12h" / "2w", or a whole number of days."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return timedelta(days=value)
    m = _WINDOW.match(str(value).strip()) if isinstance(value, str) else None
    if not m or int(m.group(1)) == 0:
        raise ValueError("a window like '30d', '12h', '2w' or a number of days")
    n, unit = int(m.group(1)), m.group(2)
    return {"h": timedelta(hours=n), "d": timedelta(days=n), "w": timedelta(weeks=n)}[unit]


def load_audiences(entries) -> dict[str, Audience]:
    """Validate the raw `[[audience]]` tables (app.config["AUDIENCES"]); index by name."""
    out: dict[str, Audience] = {}
    for i, entry in enumerate(entries or []):
        label = f"[[audience]] #{i + 1}"
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            label += f" '{entry['name']}'"
        if not isinstance(entry, dict):
            raise ConfigError(f"{label}: must be a table")
        try:
            data = AudienceSchema().load(entry)
        except ValidationError as exc:
            key, msg = next(iter(exc.messages.items()))
            msg = msg[0] if isinstance(msg, list) and msg else msg
            raise ConfigError(f"{label}: key '{key}': "
                              f"{'unknown key' if msg == 'Unknown field.' else msg}") from None
        for name in (*data["include_events"], *data["exclude_events"]):
            if name.startswith("$") and name not in CALL_TYPES:
                raise ConfigError(f"{label}: unknown call type {name!r}; known: "
                                  f"{', '.join(sorted(CALL_TYPES))}")
        try:
            window = parse_window(data["window"])
        except ValueError as exc:
            raise ConfigError(f"{label}: key 'window': {exc}") from None
        if data["name"] in out:
            raise ConfigError(f"{label}: audience name {data['name']!r} is used twice")
        out[data["name"]] = Audience(
            name=data["name"], include=tuple(data["include_events"]),
            exclude=tuple(data["exclude_events"]), window=window,
            sources=tuple(data["sources"]), verified_only=data["verified_only"])
    return out


# --- members -----------------------------------------------------------------------------------


@dataclass
class Member:
    kind: str  # person | user | anonymous
    key: str  # the person's or user's userId, or the anonymous id; never written out
    anon_ids: set = field(default_factory=set)
    user_ids: set = field(default_factory=set)
    phone: str | None = None  # E.164, verified persons only
    emails: list = field(default_factory=list)  # as sent, newest first

    @property
    def external_id(self) -> str | None:
        return self.key if self.kind in ("person", "user") else None


@dataclass
class ExportStats:
    events: int = 0  # include events read
    members: int = 0  # members found (after exclusions)
    excluded: int = 0
    written: int = 0  # rows written
    without_identifiers: int = 0  # members with nothing this format can use
    with_email: int = 0
    with_phone: int = 0
    with_external_id: int = 0
    by_kind: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"events": self.events, "members": self.members, "excluded": self.excluded,
                "written": self.written, "withoutIdentifiers": self.without_identifiers,
                "withEmail": self.with_email, "withPhone": self.with_phone,
                "withExternalId": self.with_external_id, "byKind": self.by_kind}


def _names(names):
    e = events_t.c
    conds = [e.type == CALL_TYPES[n] for n in names if n in CALL_TYPES]
    tracks = [n for n in names if n not in CALL_TYPES]
    if tracks:
        conds.append(and_(e.type == "track", e.event.in_(tracks)))
    return or_(*conds)


def _event_filter(names, since, sources):
    e = events_t.c
    cond = and_(_names(names), e.event_time >= since)
    if sources:
        cond = and_(cond, e.source.in_(sources))
    return cond


def _of_members(anon_ids, user_ids):
    e = events_t.c
    conds = []
    if anon_ids:
        conds.append(e.anonymous_id.in_(anon_ids))
    if user_ids:
        conds.append(e.user_id.in_(user_ids))
    return or_(*conds) if conds else None


def _resolve(conn, rows, verified_only) -> dict:
    """{(kind, key): Member} for a page of include events (anonymous_id, user_id)."""
    anons = {r.anonymous_id for r in rows if r.anonymous_id}
    linked = conn.execute(select(links_t.c.anonymous_id, links_t.c.value)
                          .where(links_t.c.kind.in_(PERSON_LINKS), links_t.c.anonymous_id.in_(anons))
                          .order_by(links_t.c.id)).all() if anons else []
    candidates = {r.user_id for r in rows if r.user_id} | {v for _, v in linked}
    persons = set(conn.execute(select(persons_t.c.user_id)
                               .where(persons_t.c.user_id.in_(candidates))).scalars()
                  ) if candidates else set()
    person_of, user_of = {}, {}
    for a, v in linked:
        (person_of if v in persons else user_of).setdefault(a, v)
    units: dict = {}
    for r in rows:
        a, u = r.anonymous_id, r.user_id
        if u in persons:
            unit = ("person", u)
        elif a in person_of:
            unit = ("person", person_of[a])
        elif verified_only:
            continue
        elif u:
            unit = ("user", u)
        elif a in user_of:
            unit = ("user", user_of[a])
        else:
            unit = ("anonymous", a)
        units.setdefault(unit, Member(kind=unit[0], key=unit[1]))
    keyed = {m.key for m in units.values() if m.kind != "anonymous"}
    devices: dict = {}
    if keyed:
        for a, v in conn.execute(select(links_t.c.anonymous_id, links_t.c.value).distinct()
                                 .where(links_t.c.kind.in_(PERSON_LINKS),
                                        links_t.c.value.in_(keyed))).all():
            devices.setdefault(v, set()).add(a)
    for m in units.values():
        if m.kind == "anonymous":
            m.anon_ids = {m.key}
        else:
            m.user_ids = {m.key}
            m.anon_ids = set(devices.get(m.key, ()))
    return units


def _owners(conn, members, cond, agg=True):
    """[(member, value)] for the events under `cond` of these members: the newest event id
    (agg) or just a hit."""
    anon_ids = set().union(*(m.anon_ids for m in members))
    user_ids = set().union(*(m.user_ids for m in members))
    who = _of_members(anon_ids, user_ids)
    if who is None:
        return {}
    e = events_t.c
    q = (select(e.anonymous_id, e.user_id, func.max(e.id)).where(cond, who)
         .group_by(e.anonymous_id, e.user_id))
    by_anon, by_user = {}, {}
    for m in members:
        for a in m.anon_ids:
            by_anon.setdefault(a, []).append(m)
        for u in m.user_ids:
            by_user.setdefault(u, []).append(m)
    out: dict = {}
    for a, u, top in conn.execute(q).all():
        for m in {id(x): x for x in by_anon.get(a, []) + by_user.get(u, [])}.values():
            key = (m.kind, m.key)
            out[key] = max(out.get(key, 0), top)
    return out


def _attach_identifiers(conn, members, cipher) -> None:
    persons = [m.key for m in members if m.kind == "person"]
    if persons and cipher is not None:
        phones = dict(conn.execute(select(persons_t.c.user_id, persons_t.c.phone_enc)
                                   .where(persons_t.c.user_id.in_(persons))).all())
        for m in members:
            if m.kind == "person" and m.key in phones:
                try:
                    m.phone = cipher.decrypt(phones[m.key])
                except ValueError:  # encrypted under a secret that is gone
                    m.phone = None
    e = events_t.c
    anon_ids = set().union(*(m.anon_ids for m in members))
    user_ids = set().union(*(m.user_ids for m in members))
    who = _of_members(anon_ids, user_ids)
    if who is None:
        return
    own = e.message["traits"]["email"].as_string()
    ctx = e.message["context"]["traits"]["email"].as_string()
    newest = func.max(e.id).label("newest")
    rows = conn.execute(select(e.anonymous_id, e.user_id, own, ctx, newest)
                        .where(who, or_(own.isnot(None), ctx.isnot(None)))
                        .group_by(e.anonymous_id, e.user_id, own, ctx)
                        .order_by(newest.desc())).all()
    for m in members:
        seen = []
        for a, u, e1, e2, _ in rows:
            if a in m.anon_ids or u in m.user_ids:
                for value in (e1, e2):
                    if isinstance(value, str) and value and value not in seen:
                        seen.append(value)
        m.emails = seen


def count_include_events(state, audience: Audience, now=None) -> int:
    since = to_db((now or utcnow()) - audience.window)
    with state.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(events_t).where(
            _event_filter(audience.include, since, audience.sources))).scalar() or 0


def iter_members(state, audience: Audience, *, secret: str | None = None,
                 now: datetime | None = None, stats: ExportStats | None = None,
                 progress=None, page: int = PAGE):
    """Yield the audience's Members, a page at a time, each exactly once."""
    stats = stats if stats is not None else ExportStats()
    since = to_db((now or utcnow()) - audience.window)
    include = _event_filter(audience.include, since, audience.sources)
    exclude = (_event_filter(audience.exclude, since, audience.sources)
               if audience.exclude else None)
    cipher = PhoneCipher(secret) if secret else None
    e = events_t.c
    with state.engine.connect() as conn:
        # Ids grow with arrival: start the id walk at the window, not at the first event.
        first = conn.execute(select(func.min(e.id)).where(e.event_time >= since)).scalar()
    after = (first or 1) - 1
    while first is not None:
        with state.engine.connect() as conn:
            rows = conn.execute(select(e.id, e.anonymous_id, e.user_id)
                                .where(include, e.id > after).order_by(e.id).limit(page)).all()
            if not rows:
                break
            low, after = after, rows[-1].id
            stats.events += len(rows)
            units = _resolve(conn, rows, audience.verified_only)
            members = list(units.values())
            newest = _owners(conn, members, include) if members else {}
            # Written on the page holding its newest include event: once, with no memory.
            members = [m for m in members if low < newest.get((m.kind, m.key), 0) <= after]
            if members and exclude is not None:
                hit = _owners(conn, members, exclude)
                stats.excluded += sum(1 for m in members if (m.kind, m.key) in hit)
                members = [m for m in members if (m.kind, m.key) not in hit]
            if members:
                _attach_identifiers(conn, members, cipher)
        for m in members:
            stats.members += 1
            stats.by_kind[m.kind] = stats.by_kind.get(m.kind, 0) + 1
            yield m
        if progress:
            progress(len(rows))


# --- file layouts ------------------------------------------------------------------------------


def _first(values, n):
    out = []
    for v in values:
        if v and v not in out:
            out.append(v)
        if len(out) == n:
            break
    return out


def meta_row(m: Member) -> dict:
    """Meta customer list values (hashed)."""
    emails = _first((h.hash_normalized(h.normalize_email(x)) for x in m.emails), MAX_EMAILS)
    return {"email": emails, "phone": h.hash_normalized(h.meta_phone(m.phone)),
            "extern_id": h.external_id(m.external_id)}


def google_row(m: Member) -> dict:
    """Google Customer Match values (hashed); Data Manager's gmail rule."""
    emails = _first((h.hash_normalized(h.normalize_email(x, gmail_dots=True))
                     for x in m.emails), MAX_EMAILS)
    return {"email": emails, "phone": h.hash_normalized(h.e164_plus(m.phone)),
            "extern_id": None}


def csv_row(m: Member) -> dict:
    emails = _first((h.hash_normalized(h.normalize_email(x)) for x in m.emails), MAX_EMAILS)
    return {"email": emails, "phone": h.hash_normalized(h.e164_plus(m.phone)),
            "extern_id": h.external_id(m.external_id)}


LAYOUTS = {
    # header, row builder, whether external ids go in the file
    "meta": (["email"] * MAX_EMAILS + ["phone", "extern_id"], meta_row, True),
    "google": (["Email"] * MAX_EMAILS + ["Phone"], google_row, False),
    "csv": ([f"email_sha256_{i + 1}" for i in range(MAX_EMAILS)]
            + ["phone_sha256", "external_id_sha256", "member_type"], csv_row, True),
}


def export(state, audience: Audience, out, fmt: str, *, secret: str | None = None,
           now=None, progress=None, page: int = PAGE) -> ExportStats:
    """Write the audience to the text stream `out` in `fmt`; rows go out page by page."""
    if fmt not in LAYOUTS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    header, build, with_ext = LAYOUTS[fmt]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    stats = ExportStats()
    for m in iter_members(state, audience, secret=secret, now=now, stats=stats,
                          progress=progress, page=page):
        row = build(m)
        emails = row["email"]
        ext = row["extern_id"] if with_ext else None
        if not (emails or row["phone"] or ext):
            stats.without_identifiers += 1
            continue
        stats.with_email += bool(emails)
        stats.with_phone += bool(row["phone"])
        stats.with_external_id += bool(ext)
        cells = emails + [""] * (MAX_EMAILS - len(emails)) + [row["phone"] or ""]
        if with_ext:
            cells.append(ext or "")
        if fmt == "csv":
            cells.append(m.kind)
        writer.writerow(cells)
        stats.written += 1
        if stats.written % PAGE == 0:
            out.flush()
    out.flush()
    return stats
