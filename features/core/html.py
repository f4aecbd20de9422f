"""Self-contained HTML reports: one page, inline SVG charts, no script and no asset from a
network (programme offices may have none). Every text that comes from data is escaped."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

STYLE = (
    "body{font-family:'Noto Sans CJK SC','WenQuanYi Zen Hei',sans-serif;max-width:72em;"
    "margin:1.5em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:right}"
    "th{background:#f3f3f3}.grid{display:flex;flex-wrap:wrap;gap:.6em}"
    ".cell{border:1px solid #ddd;padding:.3em}.cell h4{margin:.1em 0;font-size:.9em}"
    ".ok{color:#1a7f37}.warning{color:#9a6700}.alert{color:#cf222e}"
)
NOTICE = (
    "For support planning with human review only; never a basis for enforcement or sanctions. "
    "仅用于在人工复核下规划帮扶,绝不作为执法或惩处的依据。"
)


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{esc(title)}</h1><p><b>{esc(NOTICE)}</b></p>{body}</body></html>"
    )


def line_chart(
    series: Sequence[tuple[str, Sequence[float], str]],
    labels: Sequence[str],
    width: int = 220,
    height: int = 110,
    title: str = "",
) -> str:
    """Lines over shared x labels (months); each series is (name, values, colour), NaN for a
    gap. The y range covers every finite value; the first and last labels and the y range are
    written on the chart so a small multiple reads without a legend."""
    finite = [v for _, values, _ in series for v in values if not math.isnan(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if hi == lo:
        hi = lo + (abs(lo) or 1.0)
    pad, n = 4, max(len(labels) - 1, 1)

    def xy(i: int, v: float) -> str:
        x = pad + (width - 2 * pad) * i / n
        y = pad + (height - 2 * pad) * (1 - (v - lo) / (hi - lo))
        return f"{x:.1f},{y:.1f}"

    lines = []
    for name, values, colour in series:
        runs: list[list[str]] = [[]]
        for i, v in enumerate(values):
            if math.isnan(v):
                runs.append([])
            else:
                runs[-1].append(xy(i, v))
        for run in runs:
            if len(run) == 1:
                x, y = run[0].split(",")
                lines.append(f'<circle cx="{x}" cy="{y}" r="2" fill="{colour}"/>')
            elif run:
                lines.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                    f'points="{" ".join(run)}"><title>{esc(name)}</title></polyline>'
                )
    first, last = (labels[0], labels[-1]) if labels else ("", "")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 28}" '
        f'role="img" aria-label="{esc(title)}">'
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fafafa"/>{"".join(lines)}'
        f'<text x="2" y="{height + 12}" font-size="10">{esc(first)}</text>'
        f'<text x="{width - 2}" y="{height + 12}" font-size="10" text-anchor="end">'
        f"{esc(last)}</text>"
        f'<text x="2" y="{height + 25}" font-size="10">{lo:.3g} - {hi:.3g}</text></svg>'
    )
