"""Evaluation metrics, including the top-k metrics that match caseworkers' capacity."""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit, logit
from sklearn.metrics import average_precision_score, roc_auc_score

TOP_SHARES = (0.01, 0.05, 0.10, 0.20)


def auroc(y: np.ndarray, p: np.ndarray) -> float:
    y = np.asarray(y)
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")


def auroc_ci(
    y: np.ndarray, p: np.ndarray, n_boot: int = 500, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap over rows.

    Each resample is a vector of row counts; its AUROC is the weighted Mann-Whitney statistic
    over tie groups of the sorted scores, O(n) per resample instead of a full sort.
    """
    y, p = np.asarray(y).astype(bool), np.asarray(p, float)
    n = len(y)
    if n == 0 or y.all() or not y.any():
        return float("nan"), float("nan")
    _, group = np.unique(p, return_inverse=True)  # tie groups, in ascending score order
    groups = group.max() + 1
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        w = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
        pos = np.bincount(group, weights=w * y, minlength=groups)
        neg = np.bincount(group, weights=w * ~y, minlength=groups)
        total_pos, total_neg = pos.sum(), neg.sum()
        if total_pos == 0 or total_neg == 0:
            continue
        below = np.cumsum(neg) - neg
        stats.append(float((pos * (below + 0.5 * neg)).sum() / (total_pos * total_neg)))
    if not stats:
        return float("nan"), float("nan")
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((np.asarray(p) - np.asarray(y)) ** 2))


def calibration_bins(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> list[dict]:
    """Equal-width probability bins: count, mean predicted and observed rate of each."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1], right=True), 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        m = idx == b
        if m.any():
            out.append(
                {
                    "lo": float(edges[b]),
                    "hi": float(edges[b + 1]),
                    "n": int(m.sum()),
                    "predicted": float(p[m].mean()),
                    "observed": float(y[m].mean()),
                }
            )
    return out


def ece(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error: bin-size-weighted |mean predicted - observed rate|."""
    n = len(y)
    return float(
        sum(
            b["n"] / n * abs(b["predicted"] - b["observed"]) for b in calibration_bins(y, p, n_bins)
        )
    )


def perfect_outcomes(
    p: np.ndarray, draws: int, rng: np.random.Generator, events: int | None = None
) -> np.ndarray:
    """Outcome vectors (draws x rows) of a world where `p` is exactly right.

    With `events`, only vectors with exactly that many events: a check half stratified by
    outcome has its count fixed, and free draws would add a miss-in-the-large it cannot
    have (on nearly constant scores that is most of the ECE). They are drawn by rejection
    from probabilities tilted so that `events` is their expected count: given the count, a
    tilt changes nothing, since it scales every vector with that count alike. Where that
    would cost more than EXACT_COUNT_CELLS random numbers, outcomes are drawn freely."""
    p = np.asarray(p, float)
    if events is not None and not 0 < events < len(p):
        if events not in (0, len(p)):
            raise ValueError(f"{events} events among {len(p)} rows")
        return np.full((draws, len(p)), int(events > 0), np.int8)
    if events is not None:
        odds = logit(np.clip(p, 1e-6, 1 - 1e-6))

        def expected(shift: float) -> float:
            return float(np.sum(expit(odds + shift)) - events)

        q = expit(odds + brentq(expected, -50, 50))
        # one tilted vector in this many has exactly `events` events (a normal count's peak)
        tries = math.sqrt(2 * math.pi * max(float(np.sum(q * (1 - q))), 1.0))
        if draws * tries * len(p) <= EXACT_COUNT_CELLS:
            return _with_count(q, events, draws, tries, rng)
    return (rng.random((draws, len(p))) < p).astype(np.int8)


# Random numbers the exact count may cost (a second or two); past it (a check set of a few
# thousand rows, where the count's share of the noise is small) outcomes are drawn freely,
# which if anything overstates the noise.
EXACT_COUNT_CELLS = 300_000_000


def _with_count(
    q: np.ndarray, events: int, draws: int, tries: float, rng: np.random.Generator
) -> np.ndarray:
    batch = int(min(max(1, 2_000_000 // len(q)), math.ceil(1.3 * draws * tries)))
    kept: list[np.ndarray] = []
    while sum(len(k) for k in kept) < draws:
        y = rng.random((batch, len(q))) < q
        kept.append(y[y.sum(axis=1) == events].astype(np.int8))
    return np.concatenate(kept)[:draws]


def ece_by_chance(
    p: np.ndarray, events: int | None = None, draws: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """ECE of a perfectly calibrated model on these scores (with `events`, a check set whose
    number of events is fixed, as a stratified half's is). Its median and 95th percentile say
    how much ECE a check set this size shows by chance, so a small site can tell a real
    miscalibration from sampling noise."""
    sims = [ece(y, p) for y in perfect_outcomes(p, draws, np.random.default_rng(seed), events)]
    return float(np.median(sims)), float(np.quantile(sims, 0.95))


def capture_at_top(y: np.ndarray, p: np.ndarray, share: float) -> tuple[float, float]:
    """Precision and recall among the ceil(share * n) highest scores (ties: first come first)."""
    y, p = np.asarray(y), np.asarray(p)
    k = max(1, math.ceil(share * len(y)))
    top = np.argsort(-p, kind="stable")[:k]
    hits = y[top].sum()
    positives = y.sum()
    return float(hits / k), float(hits / positives) if positives else float("nan")


def evaluate(
    y: np.ndarray, p: np.ndarray, rank: np.ndarray | None = None, with_ci: bool = True
) -> dict[str, float]:
    """Ranking metrics on `rank` (the raw score: strictly ordered, where a step calibrator
    ties many rows) and probability metrics on the calibrated `p`. The calibrator is monotone,
    so the raw order is the calibrated order wherever the latter is strict."""
    rank = p if rank is None else rank
    out = {
        "auroc": auroc(y, rank),
        "auroc_calibrated": auroc(y, p),
        "auprc": float(average_precision_score(y, rank)) if np.sum(y) > 0 else float("nan"),
        "brier": brier(y, p),
        "ece": ece(y, p),
        "prevalence": float(np.mean(y)),
        "rows": float(len(y)),
    }
    if with_ci:
        out["auroc_ci_low"], out["auroc_ci_high"] = auroc_ci(y, rank)
    for share in TOP_SHARES:
        prec, rec = capture_at_top(y, rank, share)
        pct = round(share * 100)
        out[f"precision_top{pct}"] = prec
        out[f"recall_top{pct}"] = rec
    return out
