"""Reports: events by day, deliveries by destination, conversion attribution.

Every figure is computed by the database with GROUP BY on indexed columns; Python only
reshapes the few rows that come back (for latency percentiles, a histogram by millisecond).
SQLAlchemy Core, no Flask, so the CLI, the admin pages and the tests share it; the same
queries run on MySQL/MariaDB and SQLite.

Definitions (docs/reports.md):

- A conversion is a non-bot `track` event whose name is in the configured list
  (`CONVERSION_EVENTS`, default ["Order Completed"]).
- Touches are the converting device's click ids (`click_ids`) first seen at or before the
  conversion. First touch: the earliest; last touch: the latest (ties: the parameter that
  sorts first). The platform is the click id's owner (gclid -> google, fbclid -> meta ...);
  a conversion without a click id has platform None.
- UTM: the utm_source / utm_campaign of the converting device's first and last UTM touch
  (`utm_touches`: events that carried utm_* parameters) at or before the conversion; a touch
  after the conversion is never credited. None: the device had no UTM touch by then.
- Verified: the conversion belongs to a Person (a verified phone), through its userId or a
  link of its device (links of kind person or user_id). Otherwise anonymous.
- Cross-device: a conversion is credited across devices to a platform when the converting
  device has no click id of that platform before the conversion but another device of the
  same Person has one: the click id that enrichment adds to the delivery. Its share is over
  all conversions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import (
    String,
    and_,
    case,
    distinct,
    exists,
    false,
    func,
    literal,
    or_,
    outerjoin,
    select,
)

from sst.clock import iso, to_db
from sst.identity.clicks import CLICK_ID_PLATFORM
from sst.identity.people import PERSON_LINKS
from sst.models import ClickId, Delivery, Event, Exchange, Link, Person, UtmTouch, Visitor

events_t = Event.__table__
deliveries_t = Delivery.__table__
tracks_t = Exchange.__table__
clicks_t = ClickId.__table__
links_t = Link.__table__
persons_t = Person.__table__
visitors_t = Visitor.__table__
utm_touches_t = UtmTouch.__table__

DEFAULT_CONVERSION_EVENTS = ("Order Completed",)
PERCENTILES = (0.5, 0.95, 0.99)
WAITING_STATES = ("pending", "queued", "sending")

PLATFORMS = CLICK_ID_PLATFORM  # click-id parameter -> ad platform


@dataclass(frozen=True)
class Window:
    """What a report covers: event time in [since, until), optionally one source."""

    since: datetime | None = None
    until: datetime | None = None
    source: str | None = None

    def as_dict(self) -> dict:
        return {"since": iso(self.since), "until": iso(self.until), "source": self.source}

    def on(self, column) -> list:
        conds = []
        if self.since is not None:
            conds.append(column >= to_db(self.since))
        if self.until is not None:
            conds.append(column < to_db(self.until))
        return conds


def platform_of(param_column):
    """SQL: the platform of a click-id parameter column (the parameter itself if unknown)."""
    return case(PLATFORMS, value=param_column, else_=param_column)


def nearest_rank(n: int, p: float) -> int:
    """0-based index of the p-th percentile among n sorted values (nearest rank); every
    percentile sst shows (reports, `sst status`, /metrics) uses it."""
    return min(n - 1, int(p * (n - 1) + 0.5))


def _pkey(p: float) -> str:
    return f"p{round(p * 100):d}_ms"


# --- events ---------------------------------------------------------------------------------


def event_name(e):
    """SQL: the name the events report shows ("$page", "$identify" ... for calls other than
    track)."""
    return case((e.type == "track", e.event), else_=literal("$", String()) + e.type)


def events_by_day(conn, window: Window, extra=()) -> list[dict]:
    """Events per UTC day and name ("$page", "$identify" ... for calls other than track).
    `extra`: more conditions on events (the rollups read the rows they do not cover)."""
    e = events_t.c
    day = func.date(e.event_time).label("day")
    name = event_name(e).label("name")
    q = (select(day, name, func.count().label("events"),
                func.sum(case((e.is_bot, 1), else_=0)).label("bots"))
         .where(*window.on(e.event_time), *extra)
         .group_by(day, name).order_by(day, name))
    if window.source:
        q = q.where(e.source == window.source)
    return [{"day": str(r.day), "name": r.name, "events": int(r.events), "bots": int(r.bots or 0)}
            for r in conn.execute(q)]


# --- deliveries -----------------------------------------------------------------------------


def deliveries(conn, window: Window) -> list[dict]:
    """Per destination: deliveries by state (event time in the window), and the requests made
    in the window by outcome with their latency percentiles.

    With a source, only its deliveries; the request columns are None then, because requests
    are not per source (one batch request carries events of several sources).
    """
    t = tracks_t.c
    states = delivery_states(conn, window)
    if window.source:
        outcomes, hist = {}, {}
    else:
        outcomes, hist = request_histogram(conn, window.on(t.created_at))
    return deliveries_table(window, states, outcomes, hist)


def delivery_states(conn, window: Window, extra=()) -> dict:
    """{destination: {state: deliveries}} of the deliveries whose event time is in the window
    (and of its source); `extra`: more conditions on deliveries."""
    d, e = deliveries_t.c, events_t.c
    q = (select(d.destination, d.state, func.count())
         .where(*window.on(d.event_time), *extra).group_by(d.destination, d.state))
    if window.source:
        # From the source's events in the window (a range of ix_events_time_name) to their
        # deliveries: MariaDB otherwise reads every delivery and looks its event up, 2x slower.
        q = (q.select_from(events_t.join(deliveries_t, d.event_id == e.id))
             .where(e.source == window.source, *window.on(e.event_time))
             .prefix_with("STRAIGHT_JOIN", dialect="mysql")
             .prefix_with("STRAIGHT_JOIN", dialect="mariadb"))
    states: dict = {}
    for dest, state, n in conn.execute(q):
        states.setdefault(dest, {})[state] = int(n)
    return states


def deliveries_table(window: Window, states: dict, outcomes: dict, hist: dict) -> list[dict]:
    """The deliveries report from its counts: {dest: {state: n}}, {dest: {outcome: n}} and
    {dest: {ms: n}} (request durations)."""
    latency = {dest: _percentiles(buckets) for dest, buckets in hist.items() if buckets}
    out = []
    for dest in sorted(set(states) | set(outcomes)):
        st = states.get(dest, {})
        row = {"destination": dest, "deliveries": sum(st.values()), "states": st,
               "succeeded": st.get("succeeded", 0), "failed": st.get("failed", 0),
               "skipped": st.get("skipped", 0),
               "waiting": sum(st.get(s, 0) for s in WAITING_STATES),
               "requests": None if window.source else sum(outcomes.get(dest, {}).values()),
               "outcomes": None if window.source else outcomes.get(dest, {})}
        row.update(latency.get(dest) or {_pkey(p): None for p in PERCENTILES})
        out.append(row)
    return out


def request_histogram(conn, conds) -> tuple[dict, dict]:
    """({destination: {outcome: requests}}, {destination: {ms: requests}}) from one GROUP BY:
    requests per destination, outcome and duration to the millisecond.

    The answer is a histogram (at most one row per distinct millisecond), so it stays small
    however many requests there are, and the percentiles are exact to the millisecond. With
    ix_tracks_created_report the database reads only that index.
    """
    t = tracks_t.c
    ms = func.round(t.duration_ms).label("ms")
    outcomes: dict = {}
    hist: dict = {}
    for dest, outcome, value, n in conn.execute(
            select(t.destination, t.outcome, ms, func.count())
            .where(*conds).group_by(t.destination, t.outcome, ms)):
        by_outcome = outcomes.setdefault(dest, {})
        by_outcome[outcome] = by_outcome.get(outcome, 0) + int(n)
        if value is not None:
            buckets = hist.setdefault(dest, {})
            buckets[float(value)] = buckets.get(float(value), 0) + int(n)
    return outcomes, hist


def _percentiles(buckets: dict) -> dict:
    """{"p50_ms": ...} from {value: count}, by nearest rank."""
    n = sum(buckets.values())
    out = {}
    for p in PERCENTILES:
        rank, seen = nearest_rank(n, p) + 1, 0
        for value in sorted(buckets):
            seen += buckets[value]
            if seen >= rank:
                out[_pkey(p)] = value
                break
    return out


# --- attribution ----------------------------------------------------------------------------


def conversions_query(conds) -> select:
    """One row per conversion: id, name, device, time, touch parameters and its Person (the
    Person of its userId, else the first Person its device is linked to, as in
    _verified_conversions)."""
    e = events_t.c
    cf, cl = clicks_t.alias("cf"), clicks_t.alias("cl")
    lk, pv = links_t.alias("lk"), persons_t.alias("pv")

    def touch(alias, *order):
        return (select(alias.c.param)
                .where(alias.c.anonymous_id == e.anonymous_id,
                       alias.c.first_seen_at <= e.event_time)
                .order_by(*order).limit(1).scalar_subquery())

    person = func.coalesce(
        select(pv.c.user_id).where(pv.c.user_id == e.user_id).scalar_subquery(),
        select(func.min(lk.c.value))
        .where(lk.c.anonymous_id == e.anonymous_id, lk.c.kind.in_(PERSON_LINKS),
               lk.c.value.in_(select(persons_t.c.user_id)))
        .scalar_subquery())
    q = (select(e.id, e.event.label("name"), e.anonymous_id, e.event_time,
                touch(cf, cf.c.first_seen_at, cf.c.param).label("first_param"),
                touch(cl, cl.c.first_seen_at.desc(), cl.c.param).label("last_param"),
                person.label("person"), e.source, e.user_id)
         .where(*conds))
    return q


def conversion_filter(window: Window, names, extra=()) -> list:
    """SQL conditions: the conversions of the window (and `extra` conditions on events)."""
    e = events_t.c
    conds = [e.type == "track", e.event.in_(list(names)), e.is_bot == false(),
             *window.on(e.event_time), *extra]
    if window.source:
        conds.append(e.source == window.source)
    return conds


def _ranked(counts: dict, key: str) -> list[dict]:
    return [{key: k, "conversions": n}
            for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))]


@dataclass
class AttributionCounts:
    """What the attribution report is made of; counts of disjoint sets of conversions add
    up (the rollups add the rolled-up part and the raw rest)."""

    cube: dict = field(default_factory=dict)  # (name, first, last, verified) -> conversions
    utm_first: dict = field(default_factory=dict)  # (utm_source, utm_campaign) -> conversions
    utm_last: dict = field(default_factory=dict)
    cross_by: dict = field(default_factory=dict)  # platform -> conversions
    cross_total: int = 0

    def add(self, other: AttributionCounts) -> AttributionCounts:
        for mine, theirs in ((self.cube, other.cube), (self.utm_first, other.utm_first),
                             (self.utm_last, other.utm_last), (self.cross_by, other.cross_by)):
            for k, n in theirs.items():
                mine[k] = mine.get(k, 0) + n
        self.cross_total += other.cross_total
        return self


def attribution(conn, window: Window, conversion_events=DEFAULT_CONVERSION_EVENTS) -> dict:
    """Conversions by first/last-touch platform and UTM, verified vs anonymous, and the
    share credited across devices through a verified phone."""
    names = list(conversion_events)
    return attribution_table(names, attribution_counts(conn, conversion_filter(window, names)))


def attribution_counts(conn, conds) -> AttributionCounts:
    """The counts of the conversions that match `conds` (conversion_filter)."""
    out = AttributionCounts()
    conv = conversions_query(conds).subquery("conv")
    first_p = platform_of(conv.c.first_param).label("first_platform")
    last_p = platform_of(conv.c.last_param).label("last_platform")
    verified = case((conv.c.person.is_not(None), 1), else_=0).label("verified")
    for name, first, last, ver, n in conn.execute(
            select(conv.c.name, first_p, last_p, verified, func.count())
            .group_by(conv.c.name, first_p, last_p, verified)):
        out.cube[(name, first, last, bool(ver))] = int(n)
    for which, picked in utm_touch_ids(conv).items():
        t = utm_touches_t.alias(f"{which}_t")
        src, camp = t.c.utm_source.label("utm_source"), t.c.utm_campaign.label("utm_campaign")
        rows = conn.execute(
            select(src, camp, func.count().label("n"))
            .select_from(outerjoin(picked, t, t.c.id == picked.c.touch_id))
            .group_by(src, camp)).all()
        getattr(out, which).update({(s, c): int(n) for s, c, n in rows})
    out.cross_by, out.cross_total = _cross_device(conn, conds)
    return out


def utm_touch_ids(conv) -> dict:
    """{"utm_first": (conversion id, touch_id), "utm_last": ...} subqueries: the device's
    first / last UTM touch at or before the conversion, never one after."""
    ut = utm_touches_t
    out = {}
    for which, order in (("utm_first", (ut.c.at, ut.c.id)),
                         ("utm_last", (ut.c.at.desc(), ut.c.id.desc()))):
        touch_id = (select(ut.c.id).where(ut.c.anonymous_id == conv.c.anonymous_id,
                                          ut.c.at <= conv.c.event_time)
                    .order_by(*order).limit(1).scalar_subquery())
        out[which] = select(conv.c.id, touch_id.label("touch_id")).subquery(which)
    return out


def attribution_table(names: list, counts: AttributionCounts) -> dict:
    """The attribution report from its counts."""
    total = by_verified = 0
    by_event, by_first, by_last = {}, {}, {}
    for (name, first, last, ver), n in counts.cube.items():
        if not n:
            continue
        total += n
        by_verified += n if ver else 0
        by_event[name] = by_event.get(name, 0) + n
        by_first[first] = by_first.get(first, 0) + n
        by_last[last] = by_last.get(last, 0) + n
    utm = {which: [{"utm_source": s, "utm_campaign": c, "conversions": n}
                   for (s, c), n in sorted(found.items(),
                                           key=lambda kv: (-kv[1], kv[0][0] or "",
                                                           kv[0][1] or "")) if n]
           for which, found in (("utm_first", counts.utm_first),
                                ("utm_last", counts.utm_last))}
    cross_total = counts.cross_total
    return {
        "conversion_events": names,
        "conversions": total,
        "verified": by_verified,
        "anonymous": total - by_verified,
        "by_event": _ranked(by_event, "event"),
        "first_touch": _ranked(by_first, "platform"),
        "last_touch": _ranked(by_last, "platform"),
        **utm,
        "cross_device": {"conversions": cross_total,
                         "share": round(cross_total / total, 4) if total else 0.0,
                         "by_platform": _ranked({p: n for p, n in counts.cross_by.items() if n},
                                                "platform")},
    }


def _verified_conversions(conds) -> select:
    """(id, anonymous_id, event_time, person) of the conversions that have a Person.

    Joins rather than correlated subqueries, and GROUP BY: the database materialises this
    small table, so joining the Person's other devices can use ix_links_kind_value.
    """
    e = events_t.c
    pv, lk, pl = persons_t.alias("pv"), links_t.alias("lk"), persons_t.alias("pl")
    linked = lk.join(pl, pl.c.user_id == lk.c.value)
    person = func.coalesce(func.min(pv.c.user_id), func.min(lk.c.value)).label("person")
    q = (select(e.id, e.anonymous_id, e.event_time, person)
         .select_from(events_t.outerjoin(pv, pv.c.user_id == e.user_id)
                      .outerjoin(linked, and_(lk.c.anonymous_id == e.anonymous_id,
                                              lk.c.kind.in_(PERSON_LINKS))))
         .where(*conds)
         .group_by(e.id, e.anonymous_id, e.event_time)
         .having(person.is_not(None)))
    return q


def _cross_device(conn, conds) -> tuple[dict, int]:
    """({platform: conversions credited through another device of the Person}, conversions
    with at least one such platform)."""
    joined, platform, own_has, conv = _cross_device_join(conds)
    by_platform = {p: int(n) for p, n in conn.execute(
        select(platform.label("platform"), func.count(distinct(conv.c.id)))
        .select_from(joined).where(~own_has).group_by(platform))}
    total = conn.execute(select(func.count(distinct(conv.c.id))).select_from(joined)
                         .where(~own_has)).scalar() or 0
    return by_platform, int(total)


def cross_device_platforms(conn, conds) -> dict:
    """{conversion id: {platform credited across devices}} (the rollups keep it per
    conversion)."""
    joined, platform, own_has, conv = _cross_device_join(conds)
    out: dict = {}
    for cid, p in conn.execute(select(conv.c.id, platform.label("platform")).distinct()
                               .select_from(joined).where(~own_has)):
        out.setdefault(cid, set()).add(p)
    return out


def _cross_device_join(conds):
    """(joined, platform, own_has, conv): a verified conversion joined to the click ids of
    the Person's other devices before it, and whether its own device had that platform."""
    conv = _verified_conversions(conds).subquery("vconv")
    lo, co, cown = links_t.alias("lo"), clicks_t.alias("co"), clicks_t.alias("cown")
    platform = platform_of(co.c.param)
    other_device = or_(conv.c.anonymous_id.is_(None), lo.c.anonymous_id != conv.c.anonymous_id)
    joined = (conv
              .join(lo, and_(lo.c.value == conv.c.person, lo.c.kind.in_(PERSON_LINKS),
                             other_device))
              .join(co, and_(co.c.anonymous_id == lo.c.anonymous_id,
                             co.c.first_seen_at <= conv.c.event_time)))
    own_has = exists().where(cown.c.anonymous_id == conv.c.anonymous_id,
                             platform_of(cown.c.param) == platform,
                             cown.c.first_seen_at <= conv.c.event_time)
    return joined, platform, own_has, conv


# --- reconciliation -------------------------------------------------------------------------

MAX_REASONS = 5  # distinct platform reasons shown per destination and day


def reconciliation(conn, window: Window) -> list[dict]:
    """Per destination and UTC day of sending: events the platforms gave a final answer for
    (sent), how many they accepted and rejected, and the gap between (unconfirmed: a platform
    that answers 2xx without judging, or counted fewer than it was sent). The window is on
    the time of the request, not of the event: what a platform answered that day.
    """
    t = tracks_t.c
    sums = reconciliation_sums(conn, window.on(t.created_at))
    return reconciliation_table(sums, reasons_rows(conn, window.on(t.created_at)))


def reconciliation_sums(conn, conds) -> dict:
    """{(destination, day): [sent, accepted, rejected]} of the requests that match `conds`
    and carried events_sent > 0."""
    t = tracks_t.c
    day = func.date(t.created_at).label("day")
    rows = conn.execute(
        select(t.destination, day, func.sum(t.events_sent).label("sent"),
               func.sum(func.coalesce(t.events_accepted, 0)).label("accepted"),
               func.sum(func.coalesce(t.events_rejected, 0)).label("rejected"))
        .where(*conds, t.events_sent > 0).group_by(t.destination, day)).all()
    return {(r.destination, str(r.day)): [int(r.sent), int(r.accepted), int(r.rejected)]
            for r in rows}


REASON_ROWS = 2000  # the latest requests with platform reasons that reconciliation reads


def reasons_rows(conn, conds) -> list[tuple]:
    """[(created_at, destination, reasons)] of the latest REASON_ROWS requests that match
    `conds` and carried platform reasons, newest first."""
    t = tracks_t.c
    return [tuple(r) for r in conn.execute(
        select(t.created_at, t.destination, t.platform_reasons)
        .where(*conds, t.events_sent > 0, t.platform_reasons.is_not(None))
        .order_by(t.created_at.desc()).limit(REASON_ROWS))]


def reconciliation_table(sums: dict, reason_rows: list) -> list[dict]:
    """The reconciliation report from its sums and its reason rows (newest first)."""
    reasons: dict = {}
    for created_at, dest, found in reason_rows:
        seen = reasons.setdefault((dest, str(as_date(created_at))), [])
        for reason in found or []:
            if reason not in seen and len(seen) < MAX_REASONS:
                seen.append(reason)
    out = []
    for (dest, day), (sent, accepted, rejected) in sorted(sums.items()):
        out.append({
            "destination": dest, "day": day, "sent": sent,
            "accepted": accepted, "rejected": rejected,
            "unconfirmed": max(sent - accepted - rejected, 0),
            "acceptance": round(accepted / sent, 4) if sent else None,
            "reasons": reasons.get((dest, day), []),
        })
    return out


def as_date(value) -> date:
    """The UTC day of a stored day or time, as the database gave it (a date or datetime, or
    SQLite's text)."""
    if isinstance(value, date):
        return value if not isinstance(value, datetime) else value.date()
    return date.fromisoformat(str(value)[:10])


# --- all together ---------------------------------------------------------------------------

REPORTS = ("events", "deliveries", "attribution", "reconciliation")


def run(engine, window: Window, which=REPORTS, conversion_events=DEFAULT_CONVERSION_EVENTS):
    """The chosen reports as one JSON-ready dict."""
    out: dict = {"window": window.as_dict()}
    with engine.connect() as conn:
        if "events" in which:
            out["events"] = events_by_day(conn, window)
        if "deliveries" in which:
            out["deliveries"] = deliveries(conn, window)
        if "attribution" in which:
            out["attribution"] = attribution(conn, window, conversion_events)
        if "reconciliation" in which:
            out["reconciliation"] = reconciliation(conn, window)
    return out


def configured_conversion_events(config) -> list[str]:
    """The configured conversion event names: CONVERSION_EVENTS (SST_CONVERSION_EVENTS), else
    [admin] conversion_events, else the default."""
    names = config.get("CONVERSION_EVENTS") or (config.get("ADMIN") or {}).get(
        "conversion_events")
    if isinstance(names, str):
        names = [names]
    return list(names) if names else list(DEFAULT_CONVERSION_EVENTS)
