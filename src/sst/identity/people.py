"""Persons (verified phones), their links to devices, and the database code store."""

from __future__ import annotations

from sqlalchemy import delete, select, update

from sst.clock import to_db, utcnow
from sst.identity.crypto import PhoneCipher, new_user_id, phone_lookup_key
from sst.identity.otp import StoredCode
from sst.identity.phone import region_of
from sst.models import Link, OtpCode, Person, insert_ignore, upsert

persons_t = Person.__table__
codes_t = OtpCode.__table__
links_t = Link.__table__

# Link kinds that tie a device (anonymous id) to a Person: an OTP verification ("person"),
# and an identify/alias from a server-only key or sst's own verification ("user_id").
# An identify sent with a public browser key is kept as "claimed_user_id": anyone who has
# seen a userId could send it, so it never pulls a Person's phone or devices (M3).
PERSON_LINKS = ("person", "user_id")


class DbCodeStore:
    """CodeStore on the database, so every web worker and host sees the same codes."""

    def __init__(self, engine):
        self.engine = engine

    def put(self, key: str, code_hash: str, expires_at: float) -> None:
        # One upsert: DELETE + INSERT deadlocked when two sends for a new phone raced (both
        # DELETEs take the gap lock, then each INSERT waits for the other's).
        row = {"key": key, "code_hash": code_hash, "expires_at": expires_at, "attempts": 0}
        stmt = upsert(self.engine.dialect.name, codes_t, "key",
                      ("code_hash", "expires_at", "attempts")).values(row)
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def get(self, key: str) -> StoredCode | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(codes_t).where(codes_t.c.key == key)).first()
        return StoredCode(row.code_hash, row.expires_at, row.attempts) if row else None

    def incr_attempts(self, key: str) -> int:
        # The increment is one UPDATE: concurrent guesses cannot both read the old count.
        with self.engine.begin() as conn:
            res = conn.execute(update(codes_t).where(codes_t.c.key == key)
                               .values(attempts=codes_t.c.attempts + 1))
            if res.rowcount == 0:
                return 0
            return conn.execute(select(codes_t.c.attempts)
                                .where(codes_t.c.key == key)).scalar() or 0

    def delete(self, key: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(delete(codes_t).where(codes_t.c.key == key)).rowcount == 1


def person_for_phone(engine, e164: str, secret: str) -> tuple[str, bool]:
    """(userId, created) for a verified phone: the same phone always gets the same userId."""
    key = phone_lookup_key(e164, secret)
    now = to_db(utcnow())
    with engine.begin() as conn:
        res = conn.execute(insert_ignore(persons_t), {
            "user_id": new_user_id(), "phone_key": key,
            "phone_enc": PhoneCipher(secret).encrypt(e164), "country": region_of(e164)[:2],
            "created_at": now, "verified_at": now})
        created = res.rowcount == 1
        if not created:
            conn.execute(update(persons_t).where(persons_t.c.phone_key == key)
                         .values(verified_at=now))
        user_id = conn.execute(select(persons_t.c.user_id)
                               .where(persons_t.c.phone_key == key)).scalar_one()
    return user_id, created


def link_device(engine, anonymous_id: str, user_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(insert_ignore(links_t), {"anonymous_id": anonymous_id, "kind": "person",
                                              "value": user_id,
                                              "created_at": to_db(utcnow())})


def phones_for(secret: str):
    """phones(conn, user_ids) -> {userId: E.164} for enrich.build_event_data."""
    cipher = PhoneCipher(secret)

    def phones(conn, user_ids):
        rows = conn.execute(select(persons_t.c.user_id, persons_t.c.phone_enc)
                            .where(persons_t.c.user_id.in_(user_ids))).all()
        out = {}
        for user_id, token in rows:
            try:
                out[user_id] = cipher.decrypt(token)
            except ValueError:  # encrypted under a secret that is gone: send without it
                continue
        return out

    return phones


def find_person(engine, *, phone_key=None, user_id=None, anonymous_id=None):
    """The Person row for one of its identifiers, or None."""
    with engine.connect() as conn:
        if anonymous_id is not None:
            user_id = conn.execute(
                select(links_t.c.value).where(links_t.c.anonymous_id == anonymous_id,
                                              links_t.c.kind.in_(PERSON_LINKS),
                                              links_t.c.value.in_(select(persons_t.c.user_id)))
            ).scalar()
            if user_id is None:
                return None
        q = select(persons_t)
        q = q.where(persons_t.c.phone_key == phone_key) if phone_key else q.where(
            persons_t.c.user_id == user_id)
        return conn.execute(q).first()


def devices_of(engine, user_id: str) -> list[str]:
    with engine.connect() as conn:
        return [a for (a,) in conn.execute(
            select(links_t.c.anonymous_id).distinct()
            .where(links_t.c.kind.in_(PERSON_LINKS), links_t.c.value == user_id)
            .order_by(links_t.c.anonymous_id)).all()]
