"""jsonutil's cheap pre-checks give the answers of the slow checks they stand in for."""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st

from sst.jsonutil import (
    _has_long_digit_run,
    dumps,
    loads,
    may_hold_non_finite,
    nesting_depth,
    non_finite_path,
    parse,
    shallow,
)

json_values = st.recursive(
    st.none() | st.integers() | st.text(alphabet="ab{}[]\"", max_size=5),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=60)


@given(json_values, st.integers(min_value=0, max_value=40))
def test_shallow_text_never_nests_deeper_than_its_limit(value, limit):
    text = dumps(value)
    if shallow(text, limit):
        assert nesting_depth(value, limit) <= limit
    if shallow(text.encode(), limit):
        assert nesting_depth(value, limit) <= limit


@given(st.binary(max_size=80) | st.text(alphabet="0123456789 ,.-e٣", max_size=80).map(
    lambda t: t.encode()))
@example(b"1" * 19)
@example(b'{"n":' + b"9" * 18 + b"}")
@example(b"x" + b"0" * 25 + b"x")
def test_long_digit_run_matches_the_regex(data):
    assert _has_long_digit_run(data) == (re.search(rb"\d{19}", data) is not None)


def test_long_integers_keep_every_digit():
    assert loads(b'{"n": 1234567890123456789012345}') == {"n": 1234567890123456789012345}
    assert loads(b'{"n": 123456789012345678}') == {"n": 123456789012345678}


@example(b'{"a": 1e309}')
@example(b'{"a": -2E+400, "b": [1, 2]}')
@example(b'{"id": 1234567890123456789012345678901234567890}')
@example(b'[' + b'9' * 400 + b']')
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats()
                    | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c,
                                                                     max_size=4),
                    max_leaves=12).map(lambda v: repr(v).replace("'", '"')
                                       .replace("None", "null").replace("True", "true")
                                       .replace("False", "false").replace("inf", "1e999")
                                       .encode()))
def test_parse_says_finite_only_when_no_number_overflows(data):
    """parse()'s `finite` spares ingest a scan of the body: it must never be True for a body
    holding a number that reads as inf (the one case prepare refuses, M1)."""
    try:
        value, finite = parse(data)
    except Exception:  # noqa: BLE001 - not JSON (repr of odd floats, nan): nothing to check
        return
    holds_inf = non_finite_path(value) is not None
    if finite:
        assert not holds_inf
    else:
        assert may_hold_non_finite(data)
