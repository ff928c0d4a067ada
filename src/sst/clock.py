"""Time parsing and Segment's clock-skew correction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# A corrected time further in the future than this is clamped to the receive time:
# platforms reject future events, and a wild client clock must not fool reports.
FUTURE_TOLERANCE = timedelta(minutes=5)


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_time(value) -> datetime:
    """Parse an ISO-8601 string into an aware UTC datetime; naive means UTC."""
    if not isinstance(value, str):
        raise ValueError("not an ISO-8601 date-time string")
    text = value.strip()
    if len(text) > 40:
        raise ValueError("not an ISO-8601 date-time string")
    try:
        dt = datetime.fromisoformat(text)
        if dt.tzinfo is None:
            return dt.replace(tzinfo=UTC)
        return dt.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is past datetime.max in UTC
        raise ValueError("date-time out of range") from None
    except ValueError:
        raise ValueError("not an ISO-8601 date-time string") from None


def corrected_event_time(received_at, timestamp=None, sent_at=None) -> datetime:
    """Segment's rule: timestamp = receivedAt - (sentAt - timestamp).

    The client's clock may be off; sentAt and timestamp come from the same clock, so their
    difference is trustworthy and is applied to our own receive time.
    """
    if timestamp is None:
        return received_at
    if sent_at is None:
        event_time = timestamp
    else:
        try:
            event_time = received_at - (sent_at - timestamp)
        except OverflowError:  # a skew of millennia: the client's times are nonsense
            return received_at
    if event_time > received_at + FUTURE_TOLERANCE:
        return received_at
    return event_time


def to_db(dt: datetime | None):
    """DATETIME columns hold naive UTC."""
    if dt is None:
        return None
    if dt.tzinfo is not UTC:  # already UTC (nearly always): skip the conversion
        dt = dt.astimezone(UTC)
    return dt.replace(tzinfo=None)


def from_db(dt: datetime | None):
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def iso(dt: datetime | None) -> str | None:
    """ISO-8601 with milliseconds and Z, as Segment writes times."""
    if dt is None:
        return None
    dt = from_db(dt).astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_relative(value: str, now: datetime | None = None) -> datetime:
    """'7d', '12h', '30m' before now, or an ISO date/date-time: every --since/--until option
    and /admin's window parameters. A ValueError's text says what is accepted."""
    now = now or utcnow()
    text = value.strip()
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    if len(text) >= 2 and text[-1] in units and text[:-1].isdigit():
        return now - timedelta(**{units[text[-1]]: int(text[:-1])})
    try:
        return parse_time(text)
    except (ValueError, TypeError):
        raise ValueError(f"{value!r} is not '7d', '12h', '30m' or an ISO date") from None
