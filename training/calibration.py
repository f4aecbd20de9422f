"""Calibrated probabilities from the booster's raw log-odds: isotonic or Platt.

The method is chosen on the validation part by cross-validated Brier score, then refitted on
all of it. Isotonic steps are shrunk towards the base rate, never exactly 0 or 1. Both
are stored as plain numbers (thresholds, or a slope and an intercept), so a deployed model
applies them with numpy and carries no pickled estimator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

METHODS = ("isotonic", "platt")


@dataclass
class Calibrator:
    method: str
    params: dict[str, list[float]] = field(default_factory=dict)

    def transform(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, float)
        if self.method == "platt":
            a, b = self.params["slope"][0], self.params["intercept"][0]
            return 1.0 / (1.0 + np.exp(-(a * raw + b)))
        x, y = np.asarray(self.params["x"]), np.asarray(self.params["y"])
        return np.interp(raw, x, y)

    def to_dict(self) -> dict:
        return {"method": self.method, "params": self.params}

    @classmethod
    def from_dict(cls, d: dict) -> Calibrator:
        return cls(d["method"], d["params"])


def fit_calibrator(method: str, raw: np.ndarray, y: np.ndarray) -> Calibrator:
    raw, y = np.asarray(raw, float), np.asarray(y)
    if method == "platt":
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(raw.reshape(-1, 1), y)
        return Calibrator(
            "platt", {"slope": [float(lr.coef_[0, 0])], "intercept": [float(lr.intercept_[0])]}
        )
    x, rate = smoothed_steps(raw, y)
    return Calibrator("isotonic", {"x": x.tolist(), "y": rate.tolist()})


def smoothed_steps(raw: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic regression's steps (each step's first and last score), each at its rate with
    one person more, who has the outcome at the base rate: (events + base rate) / (persons +
    1), pooled again by persons where that broke the order. A step whose persons all had, or
    none had, the outcome would otherwise say 100% or 0%: a certainty no few dozen people
    support, and 0% reads as "needs nothing". The base rate, not one half, so a rare outcome's
    large empty steps stay near zero rather than rise towards 50%."""
    order = np.argsort(raw, kind="stable")
    fitted = IsotonicRegression().fit(raw, y).predict(raw)
    x, events, f = raw[order], np.asarray(y, float)[order], fitted[order]
    starts = np.r_[0, np.flatnonzero(np.diff(f) != 0) + 1]
    persons = np.diff(np.r_[starts, len(x)])
    rate = (np.add.reduceat(events, starts) + events.mean()) / (persons + 1)
    steps = np.arange(len(starts))
    rate = IsotonicRegression().fit(steps, rate, sample_weight=persons).predict(steps)
    ends = np.r_[starts[1:], len(x)] - 1
    return np.column_stack([x[starts], x[ends]]).ravel(), np.repeat(rate, 2)


def choose_calibrator(
    raw: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0
) -> tuple[Calibrator, dict[str, float]]:
    """Pick the method with the lower cross-validated Brier score on the validation part."""
    raw, y = np.asarray(raw, float), np.asarray(y)
    folds = max(2, min(folds, int(y.sum()), int(len(y) - y.sum())))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    scores = {}
    for method in METHODS:
        errs = []
        for fit_idx, eval_idx in cv.split(raw, y):
            cal = fit_calibrator(method, raw[fit_idx], y[fit_idx])
            errs.append(np.mean((cal.transform(raw[eval_idx]) - y[eval_idx]) ** 2))
        scores[method] = float(np.mean(errs))
    best = min(scores, key=lambda m: scores[m])
    return fit_calibrator(best, raw, y), scores
