"""Each task's caseload today: every cohort member ranked by risk, with the change since a
month earlier, the top reason and the last social-worker contact.

Computed once per champion when the service loads (and again when a reload brings a new one),
through the same `RiskModel.score` and reason renderer as the API, so a caseload page only
filters and slices a ranked table: a request never rebuilds anyone's features.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from serving.scoring.reasons import effect, is_background, sentence

if TYPE_CHECKING:  # LightGBM is imported only where a model is scored: the CLI starts fast
    from models.risk_model import RiskModel, Scored
    from training.explain import TopK

DEFAULT_RISING = 0.05  # a rise in probability (absolute) that counts as rising, tier unchanged
PAGE_ROWS = 25
# reasons looked at for each person to find the first one a caseworker can act on
EXPLAINED = 8
# the columns that keep each member's reasons: feature positions and contributions, largest first
POSITION, CONTRIBUTION = "top_position_", "top_contribution_"
SEP = {"en": " — ", "zh": "\uff0c"}


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
    # the shares of the model's reference cohort in the high tier, then in high and medium:
    # the tiers are ranks, and a page says so
    tier_shares: tuple[float, float] = (0.10, 0.30)

    @functools.cached_property
    def average(self) -> float:
        """The cohort's mean probability: what a page shows a person's risk against."""
        return float(self.frame["probability"].mean())

    def scored(
        self, person_id: str, X: np.ndarray, explain: int, features: list[str]
    ) -> Scored | None:
        """A member's score today with the top `explain` reasons, as this caseload's build
        computed them (through the same `RiskModel.score`), so a member's answer needs no
        TreeSHAP of its own; `X` is the member's row of today's matrix, where the reasons'
        values come from, `features` the caseload's model's. None for someone not in the
        cohort, or for more than EXPLAINED reasons (the caseload keeps no more)."""
        from models.risk_model import Scored
        from training.explain import TopK

        if not 0 < explain <= EXPLAINED or person_id not in self.frame.index:
            return None
        i = self.frame.index.get_loc(person_id)
        kept = self._kept
        position = kept["position"][i : i + 1, :explain]
        return Scored(
            kept["probability"][i : i + 1],
            kept["raw_score"][i : i + 1],
            kept["percentile"][i : i + 1],
            kept["tier"][i : i + 1],
            kept["base_value"][i : i + 1],
            picked=TopK(
                position,
                kept["contribution"][i : i + 1, :explain],
                np.take_along_axis(X, position, axis=1),
                features,
            ),
        )

    @functools.cached_property
    def _kept(self) -> dict[str, np.ndarray]:
        """The columns a member's answer reads, as arrays made once."""
        f = self.frame
        k = sum(c.startswith(POSITION) for c in f.columns)
        return {
            "position": f[[f"{POSITION}{j}" for j in range(k)]].to_numpy(np.int64),
            "contribution": f[[f"{CONTRIBUTION}{j}" for j in range(k)]].to_numpy(float),
            **{c: f[c].to_numpy() for c in ("probability", "raw_score", "percentile", "tier")},
            "base_value": f["base_value"].to_numpy(float),
        }


SORTS = ("risk", "change", "contact", "benefit")


@dataclass(frozen=True)
class Filters:
    tier: str | None = None
    district: str | None = None
    rising: bool = False
    search: str | None = None
    # only those to follow up: risk rose, or high tier, with no contact since a month earlier
    todo: bool = False
    sort: str = "risk"  # one of SORTS


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
    scored = model.score(now, explain=EXPLAINED)
    top = scored.top
    assert top is not None
    k = top_actionable(top)
    rows = np.arange(len(top))
    name = np.asarray(top.names, object)[top.position[rows, k]]
    values = [top.column_values(j) for j in range(top.position.shape[1])]
    value = np.array([values[j][i] for i, j in enumerate(k)], object)
    raises = top.contribution[rows, k] > 0
    shown = top.shown[rows, k]
    frame = pd.DataFrame(
        {
            "district": persons["district"].to_numpy(),
            "probability": scored.probability,
            "raw_score": scored.raw_score,
            "tier": scored.tier,
            "percentile": scored.percentile,
            "reason_en": _texts(shown, name, value, raises, "en"),
            "reason_zh": _texts(shown, name, value, raises, "zh"),
            "raises": shown & raises,
            "last_contact": persons["last_contact"].to_numpy(),
            "base_value": scored.base_value,
            **{f"{POSITION}{j}": top.position[:, j] for j in range(top.position.shape[1])},
            **{f"{CONTRIBUTION}{j}": top.contribution[:, j] for j in range(top.position.shape[1])},
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
    high, medium = model.tier_shares
    return Caseload(task, version, as_of, month_before(as_of), frame, (high, medium))


def top_actionable(top: TopK) -> np.ndarray:
    """Each row's reason to show first: the largest that raises the risk and that a
    caseworker can act on (not age, sex, district or registration), else the largest
    actionable one; the first shown when all are background."""
    background = np.array([is_background(n) for n in top.names], bool)[top.position]
    actionable = top.shown & ~background
    rising = actionable & (top.contribution > 0)
    return np.where(
        rising.any(axis=1),
        rising.argmax(axis=1),
        np.where(actionable.any(axis=1), actionable.argmax(axis=1), 0),
    )


def _texts(
    shown: np.ndarray, names: np.ndarray, values: np.ndarray, raises: np.ndarray, lang: str
) -> np.ndarray:
    """Each row's reason and its effect in `lang`, None where no reason is shown."""
    out = np.full(len(names), None, object)
    for i in np.flatnonzero(shown):
        out[i] = (
            f"{sentence(names[i], values[i], lang)}{SEP[lang]}{effect(raises[i], values[i], lang)}"
        )
    return out


def _where(shown: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The values where a reason is shown, None elsewhere."""
    out = np.full(len(values), None, object)
    out[shown] = values[shown]
    return out


def select(
    caseload: Caseload,
    districts: tuple[str, ...] | None,
    f: Filters,
    contacts: Mapping[str, dt.date] | None = None,
    benefits: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The rows a user may see (`districts`; None for every district) that pass the filters,
    with their `rank` by risk in that list, in the order `f.sort` asks for. `contacts` are
    the follow-ups recorded since the registry was read (each person's latest day): they
    are contacts too, so they update `last_contact` before the to-follow-up filter.
    `benefits` (`ServiceState.benefits`) add each row's most helpful option and its change;
    sorted by benefit, the largest expected fall in risk comes first (by risk without them)."""
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
    rows = frame[keep].assign(rank=np.arange(1, int(keep.sum()) + 1))
    if contacts:
        rows = with_contacts(rows, contacts)
    if f.todo:
        since = pd.Timestamp(caseload.previous)
        urgent = rows["rising"] | (rows["tier"] == "high")
        rows = rows[urgent & ~(rows["last_contact"] >= since)]
    if benefits is not None:
        rows = rows.join(benefits)
        if f.sort == "benefit":
            return rows.sort_values("benefit_change", na_position="last", kind="stable")
    if f.sort == "change":
        return rows.sort_values("change", ascending=False, na_position="last", kind="stable")
    if f.sort == "contact":  # the longest without contact first, never contacted before all
        return rows.sort_values("last_contact", na_position="first", kind="stable")
    return rows


def with_contacts(rows: pd.DataFrame, contacts: Mapping[str, dt.date]) -> pd.DataFrame:
    """`rows` with each person's last contact the later of the registry's and `contacts`."""
    recorded = pd.to_datetime(pd.Series(contacts, dtype=object)).reindex(rows.index)
    if recorded.isna().all():
        return rows
    last = pd.to_datetime(rows["last_contact"])
    return rows.assign(last_contact=pd.concat([last, recorded], axis=1).max(axis=1))


def page_of(rows: pd.DataFrame, page: int, size: int = PAGE_ROWS) -> tuple[pd.DataFrame, int]:
    """One page of rows (1-based, clamped to the pages there are) and the number of pages."""
    pages = max(1, -(-len(rows) // size))
    page = min(max(page, 1), pages)
    return rows.iloc[(page - 1) * size : page * size], pages
