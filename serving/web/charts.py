"""Charts drawn on the server as inline SVG: nothing to download, nothing to run in the
browser, and every figure is also on the page as text for a screen reader."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

from features.core.html import esc

RAISES = "#b42318"  # red: raises the risk
LOWERS = "#067647"  # green: lowers it
T = TypeVar("T")


def bar(contribution: float, largest: float, width: int = 120, height: int = 12) -> str:
    """One reason's contribution as a bar, its length relative to the largest shown; red to
    the right when it raises the risk, green to the left when it lowers it."""
    half = width / 2
    length = 0.0 if largest <= 0 else half * min(abs(contribution) / largest, 1.0)
    x = half if contribution > 0 else half - length
    colour = RAISES if contribution > 0 else LOWERS
    return (
        f'<svg class="bar" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-hidden="true"><line x1="{half}" y1="0" x2="{half}" y2="{height}" stroke="#667085"/>'
        f'<rect x="{x:.1f}" y="2" width="{max(length, 1):.1f}" height="{height - 4}" '
        f'fill="{colour}"/></svg>'
    )


def history(
    months: Sequence[str],
    probability: Sequence[float],
    in_cohort: Sequence[bool],
    label: str,
    axis: str,
) -> str:
    """A person's monthly risk on a percent axis from 0 that never passes 100%; a month
    outside the task's cohort is a gap, not a point (nobody was scored for it as a member)."""
    shown = [
        p * 100 if inside else math.nan for p, inside in zip(probability, in_cohort, strict=True)
    ]
    peak = max([v for v in shown if not math.isnan(v)] or [0.0])
    ceiling = min(100.0, max(10.0, math.ceil(peak / 10 + 0.5) * 10))
    return axes_chart(months, shown, ceiling, f"{axis} (%)", lambda v: f"{v:.0f}%", label)


def trend(
    months: Sequence[str],
    values: Sequence[float],
    label: str,
    axis: str,
    band: tuple[Sequence[float], Sequence[float]] | None = None,
    reference: Sequence[float] | None = None,
) -> str:
    """An indicator over the months on an axis from 0, so that a change of a few points
    looks like one; its top a round number above the largest value or interval. `band`: the
    95% interval of each month, shaded; `reference`: a grey line to compare with (the city)."""
    seen = [*values, *(band[1] if band else ()), *(reference or ())]
    ceiling = round_ceiling(max([v for v in seen if not math.isnan(v)] or [0.0]))
    digits = 0 if ceiling >= 10 else 1 if ceiling >= 1 else 2
    return axes_chart(
        months, values, ceiling, axis, lambda v: f"{v:.{digits}f}", label, band, reference
    )


def round_ceiling(peak: float) -> float:
    """A round number a tenth above `peak` (1 when there is nothing to show)."""
    step = 10 ** math.floor(math.log10(peak)) if peak > 0 else 1.0
    return math.ceil(peak * 1.1 / step) * step or 1.0


def _runs(points: Sequence[T | None]) -> list[list[T]]:
    """The unbroken stretches of points (None: a gap)."""
    runs: list[list[T]] = [[]]
    for p in points:
        if p is None:
            runs.append([])
        else:
            runs[-1].append(p)
    return [r for r in runs if r]


def _y_grid(levels: Sequence[tuple[float, str]], left: int, end: int, stroke: str) -> list[str]:
    """Horizontal grid lines at the heights given, each with its label left of the axis."""
    return [
        f'<line x1="{left}" y1="{y:.1f}" x2="{end}" y2="{y:.1f}" stroke="{stroke}"/>'
        f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">'
        f"{esc(text)}</text>"
        for y, text in levels
    ]


def _path(points: Sequence[tuple[float, float]]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in points)


def axes_chart(
    labels: Sequence[str],
    values: Sequence[float],
    ceiling: float,
    axis: str,
    tick: Callable[[float], str],
    label: str,
    band: tuple[Sequence[float], Sequence[float]] | None = None,
    reference: Sequence[float] | None = None,
    width: int = 340,
    height: int = 170,
) -> str:
    """A line with a point per value (NaN: a gap) over x `labels`, on a y axis from 0 to
    `ceiling` titled `axis`, ticked at 0, the middle and the top as `tick` writes them;
    every third label is printed under the axis (every sixth past a year), the last among
    them. `band` (lower, upper) is shaded behind the line, `reference` drawn as a dashed grey
    line."""
    left, right, top, bottom = 40, 30, 20, 24
    n = max(len(labels) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        x = left + (width - left - right) * i / n
        y = top + (height - top - bottom) * (1 - min(v, ceiling) / ceiling)
        return x, y

    grid = [f'<text x="4" y="12" font-size="10">{esc(axis)}</text>']
    levels = [ceiling * k / 2 for k in range(3)]
    grid += _y_grid([(xy(0, v)[1], tick(v)) for v in levels], left, width - right, "#d0d5dd")
    shade = []
    if band is not None:
        pairs = [
            None if math.isnan(lo) or math.isnan(hi) else (i, lo, hi)
            for i, (lo, hi) in enumerate(zip(*band, strict=True))
        ]
        for run in _runs(pairs):
            outline = [xy(i, hi) for i, _, hi in run] + [xy(i, lo) for i, lo, _ in run[::-1]]
            shade.append(f'<polygon class="band" fill="#b2ccff" points="{_path(outline)}"/>')
    if reference is not None:
        shade += [
            f'<polyline fill="none" stroke="#98a2b3" stroke-dasharray="4 3" points="{_path(r)}"/>'
            for r in _runs([None if math.isnan(v) else xy(i, v) for i, v in enumerate(reference)])
        ]
    dots = [
        f'<circle cx="{xy(i, v)[0]:.1f}" cy="{xy(i, v)[1]:.1f}" r="3.5" fill="#175cd3">'
        f"<title>{esc(m)}: {esc(tick(v))}</title></circle>"
        for i, (m, v) in enumerate(zip(labels, values, strict=True))
        if not math.isnan(v)
    ]
    lines = "".join(
        f'<polyline fill="none" stroke="#175cd3" stroke-width="2" points="{_path(run)}"/>'
        for run in _runs([None if math.isnan(v) else xy(i, v) for i, v in enumerate(values)])
        if len(run) > 1
    )
    every = 3 if len(labels) <= 12 else 6
    ticks = "".join(
        f'<text x="{xy(i, 0)[0]:.1f}" y="{height - 6}" font-size="10" text-anchor="middle">'
        f"{esc(m)}</text>"
        for i, m in enumerate(labels)
        if i % every == (len(labels) - 1) % every
    )
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{esc(label)}">'
        f"{''.join(grid)}{''.join(shade)}{lines}{''.join(dots)}{ticks}</svg>"
    )


def funnel_chart(
    points: Sequence[tuple[str, float, float, str]],
    curve: dict[str, Sequence[float]],
    target: float,
    axes: tuple[str, str],
    tick: Callable[[float], str],
    label: str,
    width: int = 340,
    height: int = 220,
) -> str:
    """A funnel plot: each unit (name, size, value, "above"/"below"/"within") against its
    size, the target as a line, the 95% limits dashed and the 99.8% limits solid (`curve`:
    sizes `n` and the limits `lo95`, `hi95`, `lo998`, `hi998` at each). The axes span the
    curve's sizes and what the units and limits reach. A unit outside the 99.8% limits is
    drawn filled and named; the others hollow."""
    left, right, top, bottom = 44, 12, 20, 30
    sizes = [n for _, n, _, _ in points] + list(curve["n"])
    x_lo, x_hi = min(sizes), max(sizes)
    x_hi = x_hi if x_hi > x_lo else x_lo + 1
    seen = [v for _, _, v, _ in points] + [target]
    seen += [v for k in ("lo998", "hi998") for v in curve[k]]
    finite = [v for v in seen if not math.isnan(v)] or [0.0, 1.0]
    y_lo, y_hi = min(finite), max(finite)
    pad = (y_hi - y_lo) * 0.05 or 1.0
    y_lo, y_hi = max(0.0, y_lo - pad), y_hi + pad

    def xy(n: float, v: float) -> tuple[float, float]:
        x = left + (width - left - right) * (n - x_lo) / (x_hi - x_lo)
        y = top + (height - top - bottom) * (1 - (min(max(v, y_lo), y_hi) - y_lo) / (y_hi - y_lo))
        return x, y

    grid = [
        f'<text x="4" y="12" font-size="10">{esc(axes[1])}</text>'
        f'<text x="{width - right}" y="{height - 4}" font-size="10" text-anchor="end">'
        f"{esc(axes[0])}</text>"
    ]
    levels = [y_lo + (y_hi - y_lo) * k / 2 for k in range(3)]
    grid += _y_grid([(xy(x_lo, v)[1], tick(v)) for v in levels], left, width - right, "#eaecf0")
    for k, anchor in ((0, "start"), (2, "end")):
        n = x_lo + (x_hi - x_lo) * k / 2
        x, _ = xy(n, y_lo)
        grid.append(
            f'<text x="{x:.1f}" y="{height - 16}" font-size="10" text-anchor="{anchor}">'
            f"{n:,.0f}</text>"
        )
    lines = []
    for name, dash in (("95", ' stroke-dasharray="4 3"'), ("998", "")):
        for side in ("lo", "hi"):
            path = [xy(n, v) for n, v in zip(curve["n"], curve[side + name], strict=True)]
            lines.append(f'<polyline fill="none" stroke="#667085"{dash} points="{_path(path)}"/>')
    if not math.isnan(target):
        (x0, y0), (x1, _) = xy(x_lo, target), xy(x_hi, target)
        lines.append(f'<line x1="{x0}" y1="{y0:.1f}" x2="{x1}" y2="{y0:.1f}" stroke="#175cd3"/>')
    dots = []
    for name, n, v, versus in points:
        if math.isnan(v):
            continue
        x, y = xy(n, v)
        out = versus in ("above", "below")
        fill = "#b42318" if out else "#fff"
        dots.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{fill}" stroke="#b42318">'
            f"<title>{esc(name)}: {esc(tick(v))}</title></circle>"
            + (
                f'<text x="{x + 6:.1f}" y="{y + 4:.1f}" font-size="10">{esc(name)}</text>'
                if out
                else ""
            )
        )
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{esc(label)}">'
        f"{''.join(grid)}{''.join(lines)}{''.join(dots)}</svg>"
    )
