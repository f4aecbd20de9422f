"""The one explanation path: LightGBM's exact TreeSHAP contributions (`pred_contrib`).

Contributions are on the booster's raw log-odds scale: base value + sum of contributions equals
the raw score, which the calibrator then maps to a probability. Training plots, serving and
batch scoring all call `contributions` and `top_k` here.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.core.cpus import usable_cpus
from features.spec import FEATURES_BY_NAME


def contributions(booster: lgb.Booster, X: pd.DataFrame | np.ndarray) -> np.ndarray:
    """(n, features + 1): per-feature contributions, then the base value, in log-odds."""
    return np.asarray(booster.predict(X, pred_contrib=True, num_threads=threads_for(len(X))))


def threads_for(rows: int) -> int:
    """One thread for online-sized batches, where OpenMP start-up costs more than it saves
    (measured ~5x slower for one row); for batch scoring every CPU the process may use."""
    return 1 if rows < 1000 else usable_cpus()


@dataclass(frozen=True)
class TopK:
    """The k largest contributions of each row, as arrays: the form batch scoring works in.

    `position` holds feature positions, largest |contribution| first; a contribution of exactly
    0 (a feature the trees never used for that row) is not a reason and is masked out by
    `shown`. `value` holds the model-matrix values of those features.
    """

    position: np.ndarray  # (n, k) int
    contribution: np.ndarray  # (n, k) float
    value: np.ndarray  # (n, k) float
    names: list[str]

    @property
    def shown(self) -> np.ndarray:
        return self.contribution != 0

    def __len__(self) -> int:
        return len(self.position)

    def value_at(self, i: int, k: int) -> object:
        """Row i's k-th reason's value, as `column_values` gives it."""
        v = float(self.value[i, k])
        if np.isnan(v):
            return None
        f = FEATURES_BY_NAME[self.names[int(self.position[i, k])]]
        return f.categories[int(v)] if f.categories is not None else v

    def column_values(self, k: int) -> np.ndarray:
        """The k-th reason's values for every row: a categorical feature as its category,
        missing as None, a number as a float."""
        pos, val = self.position[:, k], self.value[:, k]
        out = val.astype(object)
        out[np.isnan(val)] = None
        for j in np.unique(pos):
            f = FEATURES_BY_NAME[self.names[j]]
            if f.categorical:
                m = (pos == j) & ~np.isnan(val)
                out[m] = np.asarray(f.categories, object)[val[m].astype(int)]
        return out


def top_k(
    contrib: np.ndarray,
    X: np.ndarray,
    names: list[str],
    k: int = 5,
    candidates: np.ndarray | None = None,
) -> TopK:
    """The k largest contributions by magnitude for each row of a model matrix.

    `candidates` limits the search to the features the trees use; the others contribute
    exactly 0 and are never shown, and skipping them makes the search several times cheaper.
    """
    cols = np.arange(len(names)) if candidates is None else np.asarray(candidates)
    if not len(cols):
        cols = np.arange(len(names))
    size = np.abs(contrib[:, cols])
    k = min(k, len(cols))
    # the k largest by partition, then only those k sorted: a full sort of every row's
    # contributions costs more than the explanation itself on big rosters
    top = (
        np.argpartition(size, len(cols) - k, axis=1)[:, -k:]
        if k < len(cols)
        else np.tile(np.arange(len(cols)), (len(size), 1))
    )
    within = np.argsort(-np.take_along_axis(size, top, axis=1), axis=1, kind="stable")
    order = cols[np.take_along_axis(top, within, axis=1)]
    return TopK(
        order,
        np.take_along_axis(contrib, order, axis=1),
        np.take_along_axis(X, order, axis=1),
        list(names),
    )


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
