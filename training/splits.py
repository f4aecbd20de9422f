"""Splits with no look-ahead: label windows never reach into a later period.

Train on as-of dates before the validation period, validate on the next period, test on the
latest. A row whose label window would reach past the start of the test period is kept
out of training and validation (purged), so no training label ever sees the test period.
Data without a shared calendar is split by person instead (`cv_split`). A model meant for a
new place is tested on a place it never saw (`held_out_split`: a whole group, such as a
district or a trial, or a split fixed outside the project).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    purged: int

    def describe(self, as_of: pd.Series, label: pd.Series) -> pd.DataFrame:
        rows = []
        for part in ("train", "valid", "test"):
            mask = getattr(self, part)
            d = as_of[mask]
            rows.append(
                {
                    "part": part,
                    "first_as_of": str(d.min()) if len(d) else "",
                    "last_as_of": str(d.max()) if len(d) else "",
                    "rows": int(mask.sum()),
                    "positives": int(label[mask].sum()),
                }
            )
        return pd.DataFrame(rows)


def temporal_split(
    as_of: pd.Series, valid_start: dt.date, test_start: dt.date, label_days: int = 365
) -> Split:
    d = pd.to_datetime(as_of)
    window_end = d + pd.Timedelta(days=label_days)
    test = (d >= pd.Timestamp(test_start)).to_numpy()
    before_test = (window_end <= pd.Timestamp(test_start)).to_numpy()
    valid = (d >= pd.Timestamp(valid_start)).to_numpy() & before_test
    train = (d < pd.Timestamp(valid_start)).to_numpy() & before_test
    purged = int(len(d) - train.sum() - valid.sum() - test.sum())
    return Split(train, valid, test, purged)


def cv_split(
    persons: pd.Series, y: np.ndarray, folds: int, test_share: float, seed: int
) -> tuple[Split, list[Split]]:
    """A held-out test share of persons, then stratified folds over the rest.

    Stratified by label and grouped by person, so a person's rows never sit on both sides. The
    same persons, labels and seed give the same test set, so two prediction points of one cohort
    are tested on the same people.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    zeros = np.zeros(len(y), bool)
    outer = StratifiedGroupKFold(n_splits=round(1 / test_share), shuffle=True, random_state=seed)
    _, test_idx = next(outer.split(zeros, y, persons))
    test = zeros.copy()
    test[test_idx] = True
    return held_out_split(test, persons, y, folds, seed)


def held_out_split(
    test: np.ndarray, persons: pd.Series, y: np.ndarray, folds: int, seed: int
) -> tuple[Split, list[Split]]:
    """A given test mask, and stratified folds over the rest, grouped by person: for a held-out
    group or a split fixed outside the project."""
    from sklearn.model_selection import StratifiedGroupKFold

    zeros = np.zeros(len(y), bool)
    dev = np.flatnonzero(~test)
    inner = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    parts = []
    for tr, va in inner.split(dev, y[dev], persons.iloc[dev]):
        train, valid = zeros.copy(), zeros.copy()
        train[dev[tr]] = True
        valid[dev[va]] = True
        parts.append(Split(train, valid, zeros, 0))
    return Split(~test, zeros, test, 0), parts


def rolling_splits(
    as_of: pd.Series,
    valid_start: dt.date,
    test_start: dt.date,
    test_starts: tuple[dt.date, ...],
    label_days: int = 365,
) -> list[tuple[dt.date, Split]]:
    """The main split shifted back to each earlier test start, keeping its spacing.

    Each test period runs until the next test start (the last one to the end of the data).
    """
    gap = pd.Timestamp(test_start) - pd.Timestamp(valid_start)
    out = []
    ordered = sorted(test_starts)
    for i, start in enumerate(ordered):
        s = temporal_split(as_of, (pd.Timestamp(start) - gap).date(), start, label_days)
        if i + 1 < len(ordered):
            s = Split(
                s.train,
                s.valid,
                s.test & (pd.to_datetime(as_of) < pd.Timestamp(ordered[i + 1])).to_numpy(),
                s.purged,
            )
        out.append((start, s))
    return out
