"""JSON in and out: orjson where it can, the standard library where orjson refuses."""

from __future__ import annotations

import json
import math
import re

import orjson

# 19 digits in a row, found as a substring once every digit is mapped to "0" and anything else
# to " ": the same answer as re.search(rb"\d{19}"), in 0.7 µs instead of 6 for a 700-byte body.
_DIGITS_AS_ZERO = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))
_LONG_RUN = b"0" * 19


def _has_long_digit_run(data: bytes) -> bool:
    return _LONG_RUN in data.translate(_DIGITS_AS_ZERO)


# Deeper bodies are refused as malformed: no real message nests this far, and it keeps every
# later dumps() (orjson stops at 254 levels, the stdlib at the recursion limit) safe.
MAX_PARSE_DEPTH = 64


class MalformedJSON(ValueError):
    pass


def nesting_depth(value, limit: int) -> int:
    """How many arrays/objects deep `value` goes, counting stops once past `limit`."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        stack.extend((child, level + 1) for child in children
                     if isinstance(child, dict | list))
    return deepest


def shallow(data: bytes | str, limit: int) -> bool:
    """True when JSON text cannot nest deeper than `limit`: it holds no more brackets than
    that in all (strings included, so it errs on the safe side). Two C-speed counts spare
    the walk of nesting_depth() for nearly every real message."""
    if isinstance(data, str):
        return data.count("{") + data.count("[") <= limit
    return data.count(b"{") + data.count(b"[") <= limit


def _no_constants(name):
    raise ValueError(f"{name} is not valid JSON")


def loads(data: bytes | str):
    """Parse JSON strictly: no NaN/Infinity, no lone surrogates, big integers allowed,
    at most MAX_PARSE_DEPTH levels."""
    return parse(data)[0]


def parse(data: bytes | str) -> tuple[object, bool]:
    """(value, finite) as loads() reads it; `finite` is True when no number in it can be
    too large for a double. orjson refuses such numbers (1e309), so whatever it parsed is
    finite and the body need not be scanned; the stdlib, which reads them as inf, parses
    only what orjson refused."""
    try:
        # orjson reads integers beyond 64 bits as floats, losing digits (an order id of 25
        # digits would change); bodies holding such long digit runs go to the stdlib.
        if _has_long_digit_run(data if isinstance(data, bytes)
                               else data.encode("utf-8", "replace")):
            raise orjson.JSONDecodeError("long integer", "", 0)
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            value = json.loads(data, parse_constant=_no_constants)
        except (ValueError, UnicodeError, RecursionError) as exc:
            raise MalformedJSON(str(exc)[:200]) from None
        if nesting_depth(value, MAX_PARSE_DEPTH) > MAX_PARSE_DEPTH:
            raise MalformedJSON(f"nested deeper than {MAX_PARSE_DEPTH} levels") from None
        try:  # lone surrogates cannot be stored as utf8mb4
            json.dumps(value, default=str, ensure_ascii=False).encode("utf-8")
        except (ValueError, UnicodeError) as exc:
            raise MalformedJSON(str(exc)[:200]) from None
        return value, not may_hold_non_finite(
            data if isinstance(data, bytes) else data.encode("utf-8", "replace"))
    if (not shallow(data, MAX_PARSE_DEPTH)
            and nesting_depth(value, MAX_PARSE_DEPTH) > MAX_PARSE_DEPTH):
        raise MalformedJSON(f"nested deeper than {MAX_PARSE_DEPTH} levels")
    return value, True


def dumps(value) -> str:
    """JSON text; never `Infinity`/`NaN` (invalid JSON that MariaDB's CHECK refuses): the
    stdlib fallback raises ValueError for them. Callers keep non-finite numbers out (M1)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False)


def dumps_text(value) -> str:
    """Text for a record that is not a JSON column (a refused body): what dumps gives, or,
    for a value holding 1e309, the stdlib's text with `Infinity` (shown, never parsed)."""
    try:
        return dumps(value)
    except ValueError:
        return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))


# A number too large for a double (1e309, or 309+ digits with a fraction) parses to inf
# in the stdlib; orjson refuses it. Its text needs an exponent of 3+ digits or a run of 309
# digits, so a body without either cannot hold one and skips the walk below.
_MAY_OVERFLOW = re.compile(rb"[0-9.][eE][+]?[0-9]{3}|[0-9]{309}")


def may_hold_non_finite(data: bytes) -> bool:
    return _MAY_OVERFLOW.search(data) is not None


def non_finite_path(value, prefix="") -> str | None:
    """The dotted path of the first number that is not finite (1e309 parses to inf), or None.

    Such a number cannot be stored (MariaDB's JSON check refuses Infinity) nor sent to a
    platform, so the message that holds it is refused alone (contract section 3)."""
    stack = [(value, prefix)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, float):
            if not math.isfinite(node):
                return path or "(the message)"
        elif isinstance(node, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(node))
    return None
