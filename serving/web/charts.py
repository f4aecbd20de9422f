"""Charts drawn on the server as inline SVG: nothing to download, nothing to run in the
browser, and every figure is also on the page as text for a screen reader."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from features.core.html import esc

RAISES = "#b42318"  # red: raises the risk
LOWERS = "#067647"  # green: lowers it


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


def trend(months: Sequence[str], values: Sequence[float], label: str, axis: str) -> str:
    """An indicator over the months on an axis from 0, so that a change of a few points
    looks like one; its top a round number above the largest value."""
    peak = max([v for v in values if not math.isnan(v)] or [0.0])
    step = 10 ** math.floor(math.log10(peak)) if peak > 0 else 1.0
    ceiling = math.ceil(peak * 1.1 / step) * step or 1.0
    digits = 0 if ceiling >= 10 else 1 if ceiling >= 1 else 2
    return axes_chart(months, values, ceiling, axis, lambda v: f"{v:.{digits}f}", label)


def axes_chart(
    labels: Sequence[str],
    values: Sequence[float],
    ceiling: float,
    axis: str,
    tick: Callable[[float], str],
    label: str,
    width: int = 340,
    height: int = 170,
) -> str:
    """A line with a point per value (NaN: a gap) over x `labels`, on a y axis from 0 to
    `ceiling` titled `axis`, ticked at 0, the middle and the top as `tick` writes them;
    every third label is printed under the axis, the last among them."""
    left, right, top, bottom = 40, 30, 20, 24
    n = max(len(labels) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        x = left + (width - left - right) * i / n
        y = top + (height - top - bottom) * (1 - v / ceiling)
        return x, y

    grid = [f'<text x="4" y="12" font-size="10">{esc(axis)}</text>']
    for k in range(3):
        v = ceiling * k / 2
        _, y = xy(0, v)
        grid.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#d0d5dd"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">'
            f"{esc(tick(v))}</text>"
        )
    runs: list[list[tuple[float, float]]] = [[]]
    dots = []
    for i, (m, v) in enumerate(zip(labels, values, strict=True)):
        if math.isnan(v):
            runs.append([])
            continue
        x, y = xy(i, v)
        runs[-1].append((x, y))
        dots.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="#175cd3">'
            f"<title>{esc(m)}: {esc(tick(v))}</title></circle>"
        )
    lines = "".join(
        '<polyline fill="none" stroke="#175cd3" stroke-width="2" points="'
        + " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
        + '"/>'
        for run in runs
        if len(run) > 1
    )
    ticks = "".join(
        f'<text x="{xy(i, 0)[0]:.1f}" y="{height - 6}" font-size="10" text-anchor="middle">'
        f"{esc(m)}</text>"
        for i, m in enumerate(labels)
        if i % 3 == (len(labels) - 1) % 3
    )
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{esc(label)}">'
        f"{''.join(grid)}{lines}{''.join(dots)}{ticks}</svg>"
    )
