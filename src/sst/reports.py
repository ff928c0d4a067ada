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

from dataclasses import dataclass
from datetime import datetime

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


def events_by_day(conn, window: Window) -> list[dict]:
    """Events per UTC day and name ("$page", "$identify" ... for calls other than track)."""
    e = events_t.c
    day = func.date(e.event_time).label("day")
    name = case((e.type == "track", e.event),
                else_=literal("$", String()) + e.type).label("name")
    q = (select(day, name, func.count().label("events"),
                func.sum(case((e.is_bot, 1), else_=0)).label("bots"))
         .where(*window.on(e.event_time))
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
    d, t, e = deliveries_t.c, tracks_t.c, events_t.c
    q = (select(d.destination, d.state, func.count())
         .where(*window.on(d.event_time)).group_by(d.destination, d.state))
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
    if window.source:
        outcomes, latency = {}, {}
    else:
        outcomes, latency = _requests(conn, window.on(t.created_at))

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


def _requests(conn, conds) -> tuple[dict, dict]:
    """({destination: {outcome: requests}}, {destination: {"p50_ms": ...}}) from one GROUP BY:
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
    return outcomes, {dest: _percentiles(buckets) for dest, buckets in hist.items()}


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


def _conversions(window: Window, names) -> select:
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
                person.label("person"))
         .where(*_conversion_filter(window, names)))
    return q


def _conversion_filter(window: Window, names) -> list:
    e = events_t.c
    conds = [e.type == "track", e.event.in_(list(names)), e.is_bot == false(),
             *window.on(e.event_time)]
    if window.source:
        conds.append(e.source == window.source)
    return conds


def _ranked(counts: dict, key: str) -> list[dict]:
    return [{key: k, "conversions": n}
            for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))]


def attribution(conn, window: Window, conversion_events=DEFAULT_CONVERSION_EVENTS) -> dict:
    """Conversions by first/last-touch platform and UTM, verified vs anonymous, and the
    share credited across devices through a verified phone."""
    names = list(conversion_events)
    conv = _conversions(window, names).subquery("conv")
    first_p = platform_of(conv.c.first_param).label("first_platform")
    last_p = platform_of(conv.c.last_param).label("last_platform")
    verified = case((conv.c.person.is_not(None), 1), else_=0).label("verified")
    cube = conn.execute(select(conv.c.name, first_p, last_p, verified, func.count())
                        .group_by(conv.c.name, first_p, last_p, verified)).all()
    total = by_verified = 0
    by_event, by_first, by_last = {}, {}, {}
    for name, first, last, ver, n in cube:
        n = int(n)
        total += n
        by_verified += n if ver else 0
        by_event[name] = by_event.get(name, 0) + n
        by_first[first] = by_first.get(first, 0) + n
        by_last[last] = by_last.get(last, 0) + n

    utm = {}
    ut = utm_touches_t
    for which, order in (("utm_first", (ut.c.at, ut.c.id)),
                         ("utm_last", (ut.c.at.desc(), ut.c.id.desc()))):
        # The device's first / last UTM touch at or before the conversion: never one after.
        touch_id = (select(ut.c.id).where(ut.c.anonymous_id == conv.c.anonymous_id,
                                          ut.c.at <= conv.c.event_time)
                    .order_by(*order).limit(1).scalar_subquery())
        picked = select(conv.c.id, touch_id.label("touch_id")).subquery(which)
        t = ut.alias(f"{which}_t")
        src, camp = t.c.utm_source.label("utm_source"), t.c.utm_campaign.label("utm_campaign")
        rows = conn.execute(
            select(src, camp, func.count().label("n"))
            .select_from(outerjoin(picked, t, t.c.id == picked.c.touch_id))
            .group_by(src, camp)).all()
        utm[which] = [{"utm_source": s, "utm_campaign": c, "conversions": int(n)}
                      for s, c, n in sorted(rows, key=lambda r: (-r.n, r[0] or "", r[1] or ""))]

    cross_by, cross_total = _cross_device(conn, window, names)
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
                         "by_platform": _ranked(cross_by, "platform")},
    }


def _verified_conversions(window: Window, names) -> select:
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
         .where(*_conversion_filter(window, names))
         .group_by(e.id, e.anonymous_id, e.event_time)
         .having(person.is_not(None)))
    return q


def _cross_device(conn, window: Window, names) -> tuple[dict, int]:
    """({platform: conversions credited through another device of the Person}, conversions
    with at least one such platform)."""
    conv = _verified_conversions(window, names).subquery("vconv")
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
    by_platform = {p: int(n) for p, n in conn.execute(
        select(platform.label("platform"), func.count(distinct(conv.c.id)))
        .select_from(joined).where(~own_has).group_by(platform))}
    total = conn.execute(select(func.count(distinct(conv.c.id))).select_from(joined)
                         .where(~own_has)).scalar() or 0
    return by_platform, int(total)


# --- reconciliation -------------------------------------------------------------------------

MAX_REASONS = 5  # distinct platform reasons shown per destination and day


def reconciliation(conn, window: Window) -> list[dict]:
    """Per destination and UTC day of sending: events the platforms gave a final answer for
    (sent), how many they accepted and rejected, and the gap between (unconfirmed: a platform
    that answers 2xx without judging, or counted fewer than it was sent). The window is on
    the time of the request, not of the event: what a platform answered that day.
    """
    t = tracks_t.c
    day = func.date(t.created_at).label("day")
    conds = [*window.on(t.created_at), t.events_sent > 0]
    rows = conn.execute(
        select(t.destination, day, func.sum(t.events_sent).label("sent"),
               func.sum(func.coalesce(t.events_accepted, 0)).label("accepted"),
               func.sum(func.coalesce(t.events_rejected, 0)).label("rejected"))
        .where(*conds).group_by(t.destination, day).order_by(t.destination, day)).all()
    reasons: dict = {}
    for dest, d, found in conn.execute(
            select(t.destination, day, t.platform_reasons)
            .where(*conds, t.platform_reasons.is_not(None))
            .order_by(t.created_at.desc()).limit(2000)):
        seen = reasons.setdefault((dest, str(d)), [])
        for reason in found or []:
            if reason not in seen and len(seen) < MAX_REASONS:
                seen.append(reason)
    out = []
    for r in rows:
        sent, accepted, rejected = int(r.sent), int(r.accepted), int(r.rejected)
        out.append({
            "destination": r.destination, "day": str(r.day), "sent": sent,
            "accepted": accepted, "rejected": rejected,
            "unconfirmed": max(sent - accepted - rejected, 0),
            "acceptance": round(accepted / sent, 4) if sent else None,
            "reasons": reasons.get((r.destination, str(r.day)), []),
        })
    return out


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
