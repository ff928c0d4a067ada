"""Settings: the one place that knows setting names.

Precedence: Defaults, then SST_* environment, then the TOML file named by SST_CONFIG,
then the overrides given to create_app().
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from sst.errors import ConfigError

DEV_SECRET_KEY = "sst-development-secret-do-not-use-in-production"
QUEUE = "deliveries"  # the RQ queue that delivery jobs run on
DEFAULT_PHONE_REGION = "US"  # [identity] default_region when the config names none
# An origin as browsers send it: scheme://host[:port], nothing after.
_ORIGIN = re.compile(r"^[a-z][a-z0-9+.\-]*://[^/\s?#]+$")


class Defaults:
    ENV = "development"
    SECRET_KEY = DEV_SECRET_KEY
    CONFIG = None  # path of the TOML file (SST_CONFIG)
    DATABASE_URL = None  # None: SQLite in the instance folder (embedded mode)
    REDIS_URL = None  # None: embedded in-process queue
    SQLALCHEMY_TRACK_MODIFICATIONS = False

    COOKIE_NAME = "sst_aid"
    COOKIE_DOMAIN = None
    COOKIE_SECURE = True
    COOKIE_MAX_AGE = 400 * 86400  # Chrome's and Firefox's ceiling

    MAX_MESSAGE_BYTES = 32 * 1024
    MAX_BATCH_BYTES = 500 * 1024
    PIXEL_MAX_DATA = 8 * 1024
    REJECTED_KEEP = 10_000  # rows kept in rejected_payloads; older ones are trimmed
    REJECTED_PER_IP = "60/minute"  # refusals recorded per client address (L2); more: logged
    RETRY_AFTER_SECONDS = 5  # what a 503 tells clients when storage is down
    FORWARD_BOTS = None  # [server] forward_bots: unset, each destination's own default
    PROXY_FIX_X_FOR = 0  # trusted proxies in front of sst (X-Forwarded-For hops); 0: none
    LOG_FORMAT = None  # json | text | off; unset: json in production, text otherwise
    CONVERSION_EVENTS = ["Order Completed"]  # what reports count as conversions

    SOURCES: list = []
    DESTINATIONS: list = []
    IDENTITY: dict = {}
    SERVER: dict = {}
    RETENTION: dict = {}
    AUDIENCES: list = []


# --- TOML schemas -------------------------------------------------------------------------


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class ServerSchema(_Strict):
    cookie_name = fields.String(validate=validate.Regexp(r"^[A-Za-z0-9_\-]+$"))
    cookie_domain = fields.String(allow_none=True)
    cookie_secure = fields.Boolean()
    forward_bots = fields.Boolean()
    secret_key = fields.String(metadata={"secret": True})


class IdentitySchema(_Strict):
    otp_provider = fields.String(validate=validate.OneOf(["twilio_verify", "twilio_sms", "file"]))
    otp_outbox = fields.String()
    default_region = fields.String()
    twilio_account_sid = fields.String()
    twilio_auth_token = fields.String(metadata={"secret": True})
    twilio_verify_service_sid = fields.String()
    twilio_from = fields.String()
    twilio_messaging_service_sid = fields.String()
    twilio_timeout = fields.Float()
    otp_ttl = fields.Integer()
    otp_max_attempts = fields.Integer()
    twilio_channel = fields.String()
    twilio_edge = fields.String()
    twilio_region = fields.String()
    otp_message_template = fields.String()
    send_limit_phone = fields.String()  # e.g. "3/10 minutes"
    send_limit_ip = fields.String()
    verify_limit_phone = fields.String()
    verify_limit_ip = fields.String()
    country_daily_budget = fields.Integer(validate=validate.Range(min=0))
    # SMS pumping (M6): the countries codes may go to (default: default_region's alone;
    # ["*"] for any), and a budget of sends per day over all countries (0: none).
    allowed_regions = fields.List(fields.String(validate=validate.Regexp(r"^([A-Z]{2}|\*)$")))
    daily_budget = fields.Integer(validate=validate.Range(min=0))
    conversion_event = fields.String(allow_none=True)

    @validates_schema
    def _rates(self, data, **kwargs):
        from limits import parse

        for key in ("send_limit_phone", "send_limit_ip", "verify_limit_phone", "verify_limit_ip"):
            if key in data:
                try:
                    parse(data[key])
                except ValueError:
                    raise ValidationError("not a rate like '3/10 minutes'", key) from None


class SourceSchema(_Strict):
    name = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_\-.]{1,64}$"))
    write_key = fields.String(required=True, validate=validate.Length(min=8),
                              metadata={"secret": True})
    origins = fields.List(fields.String(), load_default=list)
    rate_limit = fields.String(load_default=None, allow_none=True)


@dataclass(frozen=True)
class Source:
    name: str
    write_key: str
    origins: frozenset = field(default_factory=frozenset)
    rate_limit: str | None = None


def resolve_env_refs(value, where, key=""):
    """Replace "env:NAME" strings by the variable's value; a missing variable is an error."""
    if isinstance(value, str) and value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            raise ConfigError(f"{where}: key '{key or '?'}': environment variable {name} "
                              "is not set")
        return os.environ[name]
    if isinstance(value, dict):
        return {k: resolve_env_refs(v, where, f"{key}.{k}" if key else str(k))
                for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env_refs(v, where, key) for v in value]
    return value


def _first_error(messages, prefix=""):
    """Flatten marshmallow's nested error dict into "key: message"."""
    for key, val in messages.items():
        if isinstance(val, dict):
            return _first_error(val, f"{prefix}{key}.")
        text = val[0] if isinstance(val, list) and val else val
        if text == "Unknown field.":
            text = "unknown key"
        return f"key '{prefix}{key}': {text}"
    return "invalid"


def _load(schema, data, where):
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_first_error(exc.messages)}") from None


def _tables(raw, section, path) -> list[dict]:
    """The [[section]] entries; anything else there (a string, a list of numbers) is an error."""
    entries = raw.get(section, [])
    if not isinstance(entries, list):
        raise ConfigError(f"config file {path}: '{section}' must be an array of tables "
                          f"([[{section}]])")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"config file {path}, [[{section}]] #{i + 1}: must be a table")
    return entries


def load_toml(path) -> dict:
    """Read and validate the config file; returns Flask config keys."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None
    base = path.parent.resolve()
    known = {"server", "identity", "source", "destination", "audience", "alerts", "admin",
             "retention"}
    for key in raw:
        if key not in known:
            raise ConfigError(f"config file {path}: unknown section '{key}'")

    out: dict = {}
    server = _load(ServerSchema(),
                   resolve_env_refs(raw.get("server", {}), f"config file {path}, [server]"),
                   f"config file {path}, [server]")
    mapping = {"cookie_name": "COOKIE_NAME", "cookie_domain": "COOKIE_DOMAIN",
               "cookie_secure": "COOKIE_SECURE", "forward_bots": "FORWARD_BOTS",
               "secret_key": "SECRET_KEY"}
    for key, conf_key in mapping.items():
        if key in server:
            out[conf_key] = server[key]
    out["SERVER"] = server

    where = f"config file {path}, [identity]"
    identity = _load(IdentitySchema(), resolve_env_refs(raw.get("identity", {}), where), where)
    if "otp_outbox" in identity:
        identity["otp_outbox"] = str((base / identity["otp_outbox"]).resolve())
    out["IDENTITY"] = identity

    sources = []
    for i, entry in enumerate(_tables(raw, "source", path)):
        label = f"[[source]] #{i + 1}" + (f" '{entry['name']}'" if "name" in entry else "")
        where = f"config file {path}, {label}"
        sources.append(_load(SourceSchema(), resolve_env_refs(entry, where), where))
    out["SOURCES"] = sources

    destinations = []
    for i, entry in enumerate(_tables(raw, "destination", path)):
        label = f"[[destination]] #{i + 1}" + (f" '{entry['name']}'" if "name" in entry else "")
        where = f"config file {path}, {label}"
        entry = resolve_env_refs(entry, where)
        if isinstance(entry.get("otp_outbox"), str):
            entry["otp_outbox"] = str((base / entry["otp_outbox"]).resolve())
        if not entry.get("events") and entry.get("enabled", True) is not False:
            # Only mapped events are sent: without a map the destination silently gets nothing.
            raise ConfigError(f"{where}: key 'events': missing or empty: a destination sends "
                              "only the events its [destination.events] table maps; add one "
                              '("*" = "*" sends every event under its own name)')
        destinations.append({"__where__": where, **entry})
    out["DESTINATIONS"] = destinations
    for section in ("audience", "alerts", "admin", "retention"):
        if section in raw:
            out[section.upper() if section != "audience" else "AUDIENCES"] = raw[section]
    return out


def normalize_origin(origin: str) -> str:
    """An origin as browsers send it: scheme and host in lower case, no trailing slash.

    Browsers serialise the Origin header in lower case; a config entry written as
    https://WWW.Example.com must still match it."""
    return origin.strip().rstrip("/").lower()


def build_sources(raw_sources, where="config") -> dict[str, Source]:
    """Index sources by write key; names and keys must be unique."""
    by_key: dict[str, Source] = {}
    names = set()
    for entry in raw_sources:
        entry = _load(SourceSchema(), entry, f"{where}, source {entry.get('name', '?')!r}")
        if entry["name"] in names:
            raise ConfigError(f"{where}: source name {entry['name']!r} is used twice")
        if entry["write_key"] in by_key:
            raise ConfigError(f"{where}: source {entry['name']!r} reuses another source's write_key")
        if entry["rate_limit"]:
            from limits import parse

            try:
                parse(entry["rate_limit"])
            except ValueError:
                raise ConfigError(f"{where}, source {entry['name']!r}: key 'rate_limit': "
                                  f"not a rate like '100/second'") from None
        names.add(entry["name"])
        origins = frozenset(normalize_origin(o) for o in entry["origins"])
        if "null" in origins or "*" in origins:
            raise ConfigError(f"{where}, source {entry['name']!r}: key 'origins': "
                              "'null' and '*' are never allowed with credentials")
        for origin in sorted(origins):
            if not _ORIGIN.match(origin):
                # Browsers send "https://host": a bare host would refuse every browser.
                hint = (f"'https://{origin}'" if "://" not in origin
                        else "no path, query or trailing text")
                raise ConfigError(f"{where}, source {entry['name']!r}: key 'origins': "
                                  f"{origin!r} is not an origin: write scheme://host[:port] "
                                  f"as browsers send it ({hint})")
        by_key[entry["write_key"]] = Source(entry["name"], entry["write_key"], origins,
                                            entry["rate_limit"])
    return by_key


def check_dev_secret(config) -> None:
    """The published development secret, in any SST_ENV, only on the embedded SQLite
    database (M2): it signs cookies and keys the phone hashes, the phone encryption and the
    OTP hashes, so on a real database anyone could forge visitors and, from a dump, decrypt
    every phone."""
    url = str(config.get("DATABASE_URL") or "")
    if config.get("SECRET_KEY") == DEV_SECRET_KEY and url and not url.startswith("sqlite"):
        raise ConfigError("SST_SECRET_KEY is the published development secret, refused with "
                          "a database other than the embedded SQLite one: set "
                          "SST_SECRET_KEY to a private random value (e.g. `python -c "
                          "'import secrets; print(secrets.token_urlsafe(48))'`)")


def check_production(config) -> None:
    """SST_ENV=production refuses settings that are only safe on a laptop."""
    check_dev_secret(config)
    if config.get("ENV") != "production":
        return
    problems = []
    if not config.get("SECRET_KEY") or config["SECRET_KEY"] == DEV_SECRET_KEY:
        problems.append("SST_SECRET_KEY must be set to a private random value")
    elif len(str(config["SECRET_KEY"])) < 16:
        problems.append("SST_SECRET_KEY is too short (16 characters at least)")
    if not config.get("COOKIE_DOMAIN"):
        problems.append("[server] cookie_domain must be set")
    if not config.get("COOKIE_SECURE", True):
        problems.append("[server] cookie_secure cannot be false")
    provider = (config.get("IDENTITY") or {}).get("otp_provider")
    if provider in ("file", "console"):
        problems.append(f"[identity] otp_provider '{provider}' is for development only")
    if config.get("SERVE_EXAMPLES"):
        problems.append("SERVE_EXAMPLES is for `sst dev` only")
    if config.get("DEV_INBOX"):
        problems.append("DEV_INBOX (the dev inbox destination) is for `sst dev` only")
    problems += [f"{name} still holds the example's placeholder ({PLACEHOLDER!r}): set your own"
                 for name in _placeholders(config)]
    if problems:
        raise ConfigError("SST_ENV=production refuses: " + "; ".join(problems))


PLACEHOLDER = "change-me"  # what deploy/sst.env.example puts where a secret goes


def _placeholders(config) -> list[str]:
    """The settings that still hold deploy/'s placeholder text (a copied example)."""
    found = []
    if PLACEHOLDER in str(config.get("SECRET_KEY") or ""):
        found.append("SST_SECRET_KEY")
    if PLACEHOLDER in str(config.get("DATABASE_URL") or ""):
        found.append("SST_DATABASE_URL (its password)")
    admin = config.get("ADMIN") or {}
    token = admin.get("token") if isinstance(admin, dict) else None
    for label, value in (("[admin] token", token), ("SST_ADMIN_TOKEN", config.get("ADMIN_TOKEN"))):
        try:
            value = resolve_env_refs(value, label) if value is not None else None
        except ConfigError:
            continue  # a missing variable has its own message
        if PLACEHOLDER in str(value or ""):
            found.append(label)
    for entry in config.get("SOURCES") or ():
        key = entry.get("write_key") if isinstance(entry, dict) else getattr(entry, "write_key",
                                                                              None)
        try:
            key = resolve_env_refs(key, "source") if key is not None else None
        except ConfigError:
            continue
        if PLACEHOLDER in str(key or ""):
            name = entry.get("name") if isinstance(entry, dict) else getattr(entry, "name", "?")
            found.append(f"source {name!r}'s write_key")
    return found


MIN_ADMIN_TOKEN_LEN = 16  # characters: [admin] token (SST_ADMIN_TOKEN) guards the dashboard


@dataclass(frozen=True)
class AdminSettings:
    """What guards /admin and /metrics, read in one place (M4): `[admin] token` in the TOML
    file or SST_ADMIN_TOKEN, `[admin] user`, and `[admin] metrics`.

    metrics: "token" (the scrape sends the admin credentials), "open" (no credential: only
    where /metrics is on a private bind the Internet cannot reach, e.g. the proxy does not
    route it) or "off" (404). Default: "token" with a usable token; else "open" in
    development and "off" under SST_ENV=production."""

    user: str = "admin"
    token: str | None = None
    metrics: str = "open"


METRICS_MODES = ("token", "open", "off")


def admin_settings(config, where: str = "config") -> AdminSettings:
    """The one reader of the admin settings, for /admin and /metrics (M4). create_app calls
    it first, so a token that is configured but unusable (too short, a missing variable)
    fails start-up instead of leaving the dashboard off with a log line."""
    section = config.get("ADMIN") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{where}, [admin]: must be a table")
    token = None
    if section.get("token") is not None:
        label, token = f"{where}, [admin]: key 'token'", resolve_env_refs(
            section["token"], f"{where}, [admin]", "token")
    elif config.get("ADMIN_TOKEN") is not None:
        label, token = "SST_ADMIN_TOKEN", config["ADMIN_TOKEN"]
    if token is not None and (not isinstance(token, str) or len(token) < MIN_ADMIN_TOKEN_LEN):
        size = len(token) if isinstance(token, str) else "not a string of"
        raise ConfigError(f"{label}: too short ({size} characters): the /admin token takes "
                          f"{MIN_ADMIN_TOKEN_LEN} characters at least")
    mode = section.get("metrics")
    if mode is None:
        mode = "token" if token else ("off" if config.get("ENV") == "production" else "open")
    elif mode not in METRICS_MODES:
        raise ConfigError(f"{where}, [admin] metrics: must be one of {', '.join(METRICS_MODES)}")
    elif mode == "token" and not token:
        mode = "off"  # asked for a credential that is not there: closed, not open
    return AdminSettings(user=str(section.get("user") or "admin"), token=token, metrics=mode)


def phone_region(config) -> str:
    """The region a phone number without a +country prefix is read in: [identity]
    default_region, else DEFAULT_PHONE_REGION. `config` is the app's config mapping."""
    return (config.get("IDENTITY") or {}).get("default_region") or DEFAULT_PHONE_REGION
