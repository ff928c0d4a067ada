"""Marshmallow schemas for Segment's message spec."""

from __future__ import annotations

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

from sst.clock import parse_time
from sst.models import ID_LEN

MESSAGE_TYPES = ("track", "page", "screen", "identify", "alias", "group")


class IdField(fields.Field):
    """An id: Segment allows strings and numbers; stored as a string."""

    def __init__(self, max_length=ID_LEN, **kwargs):
        super().__init__(allow_none=True, **kwargs)
        self.max_length = max_length

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValidationError("must be a string or a number")
        text = value if isinstance(value, str) else str(value)
        text = text.strip()
        if len(text) > self.max_length:
            raise ValidationError(f"longer than {self.max_length} characters")
        return text or None


class TimeField(fields.Field):
    """ISO-8601 date-time -> aware UTC datetime."""

    def __init__(self, **kwargs):
        super().__init__(allow_none=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return parse_time(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class MessageSchema(Schema):
    """One Segment message. Unknown top-level keys are kept (Segment passes them through)."""

    class Meta:
        unknown = INCLUDE

    type = fields.String(required=True, validate=validate.OneOf(MESSAGE_TYPES))
    messageId = IdField()
    anonymousId = IdField()
    userId = IdField(max_length=255)
    previousId = IdField(max_length=255)
    groupId = IdField(max_length=255)
    event = fields.String(validate=validate.Length(min=1, max=255), allow_none=True)
    name = fields.String(validate=validate.Length(max=255), allow_none=True)
    category = fields.String(allow_none=True)
    properties = fields.Dict(allow_none=True)
    traits = fields.Dict(allow_none=True)
    context = fields.Dict(allow_none=True)
    integrations = fields.Dict(allow_none=True)
    timestamp = TimeField()
    sentAt = TimeField()
    originalTimestamp = TimeField()
    writeKey = fields.String(allow_none=True)

    @validates_schema
    def _per_type(self, data, **kwargs):
        kind = data.get("type")
        if kind == "track" and not data.get("event"):
            raise ValidationError("a track call needs an event name", "event")
        if kind == "alias" and not data.get("previousId"):
            raise ValidationError("an alias call needs previousId", "previousId")
        if kind == "group" and not data.get("groupId"):
            raise ValidationError("a group call needs groupId", "groupId")


message_schema = MessageSchema()

# quick_load(): what message_schema.load() returns, for the messages that are plainly valid.
# marshmallow costs ~35 µs per message on the ingest hot path (docs/benchmarks.md); this
# returns None, and leaves the verdict to marshmallow, for anything it is not sure of (numeric
# ids, a wrong type, a bad date, a missing per-type field). tests/test_ingest_schema.py checks it
# against the schema.
_QUICK_IDS = tuple((name, f.max_length) for name, f in MessageSchema._declared_fields.items()
                   if isinstance(f, IdField))
_QUICK_TIMES = tuple(name for name, f in MessageSchema._declared_fields.items()
                     if isinstance(f, TimeField))
_QUICK_DICTS = ("properties", "traits", "context", "integrations")
_QUICK_STRINGS = (("event", 1, 255), ("name", 0, 255), ("category", 0, None),
                  ("writeKey", 0, None))
_QUICK_KNOWN = frozenset(MessageSchema._declared_fields)


def quick_load(raw: dict) -> dict | None:
    """message_schema.load(raw) when raw is plainly valid, else None (ask marshmallow)."""
    kind = raw.get("type")
    if kind not in MESSAGE_TYPES or type(kind) is not str:
        return None
    out = dict(raw)
    for name, limit in _QUICK_IDS:
        value = raw.get(name)
        if value is not None:
            if type(value) is not str:
                return None
            text = value.strip()
            if len(text) > limit:
                return None
            out[name] = text or None
    for name, low, high in _QUICK_STRINGS:
        value = raw.get(name)
        if value is not None and (type(value) is not str or len(value) < low
                                  or (high is not None and len(value) > high)):
            return None
    for name in _QUICK_DICTS:
        value = raw.get(name)
        if value is not None:
            if type(value) is not dict:
                return None
            out[name] = dict(value)
    for name in _QUICK_TIMES:
        value = raw.get(name)
        if value is not None:
            try:
                out[name] = parse_time(value)
            except ValueError:
                return None
    if ((kind == "track" and not out.get("event"))
            or (kind == "alias" and not out.get("previousId"))
            or (kind == "group" and not out.get("groupId"))):
        return None
    return out


def flat_errors(messages) -> dict:
    """marshmallow's nested errors -> {"field": "first message"}."""
    out = {}
    for key, val in messages.items():
        if isinstance(val, dict):
            for sub, text in flat_errors(val).items():
                out[f"{key}.{sub}"] = text
        else:
            out[str(key)] = val[0] if isinstance(val, list) and val else str(val)
    return out
