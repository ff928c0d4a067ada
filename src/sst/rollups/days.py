"""A report window split into the whole UTC days it covers (read from the daily rollups)
and the partial days at its ends (read raw)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sst.reports import Window, as_date  # noqa: F401 - days.as_date for the rollups


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _floor(t: datetime) -> datetime:
    return _utc(t).replace(hour=0, minute=0, second=0, microsecond=0)


def _ceil(t: datetime) -> datetime:
    f = _floor(t)
    return f if f == _utc(t) else f + timedelta(days=1)


def split(window: Window) -> tuple[Window | None, list[Window]]:
    """(the whole days, as a window whose ends are midnights or None; the partial ends)."""
    lo = None if window.since is None else _ceil(window.since)
    hi = None if window.until is None else _floor(window.until)
    if lo is not None and hi is not None and lo >= hi:
        return None, [window]
    partials = []
    if window.since is not None and _utc(window.since) < lo:
        partials.append(Window(window.since, lo, window.source))
    if window.until is not None and hi < _utc(window.until):
        partials.append(Window(hi, window.until, window.source))
    return Window(lo, hi, window.source), partials


def day_conds(column, whole: Window) -> list:
    """Conditions on a rollup's day column for the whole days of a window."""
    conds = []
    if whole.since is not None:
        conds.append(column >= whole.since.date())
    if whole.until is not None:
        conds.append(column < whole.until.date())
    return conds


