"""Connector registry: built-in modules plus the `sst.connectors` entry-point group."""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

from marshmallow import ValidationError

logger = logging.getLogger(__name__)

BUILTIN = (
    "meta", "tiktok", "google_ads", "google_ads_legacy", "ga4", "webhook",
    "snapchat", "reddit", "pinterest", "linkedin",
    "microsoft_ads", "x_ads",
)
ENTRY_POINT_GROUP = "sst.connectors"

_registry: dict[str, type] = {}
_loaded = False


class ConnectorConfigError(ValueError):
    """A destination's settings are invalid; the message names the destination and key."""

    def __init__(self, message: str, *, destination: str | None = None, key: str | None = None):
        super().__init__(message)
        self.destination = destination
        self.key = key


def register(cls: type) -> type:
    """Class decorator: add a Connector subclass to the registry under `cls.name`."""
    from sst.connectors.base import Connector

    if not (isinstance(cls, type) and issubclass(cls, Connector)) or not cls.name:
        raise TypeError(f"{cls!r} is not a named Connector subclass")
    existing = _registry.get(cls.name)
    if existing is not None and existing is not cls:
        if (existing.__module__, existing.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"connector name {cls.name!r} already registered by {existing!r}")
    _registry[cls.name] = cls
    return cls


def load_builtin() -> list[tuple[str, str]]:
    """Import the built-in connectors, then entry points. Idempotent.

    Returns (name, error) for each connector that failed to load; those are logged and
    skipped so the app still starts.
    """
    global _loaded
    errors: list[tuple[str, str]] = []
    for mod in BUILTIN:
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except Exception as exc:  # an optional dependency may be missing
            logger.warning("connector %s failed to load: %s", mod, exc)
            errors.append((mod, f"{type(exc).__name__}: {exc}"))
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if isinstance(obj, type) and obj.name not in _registry:
                register(obj)
        except Exception as exc:
            logger.warning("connector entry point %s failed to load: %s", ep.name, exc)
            errors.append((ep.name, f"{type(exc).__name__}: {exc}"))
    _loaded = True
    return errors


def _ensure_loaded() -> None:
    if not _loaded:
        load_builtin()


def registry() -> dict[str, type]:
    """Name -> connector class (a copy)."""
    _ensure_loaded()
    return dict(_registry)


def get(name: str) -> type:
    """The connector class registered as `name`."""
    _ensure_loaded()
    try:
        return _registry[name]
    except KeyError:
        known = ", ".join(sorted(_registry)) or "(none)"
        raise KeyError(f"unknown connector {name!r}; known connectors: {known}") from None


def validate_destination(raw: dict) -> dict:
    """Validate a raw destination dict with its connector's schema; return loaded settings."""
    dest = raw.get("name") if isinstance(raw, dict) else None
    label = f"destination {dest!r}" if dest else "destination"
    if not isinstance(raw, dict):
        raise ConnectorConfigError(f"{label}: expected a table, got {type(raw).__name__}")
    connector = raw.get("connector")
    if not connector:
        raise ConnectorConfigError(f"{label}: key 'connector': missing", destination=dest,
                                   key="connector")
    try:
        cls = get(connector)
    except KeyError as exc:
        raise ConnectorConfigError(f"{label}: key 'connector': {exc.args[0]}",
                                   destination=dest, key="connector") from None
    try:
        return cls.settings_schema().load(raw)
    except ValidationError as exc:
        errs = _flatten(exc.messages)
        text = "; ".join(f"key {k!r}: {m}" for k, m in errs)
        raise ConnectorConfigError(f"{label}: {text}", destination=dest,
                                   key=errs[0][0] if errs else None) from None


def _flatten(messages, prefix: str = "") -> list[tuple[str, str]]:
    """marshmallow's nested error dict as sorted (dotted key, message) pairs."""
    if not isinstance(messages, dict):
        return [(prefix or "?", str(messages))]
    out = []
    for key in sorted(messages, key=str):
        sub, path = messages[key], f"{prefix}.{key}" if prefix else str(key)
        if isinstance(sub, dict):
            out.extend(_flatten(sub, path))
        elif isinstance(sub, list):
            out.append((path, " ".join(str(m) for m in sub)))
        else:
            out.append((path, str(sub)))
    return out
