"""blueprint "admin": the operator dashboard at /admin. Read-only, server-rendered.

Off (404) unless a token is configured: `[admin] token = "env:SST_ADMIN_TOKEN"` in the TOML
file (or SST_ADMIN_TOKEN). Requests authenticate with `Authorization: Bearer <token>` or
HTTP Basic with user "admin" (`[admin] user`) and the token as password.
"""

from __future__ import annotations

import hmac
import json
from datetime import timedelta

from flask import Blueprint, Response, abort, current_app, render_template, request
from sqlalchemy import or_, select

from sst import reports
from sst.clock import iso, parse_relative, utcnow
from sst.config import admin_settings
from sst.errors import ConfigError
from sst.extensions import state as current_state
from sst.identity.hashing import mask_hashes
from sst.models import Delivery, Event, Exchange, ExchangeItem
from sst.ops import charts
from sst.ops.status import delivery_backlog, destination_status, no_destination_note
from sst.rollups import read as rollup_read

bp = Blueprint("admin", __name__, url_prefix="/admin", template_folder="templates")

# Routes take every method so that, while the dashboard is off, a POST answers 404 like a GET
# (not 405, which would tell that /admin exists); once authenticated, only GET and HEAD pass.
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
BODY_SHOWN = 8192  # characters of a request or answer body shown on a page
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")


def admin_credentials(config) -> tuple[str, str] | None:
    """(user, token) when the dashboard is configured and usable, else None."""
    try:
        settings = admin_settings(config)
    except ConfigError:  # create_app refuses it; a config changed later keeps /admin off
        return None
    return (settings.user, settings.token) if settings.token else None


def authorized(user: str, token: str) -> bool:
    """Whether the request carries the admin credentials (Bearer token, or Basic)."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return hmac.compare_digest(header[7:].strip().encode(), token.encode())
    auth = request.authorization
    if auth is None or auth.type != "basic" or auth.password is None:
        return False
    # Both compared, always: the time taken says nothing about which one was wrong.
    ok_user = hmac.compare_digest((auth.username or "").encode(), user.encode())
    ok_token = hmac.compare_digest(auth.password.encode(), token.encode())
    return ok_user and ok_token


@bp.before_request
def _guard():
    creds = admin_credentials(current_app.config)
    if creds is None:
        abort(404)
    if not authorized(*creds):
        return Response("Authentication required.\n", 401, mimetype="text/plain",
                        headers={"WWW-Authenticate": 'Basic realm="sst admin", charset="UTF-8"'})
    if request.method not in ("GET", "HEAD"):
        abort(405, valid_methods=["GET", "HEAD"])  # read-only
    return None


@bp.after_request
def _headers(resp):
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


def _pretty(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return _masked(value[:BODY_SHOWN])
    text = json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)
    text = text if len(text) <= BODY_SHOWN else text[:BODY_SHOWN] + "\n… (cut)"
    return _masked(text)


def _masked(text: str) -> str:
    # Hashed phones and emails are reversible: /admin shows keyed tags, also for rows
    # recorded before the ledger masked them (M5).
    return mask_hashes(text, current_state().ledger_key)


def _age(seconds) -> str | None:
    if seconds is None:
        return None
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _window_arg(name, default):
    value = request.args.get(name, default) or default
    if value is None:
        return None, None
    try:
        return parse_relative(value), None
    except ValueError as exc:
        return None, f"{name}: {exc}"


@bp.route("/", methods=METHODS)
def status():
    """Per destination over a window: requests, outcomes, latency, the last error."""
    since, error = _window_arg("window", "24h")
    if error:
        since = utcnow() - timedelta(hours=24)
    rows = destination_status(current_state(), utcnow() - since)
    chart = charts.bars(
        "Deliveries by destination and state",
        [(r["destination"], {"succeeded": r["succeeded"], "failed": r["failed"],
                             "skipped": r["skipped"], "waiting": r["pending"]}) for r in rows],
        ["succeeded", "failed", "skipped", "waiting"])
    backlog = delivery_backlog(current_state())
    return render_template("admin/status.html", rows=rows, chart=chart, error=error,
                           note=no_destination_note(current_state()),
                           backlog=backlog, oldest=_age(backlog["oldest_pending_age_s"]),
                           window=request.args.get("window", "24h")), 400 if error else 200


@bp.route("/failures", methods=METHODS)
def failures():
    """The latest requests that did not succeed, with the (masked) request and the answer,
    each linked to its event."""
    t, e = Exchange.__table__.c, Event.__table__.c
    destination = request.args.get("destination") or None
    q = (select(Exchange.__table__, e.message_id.label("message_id"))
         .outerjoin(Event.__table__, e.id == t.incoming_id)
         .where(t.outcome != "success").order_by(t.id.desc()).limit(50))
    if destination:
        q = q.where(t.destination == destination)
    with current_state().engine.connect() as conn:
        rows = [_track_view(r) for r in conn.execute(q)]
    return render_template("admin/failures.html", rows=rows, destination=destination,
                           destinations=sorted(current_state().destinations))


def _track_view(r, message_id=None) -> dict:
    return {"id": r.id, "time": iso(r.created_at), "destination": r.destination,
            "attempt": r.attempt, "outcome": r.outcome, "status": r.status,
            "method": r.method, "url": r.url, "duration_ms": r.duration_ms,
            "error": " ".join(x for x in (r.error_class, r.error_message) if x),
            "request_headers": _pretty(r.request_headers), "request_body": _pretty(r.request_body),
            "response_body": _pretty(r.response_body), "event_id": r.incoming_id,
            "message_id": message_id or getattr(r, "message_id", None)}


LOOKUP_LIMIT = 20  # events shown for one userId or anonymousId, newest first


@bp.route("/events", methods=METHODS)
def event_lookup():
    """Events by messageId, userId or anonymousId (any source), newest first, with their
    deliveries and the requests that sent them."""
    query = (request.args.get("q") or request.args.get("message_id") or "").strip()
    found = []
    if query:
        e, d, t, ti = (Event.__table__, Delivery.__table__, Exchange.__table__,
                       ExchangeItem.__table__)
        with current_state().engine.connect() as conn:
            for ev in conn.execute(select(e).where(or_(
                    e.c.message_id == query, e.c.user_id == query,
                    e.c.anonymous_id == query)).order_by(e.c.id.desc()).limit(LOOKUP_LIMIT)):
                dels = conn.execute(select(d).where(d.c.event_id == ev.id)
                                    .order_by(d.c.destination)).all()
                tracks = conn.execute(
                    select(t).where(or_(t.c.id.in_(select(ti.c.track_id)
                                                   .where(ti.c.event_id == ev.id)),
                                        t.c.incoming_id == ev.id))
                    .order_by(t.c.id)).all()
                found.append({"event": ev, "time": iso(ev.event_time),
                              "received": iso(ev.received_at),
                              "message": _pretty(ev.message),
                              "deliveries": dels,
                              "tracks": [_track_view(x, ev.message_id) for x in tracks]})
    return (render_template("admin/event.html", query=query, found=found, limit=LOOKUP_LIMIT),
            404 if query and not found else 200)


@bp.route("/reports", methods=METHODS)
def reports_page():
    """The reports of `sst report`, as charts and tables."""
    since, e1 = _window_arg("since", "30d")
    until, e2 = _window_arg("until", None)
    error = e1 or e2
    source = request.args.get("source") or None
    if error:
        return render_template("admin/reports.html", error=error, args=request.args,
                               sources=_source_names()), 400
    window = reports.Window(since, until or utcnow(), source)
    data = rollup_read.run(current_state().engine, window, conversion_events=reports
                           .configured_conversion_events(current_app.config))
    return render_template("admin/reports.html", data=data, args=request.args,
                           sources=_source_names(), charts=_report_charts(data))


@bp.route("/reconciliation", methods=METHODS)
def reconciliation_page():
    """Per destination and day: events sent, accepted by the platform, rejected (with the
    platform's reasons), and the gap."""
    since, error = _window_arg("since", "7d")
    if error:
        since = utcnow() - timedelta(days=7)
    window = reports.Window(since, utcnow())
    rows = rollup_read.run(current_state().engine, window,
                           ("reconciliation",))["reconciliation"]
    return render_template("admin/reconciliation.html", rows=rows, error=error,
                           since=request.args.get("since", "7d")), 400 if error else 200


def _source_names() -> list[str]:
    return sorted(s.name for s in current_state().sources.values())


def _report_charts(data: dict) -> dict:
    days = sorted({r["day"] for r in data["events"]})
    totals: dict = {}
    for r in data["events"]:
        totals[r["name"]] = totals.get(r["name"], 0) + r["events"]
    top = sorted(totals, key=lambda n: (-totals[n], n))[:6]
    series = {name: [0] * len(days) for name in top}
    if len(totals) > len(top):
        series["other"] = [0] * len(days)
    index = {d: i for i, d in enumerate(days)}
    for r in data["events"]:
        series[r["name"] if r["name"] in top else "other"][index[r["day"]]] += r["events"]
    dels = data["deliveries"]
    a = data["attribution"]

    def platforms(rows):
        return [(r["platform"], {"conversions": r["conversions"]}) for r in rows]

    return {
        "events": charts.columns("Events by day", days, series),
        "deliveries": charts.bars(
            "Deliveries by destination and state",
            [(r["destination"], {s: r[s] for s in ("succeeded", "failed", "skipped", "waiting")})
             for r in dels], ["succeeded", "failed", "skipped", "waiting"]),
        "latency": charts.bars(
            "Request latency percentiles (ms)",
            [(r["destination"], {"p50": r["p50_ms"], "p95": r["p95_ms"], "p99": r["p99_ms"]})
             for r in dels], ["p50", "p95", "p99"], stacked=False, unit=" ms"),
        "first_touch": charts.bars("Conversions by first-touch platform",
                                   platforms(a["first_touch"]), ["conversions"]),
        "last_touch": charts.bars("Conversions by last-touch platform",
                                  platforms(a["last_touch"]), ["conversions"]),
        "cross_device": charts.bars("Conversions credited across devices",
                                    platforms(a["cross_device"]["by_platform"]), ["conversions"]),
        "verified": charts.bars("Verified vs anonymous conversions",
                                [("verified", {"conversions": a["verified"]}),
                                 ("anonymous", {"conversions": a["anonymous"]})],
                                ["conversions"]),
    }
