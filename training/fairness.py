"""Fairness audit across protected groups, at the capacity threshold the programme would use.

For each attribute the reference group is the largest. A disparity ratio outside 0.8-1.25 (the
four-fifths convention of bias-audit tools such as Aequitas) is flagged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.metrics import auroc

LOW, HIGH = 0.8, 1.25
RATIO_METRICS = ("flag_rate", "tpr", "fpr", "precision")
AGE_BANDS = [
    (0, 18, "<18"),
    (18, 25, "18-24"),
    (25, 35, "25-34"),
    (35, 45, "35-44"),
    (45, 200, "45+"),
]


def age_band(age_years: pd.Series) -> pd.Series:
    bins = [b[0] for b in AGE_BANDS] + [AGE_BANDS[-1][1]]
    labels = [b[2] for b in AGE_BANDS]
    return pd.cut(age_years.astype(float), bins=bins, labels=labels, right=False).astype(str)


def flag_top(p: np.ndarray, share: float, seed: int = 0) -> np.ndarray:
    """Exactly the top `share` of rows, as caseworkers with that capacity would reach them.

    Calibrated scores tie (isotonic calibration is a step function); flagging everyone tied at
    the threshold would flag far more than the capacity, so ties there are broken at random,
    with a fixed seed, so that no group gains from the order of the rows.
    """
    p = np.asarray(p)
    k = min(len(p), max(1, int(np.ceil(share * len(p)))))
    shuffled = np.random.default_rng(seed).permutation(len(p))
    order = shuffled[np.argsort(-p[shuffled], kind="stable")]
    flagged = np.zeros(len(p), bool)
    flagged[order[:k]] = True
    return flagged


def _ratio(value: float, ref: float) -> float:
    if ref == 0 or np.isnan(ref) or np.isnan(value):
        return float("nan")
    return float(value / ref)


def fairness_table(
    groups: pd.DataFrame, y: np.ndarray, p: np.ndarray, share: float
) -> pd.DataFrame:
    """One row per (attribute, group) with rates, ratios against the reference and flags."""
    y, p = np.asarray(y), np.asarray(p)
    flagged = flag_top(p, share)
    rows = []
    for attr in groups.columns:
        values = groups[attr].astype(object).where(groups[attr].notna(), "unknown").astype(str)
        stats = []
        for g in sorted(values.unique()):
            m = (values == g).to_numpy()
            yy, ff = y[m], flagged[m]
            pos, neg = yy.sum(), (1 - yy).sum()
            stats.append(
                {
                    "attribute": attr,
                    "group": g,
                    "n": int(m.sum()),
                    "prevalence": float(yy.mean()),
                    "auroc": auroc(yy, p[m]),
                    "flag_rate": float(ff.mean()),
                    "tpr": float((ff & (yy == 1)).sum() / pos) if pos else float("nan"),
                    "fpr": float((ff & (yy == 0)).sum() / neg) if neg else float("nan"),
                    "precision": float(yy[ff].mean()) if ff.any() else float("nan"),
                    "mean_predicted": float(p[m].mean()),
                    "observed_rate": float(yy.mean()),
                }
            )
        ref = max(stats, key=lambda s: s["n"])
        for s in stats:
            s["reference"] = ref["group"]
            flags = []
            for metric in RATIO_METRICS:
                r = _ratio(s[metric], ref[metric])
                s[f"{metric}_ratio"] = r
                if not np.isnan(r) and not LOW <= r <= HIGH:
                    flags.append(metric)
            s["flags"] = ",".join(flags)
        rows.extend(stats)
    return pd.DataFrame(rows)


def worst_disparity(table: pd.DataFrame, min_group: int = 30) -> float:
    """The largest ratio away from parity, max(r, 1/r), over groups of a usable size."""
    usable = table[table.n >= min_group]
    ratios = usable[[f"{m}_ratio" for m in RATIO_METRICS]].to_numpy(float).ravel()
    ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
    return float(np.max(np.maximum(ratios, 1 / ratios))) if len(ratios) else 1.0
