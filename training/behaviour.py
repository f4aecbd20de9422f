"""Behavioural tests of a trained model, in the spirit of CheckList.

- direction: raising an agreed risk factor never lowers the score (and a protective one never
  raises it);
- invariance: changing the model inputs that carry a protected attribute changes no score
  (an attribute the config allows as a feature, with its reason, is reported, not tested);
- minimum function: the task's clear-cut persons (histories, built into features by the spec:
  features.compute.profiles) rank as any caseworker would expect.

A failed check blocks promotion unless forced with a reason.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from features.compute.profiles import case_features
from features.spec import FEATURES_BY_NAME, PROTECTED_FEATURES
from features.tasks import Task

Scorer = Callable[[pd.DataFrame], np.ndarray]


def run_checks(
    score: Scorer,
    sample: pd.DataFrame,
    task: Task,
    protected: tuple[str, ...],
    allowed: dict[str, str] | None = None,
    own_label: bool = False,
) -> list[dict]:
    """Run every check on `sample`, a frame of the model's own inputs, through `score`.

    The clear cases are profiles of the task's own outcome in its vocabulary: for a model of
    the user's own label (`own_label`) they are run and shown, marked `decides: False`, and
    never block its promotion."""
    results = [
        *_direction_checks(score, sample),
        *_invariance_checks(score, sample, protected, allowed or {}),
    ]
    # the clear cases as the spec builds them, in the columns the model takes
    cases = case_features(task.clear_cases).reindex(columns=sample.columns)
    s_high, s_low = np.asarray(score(cases))[:2]
    results.append(
        {
            "check": "minimum function: clear high-risk profile above clear low-risk profile",
            "passed": bool(s_high > s_low),
            "detail": f"high {s_high:.3f} vs low {s_low:.3f}",
            "decides": not own_label,
        }
    )
    return results


def _direction_checks(score: Scorer, sample: pd.DataFrame) -> list[dict]:
    """Every monotone feature's start and raised copies of the sample, stacked into one frame
    and scored in one call: one pass of the model's input preparation, not two per feature
    (the scores are row by row alike)."""
    checked = [(c, FEATURES_BY_NAME[c].monotone) for c in sample.columns]
    checked = [(c, direction) for c, direction in checked if direction]
    if not checked:
        return []
    n = len(sample)
    stacked = sample.iloc[np.tile(np.arange(n), 2 * len(checked))].reset_index(drop=True)
    steps = []
    for k, (name, _) in enumerate(checked):
        # missing values take a learned branch, not an ordered one: start from observed values
        col = sample[name].astype(float).fillna(0.0)
        step = max(1.0, float(col.std()))
        values = stacked[name].to_numpy(np.float32, copy=True)
        values[2 * k * n : (2 * k + 1) * n] = col.to_numpy(np.float32)
        values[(2 * k + 1) * n : (2 * k + 2) * n] = (col + step).to_numpy(np.float32)
        stacked[name] = values
        steps.append(step)
    scores = np.asarray(score(stacked)).reshape(len(checked), 2, n)
    results = []
    for (name, direction), step, (before, after) in zip(checked, steps, scores, strict=True):
        worst = float(((after - before) * direction).min())
        results.append(
            {
                "check": f"direction: {name}",
                "passed": worst >= -1e-9,
                "detail": f"raised by {step:.3g}; worst change in its direction {worst:+.3g}",
            }
        )
    return results


def _rotated(column: pd.Series) -> pd.Series:
    """Every row given the previous row's value (the first row the last one's)."""
    values = column.to_numpy()
    out = np.roll(values, 1)
    if isinstance(column.dtype, pd.CategoricalDtype):
        return pd.Series(pd.Categorical(out, dtype=column.dtype), index=column.index)
    return pd.Series(out, index=column.index, dtype=column.dtype)


def _invariance_checks(
    score: Scorer, sample: pd.DataFrame, protected: tuple[str, ...], allowed: dict[str, str]
) -> list[dict]:
    results = []
    base = score(sample)
    for attr in protected:
        inputs = [f for f in PROTECTED_FEATURES.get(attr, ()) if f in sample.columns]
        if attr in allowed:
            results.append(
                {
                    "check": f"invariance: {attr}",
                    "passed": True,
                    "detail": f"not tested: allowed as a model feature ({allowed[attr]})",
                }
            )
            continue
        if not inputs:
            results.append(
                {
                    "check": f"invariance: {attr}",
                    "passed": True,
                    "detail": "no model input carries it",
                }
            )
            continue
        changed = sample.copy()
        for f in inputs:
            changed[f] = _rotated(sample[f])
        moved = float(np.max(np.abs(score(changed) - base)))
        results.append(
            {
                "check": f"invariance: {attr}",
                "passed": moved == 0.0,
                "detail": f"rotated {', '.join(inputs)} across rows; largest score change "
                f"{moved:.3g}",
            }
        )
    return results
