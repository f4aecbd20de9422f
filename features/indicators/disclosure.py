"""Disclosure control: no published figure counts fewer than a handful of people, or lets one
be worked out from the others.

A count of one to four persons in a district can point to a person (everybody knows who in
the village was sent to rehab), so, as statistical offices do, such a count is published as
"<5" (the threshold is `suppress_below`, default 5) and every figure that would give it back
goes with it: the value and its interval, the rank, the change since the month before. A
count is also withheld where the total and the other cells would give it back (secondary
suppression): the city's count less the published districts' is the withheld district's, or
that of the persons whose district is unknown. And a numerator is withheld where the persons
it leaves out of its denominator are that few, or where its denominator is withheld (a "0"
of "<5" says something of every one of them). Residents (the census) are public.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.contract.vocabulary import DISTRICTS
from features.core.months import add_months
from features.indicators.inputs import CITY

SECONDARY = "*"  # withheld so that a small count cannot be worked out from it
# what goes with a withheld count: everything a reader could compute it back from
DERIVED = ("value", "lower", "upper", "rank", "rank_change", "change", "versus_city")
LIMITS = ("funnel_lo95", "funnel_hi95", "funnel_lo998", "funnel_hi998")


def _small(x: np.ndarray, threshold: int) -> np.ndarray:
    return (x > 0) & (x < threshold)


def _secondary(counts: pd.Series, withheld: pd.Series, threshold: int) -> pd.Series:
    """Withhold one more cell of a month's column where exactly one sensitive cell is unknown
    to a reader who has the city's total: the smallest published non-zero district, or, with
    none, the city's total itself."""
    districts = counts.index.isin(DISTRICTS)
    city = counts.index == CITY
    unknown = float(counts[city].sum() - counts[districts].sum())
    hidden = int(withheld[districts].sum()) + (unknown > 0)
    sensitive = withheld[districts].any() or _small(np.array([unknown]), threshold)[0]
    if hidden != 1 or not sensitive or withheld[city].any():
        return withheld
    open_cells = counts[districts & ~withheld & (counts > 0)]
    out = withheld.copy()
    out[open_cells.idxmin() if len(open_cells) else CITY] = True
    return out


def withhold(table: pd.DataFrame, threshold: int, public: frozenset[str]) -> pd.DataFrame:
    """The table as it may be published: `numerator_shown` and `denominator_shown` say each
    count as text ("12", "<5", "*"), a withheld count is NA, and what would give it back is
    NA too. `public`: the indicators whose denominator is public (residents)."""
    out = table.copy()
    registry = out["numerator"].notna()
    shown = {}
    hidden = pd.Series(False, index=out.index)
    for column in ("denominator", "numerator"):
        counts = out[column].astype(float)
        small = registry & _small(counts.to_numpy(), threshold)
        if column == "denominator":
            small &= ~out["indicator"].isin(public)
        else:
            # the persons it leaves out are as few, or its denominator is withheld (a "0" of
            # "<5" would say something of every one of them)
            rest = out["denominator"].astype(float) - counts
            small |= (registry & _small(rest.to_numpy(), threshold)) | hidden
        marks = pd.Series(np.where(small, f"<{threshold}", ""), index=out.index)
        if column == "numerator":
            marks[small & ~_small(counts.to_numpy(), threshold)] = SECONDARY
        withheld = small.copy()
        for _, grp in out[registry].groupby(["month", "indicator"]):
            cells = counts[grp.index].set_axis(grp["district"])
            before = withheld[grp.index].set_axis(grp["district"])
            after = _secondary(cells, before, threshold)
            extra = grp.index[(after & ~before).to_numpy()]
            withheld[extra] = True
            marks[extra] = SECONDARY
        text = counts.map(lambda v: "" if pd.isna(v) else str(int(v)))
        shown[column] = text.where(~withheld, marks)
        out[column] = out[column].astype("Int64").mask(withheld)
        hidden |= withheld
    out["numerator_shown"], out["denominator_shown"] = shown["numerator"], shown["denominator"]
    for column in (*DERIVED, *LIMITS):
        if column in out:
            out[column] = out[column].mask(hidden)
    later = out.loc[hidden, ["month", "district", "indicator"]].assign(
        month=lambda f: f["month"].map(lambda m: add_months(m, 1))
    )
    follows = out.merge(later.assign(_after=True), how="left")["_after"].fillna(False)
    out["change"] = out["change"].mask(follows.to_numpy(bool))
    return out
