"""Validation in a place the model never saw: a held-out group, every group in turn, or a split
fixed outside the project.

A random split of persons tests a model on people like those it learned from. A model trained
in some districts (or trials, or sites) and used in another faces a shift a random split
cannot show: the leave-one-group-out evaluation trains once per group on all the others
(early stopping and calibration on a person-grouped fold of those others) and reports, for the
group it never saw, AUROC with a bootstrap CI, AUPRC, ECE and the calibration curve.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.errors import ConfigError, ContractError, InputError, Problem
from features.store import Store
from training.calibration import choose_calibrator
from training.metrics import auroc, auroc_ci, calibration_bins, ece
from training.splits import Split, held_out_split

GROUP = "split_group"  # the frame's column of each row's group (or part, for a fixed split)
PARTS = ("train", "test")
MIN_GROUP_ROWS = 30  # smaller held-out groups are listed, not evaluated
MISSING = "(none recorded)"  # rows whose person has no value of the group's attribute


def read_split(path: Path, store: Store) -> pd.Series:
    """A split fixed outside the project: person_id -> part (train or test), from CSV or
    Parquet, every bad row named."""
    path = Path(path)
    try:
        raw = (
            pd.read_parquet(path)
            if path.suffix == ".parquet"
            else pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        )
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the split ({exc})") from None
    missing = [c for c in ("person_id", "part") if c not in raw.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    known = set(store.con.execute("SELECT person_id FROM persons").df().person_id)
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for row, (pid, part) in enumerate(
        zip(raw["person_id"].astype(str), raw["part"].astype(str), strict=True), 1
    ):
        if pid not in known:
            problems.append(Problem(path.name, row, "person_id", f"unknown person {pid!r}"))
        if part not in PARTS:
            problems.append(Problem(path.name, row, "part", f"{part!r} is not train or test"))
        if pid in seen:
            problems.append(Problem(path.name, row, "person_id", f"duplicate of row {seen[pid]}"))
        seen.setdefault(pid, row)
    if problems:
        raise ContractError(
            f"{path}: {len({p.row for p in problems})} split row(s) are not usable:",
            problems[:20],
            len(problems),
        )
    return pd.Series(raw["part"].astype(str).to_numpy(), index=raw["person_id"].astype(str))


def fixed_parts(frame: pd.DataFrame, split: pd.Series, source: str) -> np.ndarray:
    """Each row's part; every person of the training rows must have one."""
    parts = frame["person_id"].map(split)
    lost = frame.loc[parts.isna(), "person_id"].unique()
    if len(lost):
        raise InputError(
            f"{source}: {len(lost)} person(s) of the training rows have no part, for example "
            f"{', '.join(map(str, lost[:3]))}; give every person train or test"
        )
    return parts.to_numpy()


def test_group(groups: pd.Series, asked: str | None, source: str) -> str:
    """The group the registered model is tested on: the one asked for, else the largest."""
    counts = groups.dropna().value_counts()
    if asked is None:
        return str(counts.index[0])
    if asked not in counts.index:
        raise ConfigError(
            f"{source}: split.test_group {asked!r} has no rows; the groups are "
            + ", ".join(f"{g} ({n})" for g, n in counts.items())
        )
    return asked


def leave_one_group_out(
    groups: pd.Series,
    persons: pd.Series,
    y: np.ndarray,
    folds: int,
    seed: int,
    fit: Callable[[Split], Any],
    raw: Callable[[Any, np.ndarray], np.ndarray],
) -> tuple[pd.DataFrame, dict[str, list[dict]]]:
    """One row per group: its rows and positives, and (where it has both classes and at least
    MIN_GROUP_ROWS rows) the metrics of a model that never saw it; and each group's
    calibration curve."""
    rows, curves = [], {}
    for group in sorted(groups.dropna().unique(), key=str):
        test = (groups == group).to_numpy()
        yt = y[test]
        row: dict[str, Any] = {
            "group": str(group),
            "rows": int(test.sum()),
            "positives": int(yt.sum()),
        }
        usable = test.sum() >= MIN_GROUP_ROWS and 0 < yt.sum() < len(yt)
        if usable:
            _, inner = held_out_split(test, persons, y, folds, seed)
            model = fit(inner[0])
            calibrator, _ = choose_calibrator(raw(model, inner[0].valid), y[inner[0].valid])
            r = raw(model, test)
            p = calibrator.transform(r)
            low, high = auroc_ci(yt, r)
            row.update(
                auroc=auroc(yt, r),
                auroc_ci_low=low,
                auroc_ci_high=high,
                auprc=_auprc(yt, r),
                ece=ece(yt, p),
                mean_predicted=float(np.mean(p)),
                observed=float(np.mean(yt)),
            )
            curves[str(group)] = calibration_bins(yt, p)
        rows.append(row)
    unknown = groups.isna().to_numpy()
    if unknown.any():  # never held out: they stay in every training part
        rows.append(
            {"group": MISSING, "rows": int(unknown.sum()), "positives": int(y[unknown].sum())}
        )
    columns = [
        "group",
        "rows",
        "positives",
        "auroc",
        "auroc_ci_low",
        "auroc_ci_high",
        "auprc",
        "ece",
        "mean_predicted",
        "observed",
    ]
    return pd.DataFrame(rows).reindex(columns=columns), curves


def _auprc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, score))
