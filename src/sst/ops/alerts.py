"""Alert hook: post to a webhook (Slack-compatible) when deliveries go wrong.

Three checks, from the database, so every worker sees the same thing:

- failure rate, per destination: failed / (failed + succeeded) among the deliveries that
  finished in the last `window_seconds`, once at least `min_deliveries` finished;
- queue age: how long the oldest due delivery (pending or queued, its next attempt in the
  past) has waited. Paused destinations hold their deliveries on purpose and are left out;
- acceptance, per destination: of the events a platform gave a final answer for in the last
  `window_seconds`, the share it says it accepted (Exchange reconciliation columns), once at
  least `min_deliveries` were sent, below `acceptance_below`.

Each alert (a key such as ``failure_rate:meta``) is posted at most once per window, however
many workers run the check: the last time it was sent is kept in ``alert_state`` and taken with
an atomic insert-or-conditional-update. A post that fails gives the slot back, so the next
check tries again. Configuration, TOML::

    [alerts]
    webhook_url = "env:SST_ALERT_WEBHOOK"  # no webhook_url: no alerts
    failure_rate = 0.5
    min_deliveries = 10
    queue_age_seconds = 900
    window_seconds = 900
    acceptance_below = 0.9
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from marshmallow import RAISE, Schema, ValidationError, fields, validate
from sqlalchemy import and_, delete, func, select, update

from sst.clock import from_db, to_db, utcnow
from sst.config import resolve_env_refs
from sst.delivery.outbox import paused_destinations
from sst.errors import ConfigError
from sst.models import AlertState, Delivery, Exchange

logger = logging.getLogger(__name__)

POST_TIMEOUT = 5.0  # seconds: the check runs in the worker's relay loop
WAITING = ("pending", "queued")


alert_state_t = AlertState.__table__
deliveries_t = Delivery.__table__
tracks_t = Exchange.__table__


class AlertsSchema(Schema):
    class Meta:
        unknown = RAISE

    webhook_url = fields.String(load_default=None, allow_none=True)
    failure_rate = fields.Float(load_default=0.5, validate=validate.Range(min=0, max=1))
    min_deliveries = fields.Integer(load_default=10, validate=validate.Range(min=1))
    queue_age_seconds = fields.Float(load_default=900, validate=validate.Range(min=1))
    window_seconds = fields.Float(load_default=900, validate=validate.Range(min=1))
    acceptance_below = fields.Float(load_default=0.9, validate=validate.Range(min=0, max=1))


@dataclass(frozen=True)
class AlertSettings:
    webhook_url: str
    failure_rate: float
    min_deliveries: int
    queue_age: timedelta
    window: timedelta
    acceptance_below: float = 0.9


def alert_settings(config) -> AlertSettings | None:
    """The [alerts] section, validated and env-resolved; None when no webhook is set."""
    raw = config.get("ALERTS") or {}
    where = "[alerts]"
    try:
        doc = AlertsSchema().load(resolve_env_refs(raw, where))
    except ValidationError as exc:
        key, msgs = next(iter(exc.messages.items()))
        text = msgs[0] if isinstance(msgs, list) else msgs
        raise ConfigError(f"{where}: key '{key}': "
                          f"{'unknown key' if text == 'Unknown field.' else text}") from None
    if not doc["webhook_url"]:
        return None
    return AlertSettings(doc["webhook_url"], doc["failure_rate"], doc["min_deliveries"],
                         timedelta(seconds=doc["queue_age_seconds"]),
                         timedelta(seconds=doc["window_seconds"]), doc["acceptance_below"])


# --- what the database says (metrics.py reads the same) ------------------------------------


def finished_counts(conn, since: datetime, states=("succeeded", "failed")) -> dict:
    """{destination: {state: n}} for deliveries that reached these states since `since`."""
    d = deliveries_t.c
    out: dict = {}
    for dest, state, n in conn.execute(
            select(d.destination, d.state, func.count())
            .where(d.state.in_(states), d.updated_at >= to_db(since))
            .group_by(d.destination, d.state)).all():
        out.setdefault(dest, {})[state] = n
    return out


def oldest_waiting(conn, now: datetime, paused=()) -> float | None:
    """Seconds the oldest due delivery has waited (None: nothing is waiting)."""
    d = deliveries_t.c
    oldest = None
    for state in WAITING:  # one MIN per state: each is a single probe of (state, next_attempt_at)
        q = select(func.min(d.next_attempt_at)).where(d.state == state,
                                                      d.next_attempt_at <= to_db(now))
        if paused:
            q = q.where(d.destination.not_in(list(paused)))
        value = conn.execute(q).scalar()
        if value is not None and (oldest is None or value < oldest):
            oldest = value
    if oldest is None:
        return None
    return max(0.0, (now - from_db(oldest)).total_seconds())


def _waiting_count(conn, now, paused) -> int:
    d = deliveries_t.c
    q = select(func.count()).where(d.state.in_(WAITING), d.next_attempt_at <= to_db(now))
    if paused:
        q = q.where(d.destination.not_in(list(paused)))
    return conn.execute(q).scalar() or 0


def acceptance(conn, since: datetime) -> list[tuple[str, int, int]]:
    """(destination, events sent, events accepted) for requests answered since `since`,
    counting only platforms that confirm acceptance (GA4's 2xx says nothing)."""
    t = tracks_t.c
    return [(dest, int(sent), int(accepted)) for dest, sent, accepted in conn.execute(
        select(t.destination, func.sum(t.events_sent), func.sum(t.events_accepted))
        .where(t.created_at >= to_db(since), t.events_sent > 0,
               t.events_accepted.is_not(None))
        .group_by(t.destination).order_by(t.destination))]


def _last_failure_code(conn, destination, since) -> str | None:
    d = deliveries_t.c
    return conn.execute(select(d.last_code).where(
        d.state == "failed", d.destination == destination, d.updated_at >= to_db(since))
        .order_by(d.updated_at.desc()).limit(1)).scalar()


def _minutes(td: timedelta | float) -> str:
    seconds = td.total_seconds() if isinstance(td, timedelta) else td
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def evaluate(conn, settings: AlertSettings, now: datetime) -> list[dict]:
    """The alerts whose threshold is crossed now. Pure reads."""
    since = now - settings.window
    found = []
    for dest, counts in sorted(finished_counts(conn, since).items()):
        failed, total = counts.get("failed", 0), sum(counts.values())
        if total < settings.min_deliveries or failed / total < settings.failure_rate:
            continue
        code = _last_failure_code(conn, dest, since)
        found.append({
            "key": f"failure_rate:{dest}", "kind": "failure_rate", "destination": dest,
            "value": failed / total, "threshold": settings.failure_rate,
            "text": f"sst: destination {dest}: {failed} of {total} deliveries failed "
                    f"({failed / total:.0%}) in the last {_minutes(settings.window)}"
                    + (f"; last error code {code}" if code else "")
                    + ". See `sst status`."})
    for dest, sent, accepted in acceptance(conn, since):
        if sent < settings.min_deliveries or accepted / sent >= settings.acceptance_below:
            continue
        found.append({
            "key": f"acceptance:{dest}", "kind": "acceptance", "destination": dest,
            "value": accepted / sent, "threshold": settings.acceptance_below,
            "text": f"sst: destination {dest}: the platform accepted {accepted} of {sent} "
                    f"events ({accepted / sent:.0%}) in the last {_minutes(settings.window)}. "
                    "See `sst report reconciliation --since 1d`."})
    paused = paused_destinations(conn)
    age = oldest_waiting(conn, now, paused)
    if age is not None and age >= settings.queue_age.total_seconds():
        waiting = _waiting_count(conn, now, paused)
        found.append({
            "key": "queue_age", "kind": "queue_age", "destination": None, "value": age,
            "threshold": settings.queue_age.total_seconds(),
            "text": f"sst: the oldest waiting delivery has waited {_minutes(age)} "
                    f"(threshold {_minutes(settings.queue_age)}); {waiting} deliveries are "
                    "due. Are the workers and Redis up? See `sst queue stats`."})
    return found


# --- once per window -----------------------------------------------------------------------


def _claim(engine, key: str, now: datetime, window: timedelta):
    """Take the right to send `key` now. Returns the previous send time to give back on
    failure (None for a first send), or False when it was sent within the window."""
    from sst.models import insert_ignore

    t = alert_state_t.c
    with engine.begin() as conn:
        previous = conn.execute(select(t.last_sent_at).where(t.key == key)).scalar()
        if previous is None:
            # Two workers racing on a first send: the primary key lets one insert win.
            if conn.execute(insert_ignore(alert_state_t),
                            {"key": key, "last_sent_at": to_db(now)}).rowcount == 1:
                return None
            previous = conn.execute(select(t.last_sent_at).where(t.key == key)).scalar()
        # Compare-and-set: of two workers updating the same row, the second one re-reads it
        # after the first commits and matches nothing.
        res = conn.execute(update(alert_state_t)
                           .where(t.key == key, t.last_sent_at <= to_db(now - window))
                           .values(last_sent_at=to_db(now)))
        return from_db(previous) if res.rowcount == 1 else False


def _give_back(engine, key: str, now: datetime, previous) -> None:
    t = alert_state_t.c
    mine = and_(t.key == key, t.last_sent_at == to_db(now))
    with engine.begin() as conn:
        if previous is None:
            conn.execute(delete(alert_state_t).where(mine))
        else:
            conn.execute(update(alert_state_t).where(mine)
                         .values(last_sent_at=to_db(previous)))


def _default_post(url, json, timeout):
    import requests

    resp = requests.post(url, json=json, timeout=timeout)
    resp.raise_for_status()
    return resp


def check_alerts(state, now: datetime | None = None, post=None, *, dry_run: bool = False):
    """Evaluate the alerts and post the ones not sent within the window.

    Args:
        state: the app's SstState.
        now: the time to evaluate at (tests); default the current time.
        post: `post(url, json=..., timeout=...)` raising on failure; default requests.post.
        dry_run: evaluate only: nothing is posted or recorded.

    Returns:
        The alerts crossing their threshold, each a dict with key, kind, destination, value,
        threshold, text, and sent (posted by this call).
    """
    settings = alert_settings(state.app.config)
    if settings is None:
        return []
    now = now or utcnow()
    engine = state.engine
    with engine.connect() as conn:
        found = evaluate(conn, settings, now)
    for alert in found:
        alert["sent"] = False
    if dry_run or not found:
        return found
    claimed = []
    for alert in found:
        previous = _claim(engine, alert["key"], now, settings.window)
        if previous is not False:
            claimed.append((alert, previous))
    if not claimed:
        return found
    # One post for all of them: a dead webhook costs the relay loop one timeout, not many.
    text = "\n".join(alert["text"] for alert, _ in claimed)
    try:
        (post or _default_post)(settings.webhook_url, json={"text": text}, timeout=POST_TIMEOUT)
    except Exception as exc:  # any failure: give the slots back so the next check retries
        logger.warning("alert webhook failed (%s); will retry at the next check",
                       exc.__class__.__name__)
        for alert, previous in claimed:
            _give_back(engine, alert["key"], now, previous)
        return found
    for alert, _ in claimed:
        alert["sent"] = True
        logger.warning("alert sent: %s", alert["key"], extra={"sst": {
            "kind": "alert.sent", "alert": alert["key"], "value": alert["value"]}})
    return found


def run_alerts(app) -> list[dict]:
    """For the worker loop: check and post; never raises (the loop must go on)."""
    try:
        with app.app_context():
            return check_alerts(app.extensions["sst"])
    except Exception:
        logger.exception("alert check failed")
        return []
