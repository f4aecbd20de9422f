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


def flag_top(rank: np.ndarray, share: float) -> np.ndarray:
    """Exactly the top `share` of rows by the raw score, as caseworkers with that capacity
    would reach them. The raw score is strictly ordered (a step calibrator is not), so no
    tie-breaking decides who is flagged; rows of equal raw score keep their order."""
    rank = np.asarray(rank)
    k = min(len(rank), max(1, int(np.ceil(share * len(rank)))))
    flagged = np.zeros(len(rank), bool)
    flagged[np.argsort(-rank, kind="stable")[:k]] = True
    return flagged


def ratio(value: float, ref: float) -> float:
    """value / ref, with the extremes kept: a rate of 0 against a positive reference is a
    ratio of 0, a positive rate against a reference of 0 is infinite, and 0 against 0 is
    parity. Only a rate that cannot be computed (no one to compute it on) is missing."""
    if np.isnan(ref) or np.isnan(value):
        return float("nan")
    if ref == 0:
        return 1.0 if value == 0 else float("inf")
    return float(value / ref)


def wilson(successes: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion; (nan, nan) when there is no one to count."""
    if n == 0:
        return float("nan"), float("nan")
    phat = successes / n
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def _group_stats(attr: str, g: str, yy: np.ndarray, ff: np.ndarray, pp: np.ndarray, rr) -> dict:
    pos, neg = yy.sum(), (1 - yy).sum()
    counts = {
        "flag_rate": (ff.sum(), len(ff)),
        "tpr": ((ff & (yy == 1)).sum(), pos),
        "fpr": ((ff & (yy == 0)).sum(), neg),
        "precision": (yy[ff].sum(), ff.sum()),
    }
    stats: dict = {
        "attribute": attr,
        "group": g,
        "n": len(yy),
        "prevalence": float(yy.mean()),
        "auroc": auroc(yy, rr),
    }
    for metric, (hits, of) in counts.items():
        stats[metric] = float(hits / of) if of else float("nan")
        stats[f"{metric}_ci_low"], stats[f"{metric}_ci_high"] = wilson(hits, of)
    stats["mean_predicted"] = float(pp.mean())
    stats["observed_rate"] = float(yy.mean())
    return stats


def fairness_table(
    groups: pd.DataFrame,
    y: np.ndarray,
    p: np.ndarray,
    rank: np.ndarray,
    share: float,
    min_group: int = 30,
) -> pd.DataFrame:
    """One row per (attribute, group): rates with 95% CIs, ratios against the largest group,
    and flags. A group below `min_group` persons is reported but never flagged: its ratios
    are too unstable to act on."""
    y, p, rank = np.asarray(y), np.asarray(p), np.asarray(rank)
    flagged = flag_top(rank, share)
    rows = []
    for attr in groups.columns:
        values = groups[attr].astype(object).where(groups[attr].notna(), "unknown").astype(str)
        stats = []
        for g in sorted(values.unique()):
            m = (values == g).to_numpy()
            stats.append(_group_stats(attr, g, y[m], flagged[m], p[m], rank[m]))
        ref = max(stats, key=lambda s: s["n"])
        for s in stats:
            s["reference"] = ref["group"]
            s["gated"] = s["n"] >= min_group
            flags = []
            for metric in RATIO_METRICS:
                r = ratio(s[metric], ref[metric])
                s[f"{metric}_ratio"] = r
                if s["gated"] and not np.isnan(r) and not LOW <= r <= HIGH:
                    flags.append(metric)
            s["flags"] = ",".join(flags)
        rows.extend(stats)
    return pd.DataFrame(rows)


def worst_disparity(table: pd.DataFrame) -> float:
    """The largest ratio away from parity, max(r, 1/r), over the groups large enough to gate.
    A ratio of 0 or infinity is the worst there is (infinite), never left out."""
    usable = table[table.gated]
    ratios = usable[[f"{m}_ratio" for m in RATIO_METRICS]].to_numpy(float).ravel()
    ratios = ratios[~np.isnan(ratios)]
    if not len(ratios):
        return 1.0
    if ((ratios == 0) | np.isinf(ratios)).any():
        return float("inf")
    return float(np.max(np.maximum(ratios, 1 / ratios)))
