"""Charts as inline SVG, drawn on the server: no plotting library in the browser, no CDN.

Each function takes numbers already computed by the analysis and only places them: a value
and its interval become a point and a band, nothing is estimated here. Every point carries a
`<title>` (the browser shows it on hover) with the exact numbers the chart rounds.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

__all__ = ["Marker", "Point", "Series", "interval_bar", "line_chart"]

ARM_COLOURS = ("#57606a", "#0969da", "#bf8700", "#8250df", "#1b7c83", "#bc4c00", "#4d2d00")
"""One colour per arm, in the experiment's arm order (the control first, in grey)."""

_WIDTH, _HEIGHT = 640, 210
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 14, 34


@dataclass(frozen=True)
class Point:
    """One period of a series: `x` in epoch milliseconds, `y` the value, `low`/`high` its
    interval (NaN when there is none); `label` is the hover text."""

    x: float
    y: float
    low: float = math.nan
    high: float = math.nan
    label: str = ""


@dataclass(frozen=True)
class Series:
    name: str
    colour: str
    points: tuple[Point, ...]


@dataclass(frozen=True)
class Marker:
    """A moment to mark with a vertical line (a prompt drift), at `x` epoch milliseconds."""

    x: float
    label: str


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """About `count` round values (1, 2 or 5 times a power of ten) covering [low, high]."""
    if not _finite(low, high) or high <= low:
        return [low] if math.isfinite(low) else []
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        value += step
    return ticks


def _y_range(series: Sequence[Series], with_zero: bool) -> tuple[float, float]:
    """Every value and each series' latest interval (what the reader judges now). Earlier,
    wider intervals (a few units, huge uncertainty) are clipped at the edges rather than
    squashing the whole history into a flat line."""
    values = [0.0] if with_zero else []
    for s in series:
        values.extend(p.y for p in s.points if math.isfinite(p.y))
        banded = [p for p in s.points if _finite(p.low, p.high)]
        if banded:
            values.extend((banded[-1].low, banded[-1].high))
    if not values:
        return -1.0, 1.0
    low, high = min(values), max(values)
    pad = (high - low) * 0.08 or (abs(high) * 0.1 or 1.0)
    return low - pad, high + pad


def _x_range(series: Sequence[Series], markers: Sequence[Marker]) -> tuple[float, float]:
    xs = [p.x for s in series for p in s.points] + [m.x for m in markers]
    if not xs:
        return 0.0, 1.0
    low, high = min(xs), max(xs)
    if high == low:  # one period: a minute either side
        return low - 60_000, high + 60_000
    return low, high


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    y_format: Callable[[float], str],
    x_format: Callable[[float], str],
    markers: Sequence[Marker] = (),
    zero_line: bool = True,
) -> Markup:
    """Lines over time, each with its interval as a band; `markers` as dashed verticals."""
    x_low, x_high = _x_range(series, markers)
    y_low, y_high = _y_range(series, zero_line)
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM

    def sx(x: float) -> float:
        return _LEFT + (x - x_low) / (x_high - x_low) * plot_w

    def sy(y: float) -> float:
        return _TOP + (y_high - y) / (y_high - y_low) * plot_h

    # ids are page-wide: one per chart, and the same on every refresh (so an unchanged chart
    # is not swapped in again)
    clip = "plot-" + hashlib.sha1(title.encode()).hexdigest()[:10]
    parts = [
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<defs><clipPath id="{clip}"><rect x="{_LEFT - 4}" y="{_TOP}" width="{plot_w + 8}" '
        f'height="{plot_h}"/></clipPath></defs>',
    ]
    for tick in nice_ticks(y_low, y_high):
        y = sy(tick)
        parts.append(
            f'<line x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#d0d7de" stroke-width="1"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#57606a">{escape(y_format(tick))}</text>'
        )
    if zero_line and y_low <= 0 <= y_high:
        parts.append(
            f'<line x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{sy(0):.1f}" y2="{sy(0):.1f}" '
            'stroke="#8c959f" stroke-width="1" stroke-dasharray="4 3"/>'
        )
    for x, anchor in ((x_low, "start"), (x_high, "end")):
        parts.append(
            f'<text x="{sx(x):.1f}" y="{_HEIGHT - 10}" text-anchor="{anchor}" font-size="11" '
            f'fill="#57606a">{escape(x_format(x))}</text>'
        )
    for marker in markers:
        x = sx(marker.x)
        parts.append(
            f'<g class="marker"><title>{escape(marker.label)}</title>'
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP}" y2="{_TOP + plot_h}" '
            'stroke="#cf222e" stroke-width="1.5" stroke-dasharray="5 3"/>'
            f'<text x="{x + 3:.1f}" y="{_TOP + 10}" font-size="10" fill="#cf222e">'
            f"{escape(marker.label)}</text></g>"
        )
    parts.append(f'<g clip-path="url(#{clip})">')
    for s in series:
        parts.append(_series_svg(s, sx, sy))
    parts.append("</g></svg>")
    return Markup("".join(parts))


def _series_svg(series: Series, sx: Callable[[float], float], sy: Callable[[float], float]) -> str:
    banded = [p for p in series.points if _finite(p.low, p.high)]
    out = [f'<g class="series" data-arm="{escape(series.name)}">']
    if len(banded) > 1:
        upper = " ".join(f"{sx(p.x):.1f},{sy(p.high):.1f}" for p in banded)
        lower = " ".join(f"{sx(p.x):.1f},{sy(p.low):.1f}" for p in reversed(banded))
        out.append(
            f'<polygon points="{upper} {lower}" fill="{series.colour}" fill-opacity="0.1" '
            'stroke="none"/>'
        )
        for edge in (upper, lower):  # each arm's bounds stay readable where bands overlap
            out.append(
                f'<polyline points="{edge}" fill="none" stroke="{series.colour}" '
                'stroke-width="1" stroke-opacity="0.6" stroke-dasharray="3 2"/>'
            )
    elif len(banded) == 1:
        p = banded[0]
        out.append(
            f'<line x1="{sx(p.x):.1f}" x2="{sx(p.x):.1f}" y1="{sy(p.low):.1f}" '
            f'y2="{sy(p.high):.1f}" stroke="{series.colour}" stroke-width="6" '
            'stroke-opacity="0.3"/>'
        )
    drawn = [p for p in series.points if math.isfinite(p.y)]
    if len(drawn) > 1:
        line = " ".join(f"{sx(p.x):.1f},{sy(p.y):.1f}" for p in drawn)
        out.append(
            f'<polyline points="{line}" fill="none" stroke="{series.colour}" stroke-width="2"/>'
        )
    for p in drawn:
        out.append(
            f'<circle cx="{sx(p.x):.1f}" cy="{sy(p.y):.1f}" r="3" fill="{series.colour}">'
            f"<title>{escape(p.label)}</title></circle>"
        )
    out.append("</g>")
    return "".join(out)


def interval_bar(
    effect: float, low: float, high: float, scale: tuple[float, float], css: str
) -> Markup:
    """A row's interval drawn inline (as GrowthBook's results table does): the band from
    `low` to `high`, the point at `effect`, the dashed zero line; `scale` is the metric's
    common (low, high), so the arms of one metric share an axis."""
    width, height, pad = 160, 18, 4
    s_low, s_high = scale
    if not _finite(s_low, s_high) or s_high <= s_low:
        return Markup("")

    def sx(x: float) -> float:
        x = min(max(x, s_low), s_high)
        return pad + (x - s_low) / (s_high - s_low) * (width - 2 * pad)

    colour = {"better": "#1a7f37", "worse": "#cf222e"}.get(css, "#57606a")
    parts = [
        f'<svg class="bar" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'xmlns="http://www.w3.org/2000/svg" aria-hidden="true">'
    ]
    if s_low <= 0 <= s_high:
        parts.append(
            f'<line x1="{sx(0):.1f}" x2="{sx(0):.1f}" y1="1" y2="{height - 1}" '
            'stroke="#8c959f" stroke-dasharray="2 2"/>'
        )
    if _finite(low, high):
        parts.append(
            f'<line x1="{sx(low):.1f}" x2="{sx(high):.1f}" y1="{height / 2}" y2="{height / 2}" '
            f'stroke="{colour}" stroke-width="5" stroke-opacity="0.45"/>'
        )
    if math.isfinite(effect):
        parts.append(f'<circle cx="{sx(effect):.1f}" cy="{height / 2}" r="3.5" fill="{colour}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_scale(rows: Sequence[tuple[float, float, float]]) -> tuple[float, float]:
    """The common axis of one metric's interval bars: every finite effect and bound, and 0,
    with a little room."""
    values = [0.0] + [v for row in rows for v in row if math.isfinite(v)]
    low, high = min(values), max(values)
    pad = (high - low) * 0.05 or 1.0
    return low - pad, high + pad
