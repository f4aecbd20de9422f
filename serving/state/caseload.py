"""Each task's caseload today: every cohort member ranked by risk, with the change since a
month earlier, the top reason and the last social-worker contact.

Computed once per champion when the service loads (and again when a reload brings a new one),
through the same `RiskModel.score` and reason renderer as the API, so a caseload page only
filters and slices a ranked table: a request never rebuilds anyone's features.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from serving.scoring.reasons import display_values, labels

if TYPE_CHECKING:  # LightGBM is imported only where a model is scored: the CLI starts fast
    from models.risk_model import RiskModel

DEFAULT_RISING = 0.05  # a rise in probability (absolute) that counts as rising, tier unchanged
PAGE_ROWS = 25


def month_before(day: dt.date, months: int = 1) -> dt.date:
    """The same day `months` earlier (the month's last day where it has no such day)."""
    return (pd.Timestamp(day) - pd.DateOffset(months=months)).date()


@dataclass(frozen=True)
class Caseload:
    task: str
    version: str
    as_of: dt.date
    previous: dt.date
    # one row per cohort member, highest probability first, indexed by person_id
    frame: pd.DataFrame


@dataclass(frozen=True)
class Filters:
    tier: str | None = None
    district: str | None = None
    rising: bool = False
    search: str | None = None


def build_caseload(
    model: RiskModel,
    version: str,
    task: str,
    persons: pd.DataFrame,
    now: pd.DataFrame,
    before: pd.DataFrame | None,
    as_of: dt.date,
    rising: float = DEFAULT_RISING,
) -> Caseload:
    """`persons` (district, last_contact) and `now` (features) are indexed by person_id and
    hold exactly the cohort today; `before` holds the features a month earlier of those who
    were in the cohort then (None: nobody was)."""
    scored = model.score(now, explain=1)
    top = scored.top
    assert top is not None
    shown = top.shown[:, 0]
    frame = pd.DataFrame(
        {
            "district": persons["district"].to_numpy(),
            "probability": scored.probability,
            "raw_score": scored.raw_score,
            "tier": scored.tier,
            "percentile": scored.percentile,
            "reason_en": _where(shown, labels(top, 0, "en")),
            "reason_zh": _where(shown, labels(top, 0, "zh")),
            "raises": shown & (top.contribution[:, 0] > 0),
            "reason_value": _where(shown, display_values(top, 0)),
            "last_contact": persons["last_contact"].to_numpy(),
        },
        index=now.index,
    )
    frame["previous_probability"] = np.nan
    frame["previous_tier"] = None
    if before is not None and len(before):
        earlier = model.score(before)
        frame.loc[before.index, "previous_probability"] = earlier.probability
        frame.loc[before.index, "previous_tier"] = earlier.tier
    frame["change"] = frame["probability"] - frame["previous_probability"]
    from models.risk_model import TIERS

    rank = {t: i for i, t in enumerate(TIERS)}
    up = frame["tier"].map(rank) > frame["previous_tier"].map(rank).fillna(np.inf)
    frame["rising"] = up | (frame["change"] > rising)
    # by raw score: the probability follows it (the calibrator is monotone) and is often
    # tied (a calibration step), the raw score, like the percentile, rarely
    frame = frame.sort_values("raw_score", ascending=False, kind="stable")
    return Caseload(task, version, as_of, month_before(as_of), frame)


def _where(shown: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The values where a reason is shown, None elsewhere."""
    out = np.full(len(values), None, object)
    out[shown] = values[shown]
    return out


def select(caseload: Caseload, districts: tuple[str, ...] | None, f: Filters) -> pd.DataFrame:
    """The rows a user may see (`districts`; None for every district) that pass the filters,
    highest risk first, with their `rank` in that list."""
    frame = caseload.frame
    keep = np.ones(len(frame), bool)
    if districts is not None:
        keep &= frame["district"].isin(districts).to_numpy()
    if f.district:
        keep &= (frame["district"] == f.district).to_numpy()
    if f.tier:
        keep &= (frame["tier"] == f.tier).to_numpy()
    if f.rising:
        keep &= frame["rising"].to_numpy()
    if f.search:
        keep &= frame.index.str.contains(f.search, case=False, regex=False)
    return frame[keep].assign(rank=np.arange(1, int(keep.sum()) + 1))


def page_of(rows: pd.DataFrame, page: int, size: int = PAGE_ROWS) -> tuple[pd.DataFrame, int]:
    """One page of rows (1-based, clamped to the pages there are) and the number of pages."""
    pages = max(1, -(-len(rows) // size))
    page = min(max(page, 1), pages)
    return rows.iloc[(page - 1) * size : page * size], pages
