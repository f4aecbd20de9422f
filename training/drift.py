"""Population stability: the reference distribution of every model input and of the score,
fixed when the model is trained and stored with it.

The reference is the task's cohort on the training data's reference date: the population the
model would have scored the day it was trained (`trainer.current_cohort`), so drift is drift
since training, and the first check on the same data finds none (for a user's own labels, the
test rows). Each numeric input is cut at its deciles there, with a bin
of its own for "missing"; each categorical input keeps its categories. Only the cut points and
the shares are stored, never a row, so the model file holds no personal data and monitoring
never needs the training data again (it may be gone by then).

PSI = sum over bins of (now - then) * ln(now / then), shares floored at 1e-4 so an empty bin
does not make it infinite.

Like is compared with like. A "days since" input is binned at fixed recencies (a month, a
quarter, half a year, a year), with "more than a year ago, or never" one bin beside them: its
deciles would move with the calendar by construction, since the longer a registry has run,
the longer ago anyone's oldest event can be, and a model watched for a year would drift on
its own clock.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.spec import FEATURES_BY_NAME

N_BINS = 10
RECENCY_CUTS = (30.0, 90.0, 180.0, 365.0)  # days: the bins of a "days since" input
FLOOR = 1e-4
MAJOR_SHIFT = 0.25  # the PSI from which a shift is major: monitoring alerts, hold-out names it
MISSING = "(missing)"
OTHER = "(other)"


def _cuts(values: np.ndarray) -> list[float]:
    present = values[~np.isnan(values)]
    if not len(present):
        return []
    inner = np.quantile(present, np.linspace(0, 1, N_BINS + 1)[1:-1])
    return [float(c) for c in np.unique(inner)]


def bin_shares(entry: dict[str, Any], column: pd.Series) -> np.ndarray:
    """The share of rows in each of the entry's bins, the missing bin last."""
    n = max(len(column), 1)
    if "categories" in entry:
        text = column.astype(object).where(column.notna(), None)
        known = list(entry["categories"])
        counts = [int((text == c).sum()) for c in known]
        missing = int(text.isna().sum())
        counts.append(len(column) - sum(counts) - missing)  # any category not seen then
        counts.append(missing)
        return np.asarray(counts, float) / n
    values = pd.to_numeric(column, errors="coerce").to_numpy(float)
    if "beyond" in entry:  # "more than a year ago" is "never" for this comparison
        values = np.where(values > entry["beyond"], np.nan, values)
    present = values[~np.isnan(values)]
    index = np.searchsorted(np.asarray(entry["cuts"], float), present, side="right")
    counts = np.bincount(index, minlength=len(entry["cuts"]) + 1).astype(float)
    return np.append(counts, np.isnan(values).sum()) / n


def psi(expected: np.ndarray | list[float], actual: np.ndarray) -> float:
    e = np.maximum(np.asarray(expected, float), FLOOR)
    a = np.maximum(np.asarray(actual, float), FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def _entry(column: pd.Series, name: str | None) -> dict[str, Any]:
    spec = FEATURES_BY_NAME.get(name or "")
    if spec is not None and spec.categories is not None:
        entry: dict[str, Any] = {"categories": list(spec.categories)}
    elif spec is not None and spec.reading == "days_ago":
        entry = {"cuts": list(RECENCY_CUTS[:-1]), "beyond": RECENCY_CUTS[-1]}
    else:
        entry = {"cuts": _cuts(pd.to_numeric(column, errors="coerce").to_numpy(float))}
    entry["shares"] = bin_shares(entry, column).tolist()
    return entry


def psi_between(before: pd.Series, after: pd.Series, name: str | None = None) -> float:
    """PSI of `after` against `before`, binned as a model's monitoring reference bins it
    (`name` gives a categorical feature its categories)."""
    entry = _entry(before, name)
    return psi(entry["shares"], bin_shares(entry, after))


def reference(
    frame: pd.DataFrame,
    features: list[str],
    raw: np.ndarray,
    districts: pd.Series | None = None,
    period: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """What monitoring compares a later cohort with: each feature's bins and shares, its
    missing share by district (a district that stops recording shows there first), the raw
    score's bins, the row count and the period the rows are from."""
    out: dict[str, Any] = {
        "rows": len(frame),
        "features": {f: _entry(frame[f], f) for f in features},
        "score": _entry(pd.Series(np.asarray(raw, float)), None),
        "period": list(period) if period else None,
    }
    if districts is not None:
        missing = frame[features].isna().groupby(districts.to_numpy()).mean()
        sizes = districts.value_counts()
        out["districts"] = {
            str(d): {"rows": int(sizes[d]), "missing": missing.loc[d].round(6).to_dict()}
            for d in missing.index
        }
    return out
