"""Is the database usable, and what to tell an operator when it or Redis is not.

One place that knows: the schema revision the code needs (Alembic's head) and the one the
database is at; which driver errors mean "the schema is missing or behind" (so ingest answers
503 naming `sst db upgrade` instead of a 500); and the one-line description of a database or
Redis failure, its URL's password masked, that `/readyz` and every CLI command print.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from sst.migrate import current_revision, head_revision

UPGRADE_HINT = "run `sst db upgrade`"
# MySQL/MariaDB error numbers: table / column unknown (the schema is missing or behind).
_MYSQL_SCHEMA_ERRORS = {1146, 1054}
_SQLITE_SCHEMA_TEXTS = ("no such table", "no such column", "has no column named")


def schema_problem(conn) -> str | None:
    """Why the schema cannot serve this code, or None when it is at the head revision."""
    current = current_revision(conn)
    head = head_revision()
    if current == head:
        return None
    if current is None:
        return f"the database has no sst schema: {UPGRADE_HINT}"
    return f"the database schema is at revision {current}, this sst needs {head}: {UPGRADE_HINT}"


def is_schema_error(exc: BaseException) -> bool:
    """Whether a database error means a table or column the code needs does not exist."""
    from sqlalchemy.exc import DBAPIError

    if not isinstance(exc, DBAPIError):
        return False
    orig = getattr(exc, "orig", exc)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _MYSQL_SCHEMA_ERRORS:
        return True
    text = str(orig).lower()
    return any(t in text for t in _SQLITE_SCHEMA_TEXTS)


def mask_url(url: str | None) -> str:
    """The URL with its password replaced by ***."""
    if not url:
        return "(none)"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unreadable URL)"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]


def describe_database_error(exc: BaseException, url: str | None) -> str | None:
    """One line for a database failure (unreachable, unknown database, refused login, schema
    behind), or None when `exc` is not one."""
    from sqlalchemy.exc import DBAPIError

    where = mask_url(url)
    if isinstance(exc, DBAPIError):
        if is_schema_error(exc):
            return (f"the database at {where} has no sst schema or an old one "
                    f"({_first_line(str(exc.orig))}): {UPGRADE_HINT}")
        args = getattr(exc.orig, "args", ())
        code = args[0] if args and isinstance(args[0], int) else None
        detail = _first_line(str(args[1]) if len(args) > 1 else str(exc.orig))
        if code == 1049:
            name = urlsplit(url or "").path.lstrip("/") or "?"
            return (f"database {name!r} does not exist at {where}: create it (CREATE DATABASE "
                    f"{name} CHARACTER SET utf8mb4), then {UPGRADE_HINT}")
        if code in (1044, 1045):
            return f"the database at {where} refused the login: {detail}"
        return f"cannot use the database at {where}: {detail}"
    return None


def describe_redis_error(exc: BaseException, url: str | None) -> str | None:
    """One line for a Redis failure, or None when `exc` is not one."""
    try:
        from redis.exceptions import RedisError
    except ImportError:  # pragma: no cover - redis is a dependency
        return None
    if isinstance(exc, RedisError):
        return f"cannot use Redis at {mask_url(url)}: {_first_line(str(exc))}"
    return None


def check_redis_url(url: str | None) -> str | None:
    """Why SST_REDIS_URL cannot be a Redis URL, or None when it can (or is unset)."""
    if not url:
        return None
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return (f"SST_REDIS_URL {mask_url(url)!r} is not a Redis URL: write "
                "redis://HOST:PORT/DB (or rediss://, unix://)")
    try:
        import redis

        redis.connection.ConnectionPool.from_url(url)
    except ValueError as exc:
        return f"SST_REDIS_URL {mask_url(url)!r}: {exc}"
    return None


def check_database_url(url: str) -> str | None:
    """Why SST_DATABASE_URL cannot be used (unreadable, driver missing), or None."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return (f"SST_DATABASE_URL {mask_url(url)!r} is not a database URL: write "
                "mysql+pymysql://USER:PASSWORD@HOST:3306/NAME (or sqlite:///PATH)")
    try:
        dialect = parsed.get_dialect()
        dialect.import_dbapi()
    except NoSuchModuleError:
        return (f"SST_DATABASE_URL {mask_url(url)!r}: unknown database kind "
                f"{parsed.drivername!r}; write mysql+pymysql://… or sqlite:///…")
    except ImportError as exc:
        hint = (" (sst installs PyMySQL: write mysql+pymysql://…)"
                if parsed.get_backend_name() in ("mysql", "mariadb") else "")
        return (f"SST_DATABASE_URL {mask_url(url)!r}: its driver is not installed: "
                f"{exc}{hint}")
    return None
