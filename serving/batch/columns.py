"""The output columns of a batch's rows and their one renderer, shared by the roster runner on one
machine and by Spark's executors."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.tasks import SupportOption
from models.risk_model import RiskModel, Scored
from serving.scoring import reasons
from serving.scoring.interventions import SuggestedSupport

SCORE_COLUMNS = (  # what `put_scores` writes
    "probability",
    "tier",
    "percentile",
    *[f"factor_{k}{s}" for k in (1, 2, 3) for s in ("", "_value", "_effect")],
    "support",
)


RESULT_COLUMNS = (
    *SCORE_COLUMNS,
    "model_name",
    "model_version",
    "in_cohort",
    "status",
    "error",
    "warning",
)


def score_and_explain(
    model: RiskModel, frame: pd.DataFrame, explain: str
) -> tuple[Scored, Scored | None, np.ndarray]:
    """The model's scores and contributions for a frame of features, as `explain` asks:
    the scores, the explained scores, and which rows those explain. (Picking the top
    reasons is left to `put_scores`: `Scored.top` is computed when read.)"""
    scored = model.score(frame, 3 if explain == "top3" else 0)
    explained, rows = (scored if scored.explained else None), np.arange(len(frame))
    if explain == "top":
        rows = np.flatnonzero(scored.tier == "high")
        explained = model.score(frame.iloc[rows], 3) if len(rows) else None
    return scored, explained, rows


def put_scores(
    out: dict[str, np.ndarray],
    good: np.ndarray,
    scores: tuple[Scored, Scored | None, np.ndarray],
    options: tuple[SupportOption, ...],
    lang: str,
) -> None:
    """Scores, readable reasons and support options into the output columns at rows `good`:
    the one renderer of a batch's rows, on one machine or on Spark's executors. Whole columns
    at once: a per-row loop over reason objects cost as much as TreeSHAP."""
    scored, explained, rows = scores
    out["probability"][good] = scored.probability
    out["tier"][good] = scored.tier
    out["percentile"][good] = scored.percentile
    top = explained.top if explained is not None else None
    if top is None:  # nothing explained: scores only
        return
    at = good[rows]
    shown = top.shown
    for k in range(min(3, top.position.shape[1])):
        hide = ~shown[:, k]
        columns = (
            reasons.labels(top, k, lang),
            reasons.display_values(top, k),
            reasons.directions(top, k, lang),
        )
        for name, column in zip(("", "_value", "_effect"), columns, strict=True):
            column[hide] = None
            out[f"factor_{k + 1}{name}"][at] = column
    out["support"][at] = SuggestedSupport(top, options).joined(lang)


def empty_result(n: int, facts: dict) -> dict[str, np.ndarray]:
    """The output columns of `n` rows before they are scored: status ok, no error."""
    out: dict[str, np.ndarray] = {c: np.full(n, None, object) for c in RESULT_COLUMNS}
    out["status"][:] = "ok"
    out["error"][:] = ""
    out["warning"][:] = ""
    out["model_name"][:] = facts["name"]
    out["model_version"][:] = str(facts["version"])
    return out
