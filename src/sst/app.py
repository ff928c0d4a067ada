"""create_app(): config, extensions, connectors, blueprints."""

from __future__ import annotations

import json
import logging
import os
from functools import cached_property
from pathlib import Path

from flask import Flask, Response, request
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import event
from werkzeug.exceptions import HTTPException

from sst.config import (
    Defaults,
    admin_settings,
    build_sources,
    check_production,
    load_toml,
)
from sst.cookies import CookieSigner
from sst.delivery.destinations import FanOut, load_destinations
from sst.errors import ApiError, ConfigError
from sst.extensions import db
from sst.jsonutil import dumps
from sst.version import __version__

logger = logging.getLogger(__name__)

# Settings that must stay strings although from_prefixed_env JSON-decodes values.
STRING_KEYS = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "CONFIG", "COOKIE_NAME", "LOG_FORMAT",
               "COOKIE_DOMAIN", "ENV", "ADMIN_TOKEN")


class SstState:
    """Per-app runtime objects that views, jobs and the CLI share."""

    def __init__(self, app: Flask, sources: dict, destinations: dict):
        cfg = app.config
        self.app = app
        self.sources = sources
        self.destinations = destinations
        self._connectors: dict = {}
        self.all_origins = frozenset(o for s in sources.values() for o in s.origins)
        self.signer = CookieSigner(cfg["SECRET_KEY"])
        self.cookie_name = cfg["COOKIE_NAME"]
        self.cookie_domain = cfg["COOKIE_DOMAIN"] or None
        self.cookie_secure = bool(cfg["COOKIE_SECURE"])
        self.cookie_max_age = int(cfg["COOKIE_MAX_AGE"])
        self.max_message_bytes = int(cfg["MAX_MESSAGE_BYTES"])
        self.max_batch_bytes = int(cfg["MAX_BATCH_BYTES"])
        self.pixel_max_data = int(cfg["PIXEL_MAX_DATA"])
        self.rejected_keep = int(cfg["REJECTED_KEEP"])
        self.retry_after = int(cfg["RETRY_AFTER_SECONDS"])
        self.redis_url = cfg.get("REDIS_URL") or None
        # The relay fans marked events out to deliveries (sst.delivery.outbox.fan_out); ingest
        # only marks them, so a request writes one row per event.
        self.fanout = FanOut(destinations, cfg.get("FORWARD_BOTS")) if destinations else None

    @cached_property
    def phones(self):
        """Verified phones for deliveries (decrypted only in the worker's memory)."""
        from sst.identity.people import phones_for

        return phones_for(self.app.config["SECRET_KEY"])

    def connector(self, dest):
        """One connector instance per destination and process: its HTTP session and OAuth
        token are reused across jobs."""
        inst = self._connectors.get(dest.name)
        if inst is None:
            from sst.connectors.base import HttpSession

            session = HttpSession()
            session.headers["User-Agent"] = f"sst/{__version__}"
            inst = self._connectors[dest.name] = dest.connector_cls(dest.settings, session)
            inst.ledger_key = self.ledger_key
        return inst

    @cached_property
    def ledger_key(self) -> bytes:
        """Key of the tags standing for hashed identifiers in the Exchange ledger (M5)."""
        from sst.identity.crypto import derive_key

        return derive_key(str(self.app.config["SECRET_KEY"]), "sst ledger identifier tags")

    @cached_property
    def engine(self):
        with self.app.app_context():
            return db.engine

    @cached_property
    def redis(self):
        """A client for the request path: short timeouts, no retries (see reference §4.10)."""
        import redis

        return redis.Redis.from_url(self.redis_url, socket_timeout=1.0,
                                    socket_connect_timeout=1.0, retry_on_timeout=False)

    @cached_property
    def throttle(self):
        from sst.throttle import Throttle

        return Throttle(self.redis_url)

    def check_rate(self, source, messages: int = 1) -> None:
        """429 when a source goes over its configured rate (none configured: no cost).

        The rate counts messages, not requests (M7): a batch costs one per message, so a
        "2/minute" source cannot slip 8,000 events through in one batch."""
        if not source.rate_limit:
            return
        from limits import parse

        if messages > 1 and messages > (allowed := parse(source.rate_limit).amount):
            # More than a whole window holds: a 429 would be retried for ever (the SDK's
            # batch never fits), so say plainly what to change.
            raise ApiError(413, "batch_over_rate_limit",
                           f"a batch of {messages} messages is more than source "
                           f"{source.name!r} accepts per window ({source.rate_limit}): send "
                           f"batches of at most {allowed} messages, or raise its rate_limit")
        wait = self.throttle.hit(source.rate_limit, "source", source.name, cost=messages)
        if wait is not None:
            err = ApiError(429, "rate_limited",
                           f"source {source.name!r} is over its rate of {source.rate_limit}")
            err.headers["Retry-After"] = str(wait)
            raise err

    @cached_property
    def otp_provider(self):
        """The configured OTP provider, or None when [identity] names none."""
        from sst.identity.otp import build_provider
        from sst.identity.people import DbCodeStore

        identity = self.app.config.get("IDENTITY") or {}
        if not identity.get("otp_provider"):
            return None
        return build_provider(identity, store=DbCodeStore(self.engine),
                              secret=self.app.config["SECRET_KEY"],
                              production=self.app.config.get("ENV") == "production",
                              http_client=self.app.config.get("OTP_HTTP_CLIENT"))

    def store(self, prepared):
        from sst.ingest.store import store_events

        return store_events(self.engine, prepared, fanout=self.fanout is not None
                            and bool(self.fanout.destinations))


class _NoSessionOnApi(SecureCookieSessionInterface):
    """The tracking API never uses Flask's cookie session: skip parsing it (~13 µs)."""

    def open_session(self, app, request):
        if request.path.startswith("/v1/"):
            return self.null_session_class()
        return super().open_session(app, request)


def _env_loads(value: str):
    try:
        return json.loads(value)
    except ValueError:
        return value


def _database_url(app: Flask) -> str:
    url = app.config.get("DATABASE_URL")
    if not url:
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        return "sqlite:///" + os.path.join(app.instance_path, "sst.sqlite")
    if url.startswith(("mysql", "mariadb")) and "charset=" not in url:
        url += ("&" if "?" in url else "?") + "charset=utf8mb4"
    return url


def _engine_options(url: str) -> dict:
    opts = {"json_serializer": dumps}
    if url.startswith(("mysql", "mariadb")):
        # A dead database must turn into a quick 503, not a request that hangs.
        opts.update(pool_recycle=3600, pool_size=5, max_overflow=10,
                    connect_args={"connect_timeout": 3})
    return opts


def _sqlite_pragmas(dbapi_conn, _record):
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def create_app(overrides=None):
    """Build a configured app. Tests pass overrides."""
    app = Flask("sst", instance_path=os.environ.get("SST_INSTANCE_PATH") or None)
    app.session_interface = _NoSessionOnApi()
    app.config.from_object(Defaults)
    app.config.from_prefixed_env("SST", loads=_env_loads)
    for key in STRING_KEYS:
        # The raw text: JSON-decoding would turn a secret like "1e5" into "100000.0".
        if f"SST_{key}" in os.environ:
            app.config[key] = os.environ[f"SST_{key}"]
    config_path = (overrides or {}).get("CONFIG") or app.config.get("CONFIG")
    if config_path:
        app.config.update(load_toml(config_path))
    if overrides:
        app.config.update(overrides)

    check_production(app.config)
    if app.config.get("MAX_CONTENT_LENGTH") is None:
        # A bound for every route and every way of sending a body (chunked, multipart, form):
        # werkzeug refuses to read past it, whatever a view does with the request (H2). The
        # ingest views bound their own bodies tighter; this only has to cover the largest
        # (a batch, gzip's few bytes of overhead included).
        app.config["MAX_CONTENT_LENGTH"] = int(app.config["MAX_BATCH_BYTES"]) + 64 * 1024
    admin_settings(app.config, f"config file {config_path or '(none)'}")  # fails start-up
    from sst.logs import configure_logging

    configure_logging(app)
    sources = build_sources(app.config["SOURCES"], f"config file {config_path or '(none)'}")
    destinations = load_destinations(app.config["DESTINATIONS"])

    url = _database_url(app)
    from sst.dbcheck import check_database_url, check_redis_url

    # An unreadable URL or a missing driver is a set-up error, said in one line at start-up.
    problem = check_database_url(app.config.get("DATABASE_URL") or url) or check_redis_url(app.config.get("REDIS_URL"))
    if problem:
        raise ConfigError(problem)
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {**_engine_options(url),
                                               **app.config["SQLALCHEMY_ENGINE_OPTIONS"]}
    db.init_app(app)
    if url.startswith("sqlite"):
        with app.app_context():
            event.listen(db.engine, "connect", _sqlite_pragmas)

    state = app.extensions["sst"] = SstState(app, sources, destinations)
    try:
        state.otp_provider  # noqa: B018  (a bad [identity] section fails start-up)
    except ValueError as exc:
        raise ConfigError(f"config file {config_path or '(none)'}, [identity]: {exc}") from None

    from sst.identity import views as otp_views
    from sst.ingest import tag
    from sst.ingest import views as ingest_views
    from sst.ops import admin, health, inbox, metrics
    from sst.ops.alerts import alert_settings

    try:
        alert_settings(app.config)
    except ConfigError as exc:
        raise ConfigError(f"config file {config_path or '(none)'}, {exc}") from None

    app.register_blueprint(ingest_views.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(otp_views.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(tag.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(inbox.bp)
    _register_error_handlers(app)
    hops = int(app.config.get("PROXY_FIX_X_FOR") or 0)
    if hops:
        # Behind a load balancer the client IP (per-IP limits, events.ip) is in
        # X-Forwarded-For; trust exactly as many hops as there are proxies.
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=0)
    return app


def _error_response(status, body, headers=None):
    resp = Response(dumps(body), status=status, mimetype="application/json")
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return _error_response(exc.status, exc.body(), exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        if exc.code == 413:
            code = "payload_too_large"  # the contract's code, whoever refused the body
        headers = {}
        if exc.code == 405 and exc.valid_methods:
            headers["Allow"] = ", ".join(exc.valid_methods)
        return _error_response(exc.code or 500, {"error": code, "message": exc.description},
                               headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        from sst.dbcheck import UPGRADE_HINT, is_schema_error

        if is_schema_error(exc):
            # A forgotten `sst db upgrade` is an operator's fix, not a bug: say which.
            logger.error("schema missing or behind on %s %s: %s", request.method,
                         request.path, exc.__class__.__name__)
            return _error_response(503, {"error": "storage_unavailable",
                                         "message": f"the database schema is missing or "
                                                    f"behind: {UPGRADE_HINT}"},
                                   {"Retry-After": "30"})
        logger.exception("unexpected error on %s %s", request.method, request.path)
        return _error_response(500, {"error": "internal_error",
                                     "message": "an unexpected error occurred"})


__all__ = ["create_app", "ConfigError"]
