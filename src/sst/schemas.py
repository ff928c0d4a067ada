"""Marshmallow schemas for Segment's message spec."""

from __future__ import annotations

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

from .clock import parse_time
from .models import ID_LEN

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
