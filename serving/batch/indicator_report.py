"""The indicator report as programme staff receive it: an Excel workbook (a sheet per indicator
and the ranking, headers in Chinese and English), a Parquet table for analysts, and an HTML page
of small-multiple trends by district. Each file appears under its name only when whole."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from features.contract.vocabulary import DISTRICT_LABELS_ZH, DISTRICTS
from features.core.errors import InputError
from features.core.html import esc, line_chart, page
from features.core.io import atomic_path, write_table
from features.indicators.inputs import CITY
from features.indicators.monthly import COMPOSITE

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
    "unit": "单位 unit",
    "rank": "排名 rank",
    "rank_change": "排名变化 rank change",
    "change": "较上月变化 change",
}
REPORT_FORMATS = (".xlsx", ".parquet")


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


def ranking_frame(table: pd.DataFrame) -> pd.DataFrame:
    """One row per month and district: the composite, its rank and change, and the rank on
    each indicator."""
    comp = table[table["indicator"] == COMPOSITE]
    base = comp[["month", "district", "district_zh", "value", "rank", "rank_change"]].rename(
        columns={
            "value": "综合得分 composite",
            "rank": "综合排名 rank",
            "rank_change": "排名变化 rank change",
        }
    )
    others = table[(table["indicator"] != COMPOSITE) & table["district"].isin(DISTRICTS)]
    wide = others.pivot_table(
        index=["month", "district"], columns="indicator", values="rank", aggfunc="first"
    )
    wide.columns = [f"排名 rank: {c}" for c in wide.columns]
    out = base.merge(wide.reset_index(), on=["month", "district"], how="left")
    return out.sort_values(["month", "综合排名 rank"]).rename(
        columns={
            "month": HEADERS["month"],
            "district": HEADERS["district"],
            "district_zh": "区县 name",
        }
    )


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
            rows.rename(columns=HEADERS).to_excel(book, sheet_name=name, index=False)


def trends_html(table: pd.DataFrame, title: str, note: str) -> str:
    """For each indicator, one small chart per district (its line in colour, the city's in
    grey), then the latest month's ranking."""
    months = sorted(table["month"].unique())
    sections = []
    for indicator, rows in table.groupby("indicator", sort=False):
        if indicator == COMPOSITE:
            continue
        by = rows.pivot_table(index="month", columns="district", values="value", aggfunc="first")
        by = by.reindex(months)
        city = by[CITY].tolist() if CITY in by else [math.nan] * len(months)
        cells = []
        for district in (*DISTRICTS, CITY):
            values = by[district].tolist() if district in by else [math.nan] * len(months)
            series = [("全市 city", city, "#999"), (district, values, "#d98c1f")]
            label = DISTRICT_LABELS_ZH.get(district, "全市")
            chart = line_chart(series, months, title=f"{indicator} {district}")
            cells.append(f'<div class="cell"><h4>{esc(label)} {esc(district)}</h4>{chart}</div>')
        head = rows.iloc[0]
        unit = f" ({head['unit']})" if head["unit"] else ""
        sections.append(
            f"<h2>{esc(head['indicator_zh'])} {esc(head['indicator_en'])}{esc(unit)}</h2>"
            f'<div class="grid">{"".join(cells)}</div>'
        )
    latest = ranking_frame(table[table["month"] == months[-1]]) if months else pd.DataFrame()
    ranking = latest.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.1f}")
    body = (
        f"<p>{esc(note)}</p><h2>排名 ranking {esc(months[-1] if months else '')}</h2>{ranking}"
        + "".join(sections)
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
