"""The person-level cross-validation split, for data without a shared calendar."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.core.errors import SunshineError
from training.config import load_config
from training.splits import cv_split


@settings(max_examples=30, deadline=None)
@given(
    n_persons=st.integers(60, 300),
    rows_per_person=st.integers(1, 3),
    share=st.floats(0.15, 0.6),
    seed=st.integers(0, 10_000),
)
def test_cv_split_holds_out_whole_persons_and_keeps_the_label_mix(
    n_persons, rows_per_person, share, seed
):
    rng = np.random.default_rng(seed)
    label_of = (rng.random(n_persons) < share).astype(int)
    label_of[:5], label_of[5:10] = 1, 0  # both classes present in every draw
    persons = pd.Series(np.repeat([f"p{i}" for i in range(n_persons)], rows_per_person))
    y = np.repeat(label_of, rows_per_person)
    split, folds = cv_split(persons, y, folds=5, test_share=0.2, seed=seed)
    assert not (split.train & split.test).any() and (split.train | split.test).all()
    assert set(persons[split.train]).isdisjoint(persons[split.test])
    assert abs(split.test.mean() - 0.2) < 0.08
    assert abs(y[split.test].mean() - y.mean()) < 0.12  # stratified
    assert len(folds) == 5
    covered = np.zeros(len(y), int)
    for f in folds:
        assert not (f.train & f.valid).any() and not (f.valid & split.test).any()
        assert (f.train | f.valid)[split.train].all()
        assert set(persons[f.train]).isdisjoint(persons[f.valid])
        covered += f.valid
    assert (covered[split.train] == 1).all()  # each development row is validated exactly once


def test_cv_split_is_reproducible_so_two_prediction_points_share_their_test_persons():
    persons = pd.Series([f"p{i}" for i in range(200)])
    y = np.arange(200) % 3 == 0
    a, _ = cv_split(persons, y.astype(int), 5, 0.2, 7)
    b, _ = cv_split(persons, y.astype(int), 5, 0.2, 7)
    assert (a.test == b.test).all()


def test_cv_config_needs_no_dates_and_rejects_bad_settings(tmp_path):
    good = tmp_path / "cv.yaml"
    good.write_text("task: relapse\nsplit: {mode: cv, folds: 4, test_share: 0.25}\n")
    cfg = load_config("relapse", good)
    assert (cfg.split_mode, cfg.cv_folds, cfg.test_share) == ("cv", 4, 0.25)
    assert cfg.evaluation_title.startswith("4-fold")
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: relapse\nsplit: {mode: cv, folds: 1}\n")
    with pytest.raises(SunshineError, match="folds must be at least 2"):
        load_config("relapse", bad)
    bad.write_text("task: relapse\nsplit: {mode: random}\n")
    with pytest.raises(SunshineError, match="split.mode 'random'"):
        load_config("relapse", bad)
