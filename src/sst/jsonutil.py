"""JSON in and out: orjson where it can, the standard library where orjson refuses."""

from __future__ import annotations

import json

import orjson


class MalformedJSON(ValueError):
    pass


def _no_constants(name):
    raise ValueError(f"{name} is not valid JSON")


def loads(data: bytes | str):
    """Parse JSON strictly: no NaN/Infinity, no lone surrogates, big integers allowed."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    # orjson refuses integers beyond 64 bits, which JSON allows; the stdlib takes them.
    try:
        value = json.loads(data, parse_constant=_no_constants)
        dumps(value).encode("utf-8")  # lone surrogates cannot be stored as utf8mb4
    except (ValueError, UnicodeError, RecursionError) as exc:
        raise MalformedJSON(str(exc)[:200]) from None
    return value


def dumps(value) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))
