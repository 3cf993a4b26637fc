"""Inline SVG charts, drawn on the server: no JavaScript library, nothing fetched, readable by anyone.

Each chart is an `<svg role="img">` with a label saying what it shows, scales to its container's
width (viewBox), draws each series as a polyline (one vertex per value; `data-points` says how
many) and marks the points (`<circle class="pt">` with a `<title>` tooltip) while there are few. Colours come from CSS classes (`s0`..`s5`), chosen with
enough contrast on the page's background in both colour schemes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT = 640, 240
PAD_L, PAD_R, PAD_T, PAD_B = 56, 16, 14, 38
MARKED_POINTS = 60


@dataclasses.dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float]]


@dataclasses.dataclass(frozen=True)
class Marker:
    """A vertical line at x with a label (a restart, a resume)."""

    x: float
    label: str


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e6 or abs(v) < 0.01:
        return f"{v:.3g}"
    if abs(v) >= 1000:
        return f"{v:.0f}"
    return f"{v:.3f}".rstrip("0").rstrip(".")


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    out, v = [], first
    while v <= hi + step * 1e-9:
        out.append(round(v, 12))
        v += step
    return out


def _range(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if lo == hi:
        lo, hi = lo - (abs(lo) * 0.1 or 1), hi + (abs(hi) * 0.1 or 1)
        if min(values) >= 0:
            lo = max(0.0, lo)  # counts, ratios and losses never go below zero
    return lo, hi


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str = "",
    markers: Sequence[Marker] = (),
    chart_id: str = "",
) -> str:
    """Lines with points over a shared x axis; markers as dashed vertical lines."""
    drawn = [s for s in series if s.points]
    if not drawn:
        return f'<p class="empty">No points yet for {escape(title)}.</p>'
    xs = [x for s in drawn for x, _ in s.points] + [m.x for m in markers]
    ys = [y for s in drawn for _, y in s.points]
    x0, x1 = _range(xs)
    y0, y1 = _range(ys)
    pw, ph = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B

    def sx(x: float) -> float:
        return PAD_L + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return PAD_T + (1 - (y - y0) / (y1 - y0)) * ph

    summary = "; ".join(
        f"{s.name}: {len(s.points)} points, last {_fmt(s.points[-1][1])} at {x_label} {_fmt(s.points[-1][0])}"
        for s in drawn
    )
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}: {escape(summary)}"'
        + (f' id="{escape(chart_id)}"' if chart_id else "")
        + ">",
        f"<title>{escape(title)}</title>",
    ]
    for t in _ticks(y0, y1):
        y = sy(t)
        parts.append(f'<line class="grid" x1="{PAD_L}" x2="{WIDTH - PAD_R}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    for t in _ticks(x0, x1, 6):
        x = sx(t)
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{HEIGHT - PAD_B + 16}" text-anchor="middle">{_fmt(t)}</text>'
        )
    parts.append(
        f'<text class="axis" x="{PAD_L + pw / 2:.0f}" y="{HEIGHT - 4}" text-anchor="middle">{escape(x_label)}</text>'
    )
    if y_label:
        parts.append(
            f'<text class="axis" transform="translate(12 {PAD_T + ph / 2:.0f}) rotate(-90)" '
            f'text-anchor="middle">{escape(y_label)}</text>'
        )
    for m in markers:
        x = sx(m.x)
        parts.append(
            f'<g class="marker"><line x1="{x:.1f}" x2="{x:.1f}" y1="{PAD_T}" y2="{PAD_T + ph}"/>'
            f'<text x="{x + 3:.1f}" y="{PAD_T + 10}">{escape(m.label)}</text>'
            f"<title>{escape(m.label)} at {escape(x_label)} {_fmt(m.x)}</title></g>"
        )
    for i, s in enumerate(drawn):
        cls = f"s{i % 6}"
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s.points)
        parts.append(f'<g class="series {cls}" data-series="{escape(s.name)}" data-points="{len(s.points)}">')
        parts.append(f'<polyline points="{coords}"/>')
        # A marked point (with its tooltip) per value while there are few; with many, only the
        # latest: hundreds of titled circles cost the browser more than the line they sit on.
        marked = s.points if len(s.points) <= MARKED_POINTS else s.points[-1:]
        for x, y in marked:
            parts.append(
                f'<circle class="pt" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5">'
                f"<title>{escape(s.name)} {_fmt(y)} at {escape(x_label)} {_fmt(x)}</title></circle>"
            )
        parts.append("</g>")
    parts.append("</svg>")
    legend = "".join(
        f'<li><span class="swatch s{i % 6}" aria-hidden="true"></span>{escape(s.name)}</li>'
        for i, s in enumerate(drawn)
    )
    return f'<figure class="chart-box">{"".join(parts)}<figcaption><ul class="legend">{legend}</ul></figcaption></figure>'


def scatter_chart(
    series: Sequence[Series],
    *,
    names: Sequence[Sequence[str]],
    title: str,
    x_label: str,
    y_label: str,
    log_x: bool = False,
    chart_id: str = "",
) -> str:
    """Points, not lines: one per trial (its name in the tooltip), x on a log scale if asked.

    A search's parameter values are unordered samples: joining them with a line would draw a trend
    that is not there. `names[i][j]` names point j of series i.
    """
    drawn = [(i, s) for i, s in enumerate(series) if s.points]
    if not drawn:
        return f'<p class="empty">No points yet for {escape(title)}.</p>'

    def fx(x: float) -> float:
        return math.log10(x) if log_x else x

    xs = [fx(x) for _, s in drawn for x, _ in s.points]
    ys = [y for _, s in drawn for _, y in s.points]
    x0, x1 = _range(xs) if not log_x or max(xs) > min(xs) else (min(xs) - 0.5, max(xs) + 0.5)
    y0, y1 = _range(ys)
    pw, ph = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B

    def sx(x: float) -> float:
        return PAD_L + (fx(x) - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return PAD_T + (1 - (y - y0) / (y1 - y0)) * ph

    summary = "; ".join(f"{s.name}: {len(s.points)} points" for _, s in drawn)
    scale = " (log scale)" if log_x else ""
    parts = [
        f'<svg class="chart scatter" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}: {escape(summary)}"'
        + (f' id="{escape(chart_id)}"' if chart_id else "")
        + ">",
        f"<title>{escape(title)}</title>",
    ]
    for t in _ticks(y0, y1):
        y = sy(t)
        parts.append(f'<line class="grid" x1="{PAD_L}" x2="{WIDTH - PAD_R}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    if log_x:
        # Ticks at 1, 2 and 5 of each decade inside the range (in log space the plain ticks would be
        # exponents, which nobody reads as learning rates).
        ticks = [
            m * 10.0**d
            for d in range(math.floor(x0), math.ceil(x1) + 1)
            for m in (1, 2, 5)
            if x0 <= math.log10(m * 10.0**d) <= x1
        ]
    else:
        ticks = _ticks(x0, x1, 6)
    for t in ticks:
        x = sx(t)
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{HEIGHT - PAD_B + 16}" text-anchor="middle">{_fmt(t)}</text>'
        )
    parts.append(
        f'<text class="axis" x="{PAD_L + pw / 2:.0f}" y="{HEIGHT - 4}" text-anchor="middle">'
        f"{escape(x_label + scale)}</text>"
    )
    parts.append(
        f'<text class="axis" transform="translate(12 {PAD_T + ph / 2:.0f}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    for i, s in drawn:
        labels = list(names[i]) if i < len(names) else []
        parts.append(
            f'<g class="series s{i % 6}" data-series="{escape(s.name)}" data-points="{len(s.points)}">'
        )
        for j, (x, y) in enumerate(s.points):
            who = labels[j] if j < len(labels) else s.name
            parts.append(
                f'<circle class="pt" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4">'
                f"<title>{escape(who)}: {escape(y_label)} {_fmt(y)} at {escape(x_label)} {_fmt(x)}</title>"
                "</circle>"
            )
        parts.append("</g>")
    parts.append("</svg>")
    legend = "".join(
        f'<li><span class="swatch s{i % 6}" aria-hidden="true"></span>{escape(s.name)}</li>' for i, s in drawn
    )
    return f'<figure class="chart-box">{"".join(parts)}<figcaption><ul class="legend">{legend}</ul></figcaption></figure>'


def bar_chart(groups: Sequence[str], series: Sequence[Series], *, title: str, chart_id: str = "") -> str:
    """Grouped bars: one group per label in `groups` (x of each point is the group index)."""
    values = [y for s in series for _, y in s.points]
    if not groups or not values:
        return f'<p class="empty">Nothing to compare for {escape(title)}.</p>'
    top = max(max(values), 0.0) or 1.0
    pw, ph = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B
    group_w = pw / len(groups)
    bar_w = group_w * 0.8 / max(1, len(series))
    summary = "; ".join(
        f"{s.name} {groups[int(x)]} {_fmt(y)}" for s in series for x, y in s.points if int(x) < len(groups)
    )
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}: {escape(summary)}"'
        + (f' id="{escape(chart_id)}"' if chart_id else "")
        + f"><title>{escape(title)}</title>"
    ]
    for t in _ticks(0, top):
        y = PAD_T + (1 - t / top) * ph
        parts.append(f'<line class="grid" x1="{PAD_L}" x2="{WIDTH - PAD_R}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    for g, label in enumerate(groups):
        cx = PAD_L + group_w * (g + 0.5)
        parts.append(
            f'<text class="tick" x="{cx:.1f}" y="{HEIGHT - PAD_B + 16}" text-anchor="middle">{escape(label)}</text>'
        )
    for i, s in enumerate(series):
        for x, y in s.points:
            g = int(x)
            h = max(0.0, y) / top * ph
            bx = PAD_L + group_w * g + group_w * 0.1 + bar_w * i
            parts.append(
                f'<rect class="bar s{i % 6}" x="{bx:.1f}" y="{PAD_T + ph - h:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}"><title>{escape(s.name)} {escape(groups[g])}: {_fmt(y)}</title></rect>'
            )
    parts.append("</svg>")
    legend = "".join(
        f'<li><span class="swatch s{i % 6}" aria-hidden="true"></span>{escape(s.name)}</li>'
        for i, s in enumerate(series)
    )
    return f'<figure class="chart-box">{"".join(parts)}<figcaption><ul class="legend">{legend}</ul></figcaption></figure>'


def traffic_bar(stable: int, canary: int) -> str:
    """The traffic split as one horizontal bar (with the numbers in text too)."""
    stable = max(0, min(100, stable))
    canary = max(0, min(100 - stable, canary))
    return (
        f'<svg class="traffic" viewBox="0 0 100 8" preserveAspectRatio="none" role="img" '
        f'aria-label="traffic: stable {stable}%, canary {canary}%">'
        f'<rect class="s0" x="0" y="0" width="{stable}" height="8"/>'
        f'<rect class="s1" x="{stable}" y="0" width="{canary}" height="8"/></svg>'
    )
