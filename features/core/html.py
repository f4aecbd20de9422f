"""Self-contained HTML reports: one page, inline SVG charts, no script and no asset from a
network (programme offices may have none). Every text that comes from data is escaped."""

from __future__ import annotations

import html

STYLE = (
    "body{font-family:'Noto Sans CJK SC','WenQuanYi Zen Hei',sans-serif;max-width:72em;"
    "margin:1.5em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:right}"
    "th{background:#f3f3f3}.grid{display:flex;flex-wrap:wrap;gap:.6em}"
    ".cell{border:1px solid #ddd;padding:.3em}.cell h4{margin:.1em 0;font-size:.9em}"
    ".ok{color:#1a7f37}.warning{color:#9a6700}.alert{color:#cf222e}"
    "svg.chart{width:340px;max-width:100%;height:auto}figure{margin:.3em}.band{opacity:.45}"
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
