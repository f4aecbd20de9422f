"""The one explanation path: LightGBM's exact TreeSHAP contributions (`pred_contrib`).

Contributions are on the booster's raw log-odds scale: base value + sum of contributions equals
the raw score, which the calibrator then maps to a probability. Training plots, serving and
batch scoring all call `contributions` and `top_factors` here.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.spec import FEATURES_BY_NAME


@dataclass(frozen=True)
class Factor:
    feature: str
    label_en: str
    label_zh: str
    value: float | str | None
    contribution: float

    @property
    def direction(self) -> str:
        return "raises" if self.contribution > 0 else "lowers"


def contributions(booster: lgb.Booster, X: pd.DataFrame | np.ndarray) -> np.ndarray:
    """(n, features + 1): per-feature contributions, then the base value, in log-odds."""
    return np.asarray(booster.predict(X, pred_contrib=True, num_threads=threads_for(len(X))))


def threads_for(rows: int) -> int:
    """One thread for online-sized batches, where OpenMP start-up costs more than it saves
    (measured ~5x slower for one row); all cores (0) for batch scoring."""
    return 1 if rows < 1000 else 0


def top_factors(
    contrib: np.ndarray, X: np.ndarray, names: list[str], k: int = 5
) -> list[list[Factor]]:
    """The k largest contributions by magnitude for each row of a model matrix.

    Categorical features hold their category's position in the spec's list; it is shown as the
    category itself.
    """
    per = contrib[:, : len(names)]
    size = np.abs(per)
    k = min(k, len(names))
    # the k largest by partition, then only those k sorted: a full sort of every row's
    # contributions costs more than the explanation itself on big rosters
    top = (
        np.argpartition(-size, k - 1, axis=1)[:, :k]
        if k < len(names)
        else np.tile(np.arange(len(names)), (len(per), 1))
    )
    within = np.argsort(-np.take_along_axis(size, top, axis=1), axis=1, kind="stable")
    order = np.take_along_axis(top, within, axis=1)
    # plain Python values from here: per-element numpy scalars would dominate the loop
    picked = np.take_along_axis(per, order, axis=1).tolist()
    values = np.take_along_axis(X, order, axis=1).tolist()
    specs = [FEATURES_BY_NAME[n] for n in names]
    out = []
    for cols, contribs, vals in zip(order.tolist(), picked, values, strict=True):
        row = []
        for j, c, v in zip(cols, contribs, vals, strict=True):
            if c == 0:
                continue
            f = specs[j]
            value = None if v != v else (f.categories[int(v)] if f.categorical else v)
            row.append(Factor(f.name, f.label_en, f.label_zh, value, c))
        out.append(row)
    return out


def global_importance(contrib: np.ndarray, names: list[str]) -> pd.DataFrame:
    imp = np.abs(contrib[:, : len(names)]).mean(axis=0)
    frame = pd.DataFrame(
        {
            "feature": names,
            "label_en": [FEATURES_BY_NAME[n].label_en for n in names],
            "label_zh": [FEATURES_BY_NAME[n].label_zh for n in names],
            "mean_abs_contribution": imp,
        }
    )
    return frame.sort_values("mean_abs_contribution", ascending=False, ignore_index=True)
