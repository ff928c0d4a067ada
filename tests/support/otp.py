"""Shared set-up of the OTP API tests: apps on MariaDB whose throttle counters are their own.

Other test runs share the Redis server and flush db 15 at will (a concurrent run would reset
our counters mid-test, and flushing it ourselves would drop their queued jobs). So each test
gets a random key prefix on another database and a random SECRET_KEY (the phone's counters
are keyed by its HMAC), and deletes only its own keys afterwards.
"""

from __future__ import annotations

import json
import secrets
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import redis

from sst.extensions import db
from sst.throttle import Throttle
from support.apps import make_mysql_app, truncate_all


def throttle_url(redis_url: str) -> str:
    """The test Redis URL on the database below its own (db 15 -> db 14)."""
    parts = urlsplit(redis_url)
    number = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(number - 1) % 16}"))


@contextmanager
def otp_apps(mysql_url, redis_url, outbox=None, **defaults):
    """Yield make(**identity) -> a fresh app (tables emptied) with the file provider unless
    `otp_provider` says otherwise; every app made here shares one secret and one set of
    throttle counters, as the web processes of one deployment do."""
    url = throttle_url(redis_url)
    prefix = f"otp-test-{secrets.token_hex(6)}"
    secret = f"otp-test-secret-{secrets.token_hex(8)}"
    apps = []

    def make(config=None, **identity):
        cfg = {"otp_provider": "file", **({"otp_outbox": str(outbox)} if outbox else {}),
               **defaults, **identity}
        app = make_mysql_app(mysql_url, redis_url, SECRET_KEY=secret, IDENTITY=cfg,
                             **(config or {}))
        app.extensions["sst"].throttle = Throttle(url, key_prefix=prefix)
        truncate_all(app)
        apps.append(app)
        return app

    make.throttle_url = url
    make.key_prefix = prefix
    try:
        yield make
    finally:
        for app in apps:
            with app.app_context():
                db.engine.dispose()
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)


def codes(app, phone: str) -> list[str]:
    """Codes the file provider "sent" to `phone`, oldest first."""
    try:
        with open(app.config["IDENTITY"]["otp_outbox"]) as fh:
            return [x["code"] for x in map(json.loads, fh) if x["to"] == phone]
    except FileNotFoundError:
        return []


def cookie_id(app, client) -> str | None:
    """The anonymous id in the client's first-party cookie."""
    cookie = client.get_cookie(app.config["COOKIE_NAME"], domain="example.com")
    return app.extensions["sst"].signer.unsign(cookie.value) if cookie else None
