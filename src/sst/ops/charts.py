"""Small server-side SVG charts for the admin pages: no JavaScript, nothing fetched.

Every data mark is a `<rect class="mark">` carrying `data-series` and `data-value` and a
`<title>` (the browser's tooltip). Text is escaped; the result is Markup for Jinja.
"""

from __future__ import annotations

import math

from markupsafe import Markup, escape

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac")
STATE_COLORS = {"succeeded": "#59a14f", "failed": "#e15759", "skipped": "#bab0ac",
                "waiting": "#4e79a7"}
WIDTH = 560
ROW = 22
LABEL_W = 120
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def colors(series) -> dict:
    return {s: STATE_COLORS.get(s) or PALETTE[i % len(PALETTE)] for i, s in enumerate(series)}


def nice_max(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 x 10^k at or above value (an axis end)."""
    if value <= 0:
        return 1.0
    base = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * base:
            return step * base
    return 10 * base  # pragma: no cover


def _fmt(value) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def _label(text, limit=26) -> str:
    text = "(none)" if text is None else str(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _legend(series, palette, y) -> list[str]:
    out, x = [], LABEL_W
    for s in series:
        out.append(f'<rect x="{x}" y="{y}" width="10" height="10" fill="{palette[s]}"/>'
                   f'<text x="{x + 14}" y="{y + 9}">{escape(s)}</text>')
        x += 24 + 7 * len(str(s))
    return out


def _empty(message="No data in this window.") -> Markup:
    return Markup('<p class="empty">{}</p>').format(message)


def _svg(height: int, title: str, body: list[str]) -> Markup:
    return Markup(
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg" {FONT} '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>' + "".join(body) + "</svg>")


def bars(title: str, rows: list[tuple], series: list[str], *, stacked=True, unit="") -> Markup:
    """Horizontal bars: rows of (label, {series: value}); stacked, or one bar per series."""
    rows = [(label, {s: v for s, v in values.items() if v}) for label, values in rows]
    if not any(values for _label_, values in rows):
        return _empty()
    palette = colors(series)
    per_row = 1 if stacked or len(series) == 1 else len(series)
    band = ROW if per_row == 1 else 8 * per_row + 6
    top = 22 if len(series) > 1 else 4
    peak = max((sum(v.values()) if stacked else max(v.values(), default=0))
               for _label_, v in rows)
    scale = (WIDTH - LABEL_W - 70) / nice_max(peak)
    body = _legend(series, palette, 4) if len(series) > 1 else []
    for i, (label, values) in enumerate(rows):
        y = top + i * band
        body.append(f'<text x="{LABEL_W - 6}" y="{y + band / 2 + 4:.1f}" text-anchor="end">'
                    f'{escape(_label(label))}</text>')
        x = LABEL_W
        for j, s in enumerate(series):
            v = values.get(s)
            if not v:
                continue
            w = max(1.0, v * scale)
            if stacked:
                bx, by, bh = x, y + 3, ROW - 6
                x += w
            else:
                bx, by, bh = LABEL_W, y + 3 + j * 8, 7 if per_row > 1 else ROW - 6
            body.append(
                f'<rect class="mark" data-series="{escape(s)}" data-value="{v}" x="{bx:.1f}" '
                f'y="{by}" width="{w:.1f}" height="{bh}" fill="{palette[s]}"><title>'
                f'{escape(_label(label, 80))} · {escape(s)}: {_fmt(v)}{unit}</title></rect>')
        total = sum(values.values()) if stacked else max(values.values(), default=0)
        end = LABEL_W + total * scale
        body.append(f'<text x="{end + 4:.1f}" y="{y + band / 2 + 4:.1f}" fill="#555">'
                    f'{_fmt(total)}{unit}</text>')
    return _svg(top + len(rows) * band + 4, title, body)


def columns(title: str, categories: list[str], series: dict[str, list]) -> Markup:
    """Stacked vertical columns over categories (days): series name -> values per category."""
    totals = [sum(vals[i] for vals in series.values()) for i in range(len(categories))]
    if not categories or not any(totals):
        return _empty()
    palette = colors(list(series))
    left, top, plot_h, bottom = 44, 24, 180, 28
    plot_w = WIDTH - left - 10
    step = plot_w / len(categories)
    bar_w = max(1.0, step * 0.8)
    axis = nice_max(max(totals))
    scale = plot_h / axis
    body = _legend(list(series), palette, 4)
    for k in range(5):  # horizontal grid lines and their values
        v = axis * k / 4
        y = top + plot_h - v * scale
        body.append(f'<line x1="{left}" x2="{WIDTH - 10}" y1="{y:.1f}" y2="{y:.1f}" '
                    f'stroke="#e5e5e5"/><text x="{left - 4}" y="{y + 4:.1f}" '
                    f'text-anchor="end" fill="#555">{_fmt(v)}</text>')
    every = max(1, math.ceil(len(categories) / 10))
    for i, cat in enumerate(categories):
        x = left + i * step + (step - bar_w) / 2
        y = top + plot_h
        for s, vals in series.items():
            v = vals[i]
            if not v:
                continue
            h = v * scale
            y -= h
            body.append(
                f'<rect class="mark" data-series="{escape(s)}" data-value="{v}" x="{x:.1f}" '
                f'y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{palette[s]}"><title>'
                f'{escape(cat)} · {escape(s)}: {_fmt(v)}</title></rect>')
        if i % every == 0:
            body.append(f'<text x="{left + i * step + step / 2:.1f}" y="{top + plot_h + 16}" '
                        f'text-anchor="middle" fill="#555">{escape(str(cat)[5:])}</text>')
    return _svg(top + plot_h + bottom, title, body)
