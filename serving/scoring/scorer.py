"""The one scoring path the API and the batch scorer share: model output in readable form,
the support each task may suggest, and the cohort policy.

Cohort policy: a person outside the task's cohort on as_of is not scored by default (the model
knows nothing about such people: a young person with no drug record has no relapse risk to
speak of). The API answers 409 and a roster row gets the status `not_in_cohort`, both saying
why in the person's terms. An analyst may ask for the score anyway; the answer then says
`in_cohort: false` and carries a warning.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.tasks import SupportOption
from models.effects_model import EffectsModel
from models.risk_model import RiskModel, Scored
from serving.scoring.interventions import SuggestedSupport
from serving.scoring.reasons import factors

DEFAULT_TOP = 5


def score_frame(
    model: RiskModel,
    frame: pd.DataFrame,
    options: tuple[SupportOption, ...],
    explain: int = DEFAULT_TOP,
    effects: EffectsModel | None = None,
) -> list[dict[str, Any]]:
    """One result per row: probability, tier, percentile and, with explain > 0, the reasons
    and the support options they call for; with an effects model, each served option's
    estimated change."""
    return score_encoded(model, model.prepare(frame), options, explain, effects)


def score_encoded(
    model: RiskModel,
    X: np.ndarray,
    options: tuple[SupportOption, ...],
    explain: int = DEFAULT_TOP,
    effects: EffectsModel | None = None,
    known: Scored | None = None,
) -> list[dict[str, Any]]:
    """`score_frame` of rows already in the model's encoding (the service's feature matrix);
    `known` is the model's output for them when it was computed before (a caseload
    member's today)."""
    scored = known if known is not None else model.score_encoded(X, explain=explain)
    top = scored.top
    reasons = factors(top) if top is not None else None
    support = SuggestedSupport(top, options).per_row() if top is not None else None
    estimated = _estimated(effects, X, scored.raw_score, options) if effects else None
    results = []
    for i in range(len(X)):
        r: dict[str, Any] = {
            "probability": float(scored.probability[i]),
            "tier": scored.tier[i],
            "percentile": None if np.isnan(scored.percentile[i]) else float(scored.percentile[i]),
            "raw_score": float(scored.raw_score[i]),
        }
        if reasons is not None and support is not None and scored.base_value is not None:
            r["base_value"] = float(scored.base_value[i])
            r["factors"] = reasons[i]
            r["support"] = support[i]
        if estimated is not None:
            r["estimated_effects"] = estimated[i]
        results.append(r)
    return results


def _named_changes(
    effects: EffectsModel, X: np.ndarray, raw: np.ndarray, options: tuple[SupportOption, ...]
) -> dict[str, np.ndarray]:
    """Each served option among `options`: its estimated change per row."""
    named = {o.code for o in options}
    return {c: v for c, v in effects.changes(X, raw).items() if c in named}


def most_helpful(
    effects: EffectsModel, X: np.ndarray, raw: np.ndarray, options: tuple[SupportOption, ...]
) -> pd.DataFrame:
    """Each row's served option with the largest estimated benefit (`option`, its code) and
    its change in the chance of the outcome (`benefit_change`, negative: lowers it); no option
    and NaN where nothing is served."""
    changes = _named_changes(effects, X, raw, options)
    if not changes:
        return pd.DataFrame({"option": [None] * len(X), "benefit_change": np.nan})
    codes = np.array(list(changes), object)
    stacked = np.column_stack(list(changes.values()))
    best = stacked.argmin(axis=1)
    return pd.DataFrame({"option": codes[best], "benefit_change": stacked[np.arange(len(X)), best]})


def _estimated(
    effects: EffectsModel, X: np.ndarray, raw: np.ndarray, options: tuple[SupportOption, ...]
) -> list[list[dict[str, Any]]]:
    """Each row's served options with their estimated change, most benefit first."""
    named = {o.code: o for o in options}
    changes = _named_changes(effects, X, raw, options)
    rows = []
    for i in range(len(X)):
        row: list[dict[str, Any]] = [
            {"code": c, "en": named[c].en, "zh": named[c].zh, "change": float(v[i])}
            for c, v in changes.items()
        ]
        rows.append(sorted(row, key=lambda e: e["change"]))
    return rows
