"""The published indicator table: every figure with its interval, its place in the funnel
around the city, its rank with the range chance allows, and no small cell.

Ranks are kept (programme staff are asked for them) but never alone: each comes with the
central 95% of the ranks the district takes when its figures are drawn again as chance
allows (`uncertainty.draws`), and the composite with them, so that districts whose ranges
overlap are read as not ordered.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from features.contract.vocabulary import DISTRICT_LABELS_ZH, DISTRICTS
from features.core.months import add_months
from features.indicators.disclosure import withhold
from features.indicators.inputs import CITY, IndicatorConfig
from features.indicators.monthly import REGISTRY_INDICATORS, compute
from features.indicators.uncertainty import (
    DRAWS,
    draws,
    funnel,
    interval,
    limits,
    ranks,
    spread,
)
from features.storage.store import Store

COMPOSITE = "composite"
FAMILIES = {i.name: (i.family, i.per) for i in REGISTRY_INDICATORS}
DIRECTIONS = {i.name: i.direction for i in REGISTRY_INDICATORS}
# indicators whose denominator is residents (the census), which disclosure control leaves be
PUBLIC_DENOMINATORS = frozenset({REGISTRY_INDICATORS[0].name})
COLUMNS = (
    "month",
    "district",
    "district_zh",
    "indicator",
    "indicator_en",
    "indicator_zh",
    "numerator",
    "denominator",
    "numerator_shown",
    "denominator_shown",
    "value",
    "lower",
    "upper",
    "unit",
    "funnel_lo95",
    "funnel_hi95",
    "funnel_lo998",
    "funnel_hi998",
    "funnel_tau2",
    "versus_city",
    "rank",
    "rank_lo",
    "rank_hi",
    "rank_change",
    "change",
)


def indicator_table(
    store: Store,
    months: list[str],
    config: IndicatorConfig,
    population: pd.DataFrame,
    external: pd.DataFrame | None = None,
    cache: dict[str, list[pd.DataFrame]] | None = None,
    suppress: bool = True,
) -> pd.DataFrame:
    """The published table of `months` (see `compute`, `with_uncertainty`, `rank` and
    `report_table`), as the command, the service and the API give it; small cells withheld
    unless `suppress` is False (the analysts' raw export, which its caller audits)."""
    raw = compute(store, months, config, population, external, cache)
    return publish(raw, months, config, suppress)


def publish(
    raw: pd.DataFrame, months: list[str], config: IndicatorConfig, suppress: bool = True
) -> pd.DataFrame:
    """`compute`'s figures as published: with their uncertainty, ranked, small cells withheld
    unless `suppress` is False, the months asked for."""
    ranked = rank(with_uncertainty(raw), config)
    threshold = config.suppress_below if suppress else 0
    return report_table(withhold(ranked, threshold, PUBLIC_DENOMINATORS), months, config)


def indicator_titles(config: IndicatorConfig) -> dict[str, tuple[str, str, int]]:
    """(English, Chinese, direction) of every indicator the ranking may weigh."""
    titles = {i.name: (i.en, i.zh, i.direction) for i in REGISTRY_INDICATORS}
    titles.update({e.name: (e.en, e.zh, e.direction) for e in config.external.values()})
    return titles


def with_uncertainty(table: pd.DataFrame) -> pd.DataFrame:
    """Each registry figure's 95% interval (`lower`, `upper`), and each district's funnel
    limits around the city's value that month with where it lies (`versus_city`), and the
    between-district variance beyond chance the limits allow for (`funnel_tau2`, as a share;
    0 when the districts vary no more than chance says)."""
    out = table.copy()
    for column in (
        "lower",
        "upper",
        *(f"funnel_{s}" for s in ("lo95", "hi95", "lo998", "hi998", "tau2")),
    ):
        out[column] = np.nan
    out["versus_city"] = ""
    registry = out["indicator"].isin(FAMILIES) & out["denominator"].notna()
    for (_, indicator), grp in out[registry].groupby(["month", "indicator"]):
        family, per = FAMILIES[str(indicator)]
        k, n = grp["numerator"].to_numpy(float), grp["denominator"].to_numpy(float)
        out.loc[grp.index, "lower"], out.loc[grp.index, "upper"] = interval(k, n, family, per)
        city = grp[grp["district"] == CITY]
        target = (
            float(city["numerator"].iat[0] / city["denominator"].iat[0])
            if len(city) and city["denominator"].iat[0] > 0
            else np.nan
        )
        own = grp[grp["district"].isin(DISTRICTS)]
        bounds, tau2 = funnel(
            own["numerator"].to_numpy(float),
            own["denominator"].to_numpy(float),
            target,
            family,
            per,
        )
        for name, values in bounds.items():
            out.loc[own.index, "versus_city" if name == "versus" else f"funnel_{name}"] = values
        out.loc[grp.index, "funnel_tau2"] = tau2
    return out


def _month_ranks(
    rows: pd.DataFrame, config: IndicatorConfig, month: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One month's ranks: each indicator's point rank and range for every row of `rows` (the
    districts with a figure), and the composite's rows (value with its range, rank with its).

    A district's score on an indicator is 100 for the best and 0 for the worst of the
    districts with a figure, by rank (robust to one district's extreme value); its composite
    is the weighted mean of the scores it has. The same is done for every simulated draw, so
    the composite's range carries every indicator's chance."""
    titles = indicator_titles(config)
    rng = np.random.default_rng(zlib.crc32(month.encode()))
    place = {d: i for i, d in enumerate(DISTRICTS)}
    points, sims = np.zeros(len(DISTRICTS)), np.zeros((DRAWS, len(DISTRICTS)))
    weights = np.zeros(len(DISTRICTS))
    out = pd.DataFrame(index=rows.index, columns=["rank", "rank_lo", "rank_hi"], dtype=float)
    for indicator, grp in rows.groupby("indicator", sort=True):
        at = grp["district"].map(place).to_numpy()
        value = np.full(len(DISTRICTS), np.nan)
        value[at] = grp["value"].to_numpy(float)
        if indicator in FAMILIES:
            k, n = np.zeros(len(DISTRICTS)), np.zeros(len(DISTRICTS))
            k[at], n[at] = grp["numerator"].to_numpy(float), grp["denominator"].to_numpy(float)
            sim = draws(k, n, *FAMILIES[str(indicator)], rng)
        else:  # a figure from outside the registry comes without its counts: taken as exact
            sim = np.tile(value, (DRAWS, 1))
        direction = titles[str(indicator)][2]
        point, simulated = ranks(value, direction), ranks(sim, direction)
        lo, hi = spread(simulated)
        out.loc[grp.index] = np.column_stack([point[at], lo[at], hi[at]])
        weight = config.weights.get(str(indicator), 0.0)
        m = int(np.isfinite(value).sum())
        if weight > 0:
            has = np.isfinite(value)
            points += np.where(has, weight * _score(point, m), 0.0)
            sims += np.where(has, weight * _score(simulated, m), 0.0)
            weights += np.where(has, weight, 0.0)
    scored = weights > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        composite = np.where(scored, points / weights, np.nan)
        simulated = np.where(scored, sims / weights, np.nan)
    lo, hi = spread(simulated)
    rank_lo, rank_hi = spread(ranks(simulated, 1))
    comp = pd.DataFrame(
        {
            "month": month,
            "district": list(DISTRICTS),
            "indicator": COMPOSITE,
            "value": composite,
            "lower": lo,
            "upper": hi,
            "rank": ranks(composite, 1),
            "rank_lo": rank_lo,
            "rank_hi": rank_hi,
        }
    )
    return out, comp[scored]


def _score(rank: np.ndarray, m: int) -> np.ndarray:
    return 100.0 * (m - rank) / (m - 1) if m > 1 else np.full(rank.shape, 100.0)


def rank(table: pd.DataFrame, config: IndicatorConfig) -> pd.DataFrame:
    """Each district's rank on each indicator (1 = best) and on the weighted composite, each
    with its 95% range (`rank_lo`, `rank_hi`) and the change since the month before; the
    city's row carries values, never a rank."""
    table = table.copy()
    ranked = table["district"].isin(DISTRICTS) & table["value"].notna()
    parts = [_month_ranks(rows, config, str(m)) for m, rows in table[ranked].groupby("month")]
    for column in ("rank", "rank_lo", "rank_hi"):
        table[column] = np.nan
    if parts:
        own = pd.concat([p[0] for p in parts])
        table.loc[own.index, ["rank", "rank_lo", "rank_hi"]] = own.to_numpy(float)
        table = pd.concat([table, *(p[1] for p in parts)], ignore_index=True)
    prev = table.assign(month=table["month"].map(lambda m: add_months(m, 1)))[
        ["month", "district", "indicator", "value", "rank"]
    ]
    table = table.merge(
        prev, on=["month", "district", "indicator"], how="left", suffixes=("", "_prev")
    )
    table["change"] = table["value"] - table["value_prev"]
    table["rank_change"] = table["rank_prev"] - table["rank"]  # > 0: moved up
    return table.drop(columns=["value_prev", "rank_prev"])


def report_table(table: pd.DataFrame, months: list[str], config: IndicatorConfig) -> pd.DataFrame:
    """The published table: the months asked for, with readable names beside the codes."""
    titles = indicator_titles(config)
    titles[COMPOSITE] = ("composite score (0-100)", "综合得分(0-100)", 1)
    units = {i.name: i.unit for i in REGISTRY_INDICATORS}
    out = table[table["month"].isin(months)].copy()
    out["district_zh"] = out["district"].map({**DISTRICT_LABELS_ZH, CITY: "全市"})
    out["indicator_en"] = out["indicator"].map(lambda i: titles[i][0])
    out["indicator_zh"] = out["indicator"].map(lambda i: titles[i][1])
    out["unit"] = out["indicator"].map(units).fillna("")
    for column in ("numerator_shown", "denominator_shown", "versus_city"):
        out[column] = out[column].fillna("") if column in out else ""
    order = {d: i for i, d in enumerate((*DISTRICTS, CITY))}
    out = out.sort_values(
        ["indicator", "month", "district"],
        key=lambda s: s.map(order) if s.name == "district" else s,
    )
    out = out[list(COLUMNS)].reset_index(drop=True)
    for c in ("numerator", "denominator", "rank", "rank_lo", "rank_hi", "rank_change"):
        out[c] = out[c].astype(float).round().astype("Int64")
    return out


def funnel_curve(rows: pd.DataFrame, indicator: str, points: int = 60) -> dict | None:
    """The funnel of `indicator` in one month's published `rows`: its limits on a grid of
    sizes up to the largest district's (`n`, `lo95`, `hi95`, `lo998`, `hi998`) and the city's
    value (`target`); None where there is none to draw (an indicator from outside the registry,
    or a city figure withheld)."""
    if indicator not in FAMILIES:
        return None
    own = rows[rows["indicator"] == indicator]
    city = own[own["district"] == CITY]
    sizes = own.loc[own["district"].isin(DISTRICTS), "denominator"].dropna().astype(float)
    if city.empty or city["numerator"].isna().iat[0] or not len(sizes) or sizes.max() <= 0:
        return None
    k, n = float(city["numerator"].iat[0]), float(city["denominator"].iat[0])
    if n <= 0:
        return None
    family, per = FAMILIES[indicator]
    target = k / n
    # whole persons (a binomial of 12.5 trials is no distribution), from a little below the
    # smallest district to a little above the largest
    grid = np.unique(
        np.round(np.linspace(sizes[sizes > 0].min() * 0.8, sizes.max() * 1.05, points))
    )
    grid = grid[grid >= 1]
    tau2 = float(own["funnel_tau2"].fillna(0.0).max())
    return {"n": grid, **limits(grid, target, family, per, tau2), "target": target * per}


def funnel_points(rows: pd.DataFrame) -> list[tuple[str, float, float, str]]:
    """The districts of one month's published rows of an indicator that a funnel can place:
    (district, denominator, value, versus_city), those with a figure only (a withheld one has
    none)."""
    own = rows[rows["district"].isin(DISTRICTS)]
    return [
        (str(d), float(n), float(v), str(s))
        for d, n, v, s in zip(
            own["district"], own["denominator"], own["value"], own["versus_city"], strict=True
        )
        if not (pd.isna(n) or pd.isna(v))
    ]


def standing(indicator: str, versus: str) -> str:
    """A district outside the funnel said as the indicator reads: "better" or "worse" than
    the city (above the city is better where higher is better); "" inside it, without a
    figure, or for an indicator from outside the registry, which has no funnel."""
    way = DIRECTIONS.get(indicator, 0)
    if not way or versus not in ("above", "below"):
        return ""
    return "better" if (versus == "above") == (way > 0) else "worse"
