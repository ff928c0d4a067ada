"""Helpers for the delivery integration tests: apps with destinations, ingest calls, worker
subprocesses and a TOML config the subprocesses share with the test's app."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from sst.extensions import db
from sst.models import Delivery, Exchange
from support.apps import SERVER_KEY, base_config, make_mysql_app, truncate_all

SST_BIN = Path(sys.executable).parent / "sst"
BROWSER_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/131.0.0.0 Safari/537.36")


def meta_dest(url, **extra):
    return {"name": "meta", "connector": "meta", "pixel_id": "1234567890",
            "access_token": "meta-token-secret", "base_url": url,
            "events": {"Order Completed": "Purchase", "$page": "PageView"},
            "retry_backoff": 0, **extra}


def tiktok_dest(url, **extra):
    return {"name": "tiktok", "connector": "tiktok", "pixel_code": "C0PIXEL",
            "access_token": "tt-token-secret", "base_url": url,
            "events": {"Order Completed": "CompletePayment"}, "retry_backoff": 0, **extra}


def webhook_dest(url, name="hook", **extra):
    return {"name": name, "connector": "webhook", "url": url + "/" + name,
            "secret": "s3cret", "events": {"*": "*"}, "retry_backoff": 0, **extra}


def mysql_app(mysql_url, redis_url, *destinations, flush_redis=True):
    """A MariaDB + Redis app with these destinations, empty tables and an empty queue."""
    app = make_mysql_app(mysql_url, redis_url, DESTINATIONS=list(destinations))
    truncate_all(app)
    if flush_redis:
        import redis

        redis.Redis.from_url(redis_url).flushdb()
    return app


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def track(app, message_id="m-1", event="Order Completed", **extra):
    """POST one track call with the server source's key."""
    body = {"event": event, "userId": "u-1", "messageId": message_id,
            "properties": {"order_id": "o-1", "total": 12.5, "currency": "EUR"},
            "context": {"userAgent": BROWSER_UA, "ip": "203.0.113.7"}, **extra}
    r = app.test_client().post("/v1/track", json=body, auth=(SERVER_KEY, ""))
    assert r.status_code == 200, r.data
    return body


def batch(app, messages):
    r = app.test_client().post("/v1/batch", json={"batch": messages}, auth=(SERVER_KEY, ""))
    assert r.status_code == 200, r.data


def tracks_of(n, prefix="m"):
    return [{"type": "track", "event": "Order Completed", "userId": f"u-{i}",
             "messageId": f"{prefix}-{i}", "context": {"userAgent": BROWSER_UA}}
            for i in range(n)]


def deliveries(app):
    """Every delivery, after fanning out the events ingest marked (as the worker's relay
    does within a poll interval of the 200)."""
    from sst.delivery.outbox import fan_out_all

    with app.app_context():
        fan_out_all(app.extensions["sst"])
        rows = db.session.execute(select(Delivery).order_by(Delivery.id)).scalars().all()
        db.session.expunge_all()
        return rows


def tracks(app):
    with app.app_context():
        rows = db.session.execute(select(Exchange).order_by(Exchange.id)).scalars().all()
        db.session.expunge_all()
        return rows


def past(seconds=3600) -> datetime:
    """A naive UTC time `seconds` ago, as DATETIME columns hold it."""
    return (datetime.now(UTC) - timedelta(seconds=seconds)).replace(tzinfo=None)


def set_deliveries(app, **values):
    """UPDATE every delivery (tests age rows this way instead of sleeping)."""
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(update(Delivery.__table__).values(**values))


def toml_config(path: Path, destinations) -> Path:
    """A config file holding these destinations (simple values only)."""

    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return json.dumps(str(v))

    lines = []
    for dest in destinations:
        lines.append("[[destination]]")
        lines += [f"{k} = {val(v)}" for k, v in dest.items() if not isinstance(v, dict)]
        for k, sub in dest.items():
            if isinstance(sub, dict):
                lines.append(f"[destination.{k}]")
                lines += [f"{json.dumps(sk)} = {val(sv)}" for sk, sv in sub.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def worker_env(mysql_url, redis_url, config: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SST_")}
    env.update(SST_DATABASE_URL=mysql_url, SST_REDIS_URL=redis_url, SST_CONFIG=str(config),
               SST_SECRET_KEY=base_config()["SECRET_KEY"])  # the apps' own (M2 refuses none)
    return env


def start_worker(env, *args, log: Path) -> subprocess.Popen:
    """`sst worker ARGS` as a child process in its own process group, output to `log`.

    RQ's scheduler runs in a forked child of the worker: kill the group (`kill_group`), or
    a killed worker leaves its scheduler running.
    """
    out = open(log, "ab")  # noqa: SIM115 (the child owns it)
    return subprocess.Popen([str(SST_BIN), "worker", *args], env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)


def kill_group(proc: subprocess.Popen, sig=signal.SIGKILL) -> None:
    """Signal the worker and everything it forked (the machine dying, as far as it sees)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def wait_for(predicate, timeout=30.0, every=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
