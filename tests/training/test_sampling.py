"""`sunshine train --sample N`: a label-stratified sample whose label rate is the cohort's."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import sunshine, use_mlflow
from hypothesis import given, settings
from hypothesis import strategies as st

from features.core.errors import ConfigError
from training.sampling import Sampling, stratified_sample


def a_spine(labels: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {"person_id": [f"P{i:05d}" for i in range(len(labels))], "as_of": "2024-01-01",
         "label": labels}
    )  # fmt: skip


def test_each_stratum_is_drawn_at_the_same_rate_in_the_spines_order():
    spine = a_spine([1] * 100 + [0] * 900)
    sample, how = stratified_sample(spine, 200, seed=3)
    assert len(sample) == 200 and sample.label.sum() == 20  # 10% of 200, as in the cohort
    assert how == Sampling(1000, 100, 200, 20, 3) and how.weight == 5.0
    assert sample.person_id.is_monotonic_increasing and sample.person_id.is_unique
    assert set(sample.person_id) <= set(spine.person_id)
    again, _ = stratified_sample(spine, 200, seed=3)
    assert again.equals(sample)
    other, _ = stratified_sample(spine, 200, seed=4)
    assert not other.equals(sample)
    whole, how = stratified_sample(spine, 5000, seed=3)
    assert whole is spine and how.weight == 1.0
    with pytest.raises(ConfigError, match="too few rows to hold a positive"):
        stratified_sample(a_spine([1] + [0] * 999), 10, seed=3)


@settings(max_examples=60, deadline=None)
@given(labels=st.lists(st.integers(0, 1), min_size=2, max_size=400), frac=st.floats(0.05, 1))
def test_the_samples_label_rate_is_the_cohorts_to_one_row(labels, frac):
    spine = a_spine(labels)
    n = max(1, int(len(spine) * frac))
    try:
        sample, how = stratified_sample(spine, n, seed=1)
    except ConfigError:
        assert sum(labels) and round(n * sum(labels) / len(labels)) == 0
        return
    assert len(sample) == min(n, len(spine))
    # the positives are the cohort's rate of the sample, rounded to the nearest row
    assert abs(sample.label.sum() - len(sample) * np.mean(labels)) <= 0.5 + 1e-9


def test_train_on_a_sample_says_so_in_the_model_card(served, tmp_path):
    use_mlflow(served)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{served / 'mlflow.db'}"}
    r = sunshine(tmp_path, "train", "--task", "relapse", "--data", served / "city",
                 "--sample", 1500, "--no-register", "--experiment", "sampled", env=env)  # fmt: skip
    use_mlflow(served)
    assert "trained" in r.stdout.lower() or r.returncode == 0
    runs = mlflow.search_runs(experiment_names=["sampled"], output_format="list")
    run_id = runs[0].info.run_id
    card = mlflow.artifacts.load_text(f"runs:/{run_id}/model_card.md")
    assert "label-stratified sample of 1,500 of the cohort's" in card
    fingerprint = json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/data_fingerprint.json"))
    sampling = fingerprint["sampling"]
    assert sampling["sampled_rows"] == 1500 and sampling["rows"] > 1500
    assert sampling["weight"] == pytest.approx(sampling["rows"] / 1500)
    rate, sample_rate = (sampling["positives"] / sampling["rows"],
                         sampling["sampled_positives"] / 1500)  # fmt: skip
    assert abs(rate - sample_rate) <= 1 / 1500
