"""Send claimed deliveries through their connector and record every request as a Exchange.

Exactly one successful request per delivery when nothing crashes: a worker first claims
rows (a compare-and-set on state), so a repeated job, a sweep or a second worker finds
nothing left to send. Across a crash the same event id is sent again (at least once).
"""

from __future__ import annotations

import functools
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, delete, insert, or_, select, text, update

from sst.clock import from_db, to_db, utcnow
from sst.connectors.base import PERMANENT, RETRYABLE, SKIPPED, SUCCESS, UNSENT, Outcome
from sst.delivery.event_data import build_event_data
from sst.logs import log_delivery
from sst.models import Delivery, DestinationControl, Event, Exchange, ExchangeItem, upsert

logger = logging.getLogger(__name__)

deliveries_t = Delivery.__table__
tracks_t = Exchange.__table__
items_t = ExchangeItem.__table__
CLAIMABLE = ("pending", "queued")
SENDING_MARGIN = timedelta(seconds=60)  # a claim outlives the request timeout by this much
LEASE_RENEW = 30.0  # seconds between renewals of a running job's hold on its waiting rows
# One-event-per-request connectors claim and record this many deliveries at a time: the
# claim, the event reads and the ledger writes are then a few statements per group instead
# of a dozen per delivery. The requests go out one by one; none starts later than
# SEND_WINDOW after the claim, so each ends before the claim's deadline (timeout + margin).
SEND_GROUP = 100
SEND_WINDOW = SENDING_MARGIN - timedelta(seconds=10)
RETRY_WINDOW = timedelta(hours=1)  # the last retry comes no sooner than this after the first


def retry_delay(attempt: int, backoff: float, retry_after: float | None = None,
                rng=random.random) -> float:
    """Seconds before the next try: backoff doubling per attempt, +-20 % jitter, and never
    sooner than the platform's Retry-After."""
    delay = backoff * (2 ** max(attempt - 1, 0)) * (0.8 + 0.4 * rng())
    if retry_after:
        delay = max(delay, retry_after)
    return delay


def next_state(outcome: Outcome, attempts: int, retry_max: int, backoff: float,
               now: datetime, first_try: datetime) -> tuple[str, datetime | None]:
    """(new state, next attempt time) after a try. Pure."""
    if outcome.kind == SUCCESS:
        return "succeeded", None
    if outcome.kind == SKIPPED:
        return "skipped", None
    if outcome.kind == RETRYABLE and attempts < retry_max:
        when = now + timedelta(seconds=retry_delay(attempts, backoff, outcome.retry_after))
        if attempts == retry_max - 1:
            # A platform outage shorter than an hour is survived whatever the backoff.
            when = max(when, first_try + RETRY_WINDOW)
        return "pending", when
    return "failed", None




@dataclass
class BatchResult:
    claimed: int = 0
    counts: dict = field(default_factory=dict)

    def add(self, state: str) -> None:
        self.counts[state] = self.counts.get(state, 0) + 1


def is_paused(conn, destination: str) -> bool:
    row = conn.execute(select(DestinationControl.paused)
                       .where(DestinationControl.name == destination)).first()
    return bool(row and row[0])


def process(state, destination: str, delivery_ids: list[int]) -> BatchResult:
    """Send the given deliveries of one destination (those still claimable)."""
    result = BatchResult()
    dest = state.destinations.get(destination)
    engine = state.engine
    if dest is None:
        _finish_unknown(engine, destination, delivery_ids)
        return result
    with engine.connect() as conn:
        if is_paused(conn, destination):
            _release(engine, delivery_ids)
            return result
    connector = state.connector(dest)
    # Claim in groups of one platform request, or of SEND_GROUP deliveries where requests
    # carry fewer (one-event connectors; GA4, whose requests carry one visitor's events),
    # just before sending; SEND_WINDOW keeps every request inside the claim's deadline.
    group = max(SEND_GROUP, min(connector.max_batch, 500))
    leased_at = None
    for start in range(0, len(delivery_ids), group):
        chunk = delivery_ids[start:start + group]
        if start + group < len(delivery_ids) and (
                leased_at is None or time.monotonic() - leased_at > LEASE_RENEW):
            # The rows still waiting in this job are held by it, like a claim: if the worker
            # dies, the RQ job looks "started" for long after, but the hold lapses soon.
            leased_at = _lease(engine, delivery_ids[start + group:], dest.timeout)
        claimed = _claim(engine, chunk, dest.timeout)
        if not claimed:
            continue
        result.claimed += len(claimed)
        _send_group(state, dest, connector, claimed, result)
    return result


def _lease(engine, ids, timeout) -> float:
    """Hold a running job's waiting rows until timeout + margin from now (`sweep` reads it)."""
    d = deliveries_t.c
    until = utcnow() + timedelta(seconds=timeout) + SENDING_MARGIN
    with engine.begin() as conn:
        conn.execute(update(deliveries_t).where(d.id.in_(ids), d.state == "queued")
                     .values(locked_until=to_db(until)))
    return time.monotonic()


def _claim(engine, ids, timeout) -> list:
    token = uuid.uuid4().hex
    now = utcnow()
    d = deliveries_t.c
    with engine.begin() as conn:
        conn.execute(
            update(deliveries_t)
            # A pending row only when due: a stale or duplicate job must not send a retry
            # before its backoff (or Retry-After) is over.
            .where(d.id.in_(ids), or_(d.state == "queued",
                                      and_(d.state == "pending",
                                           d.next_attempt_at <= to_db(now))))
            .values(state="sending", claim=token, attempts=d.attempts + 1,
                    locked_until=to_db(now + timedelta(seconds=timeout) + SENDING_MARGIN),
                    updated_at=to_db(now))
        )
        rows = conn.execute(
            select(deliveries_t, Event.__table__.c.message_id.label("_message_id"))
            .join(Event.__table__, Event.__table__.c.id == d.event_id)
            .where(d.claim == token).order_by(d.id)
        ).mappings().all()
    return [dict(r) for r in rows]


def _send_group(state, dest, connector, claimed, result) -> None:
    """Send claimed deliveries through `connector.send` (the loop the connector test table
    runs too), then record every request and the new states."""
    now = utcnow()
    send_by = time.monotonic() + SEND_WINDOW.total_seconds()
    events = build_event_data(state.engine, claimed, state.phones)  # delivery id -> EventData
    outcomes: dict[int, Outcome] = {}
    exchanges = []  # (HttpExchange, [delivery ids])
    found = []
    for row in claimed:
        if row["id"] in events:
            found.append(row)
        else:
            outcomes[row["id"]] = Outcome(PERMANENT, error="event not found", code="internal")
    by_id = {r["id"]: r for r in claimed}
    unsent_tracks: list[int] = []
    for round_ in distinct_message_ids(found, events):
        id_of = {events[r["id"]].message_id: r["id"] for r in round_}
        before_send = functools.partial(_record_in_flight, state.engine, dest, by_id, id_of)
        report = connector.send([events[r["id"]] for r in round_], now=now, send_by=send_by,
                                before_send=before_send)
        for mid, outcome in report.outcomes.items():
            outcomes[id_of[mid]] = outcome
        exchanges += [(x, [id_of[m] for m in x.message_ids if m in id_of])
                      for x in report.exchanges]
        unsent_tracks += report.unsent_track_ids
    _record(state.engine, dest, connector, claimed, outcomes, exchanges, result, unsent_tracks)


IN_FLIGHT = "sending"  # outcome of a Exchange whose answer is not recorded yet


def _record_in_flight(engine, dest, by_id, id_of, pairs) -> list[int | None]:
    """Write the Exchanges of requests before they go out (L3), [(request, masked exchange
    without answer)] in one transaction: a worker killed while the platform answers leaves
    the request in the ledger (outcome "sending"; sweep marks it "unknown"), not a request
    that happened with no trace. _record fills in the answers."""
    rows, carried = [], []
    for req, exch in pairs:
        ids = [id_of[m] for m in req.message_ids if m in id_of]
        if not ids:
            continue
        first = by_id[ids[0]]
        rows.append({"delivery_id": first["id"], "incoming_id": first["event_id"],
                     "destination": dest.name, "connector": dest.connector,
                     "attempt": first["attempts"], "outcome": IN_FLIGHT, "method": exch.method,
                     "url": exch.url, "request_headers": exch.request_headers,
                     "request_body": exch.request_body, "status": None,
                     "response_headers": None, "response_body": None, "error_class": None,
                     "error_message": None, "duration_ms": None,
                     "created_at": to_db(exch.started_at)})
        carried.append((req, ids))
    if not rows:
        return [None] * len(pairs)
    with engine.begin() as conn:
        track_ids = _insert_tracks(conn, rows)
        conn.execute(insert(items_t), [
            {"track_id": track_id, "delivery_id": i, "event_id": by_id[i]["event_id"]}
            for track_id, (_, ids) in zip(track_ids, carried, strict=True) for i in ids])
    id_of_req = {id(req): t for t, (req, _) in zip(track_ids, carried, strict=True)}
    return [id_of_req.get(id(req)) for req, _ in pairs]


def distinct_message_ids(rows: list[dict], events: dict) -> list[list[dict]]:
    """Split rows into rounds in which no message id repeats: a platform takes the message
    id as its event id, and two sources may send the same one. Order is kept."""
    rounds: list[list[dict]] = []
    seen: list[set] = []
    for row in rows:
        mid = events[row["id"]].message_id
        for round_, mids in zip(rounds, seen, strict=True):
            if mid not in mids:
                round_.append(row)
                mids.add(mid)
                break
        else:
            rounds.append([row])
            seen.append({mid})
    return rounds


def reconciliation(exch, outcomes: list[Outcome], confirms_acceptance: bool) -> dict:
    """The Exchange's reconciliation columns: what the platform did with the request's events.

    Its own count where its answer gives one (Meta's events_received), else the per-event
    outcomes: successes count as accepted where a success means acceptance, refusals as
    rejected. Only final answers count as sent: an event whose request will be retried is
    counted by the attempt that settles it, and a request without an answer (auth, network)
    carried nothing to the platform.
    """
    ack = exch.acknowledgement
    final = [o for o in outcomes if o.kind in (SUCCESS, PERMANENT)]
    sent = len(final) if exch.status is not None else 0
    accepted = ack.accepted if ack and ack.accepted is not None else (
        sum(o.kind == SUCCESS for o in final) if confirms_acceptance else None)
    rejected = ack.rejected if ack and ack.rejected is not None else sum(
        o.kind == PERMANENT for o in final)
    # The platform's own words when its answer gives them (the per-event errors repeat them
    # with our prefixes), else what classification said about each refused event.
    reasons = list(ack.reasons) if ack and ack.reasons and final else sorted(
        {(o.error or o.code or "")[:300] for o in outcomes
         if o.kind == PERMANENT and (o.error or o.code)})
    return {"events_sent": sent, "events_accepted": accepted if sent else 0,
            "events_rejected": rejected if sent else 0,
            "platform_request_id": ack.request_id[:255] if ack and ack.request_id else None,
            "platform_reasons": reasons[:10] or None}


def _record(engine, dest, connector, claimed, outcomes, exchanges, result,
            unsent_tracks=()) -> None:
    """Tracks and new delivery states in one transaction: one multi-row insert for the
    tracks, one for their items, one multi-row upsert for the answers of the tracks written
    before their requests went out, one UPDATE per distinct new state."""
    now = utcnow()
    by_id = {r["id"]: r for r in claimed}
    d = deliveries_t.c
    tracks = []
    for exch, ids in exchanges:
        first = by_id[ids[0]] if ids else None
        outcome = outcomes.get(ids[0]) if ids else None
        tracks.append({
            **reconciliation(exch, [outcomes[i] for i in ids if i in outcomes],
                             connector.confirms_acceptance),
            "delivery_id": first["id"] if first else None,
            "incoming_id": first["event_id"] if first else None,
            "destination": dest.name, "connector": dest.connector,
            "attempt": first["attempts"] if first else 0,
            "outcome": outcome.kind if outcome else "auth",
            "method": exch.method, "url": exch.url,
            "request_headers": exch.request_headers, "request_body": exch.request_body,
            "status": exch.status, "response_headers": exch.response_headers,
            "response_body": exch.response_body, "error_class": exch.error_class,
            "error_message": exch.error_message, "duration_ms": exch.duration_ms,
            "created_at": to_db(exch.started_at),
        })
    # The HTTP status of the request that carried each delivery (None: no answer came back).
    status_of = {i: exch.status for exch, ids in exchanges for i in ids}
    changes: dict = {}  # (claim, new values) -> delivery ids
    for row in claimed:
        outcome = outcomes[row["id"]]
        if outcome.code == UNSENT:
            values = {"state": "pending", "claim": None, "locked_until": None, "job_id": None,
                      "next_attempt_at": to_db(now), "attempts": row["attempts"] - 1,
                      "updated_at": to_db(now)}
            changes.setdefault((row["claim"], tuple(values.items())), []).append(row["id"])
            result.add("pending")
            continue
        tries = row["attempts"] - (row.get("retry_base") or 0)  # since the last replay
        new_state, when = next_state(outcome, tries, dest.retry_max,
                                     dest.retry_backoff, now, from_db(row["created_at"]))
        values = {"state": new_state, "claim": None, "locked_until": None,
                  "updated_at": to_db(now), "last_code": outcome.code,
                  "last_status": status_of.get(row["id"]),
                  "last_error": (outcome.error or None) and outcome.error[:4000]}
        if new_state == "succeeded":
            values.update(sent_at=to_db(now), reason=None)
        elif new_state == "pending":
            # Say what went wrong and how many tries are left: an operator reading a pending
            # row an hour before its last try must see it is failing, not waiting.
            values.update(next_attempt_at=to_db(when), reason=(
                f"retrying: attempt {tries} of {dest.retry_max} failed: "
                f"{outcome.error or outcome.code or 'error'}")[:255])
        else:
            values["reason"] = (outcome.error or new_state)[:255]
        changes.setdefault((row["claim"], tuple(values.items())), []).append(row["id"])
        result.add(new_state)
        # One structured line per outcome, for log-based alerting (ids only).
        log_delivery(row["id"], dest.name, new_state, row["attempts"],
                     outcome.code or outcome.kind, row.get("_message_id"))
    in_flight = [(exch.track_id, row) for (exch, _), row in zip(exchanges, tracks, strict=True)
                 if exch.track_id is not None]
    fresh = [(pair, row) for pair, row in zip(exchanges, tracks, strict=True)
             if pair[0].track_id is None]
    with engine.begin() as conn:
        track_ids = _insert_tracks(conn, [row for _, row in fresh])
        items = [{"track_id": track_id, "delivery_id": i, "event_id": by_id[i]["event_id"]}
                 for track_id, ((_, ids), _) in zip(track_ids, fresh, strict=True) for i in ids]
        if items:
            conn.execute(insert(items_t), items)
        if in_flight:  # written before the request went out: now with the answer (the
            # request body is already there and unchanged: not sent to the database again)
            _update_tracks(conn, [{**{k: v for k, v in row.items() if k != "request_body"},
                                   "id": track_id} for track_id, row in in_flight])
        if unsent_tracks:  # recorded ahead, never sent: no request happened
            conn.execute(delete(items_t).where(items_t.c.track_id.in_(unsent_tracks)))
            conn.execute(delete(tracks_t).where(tracks_t.c.id.in_(unsent_tracks)))
        for (claim, values), ids in changes.items():
            conn.execute(update(deliveries_t).where(d.id.in_(ids), d.claim == claim)
                         .values(**dict(values)))


def _insert_tracks(conn, rows: list[dict]) -> list[int]:
    """Insert Exchange rows, return their ids in order (one statement where RETURNING exists)."""
    if not rows:
        return []
    if conn.dialect.insert_returning and len(rows) > 1:
        params = {f"{k}_{i}": v for i, row in enumerate(rows) for k, v in row.items()}
        stmt = _multi_insert(conn.dialect.identifier_preparer, len(rows), tuple(rows[0]))
        # Auto-increment ids grow in VALUES order within one statement.
        ids = sorted(conn.execute(stmt, params).scalars())
        if len(ids) != len(rows):
            raise RuntimeError("INSERT ... RETURNING gave fewer ids than rows")
        return ids
    return [conn.execute(insert(tracks_t), row).inserted_primary_key[0] for row in rows]


@functools.lru_cache(maxsize=128)
def _multi_insert(preparer, n: int, columns: tuple):
    """INSERT INTO tracks (...) VALUES (...) x n RETURNING id, as a typed text() statement:
    SQLAlchemy caches its compiled form, which it does not for insert().values(list)."""
    c = tracks_t.c
    names = ", ".join(preparer.quote(k) for k in columns)
    rows = ", ".join("(" + ", ".join(f":{k}_{i}" for k in columns) + ")" for i in range(n))
    sql = (f"INSERT INTO {preparer.quote(tracks_t.name)} ({names}) VALUES {rows} "
           f"RETURNING {preparer.quote('id')}")
    return text(sql).bindparams(
        *[bindparam(f"{k}_{i}", type_=c[k].type) for i in range(n) for k in columns]
    ).columns(c.id)


def _update_tracks(conn, rows: list[dict]) -> None:
    """Overwrite these columns of existing Exchange rows (by id) in one statement: a
    multi-row upsert that only ever meets existing ids; the columns left out keep their
    values."""
    conn.execute(upsert(conn.dialect.name, tracks_t, "id",
                        [k for k in rows[0] if k != "id"]), rows)


def _release(engine, ids) -> None:
    """A paused destination: hand the rows back, untouched, as pending."""
    d = deliveries_t.c
    with engine.begin() as conn:
        conn.execute(update(deliveries_t).where(d.id.in_(ids), d.state.in_(CLAIMABLE))
                     .values(state="pending", job_id=None, locked_until=None))


def _finish_unknown(engine, destination, ids) -> None:
    d = deliveries_t.c
    with engine.begin() as conn:
        conn.execute(update(deliveries_t).where(d.id.in_(ids), d.state.in_(CLAIMABLE))
                     .values(state="skipped", reason=f"destination {destination!r} is no "
                             "longer configured", updated_at=to_db(utcnow())))
