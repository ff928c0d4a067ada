"""ingest.lean: the ingest insert's own SQL literals escape exactly as PyMySQL does."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymysql.converters import escape_string

from sst.ingest.lean import escape, literal, values_tuple

NASTY = ["", "plain", "it's", 'say "hi"', "back\\slash", "\\'", "nul\x00byte", "ctrl-z\x1a",
         "cr\rlf\n", "percent %s %(x)s", "emoji 😀", "é\u2028", "'; DROP TABLE events; --"]


@pytest.mark.parametrize("text", NASTY)
def test_escape_matches_pymysql_on_known_cases(text):
    assert escape(text) == escape_string(text)


@given(st.text(alphabet=st.sampled_from("ab\\'\"\n\r\x00\x1a%é😀 "), max_size=40) | st.text())
def test_escape_matches_pymysql(text):
    assert escape(text) == escape_string(text)


def test_literals_by_type():
    assert literal(None) == "NULL"
    assert literal(True) == "1" and literal(False) == "0"
    assert literal(42) == "42"
    assert literal(1.5) == "1.5"
    assert literal("it's") == "'it\\'s'"
    assert literal(datetime(2026, 11, 26, 10, 15, 30, 123)) == "'2026-11-26 10:15:30.000123'"
    assert literal(datetime(2026, 11, 26, 10, 15, 30)) == "'2026-11-26 10:15:30'"
    assert values_tuple(["a", None, 1]) == "('a', NULL, 1)"


@pytest.mark.parametrize("value", [datetime.now(UTC), {"a": 1}, [1], b"x", math.nan, math.inf])
def test_values_it_does_not_know_raise_type_error(value):
    with pytest.raises(TypeError):
        literal(value)
