"""The lean ingest path: one event row in one autocommitted INSERT, its SQL literals built
without the driver's parameter pass.

PyMySQL escapes each parameter through a chain of Python calls (escape_item, the encoder
table, escape_str): about 3 µs a value, 19 values an event. The values of an events row
come in five types only, so one function turns them into MySQL literals at a fraction of
that, with the same escapes PyMySQL uses (backslash escapes: the connection must not run
with NO_BACKSLASH_ESCAPES, which callers check).
"""

from __future__ import annotations

import logging
import math
import os
import time
from datetime import datetime

from sqlalchemy.exc import DBAPIError, OperationalError

from sst.errors import StorageUnavailableError
from sst.models import Event, insert_ignore

logger = logging.getLogger(__name__)
events_t = Event.__table__
_insert_event = insert_ignore(events_t)


def escape(text: str) -> str:
    """PyMySQL's escape_string: backslash before NUL, \\, \\n, \\r, ^Z, " and '.

    A chain of str.replace (each a C scan) rather than str.translate, which takes ~18 µs on
    an 800-character JSON message against ~4 µs here. The backslash goes first so that the
    backslashes added after it are not doubled."""
    return (text.replace("\\", "\\\\").replace("\0", "\\0").replace("\n", "\\n")
            .replace("\r", "\\r").replace("\x1a", "\\Z").replace('"', '\\"')
            .replace("'", "\\'"))


def literal(value) -> str:
    """A MySQL literal for None, str, bool, int, finite float or naive datetime.

    Raises TypeError for anything else (a caller then falls back to the driver).
    """
    if value is None:
        return "NULL"
    kind = type(value)
    if kind is str:
        return "'" + escape(value) + "'"
    if kind is bool:
        return "1" if value else "0"
    if kind is int:
        return str(value)
    if kind is datetime:
        if value.tzinfo is not None:
            raise TypeError("aware datetimes are stored as naive UTC: convert first")
        return "'" + value.isoformat(" ") + "'"
    if kind is float and math.isfinite(value):
        return repr(value)
    raise TypeError(f"no SQL literal for {kind.__name__}")


def values_tuple(values) -> str:
    """'(v1, v2, ...)' for one row of an INSERT."""
    return "(" + ", ".join([literal(v) for v in values]) + ")"


# --- the lean path: one event, nothing else to write ---------------------------------------
#
# Most requests store exactly one row in `events`. A single INSERT in autocommit mode is as
# atomic and as durable as INSERT + COMMIT (InnoDB commits it before the server answers), and
# it saves what the transactional path costs around it: SQLAlchemy's statement execution, the
# COMMIT round trip and the pool's ROLLBACK on check-in (three round trips become one; see
# docs/benchmarks.md). The row goes as SQL text built by sql_literal() above (cheaper than the driver's
# parameter escaping) on a PyMySQL connection in autocommit mode, kept idle per process (one
# per concurrent request), opened through the engine (same URL and connect_args) and detached
# from its pool. Anything unusual (an error, a lost connection) falls back to the transactional
# path above, which decides as it always did; INSERT IGNORE on (source, message_id) makes that
# retry harmless.

FAST_RECYCLE = 3600  # seconds, as the engine's pool_recycle: reconnect before MariaDB drops us
FAST_IDLE_MAX = 8  # idle connections kept per process (a sync worker uses one)
_fast_idle: list = []  # (pool, pid, opened at, DBAPI connection); list.pop/append are atomic
_fast_sql: dict = {}
_NO_BACKSLASH_ESCAPES = 512  # pymysql.constants.SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES


def _fast_statement(engine, columns: tuple):
    """(SQL with parameters, bind processors, positional?, column list) for an INSERT IGNORE
    of these columns, compiled once."""
    key = (engine.dialect, columns)
    hit = _fast_sql.get(key)
    if hit is None:
        compiled = _insert_event.compile(dialect=engine.dialect, column_keys=list(columns))
        if compiled.positional:
            plain = list(compiled.positiontup or ()) == list(columns)
        else:
            plain = all(f"%({name})s" in compiled.string for name in columns)
        if not plain:  # bind names SQLAlchemy had to escape: leave it to the general path
            hit = _fast_sql[key] = (None, None, None, None)
            return hit
        processors = tuple(
            events_t.c[name].type.dialect_impl(engine.dialect).bind_processor(engine.dialect)
            for name in columns)
        hit = _fast_sql[key] = (compiled.string, processors, compiled.positional,
                                ", ".join(columns))
    return hit


def _fast_checkout(engine):
    """An idle autocommit DBAPI connection of this process to the engine's database, or a
    new one (opened through the engine's pool, then detached from it)."""
    pool, pid, now = engine.pool, os.getpid(), time.monotonic()
    while _fast_idle:
        try:
            entry = _fast_idle.pop()
        except IndexError:  # another thread took the last one
            break
        if entry[0] is pool and entry[1] == pid and now - entry[2] < FAST_RECYCLE:
            return entry
        if entry[1] == pid:  # never close a socket that a parent process still uses
            _close_quietly(entry[3])
    proxied = engine.raw_connection()  # raises when the database cannot be reached
    try:
        proxied.detach()
        dbapi = proxied.dbapi_connection
        dbapi.autocommit(True)
    except Exception:
        proxied.close()
        raise
    return (pool, pid, now, dbapi)


def _fast_checkin(entry) -> None:
    if len(_fast_idle) < FAST_IDLE_MAX:
        _fast_idle.append(entry)
    else:
        _close_quietly(entry[3])


def _close_quietly(dbapi) -> None:
    try:
        dbapi.close()
    except Exception:  # noqa: BLE001 - a broken connection is being thrown away anyway
        pass


def _checkout_or_raise(engine):
    try:
        return _fast_checkout(engine)
    except DBAPIError as exc:
        if isinstance(exc, OperationalError) or exc.connection_invalidated:
            raise StorageUnavailableError(str(exc.orig)[:200]) from exc
        raise
    except engine.dialect.loaded_dbapi.OperationalError as exc:
        # Engine.raw_connection() raises the driver's own error, not SQLAlchemy's wrapper.
        raise StorageUnavailableError(str(exc)[:200]) from exc


def store_single(engine, row: dict) -> bool | None:
    """Insert one event row in one autocommitted statement: True new, False duplicate,
    None when the transactional path must decide (an error of any kind)."""
    columns = tuple(row)
    sql, processors, positional, column_list = _fast_statement(engine, columns)
    if sql is None:
        return None
    params = [row[name] if proc is None else proc(row[name])
              for name, proc in zip(columns, processors, strict=True)]
    try:
        values = values_tuple(params)
    except TypeError:  # a value sqltext does not know: the driver escapes it
        values = None
    entry = _checkout_or_raise(engine)
    dbapi = entry[3]
    try:
        if values is not None and not dbapi.server_status & _NO_BACKSLASH_ESCAPES:
            # Connection.query sends the text as is and returns the affected rows: no cursor
            # object, no argument pass (~11,000 fewer instructions a request, callgrind).
            inserted = dbapi.query(f"INSERT IGNORE INTO events ({column_list}) VALUES "
                                   + values) == 1
        else:
            with dbapi.cursor() as cur:
                inserted = cur.execute(sql, params if positional
                                       else dict(zip(columns, params, strict=True))) == 1
    except Exception as exc:  # noqa: BLE001 - the transactional path reports it
        _close_quietly(dbapi)
        logger.debug("lean insert failed, using a transaction: %r", exc)
        return None
    _fast_checkin(entry)
    return inserted


# --- many events, nothing else to write (a /v1/batch from a server SDK) ---------------------
#
# One INSERT IGNORE with one VALUES tuple per event: a single statement is atomic, so in
# autocommit mode either every row of the batch is committed or none is. Its row count says
# whether every event was new; when one was a duplicate (an SDK retrying a batch) the
# per-event results are not known from it, so the rows go in a transaction that is rolled
# back and the caller takes the row-by-row path.


def multi_row_sql(engine, rows: list[dict]) -> str | None:
    """INSERT IGNORE INTO events ... VALUES (...), (...) for rows with the same columns, or
    None when a value has no literal form here (the driver must escape it)."""
    columns = tuple(rows[0])
    if any(tuple(row) != columns for row in rows):
        return None
    sql, processors, _positional, column_list = _fast_statement(engine, columns)
    if sql is None:
        return None
    pairs = tuple(zip(columns, processors, strict=True))
    try:
        values = ", ".join([values_tuple([row[name] if proc is None else proc(row[name])
                                          for name, proc in pairs]) for row in rows])
    except TypeError:
        return None
    return f"INSERT IGNORE INTO events ({column_list}) VALUES {values}"


def store_many(engine, rows: list[dict]) -> bool:
    """Insert every row in one statement and commit: True when all were new and are
    committed; False (nothing written) when the caller must store them row by row."""
    sql = multi_row_sql(engine, rows)
    if sql is None:
        return False
    entry = _checkout_or_raise(engine)
    dbapi = entry[3]
    if dbapi.server_status & _NO_BACKSLASH_ESCAPES:
        _fast_checkin(entry)
        return False
    try:
        dbapi.begin()
        with dbapi.cursor() as cur:
            inserted = cur.execute(sql)
        if inserted == len(rows):
            dbapi.commit()
        else:
            dbapi.rollback()
    except Exception as exc:  # noqa: BLE001 - the transactional path reports it
        _close_quietly(dbapi)
        logger.debug("lean batch insert failed, using a transaction: %r", exc)
        return False
    _fast_checkin(entry)
    return inserted == len(rows)


def insert_rows(conn, rows: list[dict]) -> bool:
    """Inside the caller's transaction (a SQLAlchemy connection on PyMySQL): insert every
    row in one statement; True when all were new. False: some were not, roll back."""
    sql = multi_row_sql(conn.engine, rows)
    dbapi = conn.connection.dbapi_connection
    if sql is None or dbapi.server_status & _NO_BACKSLASH_ESCAPES:
        return conn.execute(_insert_event, rows).rowcount == len(rows)
    # no_parameters: the driver gets the text as is (no %-formatting of its literals), and
    # SQLAlchemy still wraps its errors (deadlocks, lost connections) for the caller's retry.
    res = conn.execution_options(no_parameters=True).exec_driver_sql(sql)
    return res.rowcount == len(rows)
