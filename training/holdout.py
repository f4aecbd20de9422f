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

from features.core.errors import ConfigError, ContractError, InputError, Problem
from features.core.io import read_text_table
from features.spec import FEATURES_BY_NAME
from features.storage.store import Store
from training.calibration import choose_calibrator
from training.drift import MAJOR_SHIFT, psi_between
from training.explain import contributions
from training.metrics import auroc, auroc_ci, calibration_bins, ece
from training.splits import Split, held_out_split

GROUP = "split_group"  # the frame's column of each row's group (or part, for a fixed split)
PARTS = ("train", "test")
MIN_GROUP_ROWS = 30  # smaller held-out groups are listed, not evaluated
MISSING = "(none recorded)"  # rows whose person has no value of the group's attribute
SHIFTED_AMONG = 10  # the inputs a held-out group's scores lean on most, searched for a shift
SHIFTED_SHOWN = 3


def read_split(path: Path, store: Store) -> tuple[str, pd.Series]:
    """A split fixed outside the project, from CSV or Parquet, every bad row named: either
    `part` (train or test) for each person, or `group` (any name: a trial, a site, a school)
    whose groups are held out as a group split holds out districts. Returns ("part" or
    "group", person_id -> value)."""
    path = Path(path)
    raw = read_text_table(path, "the split")
    kind = next((c for c in ("part", "group") if c in raw.columns), None)
    if "person_id" not in raw.columns or kind is None:
        raise InputError(f"{path}: needs the columns person_id and part (train or test) or group")
    known = set(store.con.execute("SELECT person_id FROM persons").df().person_id)
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for row, (pid, value) in enumerate(
        zip(raw["person_id"].astype(str), raw[kind].astype(str), strict=True), 1
    ):
        if pid not in known:
            problems.append(Problem(path.name, row, "person_id", f"unknown person {pid!r}"))
        if kind == "part" and value not in PARTS:
            problems.append(Problem(path.name, row, "part", f"{value!r} is not train or test"))
        if kind == "group" and value.strip() in ("", "nan"):
            problems.append(Problem(path.name, row, "group", "missing"))
        if pid in seen:
            problems.append(Problem(path.name, row, "person_id", f"duplicate of row {seen[pid]}"))
        seen.setdefault(pid, row)
    if problems:
        raise ContractError(
            f"{path}: {len({p.row for p in problems})} split row(s) are not usable:",
            problems[:20],
            len(problems),
        )
    return kind, pd.Series(raw[kind].astype(str).to_numpy(), index=raw["person_id"].astype(str))


def assigned(frame: pd.DataFrame, kind: str, split: pd.Series, source: str) -> np.ndarray:
    """Each row's part or group. Every person of the training rows needs a part; a person
    without a group is never held out (listed as MISSING)."""
    parts = frame["person_id"].map(split)
    lost = frame.loc[parts.isna(), "person_id"].unique()
    if kind == "part" and len(lost):
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
    X: pd.DataFrame,
    y: np.ndarray,
    folds: int,
    seed: int,
    fit: Callable[[Split], Any],
    raw: Callable[[Any, np.ndarray], np.ndarray],
    baseline: Callable[[np.ndarray, np.ndarray], float] | None = None,
) -> tuple[pd.DataFrame, dict[str, list[dict]], dict[str, dict[str, np.ndarray]]]:
    """One row per group: its rows and positives, and (where it has both classes and at least
    MIN_GROUP_ROWS rows) the metrics of a model that never saw it, beside the AUROC of
    `baseline(train rows, test rows)` (a logistic regression on the same features) trained
    on the same others, and the inputs that moved there (`shifted_inputs`); each group's
    calibration curve; and each group's labels, raw scores and probabilities (what a local
    recalibration starts from)."""
    rows, curves, scores = [], {}, {}
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
                shifted_inputs="; ".join(
                    f"{FEATURES_BY_NAME[f].label_en} (PSI {v:.1f})"
                    for f, v in shifted_inputs(X, test, contributions(model, X[test]))
                ),
            )
            if baseline is not None:
                row["logistic_auroc"] = baseline(~test, test)
            curves[str(group)] = calibration_bins(yt, p)
            scores[str(group)] = {"y": yt, "raw": r, "p": p}
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
        "logistic_auroc",
        "shifted_inputs",
    ]
    if baseline is None:
        columns.remove("logistic_auroc")
    return pd.DataFrame(rows).reindex(columns=columns), curves, scores


def view(table: pd.DataFrame) -> pd.DataFrame:
    """The leave-one-group-out evaluation as people read it, in the console, the model card
    and the CTN-0094 report: one figure a cell, the AUROC beside its interval; a group listed
    but not evaluated shows dashes. The inputs that moved are said in words under it
    (model_card.moved_words), not squeezed into a cell."""

    def fmt(v: float) -> str:
        return "—" if pd.isna(v) else f"{v:.3f}"

    out = pd.DataFrame(
        {
            "held out": table["group"].to_numpy(),
            "N": table["rows"].to_numpy(),
            "outcome rate": [
                f"{k / n:.1%}" for k, n in zip(table["positives"], table["rows"], strict=True)
            ],
            "AUROC (95% CI)": [
                "—" if pd.isna(a) else f"{a:.3f} ({lo:.3f}-{hi:.3f})"
                for a, lo, hi in zip(
                    table["auroc"], table["auroc_ci_low"], table["auroc_ci_high"], strict=True
                )
            ],
        }
    )
    if "logistic_auroc" in table:
        out["logistic regression AUROC"] = [fmt(v) for v in table["logistic_auroc"]]
    out["AUPRC"] = [fmt(v) for v in table["auprc"]]
    out["ECE"] = [fmt(v) for v in table["ece"]]
    out["mean predicted / observed"] = [
        "—" if pd.isna(m) else f"{m:.3f} / {o:.3f}"
        for m, o in zip(table["mean_predicted"], table["observed"], strict=True)
    ]
    return out


def shifted_inputs(
    X: pd.DataFrame, test: np.ndarray, contrib: np.ndarray
) -> list[tuple[str, float]]:
    """Of the inputs a held-out group's scores lean on most (mean |contribution| there, from
    `contrib`, one row per test row), those whose distribution there moved by a major shift
    from the groups trained on, with their PSI, heaviest first: where to look first when a
    model does not transport (a protocol that records something on another schedule, a form
    another site does not use), and what a test on a random split can never show."""
    weight = np.abs(contrib[:, : X.shape[1]]).mean(axis=0)
    moved: list[tuple[str, float]] = []
    for k in np.argsort(-weight, kind="stable")[:SHIFTED_AMONG]:
        if weight[k] == 0 or len(moved) == SHIFTED_SHOWN:
            break
        name = X.columns[k]
        value = psi_between(X.loc[~test, name], X.loc[test, name], name)
        if value >= MAJOR_SHIFT:
            moved.append((name, value))
    return moved


def _auprc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, score))
