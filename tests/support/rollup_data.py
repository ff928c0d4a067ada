"""Generated history for the rollup tests: random events, visitors' click ids and UTM
touches, Persons and links, deliveries in every state and requests, inserted the way ingest,
the relay and the sender leave them; then the changes that happen after a roll-up (late
events with old times, state changes, links made after a conversion, answers to requests
in flight)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sqlalchemy import func, insert, select, update

from sst.identity.clicks import CLICK_ID_PLATFORM
from sst.models import ClickId, Delivery, Event, Exchange, ExchangeItem, Link, Person, UtmTouch

START = datetime(2026, 11, 1)
DAYS = 6
PARAMS = sorted(CLICK_ID_PLATFORM)[:4] + ["own_param"]
NAMES = ["Order Completed", "Signed Up", "Add To Cart", None]
DESTS = ["meta", "hook"]
STATES = ["succeeded", "failed", "skipped", "pending", "queued", "sending"]
OUTCOMES = ["success", "retryable", "permanent", "sending"]
REASONS = ["bad email", "too old", "dup", "no match", "rate", "x", "y"]


class History:
    def __init__(self, engine, seed: int = 7):
        self.engine = engine
        self.rng = random.Random(seed)
        self.devices = [f"d{i}" for i in range(40)]

    def _max(self, conn, col) -> int:
        return int(conn.execute(select(func.max(col))).scalar() or 0)

    def at(self, day_lo=0, day_hi=DAYS):
        return START + timedelta(seconds=self.rng.uniform(day_lo * 86400, day_hi * 86400))

    def identities(self, n_links=12, n_persons=4) -> None:
        rng = self.rng
        with self.engine.begin() as conn:
            first = self._max(conn, Person.id) + 1
            persons = [f"p{first + i}" for i in range(n_persons)]
            conn.execute(insert(Person.__table__), [
                {"user_id": u, "phone_key": f"k-{u}", "phone_enc": "x", "country": "US",
                 "created_at": START, "verified_at": START} for u in persons])
            links = set()
            while len(links) < n_links:
                links.add((rng.choice(self.devices), rng.choice(["person", "user_id",
                                                                 "anonymous_id"]),
                           rng.choice(persons + ["u-not-a-person"])))
            have = set(conn.execute(select(Link.anonymous_id, Link.kind, Link.value)).all())
            new = [{"anonymous_id": a, "kind": k, "value": v, "created_at": START}
                   for a, k, v in sorted(links - have)]
            if new:
                conn.execute(insert(Link.__table__), new)

    def events(self, n: int, day_lo=0, day_hi=DAYS) -> None:
        """n events with their click ids, UTM touches, deliveries, requests."""
        rng = self.rng
        with self.engine.begin() as conn:
            eid = self._max(conn, Event.id)
            did = self._max(conn, Delivery.id)
            tid = self._max(conn, Exchange.id)
            persons = list(conn.execute(select(Person.user_id)).scalars())
            events, dels, tracks, items = [], [], [], []
            for _ in range(n):
                eid += 1
                at = self.at(day_lo, day_hi)
                typ = rng.choice(["track", "track", "page", "identify"])
                name = rng.choice(NAMES) if typ == "track" else None
                device = rng.choice(self.devices + [None])
                user = rng.choice([None, None] + persons + ["u-other"])
                source = rng.choice(["web", "web", "server"])
                bot = rng.random() < 0.1
                events.append({"id": eid, "source": source, "message_id": f"m{eid}",
                               "type": typ, "event": name, "anonymous_id": device,
                               "user_id": user, "event_time": at, "received_at": at,
                               "timestamp": at, "message": {}, "request": {},
                               "is_bot": bot})
                if device and rng.random() < 0.3:
                    self._click(conn, device, at - timedelta(hours=rng.uniform(-5, 20)))
                if device and rng.random() < 0.2:
                    conn.execute(insert(UtmTouch.__table__), {
                        "anonymous_id": device, "at": at,
                        "utm_source": rng.choice(["g", "fb", None]),
                        "utm_campaign": rng.choice(["c1", "c2", None]), "utm": {}})
                if typ != "track":
                    continue
                for dest in DESTS:
                    if rng.random() < 0.3:
                        continue
                    did += 1
                    state = rng.choice(STATES)
                    dels.append({"id": did, "event_id": eid, "destination": dest,
                                 "connector": dest, "platform_event": "Purchase",
                                 "state": state, "attempts": 1, "retry_base": 0,
                                 "next_attempt_at": at, "event_time": at, "created_at": at,
                                 "updated_at": at})
                    if state in ("succeeded", "failed", "sending"):
                        tid += 1
                        tracks.append(self._track(tid, did, eid, dest, at, state))
                        items.append({"track_id": tid, "delivery_id": did, "event_id": eid})
            conn.execute(insert(Event.__table__), events)
            if dels:
                conn.execute(insert(Delivery.__table__), dels)
            if tracks:
                conn.execute(insert(Exchange.__table__), tracks)
                conn.execute(insert(ExchangeItem.__table__), items)

    def _track(self, tid, did, eid, dest, at, state) -> dict:
        rng = self.rng
        outcome = {"succeeded": "success", "failed": rng.choice(["permanent", "retryable"]),
                   "sending": "sending"}[state]
        sent = rng.choice([None, 0, 1, 3])
        created = at + timedelta(seconds=rng.uniform(0, 7200))
        return {"id": tid, "delivery_id": did, "incoming_id": eid, "destination": dest,
                "connector": dest, "attempt": 1, "outcome": outcome, "method": "POST",
                "url": "https://x.invalid", "status": 200,
                "duration_ms": None if outcome == "sending" else round(rng.uniform(5, 50), 2),
                "created_at": created, "events_sent": sent,
                "events_accepted": None if not sent else rng.randint(0, sent),
                "events_rejected": None if not sent else rng.choice([None, 0, 1]),
                "platform_reasons": (rng.sample(REASONS, rng.randint(1, 3))
                                     if sent and rng.random() < 0.4 else None)}

    def _click(self, conn, device, at) -> None:
        param = self.rng.choice(PARAMS)
        value = f"{param}.{device}.{self.rng.randrange(3)}"
        c = ClickId.__table__.c
        res = conn.execute(update(ClickId.__table__).where(
            c.anonymous_id == device, c.param == param, c.value == value,
            c.first_seen_at > at).values(first_seen_at=at))
        exists = conn.execute(select(c.id).where(c.anonymous_id == device, c.param == param,
                                                 c.value == value)).first()
        if not res.rowcount and exists is None:
            conn.execute(insert(ClickId.__table__), {
                "anonymous_id": device, "param": param, "value": value,
                "first_seen_at": at, "last_seen_at": at})

    def settle_deliveries(self) -> None:
        """What the sender does later: waiting deliveries end (succeeded, exhausted ->
        failed, skipped), some retry (back to pending), requests in flight get answers."""
        rng = self.rng
        d, t = Delivery.__table__.c, Exchange.__table__.c
        with self.engine.begin() as conn:
            for i, in conn.execute(select(d.id).where(d.state.in_(
                    ("pending", "queued", "sending")))).all():
                new = rng.choice(["succeeded", "failed", "skipped", "pending", "sending"])
                conn.execute(update(Delivery.__table__).where(d.id == i).values(state=new))
            for i, in conn.execute(select(t.id).where(t.outcome == "sending")).all():
                if rng.random() < 0.7:
                    conn.execute(update(Exchange.__table__).where(t.id == i).values(
                        outcome=rng.choice(["success", "permanent"]), duration_ms=12.0,
                        events_sent=2, events_accepted=1, events_rejected=1,
                        platform_reasons=["late answer"]))
