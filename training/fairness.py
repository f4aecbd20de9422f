"""Fairness audit across protected groups, at the capacity threshold the programme would use.

For each attribute the reference group is the largest. Every figure has a bootstrap 95%
interval (rows of the group and of the reference resampled independently).

Flags are where it matters for a risk score that ranks people for support: whether it ranks a
group as well as the reference (AUROC) and whether its probabilities mean the same there
(observed over expected outcomes). A group is flagged only where the interval lies wholly
outside parity: an AUROC more than 0.05 below the reference's, or observed/expected outside
0.8-1.25. A small group's wide interval never raises a flag on noise; a real gap in a large
one does. The error rates at the capacity threshold (flag rate, TPR, FPR, precision) are
reported as ratios to the reference with their intervals, outside 0.8-1.25 marked as the
four-fifths convention of bias-audit tools such as Aequitas marks them, but they are not
flags: where outcomes are more common in one group, a calibrated score flags it more often
and no score can equalise those rates and stay calibrated.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.metrics import auroc, auroc_ci

LOW, HIGH = 0.8, 1.25
AUROC_GAP = 0.05
RATIO_METRICS = ("flag_rate", "tpr", "fpr", "precision")
BOOTSTRAP = 200
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
        stats[f"{metric}_smoothed"] = float((hits + 0.5) / (of + 1))
        stats[f"{metric}_ci_low"], stats[f"{metric}_ci_high"] = wilson(hits, of)
    stats["mean_predicted"] = float(pp.mean())
    stats["observed_rate"] = float(yy.mean())
    stats["auroc_ci_low"], stats["auroc_ci_high"] = auroc_ci(yy, rr, n_boot=BOOTSTRAP)
    stats["oe_ratio"] = ratio(float(yy.sum()), float(pp.sum()))
    return stats


def replicates(yy: np.ndarray, ff: np.ndarray, pp: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Bootstrap replicates of a group's rates and of its observed/expected ratio: each
    replicate weighs every row by a Poisson(1) count, which resamples the group with
    replacement in O(rows) memory."""
    rng = np.random.default_rng(seed)
    yy, ff, pp = yy.astype(float), ff.astype(float), pp.astype(float)
    out: dict[str, list[float]] = {m: [] for m in (*RATIO_METRICS, "oe_ratio")}
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(BOOTSTRAP):
            w = rng.poisson(1.0, len(yy)).astype(float)
            hits = (w * ff * yy).sum()
            out["flag_rate"].append((w * ff).sum() / w.sum())
            out["tpr"].append(hits / (w * yy).sum())
            out["fpr"].append((w * ff * (1 - yy)).sum() / (w * (1 - yy)).sum())
            out["precision"].append(hits / (w * ff).sum())
            out["oe_ratio"].append((w * yy).sum() / (w * pp).sum())
    return {m: np.asarray(v) for m, v in out.items()}


def interval(values: np.ndarray) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of the replicates that could be computed. A bound
    that falls among infinite replicates (the reference group's rate was zero in them) is
    that infinity: numpy's interpolation would make it inf - inf, a missing bound."""
    values = values[~np.isnan(values)]
    if not len(values):
        return float("nan"), float("nan")
    with np.errstate(invalid="ignore"):
        linear = np.percentile(values, [2.5, 97.5])
    nearest = np.percentile(values, [2.5, 97.5], method="nearest")
    lo, hi = np.where(np.isnan(linear), nearest, linear)
    return float(lo), float(hi)


def outside(lo: float, hi: float, low: float = LOW, high: float = HIGH) -> bool:
    """Whether an interval lies wholly outside parity [low, high]."""
    return bool(lo > high or hi < low)


def fairness_table(
    groups: pd.DataFrame,
    y: np.ndarray,
    p: np.ndarray,
    rank: np.ndarray,
    share: float,
    min_group: int = 30,
) -> pd.DataFrame:
    """One row per (attribute, group): rates with 95% CIs, ratios against the largest group
    with bootstrap CIs, AUROC and observed/expected with theirs, and the flags (see the module
    docstring). A group below `min_group` persons is reported but never flagged."""
    y, p, rank = np.asarray(y), np.asarray(p), np.asarray(rank)
    flagged = flag_top(rank, share)
    rows = []
    for attr in groups.columns:
        values = groups[attr].astype(object).where(groups[attr].notna(), "unknown").astype(str)
        stats, reps = [], []
        for k, g in enumerate(sorted(values.unique())):
            m = (values == g).to_numpy()
            stats.append(_group_stats(attr, g, y[m], flagged[m], p[m], rank[m]))
            reps.append(replicates(y[m], flagged[m], p[m], seed=k))
        r = max(range(len(stats)), key=lambda i: stats[i]["n"])
        ref, ref_reps = stats[r], reps[r]
        for s, rep in zip(stats, reps, strict=True):
            s["reference"] = ref["group"]
            s["gated"] = s["n"] >= min_group
            flags, beyond = [], []
            for metric in RATIO_METRICS:
                s[f"{metric}_ratio"] = ratio(s[metric], ref[metric])
                with np.errstate(divide="ignore", invalid="ignore"):
                    lo, hi = interval(rep[metric] / ref_reps[metric])
                s[f"{metric}_ratio_ci_low"], s[f"{metric}_ratio_ci_high"] = lo, hi
                if s is not ref and outside(lo, hi):
                    beyond.append(metric)
            # a group too small to gate is listed with its figures, never as beyond
            s["rates_beyond_four_fifths"] = ",".join(beyond) if s["gated"] else ""
            if s is not ref and s["auroc_ci_high"] < ref["auroc"] - AUROC_GAP:
                flags.append("auroc")
            s["oe_ci_low"], s["oe_ci_high"] = interval(rep["oe_ratio"])
            if outside(s["oe_ci_low"], s["oe_ci_high"]):
                flags.append("calibration")
            s["flags"] = ",".join(flags) if s["gated"] else ""
        rows.extend(stats)
    return pd.DataFrame(rows)


def flag_list(table: pd.DataFrame) -> list[str]:
    """Every flag as attribute=group:metric, for the run's tags and the promotion gate."""
    return [
        f"{r.attribute}={r.group}:{flag}"
        for r in table.itertuples()
        if r.flags
        for flag in r.flags.split(",")
    ]


def worst_disparity(table: pd.DataFrame) -> float:
    """The largest ratio away from parity, max(r, 1/r), over the groups large enough to gate,
    on rates smoothed by half a count ((hits + 0.5) / (n + 1), Jeffreys' prior): finite
    where a group's raw rate is 0 (that raw 0 stays in the table, beside its ratio), and
    close to the raw ratio where counts are large."""
    usable = table[table.gated]
    worst = 1.0
    for metric in RATIO_METRICS:
        column = f"{metric}_smoothed"
        if column not in usable or usable.empty:
            continue
        reference = usable[usable.group == usable.reference]
        for attr, rows in usable.groupby("attribute"):
            ref = reference.loc[reference.attribute == attr, column]
            if ref.empty or not ref.iloc[0] > 0:
                continue
            ratios = rows[column].to_numpy(float) / ref.iloc[0]
            ratios = ratios[ratios > 0]
            if len(ratios):
                worst = max(worst, float(np.max(np.maximum(ratios, 1 / ratios))))
    return worst
