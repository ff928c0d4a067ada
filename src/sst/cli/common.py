"""What the `sst` commands share: the app state, the time option, the default phone region,
the RQ connection and the way a command reports a failure and exits (as RQ's
rq/cli/helpers.py does for rq's commands)."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import NoReturn

import click
from flask import current_app

from sst.config import phone_region
from sst.extensions import state as current_state

# Exit codes: 1 when the command ran and failed (database or Redis down, nothing found);
# 2 when it cannot run as set up or asked (bad config, missing setting), Click's usage code.
FAILED = 1
SETUP = 2


app_state = current_state  # the running app's SstState (sst.extensions.state)


def default_region() -> str:
    """The region national phone numbers are read in (sst.config.phone_region)."""
    return phone_region(current_app.config)


def fail(message: str, code: int = FAILED) -> NoReturn:
    """Print `message` on stderr and exit with `code`: an operator gets the reason, not a
    traceback."""
    click.echo(message, err=True)
    sys.exit(code)


urls: dict = {}  # the database and Redis URLs of the app the command runs, for its errors


def remember_urls(app) -> None:
    urls.update(database=app.config.get("DATABASE_URL")
                or app.config.get("SQLALCHEMY_DATABASE_URI"),
                redis=app.config.get("REDIS_URL"))


def describe_failure(exc: BaseException) -> str | None:
    """One line for a database or Redis failure (URL password masked), or None for any other
    error."""
    import os

    from sst.dbcheck import describe_database_error, describe_redis_error

    if not urls and current_app:
        remember_urls(current_app)
    return (describe_database_error(exc, urls.get("database")
                                    or os.environ.get("SST_DATABASE_URL"))
            or describe_redis_error(exc, urls.get("redis") or os.environ.get("SST_REDIS_URL")))


@contextmanager
def failures_exit(command: str):
    """Turn any error inside the block (database or Redis down, disk full) into
    `sst <command>: <Class>: <message>` on stderr and exit code 1."""
    try:
        yield
    except Exception as exc:
        line = describe_failure(exc)
        if line is None:
            line = f"{exc.__class__.__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
        fail(f"sst {command}: {line}")


def parse_time(ctx, param, value):
    """Click callback for --since/--until: '7d', '12h', '30m' before now, or an ISO date."""
    from sst.clock import parse_relative

    if value is None:
        return None
    try:
        return parse_relative(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def rq_connection(state):
    """The Redis connection RQ uses; exits 2 in embedded mode, which has no RQ queues."""
    if not state.redis_url:
        fail("sst: no SST_REDIS_URL: the embedded queue has no RQ queues", SETUP)
    from sst.delivery.worker import rq_connection as connect

    return connect(state)
