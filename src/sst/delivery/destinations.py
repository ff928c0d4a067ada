"""Configured destinations: which events each one takes, and the fan-out at ingest."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sst import connectors
from sst.errors import ConfigError
from sst.jsonutil import loads

logger = logging.getLogger(__name__)

# deliveries.reason of a bot's event that a destination does not take (forward_bots false)
BOT_REASON = "bot user agent (forward_bots is false)"

CALL_KEYS = {"page": "$page", "screen": "$screen", "identify": "$identify",
             "group": "$group", "alias": "$alias"}


@dataclass
class Destination:
    name: str
    connector: str
    settings: dict  # validated by the connector's schema
    connector_cls: type
    events: dict = field(default_factory=dict)
    consent_categories: tuple = ()
    enabled: bool = True

    @property
    def retry_max(self) -> int:
        return int(self.settings.get("retry_max", 6))

    @property
    def retry_backoff(self) -> float:
        return float(self.settings.get("retry_backoff", 30))

    @property
    def timeout(self) -> float:
        return float(self.settings.get("timeout", 10))

    def forwards_bots(self, server_default: bool | None = None) -> bool:
        """This destination's forward_bots, else [server] forward_bots when set, else the
        connector's default (false for ad platforms, true for the webhook)."""
        own = self.settings.get("forward_bots")
        if own is not None:
            return bool(own)
        if server_default is not None:
            return bool(server_default)
        return bool(getattr(self.connector_cls, "forwards_bots", False))

    def platform_event(self, kind: str, name: str | None) -> str | None:
        """The platform's name for this event, or None when the destination does not take it.

        Exchange calls match on their event name, other calls on "$page", "$screen"...;
        "*" matches everything; a value of "*" keeps the event's own name.
        """
        key = name if kind == "track" else CALL_KEYS.get(kind)
        mapped = self.events.get(key) if key is not None else None
        if mapped is None:
            mapped = self.events.get("*")
        if mapped is None:
            return None
        if mapped == "*":
            return name or key or kind
        return mapped

    def consent_decision(self, message: dict) -> tuple[bool, str]:
        """Segment's context.consent.categoryPreferences against consent_categories."""
        if not self.consent_categories:
            return True, "not_required"
        context = message.get("context") if isinstance(message, dict) else None
        consent = context.get("consent") if isinstance(context, dict) else None
        prefs = consent.get("categoryPreferences") if isinstance(consent, dict) else None
        if not isinstance(prefs, dict):
            # No consent manager on the site: nothing was refused.
            return True, "no_preferences"
        denied = [c for c in self.consent_categories if prefs.get(c) is not True]
        if denied:
            return False, "denied:" + ",".join(denied)[:240]
        return True, "granted"


def load_destinations(raw_list: list) -> dict[str, Destination]:
    """Validate [[destination]] entries.

    A destination whose connector cannot load fails start-up, naming it: skipping it would
    silently stop that platform's conversions (sentry-python's rule for integrations the
    user asked for). Connectors nobody configured may fail to load without harm.
    """
    load_errors = dict(connectors.load_builtin())
    out: dict[str, Destination] = {}
    for raw in raw_list:
        raw = dict(raw)
        where = raw.pop("__where__", f"destination {raw.get('name', '?')!r}")
        name = raw.get("name")
        if name in out:
            raise ConfigError(f"{where}: key 'name': destination {name!r} is defined twice")
        connector = raw.get("connector")
        if connector in load_errors:
            raise ConfigError(f"{where}: key 'connector': connector {connector!r} could not "
                              f"load ({load_errors[connector]}); install what it needs or "
                              "remove the destination")
        try:
            settings = connectors.validate_destination(raw)
        except connectors.ConnectorConfigError as exc:
            msg = str(exc)
            prefix = f"destination {name!r}: " if name else "destination: "
            raise ConfigError(f"{where}: {msg.removeprefix(prefix)}") from None
        out[name] = Destination(
            name=name, connector=connector, settings=settings,
            connector_cls=connectors.get(connector),
            events=dict(settings.get("events") or {}),
            consent_categories=tuple(settings.get("consent_categories") or ()),
            enabled=bool(settings.get("enabled", True)),
        )
    return out


class FanOut:
    """The delivery rows of one event: one per enabled destination that maps it.

    Runs in the relay (sst.delivery.outbox.fan_out) on events that ingest committed with
    their `fanout` mark, not in the request: ingest writes one row per event."""

    def __init__(self, destinations: dict[str, Destination], forward_bots: bool | None = None):
        self.destinations = [d for d in destinations.values() if d.enabled]
        self.bots_to = {d.name for d in self.destinations if d.forwards_bots(forward_bots)}
        # The message is read (a JSON column) only when a consent rule needs it.
        self.needs_message = any(d.consent_categories for d in self.destinations)

    def rows(self, event) -> list[dict]:
        """`event`: a mapping with id, type, event, is_bot, event_time, received_at and,
        when needs_message, message."""
        rows = []
        now = event["received_at"]
        message = event.get("message") if self.needs_message else None
        if isinstance(message, str):
            message = loads(message)
        for dest in self.destinations:
            platform_event = dest.platform_event(event["type"], event["event"])
            if platform_event is None:
                continue
            state, reason = "pending", None
            ok, consent = dest.consent_decision(message or {})
            if not ok:
                state, reason = "skipped", "consent " + consent
            elif event["is_bot"] and dest.name not in self.bots_to:
                state, reason = "skipped", BOT_REASON
            rows.append({
                "event_id": event["id"], "destination": dest.name, "connector": dest.connector,
                "platform_event": platform_event[:255], "state": state, "attempts": 0,
                "next_attempt_at": now, "consent": consent, "reason": reason,
                "event_time": event["event_time"], "created_at": now, "updated_at": now,
            })
        return rows
