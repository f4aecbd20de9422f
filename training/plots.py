"""Figures logged with each run: calibration curve, SHAP beeswarm and waterfalls.

shap draws on pyplot's current figure, so each SHAP plot starts a new figure of its own; the
caller closes each figure once it is saved (`close`), or pyplot would keep drawing onto one.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import shap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from training.metrics import calibration_bins  # noqa: E402


def calibration_curve(y: np.ndarray, p: np.ndarray, title: str) -> Figure:
    return curves({"model": calibration_bins(y, p)}, title)


def curves(named: dict[str, list[dict]], title: str) -> Figure:
    """Several calibration curves, each from its `calibration_bins`, on one figure."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
    for name, bins in named.items():
        ax.plot([b["predicted"] for b in bins], [b["observed"] for b in bins], "o-", label=name)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed rate")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def _explanation(contrib: np.ndarray, X: pd.DataFrame, labels: list[str]) -> shap.Explanation:
    data = np.column_stack(
        [
            X[c].cat.codes.to_numpy(float) if hasattr(X[c], "cat") else X[c].to_numpy(float)
            for c in X
        ]
    )
    return shap.Explanation(
        values=contrib[:, :-1], base_values=contrib[:, -1], data=data, feature_names=labels
    )


def beeswarm(contrib: np.ndarray, X: pd.DataFrame, labels: list[str]) -> Figure:
    fig = plt.figure(figsize=(9, 7))
    shap.plots.beeswarm(_explanation(contrib, X, labels), max_display=15, show=False)
    fig.set_size_inches(9, 7)
    fig.tight_layout()
    return fig


def waterfall(contrib: np.ndarray, X: pd.DataFrame, labels: list[str], row: int) -> Figure:
    fig = plt.figure(figsize=(9, 6))
    shap.plots.waterfall(_explanation(contrib, X, labels)[row], max_display=10, show=False)
    fig.set_size_inches(9, 6)
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    plt.close(fig)


def effect_figures(code: str, qini: pd.DataFrame, calibration: pd.DataFrame) -> dict[str, Figure]:
    """An option's Qini curve (outcomes prevented beyond random choice, by the share offered
    in order of estimated benefit) and its calibration (estimated against doubly-robust
    effect by quantile of the estimate), both on held-out persons, with 95% intervals."""
    fig_q, ax = plt.subplots(figsize=(5, 4))
    ax.fill_between(qini["share_offered"], qini["low"], qini["high"], alpha=0.25)
    ax.plot(qini["share_offered"], qini["gain"], "o-", label="by estimated benefit")
    ax.axhline(0, color="grey", linestyle="--", label="random")
    ax.set_xlabel("share of the cohort offered")
    ax.set_ylabel("outcomes prevented beyond random, per person")
    ax.set_title(f"Qini curve: {code}", fontsize=9)
    ax.legend()
    fig_q.tight_layout()
    fig_c, ax = plt.subplots(figsize=(5, 4))
    ax.errorbar(
        calibration["estimated"],
        calibration["doubly_robust"],
        yerr=[
            calibration["doubly_robust"] - calibration["low"],
            calibration["high"] - calibration["doubly_robust"],
        ],
        fmt="o",
    )
    lo = float(np.nanmin([calibration["estimated"].min(), calibration["low"].min()]))
    hi = float(np.nanmax([calibration["estimated"].max(), calibration["high"].max()]))
    ax.plot([lo, hi], [lo, hi], "--", color="grey", label="perfect")
    ax.set_xlabel("estimated effect (mean of the bin)")
    ax.set_ylabel("doubly-robust effect")
    ax.set_title(f"Effect calibration: {code}", fontsize=9)
    ax.legend()
    fig_c.tight_layout()
    return {"qini": fig_q, "calibration": fig_c}
