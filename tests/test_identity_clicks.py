from datetime import UTC, datetime, timedelta, timezone

import pytest

from sst.identity.clicks import (
    CLICK_ID_PARAMS,
    DEFAULT_WINDOWS,
    Touch,
    best_click_ids,
    canonical_param,
)

EVENT = datetime(2026, 5, 20, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def touch(param, value, ago, device="laptop"):
    return Touch(param, value, EVENT - ago, device)


def test_empty():
    assert best_click_ids([], EVENT) == {}


def test_click_on_other_device_is_used():
    laptop = touch("fbclid", "IwAR-laptop", 2 * DAY, "laptop")
    result = best_click_ids([laptop], EVENT)
    assert result == {"fbclid": laptop}
    assert result["fbclid"].anonymous_id == "laptop"


def test_most_recent_click_across_devices_wins():
    touches = [
        touch("gclid", "old-laptop", 10 * DAY, "laptop"),
        touch("gclid", "new-phone", 1 * DAY, "phone"),
        touch("gclid", "mid-tablet", 5 * DAY, "tablet"),
    ]
    assert best_click_ids(touches, EVENT)["gclid"].value == "new-phone"


def test_each_param_independent():
    touches = [
        touch("gclid", "g", 3 * DAY, "laptop"),
        touch("fbclid", "f", 1 * DAY, "phone"),
        touch("ttclid", "t", 2 * DAY, "phone"),
    ]
    result = best_click_ids(touches, EVENT)
    assert {k: v.value for k, v in result.items()} == {"gclid": "g", "fbclid": "f", "ttclid": "t"}


def test_keeps_click_time_not_event_time():
    click = touch("fbclid", "IwAR", 3 * DAY)
    assert best_click_ids([click], EVENT)["fbclid"].seen_at == EVENT - 3 * DAY


def test_future_touches_ignored():
    touches = [touch("gclid", "before", 2 * DAY), touch("gclid", "after", -DAY)]
    assert best_click_ids(touches, EVENT)["gclid"].value == "before"


def test_only_future_touches_gives_nothing():
    assert best_click_ids([touch("gclid", "after", -timedelta(hours=1))], EVENT) == {}


def test_clock_tolerance():
    skewed = touch("gclid", "skew", -timedelta(minutes=4))
    too_late = touch("gclid", "late", -timedelta(minutes=6))
    assert best_click_ids([skewed], EVENT)["gclid"].value == "skew"
    assert best_click_ids([too_late], EVENT) == {}
    assert best_click_ids([skewed], EVENT, tolerance=timedelta(0)) == {}


def test_touch_at_event_time_counts():
    assert best_click_ids([touch("gclid", "now", timedelta(0))], EVENT)["gclid"].value == "now"


@pytest.mark.parametrize(
    ("param", "days"),
    [
        ("gclid", 90),
        ("gbraid", 90),
        ("wbraid", 90),
        ("dclid", 90),
        ("fbclid", 90),
        ("ttclid", 28),
        ("msclkid", 90),
        ("ScCid", 28),
        ("li_fat_id", 90),
        ("rdt_cid", 30),
        ("twclid", 30),
        ("epik", 30),
    ],
)
def test_default_windows(param, days):
    inside = touch(param, "in", timedelta(days=days))
    outside = touch(param, "out", timedelta(days=days, seconds=1))
    assert best_click_ids([inside], EVENT)[param].value == "in"
    assert best_click_ids([outside], EVENT) == {}


def test_all_params_have_windows():
    assert set(CLICK_ID_PARAMS) == set(DEFAULT_WINDOWS)
    assert len(CLICK_ID_PARAMS) == 12


def test_newer_click_outside_other_window_does_not_matter():
    # An old click in the window beats nothing; an expired one is dropped even if "newer" elsewhere.
    touches = [touch("ttclid", "expired", 29 * DAY), touch("gclid", "ok", 60 * DAY)]
    result = best_click_ids(touches, EVENT)
    assert "ttclid" not in result
    assert result["gclid"].value == "ok"


def test_window_override_merges_with_defaults():
    touches = [touch("gclid", "g", 10 * DAY), touch("fbclid", "f", 10 * DAY)]
    result = best_click_ids(touches, EVENT, windows={"fbclid": timedelta(days=7)})
    assert set(result) == {"gclid"}


def test_window_override_can_add_a_param():
    touches = [touch("awclid", "amazon", DAY)]
    assert best_click_ids(touches, EVENT) == {}
    result = best_click_ids(touches, EVENT, windows={"awclid": timedelta(days=14)})
    assert result["awclid"].value == "amazon"


def test_ties_are_order_independent():
    a = touch("gclid", "aaa", DAY, "laptop")
    b = touch("gclid", "bbb", DAY, "phone")
    assert best_click_ids([a, b], EVENT)["gclid"] is b
    assert best_click_ids([b, a], EVENT)["gclid"] is b


def test_same_click_seen_twice_keeps_latest_sighting():
    touches = [touch("gclid", "same", 5 * DAY, "laptop"), touch("gclid", "same", 2 * DAY, "phone")]
    assert best_click_ids(touches, EVENT)["gclid"].anonymous_id == "phone"


def test_unknown_params_and_empty_values_ignored():
    touches = [touch("utm_source", "google", DAY), touch("gclid", "", DAY)]
    assert best_click_ids(touches, EVENT) == {}


def test_param_case_is_canonicalised():
    result = best_click_ids([touch("sccid", "snap", DAY), touch("GCLID", "g", DAY)], EVENT)
    assert set(result) == {"ScCid", "gclid"}
    assert result["ScCid"].param == "ScCid"
    assert result["ScCid"].value == "snap"


def test_canonical_param():
    assert canonical_param("SCCID") == "ScCid"
    assert canonical_param("li_fat_id") == "li_fat_id"
    assert canonical_param("utm_source") is None


def test_naive_datetimes_are_utc():
    naive_event = EVENT.replace(tzinfo=None)
    aware = touch("gclid", "aware", DAY)
    naive = Touch("gclid", "naive", (EVENT - timedelta(hours=1)).replace(tzinfo=None))
    assert best_click_ids([aware, naive], naive_event)["gclid"].value == "naive"
    assert best_click_ids([aware, naive], EVENT)["gclid"].value == "naive"


def test_timezones_compare_by_instant():
    plus2 = timezone(timedelta(hours=2))
    # 13:30 at +02:00 is 11:30 UTC: before the 12:00 UTC event.
    t = Touch("gclid", "tz", datetime(2026, 5, 20, 13, 30, tzinfo=plus2))
    assert best_click_ids([t], EVENT)["gclid"].value == "tz"


def test_accepts_any_iterable():
    gen = (touch("gclid", str(i), i * DAY) for i in range(1, 5))
    assert best_click_ids(gen, EVENT)["gclid"].value == "1"
