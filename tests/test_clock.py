"""Time parsing and Segment's clock-skew correction (pure functions)."""

from datetime import UTC, datetime, timedelta

import pytest

from sst.clock import FUTURE_TOLERANCE, corrected_event_time, iso, parse_relative, parse_time

RECEIVED = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("text, expected", [
    ("2026-05-01T12:00:00Z", datetime(2026, 5, 1, 12, 0, tzinfo=UTC)),
    ("2026-05-01T12:00:00.123Z", datetime(2026, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)),
    ("2026-05-01T14:00:00+02:00", datetime(2026, 5, 1, 12, 0, tzinfo=UTC)),
    ("2026-05-01T12:00:00", datetime(2026, 5, 1, 12, 0, tzinfo=UTC)),  # naive means UTC
    ("  2026-05-01T12:00:00Z ", datetime(2026, 5, 1, 12, 0, tzinfo=UTC)),
    ("2026-05-01", datetime(2026, 5, 1, tzinfo=UTC)),
])
def test_parse_time_accepts_iso8601(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize("value", [
    "yesterday", "", "2026-13-01T00:00:00Z", 1714564800, None, "2026-05-01T12:00:00Z" * 3,
    # Valid ISO text whose UTC value falls outside datetime's range.
    "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00",
])
def test_parse_time_rejects_with_value_error(value):
    with pytest.raises(ValueError):
        parse_time(value)


def test_skew_is_corrected_with_sent_at():
    # The client's clock is 1 hour fast; the event happened 10 s before it was sent.
    timestamp = datetime(2026, 5, 1, 13, 0, 0, tzinfo=UTC)
    sent_at = timestamp + timedelta(seconds=10)
    assert corrected_event_time(RECEIVED, timestamp, sent_at) == RECEIVED - timedelta(seconds=10)


def test_slow_client_clock_is_corrected_too():
    timestamp = datetime(2020, 1, 1, tzinfo=UTC)
    sent_at = timestamp + timedelta(minutes=3)
    assert corrected_event_time(RECEIVED, timestamp, sent_at) == RECEIVED - timedelta(minutes=3)


def test_without_sent_at_the_timestamp_is_kept():
    timestamp = RECEIVED - timedelta(days=2)
    assert corrected_event_time(RECEIVED, timestamp, None) == timestamp


def test_without_timestamp_the_receive_time_is_the_event_time():
    assert corrected_event_time(RECEIVED, None, RECEIVED - timedelta(hours=1)) == RECEIVED


def test_a_future_time_is_clamped_to_the_receive_time():
    timestamp = RECEIVED + FUTURE_TOLERANCE + timedelta(seconds=1)
    assert corrected_event_time(RECEIVED, timestamp, None) == RECEIVED


def test_a_slightly_future_time_is_kept():
    timestamp = RECEIVED + timedelta(minutes=1)
    assert corrected_event_time(RECEIVED, timestamp, None) == timestamp


def test_a_skew_of_millennia_falls_back_to_the_receive_time():
    timestamp = datetime(1, 1, 1, tzinfo=UTC)
    sent_at = datetime(9999, 1, 1, tzinfo=UTC)
    assert corrected_event_time(RECEIVED, timestamp, sent_at) == RECEIVED


def test_iso_writes_milliseconds_and_z():
    assert iso(datetime(2026, 5, 1, 12, 0, 0, 123456)) == "2026-05-01T12:00:00.123Z"
    assert iso(None) is None


@pytest.mark.parametrize("text, delta", [
    ("7d", timedelta(days=7)), ("12h", timedelta(hours=12)), ("30m", timedelta(minutes=30)),
    ("2w", timedelta(weeks=2)), ("45s", timedelta(seconds=45)),
])
def test_parse_relative(text, delta):
    assert parse_relative(text, now=RECEIVED) == RECEIVED - delta


def test_parse_relative_takes_an_iso_date():
    assert parse_relative("2026-04-01", now=RECEIVED) == datetime(2026, 4, 1, tzinfo=UTC)
