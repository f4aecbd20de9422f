"""The indicator report as programme staff receive it: an Excel workbook (a sheet per indicator
and the ranking, headers in Chinese and English), a Parquet table for analysts, and an HTML page:
for each indicator the city's trend with its interval, the districts in a funnel around the
city, and each district's trend. Each file appears under its name only when whole. Small counts
arrive withheld (`features.indicators.disclosure`) and are written as they are shown ("<5")."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.contract.vocabulary import DISTRICT_LABELS_ZH, DISTRICTS
from features.core.errors import InputError
from features.core.html import esc, page
from features.core.io import atomic_path, write_table
from features.indicators.inputs import CITY
from features.indicators.ranking import COMPOSITE, funnel_curve, funnel_points, standing
from serving.web.charts import funnel_chart, trend

HEADERS = {
    "month": "月份 month",
    "district": "区县代码 district",
    "district_zh": "区县 name",
    "indicator": "指标代码 indicator",
    "indicator_en": "indicator",
    "indicator_zh": "指标",
    "numerator": "分子 numerator",
    "denominator": "分母 denominator",
    "value": "数值 value",
    "lower": "95%区间下限 lower",
    "upper": "95%区间上限 upper",
    "unit": "单位 unit",
    "funnel_lo95": "95%控制下限 funnel lower 95%",
    "funnel_hi95": "95%控制上限 funnel upper 95%",
    "funnel_lo998": "99.8%控制下限 funnel lower 99.8%",
    "funnel_hi998": "99.8%控制上限 funnel upper 99.8%",
    "funnel_tau2": "超离散方差 overdispersion tau2",
    "versus_city": "与全市比较 versus city (99.8%)",
    "rank": "排名 rank",
    "rank_lo": "排名区间下限 rank from",
    "rank_hi": "排名区间上限 rank to",
    "rank_change": "排名变化 rank change",
    "change": "较上月变化 change",
}
REPORT_FORMATS = (".xlsx", ".parquet")
STANDING = {
    "better": "明显好于全市 clearly better than the city",
    "worse": "明显差于全市 clearly worse than the city",
}
WITHIN = "与全市无明显差别 no clear difference"


def check_out(path: Path) -> None:
    if path.suffix.lower() not in REPORT_FORMATS:
        raise InputError(f"{path}: unsupported output format (use {' or '.join(REPORT_FORMATS)})")


def _sheet_name(indicator: str, zh: str, used: set[str]) -> str:
    """Excel allows 31 characters and no []:*?/\\ in a sheet name, and no two alike."""
    name = f"{zh} {indicator}"[:31]
    for ch in "[]:*?/\\":
        name = name.replace(ch, " ")
    while name in used:
        name = name[:29] + f"~{len(used)}"
    used.add(name)
    return name


def rank_range(lo: float, hi: float) -> str:
    """A rank's 95% range as one text ("1-4", or "2" when chance cannot move it)."""
    if pd.isna(lo) or pd.isna(hi):
        return ""
    return f"{int(lo)}" if lo == hi else f"{int(lo)}-{int(hi)}"


def ranking_frame(table: pd.DataFrame) -> pd.DataFrame:
    """One row per month and district: the composite with its interval, its rank's range and
    change, and the range of the rank on each indicator (ranges that overlap are no order)."""
    comp = table[table["indicator"] == COMPOSITE]
    base = pd.DataFrame(
        {
            HEADERS["month"]: comp["month"],
            HEADERS["district"]: comp["district"],
            "区县 name": comp["district_zh"],
            "综合得分 composite": comp["value"],
            "95%区间 interval": [
                "" if pd.isna(a) else f"{a:.1f}-{b:.1f}"
                for a, b in zip(comp["lower"], comp["upper"], strict=True)
            ],
            "综合排名区间 rank range": [
                rank_range(a, b) for a, b in zip(comp["rank_lo"], comp["rank_hi"], strict=True)
            ],
            "综合排名 rank": comp["rank"],
            "排名变化 rank change": comp["rank_change"],
        }
    )
    others = table[(table["indicator"] != COMPOSITE) & table["district"].isin(DISTRICTS)]
    ranges = others.assign(
        span=[rank_range(a, b) for a, b in zip(others["rank_lo"], others["rank_hi"], strict=True)]
    )
    wide = ranges.pivot_table(
        index=["month", "district"], columns="indicator", values="span", aggfunc="first"
    )
    wide.columns = [f"排名区间 rank range: {c}" for c in wide.columns]
    wide = wide.reset_index().rename(
        columns={"month": HEADERS["month"], "district": HEADERS["district"]}
    )
    out = base.merge(wide, on=[HEADERS["month"], HEADERS["district"]], how="left")
    return out.sort_values([HEADERS["month"], "综合排名 rank"])


def shown_counts(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows as a reader sees them: counts as shown ("<5" for a withheld one), without the
    columns that only carry that text."""
    out = rows.copy()
    for column in ("numerator", "denominator"):
        out[column] = [
            int(v) if text.isdigit() else (text or None)
            for v, text in zip(out[column], out[f"{column}_shown"], strict=True)
        ]
    return out.drop(columns=["numerator_shown", "denominator_shown"])


def write_excel(table: pd.DataFrame, path: Path) -> None:
    used: set[str] = set()
    with atomic_path(path) as tmp, pd.ExcelWriter(tmp, engine="openpyxl") as book:
        ranking_frame(table).to_excel(
            book, sheet_name=_sheet_name("ranking", "排名", used), index=False
        )
        for indicator, rows in table.groupby("indicator", sort=False):
            if indicator == COMPOSITE:
                continue
            name = _sheet_name(str(indicator), str(rows["indicator_zh"].iat[0]), used)
            shown_counts(rows).rename(columns=HEADERS).to_excel(book, sheet_name=name, index=False)


def _figure(chart: str, caption: str) -> str:
    return f"<figure>{chart}<figcaption>{esc(caption)}</figcaption></figure>"


def _latest_table(rows: pd.DataFrame, indicator: str) -> str:
    """One month's districts and the city: counts as shown, the value with its interval, the
    call against the city at 99.8%, and the rank's range."""
    lines = []
    for _, r in rows.iterrows():
        value = "—" if pd.isna(r["value"]) else f"{r['value']:.2f}"
        if not pd.isna(r["lower"]):
            value += f" ({r['lower']:.2f}-{r['upper']:.2f})"
        said = standing(indicator, r["versus_city"])
        versus = STANDING[said] if said else WITHIN if r["versus_city"] else ""
        cells = (
            f"{DISTRICT_LABELS_ZH.get(r['district'], '全市')} {r['district']}",
            r["numerator_shown"],
            r["denominator_shown"],
            value,
            versus,
            rank_range(r["rank_lo"], r["rank_hi"]),
        )
        lines.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    head = (
        "区县 district",
        "分子 numerator",
        "分母 denominator",
        "数值 (95%区间) value (interval)",
        "与全市比较 versus city",
        "排名区间 rank range",
    )
    return (
        "<table><tr>"
        + "".join(f"<th>{esc(h)}</th>" for h in head)
        + "</tr>"
        + "".join(lines)
        + "</table>"
    )


def _funnel(rows: pd.DataFrame, indicator: str, month: str, axis: str) -> str:
    """One month's funnel of the indicator as a captioned figure ("" where none is drawn)."""
    curve = funnel_curve(rows, indicator)
    if curve is None:
        return ""
    points = [(DISTRICT_LABELS_ZH[d], n, v, s) for d, n, v, s in funnel_points(rows)]
    chart = funnel_chart(
        points,
        curve,
        curve["target"],
        ("分母 denominator", axis),
        lambda v: f"{v:.2f}",
        f"{indicator} funnel {month}",
    )
    return _figure(
        chart,
        f"{month} 漏斗图：全市水平（蓝线）、95%（虚线）与99.8%（实线）控制限； funnel: the "
        "city's value, 95% (dashed) and 99.8% (solid) limits",
    )


def indicator_section(rows: pd.DataFrame, months: list[str]) -> str:
    """One indicator: the city's trend with its 95% band, the latest month's funnel (and each
    earlier month's, folded), its districts in a table, and each district's trend beside the
    city's."""
    indicator = str(rows["indicator"].iat[0])
    head = rows.iloc[0]
    unit = f" ({head['unit']})" if head["unit"] else ""
    axis = head["unit"] or head["indicator_en"]
    by = {
        c: rows.pivot_table(index="month", columns="district", values=c, aggfunc="first").reindex(
            index=months, columns=[*DISTRICTS, CITY]
        )
        for c in ("value", "lower", "upper")
    }
    city = by["value"][CITY].astype(float).tolist()
    band = (by["lower"][CITY].astype(float).tolist(), by["upper"][CITY].astype(float).tolist())
    parts = [
        _figure(
            trend(months, city, f"{indicator} city", axis, band),
            "全市及其95%区间 the city and its 95% interval",
        )
    ]
    latest = rows[rows["month"] == months[-1]]
    funnels = {m: _funnel(rows[rows["month"] == m], indicator, m, axis) for m in months}
    if funnels[months[-1]]:
        parts.append(funnels[months[-1]])
    earlier = "".join(funnels[m] for m in reversed(months[:-1]))
    if earlier:
        parts.append(
            f"<details><summary>此前各月漏斗图 earlier months</summary>{earlier}</details>"
        )
    cells = []
    for district in DISTRICTS:
        chart = trend(
            months,
            by["value"][district].astype(float).tolist(),
            f"{indicator} {district}",
            axis,
            (
                by["lower"][district].astype(float).tolist(),
                by["upper"][district].astype(float).tolist(),
            ),
            city,
        )
        name = f"{DISTRICT_LABELS_ZH[district]} {district}"
        cells.append(f'<div class="cell"><h4>{esc(name)}</h4>{chart}</div>')
    return (
        f"<h2>{esc(head['indicator_zh'])} {esc(head['indicator_en'])}{esc(unit)}</h2>"
        f'<div class="grid">{"".join(parts)}</div>'
        f"{_latest_table(latest, indicator)}"
        "<h3>各区县趋势（灰色虚线为全市） each district (grey dashed: the city)</h3>"
        f'<div class="grid">{"".join(cells)}</div>'
    )


def trends_html(table: pd.DataFrame, title: str, note: str) -> str:
    """The latest month's ranking with each rank's range, then every indicator's section."""
    months = sorted(table["month"].unique())
    sections = [
        indicator_section(rows, months)
        for indicator, rows in table.groupby("indicator", sort=False)
        if indicator != COMPOSITE
    ]
    latest = ranking_frame(table[table["month"] == months[-1]]) if months else pd.DataFrame()
    ranking = latest.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.1f}")
    body = (
        f"<p>{esc(note)}</p><h2>排名 ranking {esc(months[-1] if months else '')}</h2>"
        "<p>排名区间是95%区间：区间重叠的区县之间没有可靠的先后。 Each rank comes with its 95% "
        "range; districts whose ranges overlap are not reliably ordered.</p>"
        f"{ranking}" + "".join(sections)
    )
    return page(title, body)


def write_report(table: pd.DataFrame, out: Path, note: str) -> list[Path]:
    """The table in the format `out` names, and the HTML page beside it."""
    check_out(out)
    if out.suffix.lower() == ".xlsx":
        write_excel(table, out)
    else:
        write_table(table, out)
    page_path = out.with_suffix(".html")
    with atomic_path(page_path) as tmp:
        tmp.write_text(
            trends_html(table, "禁毒工作月度指标 Monthly drug-control indicators", note),
            encoding="utf-8",
        )
    return [out, page_path]
