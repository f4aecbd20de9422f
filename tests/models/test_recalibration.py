"""Local recalibration on the `served` models: a site whose outcomes are rarer than the model
says gets a calibrator of its own, checked on persons it never saw, and nothing else changes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import sunshine, use_mlflow
from mlflow.tracking import MlflowClient

from features.compute.builder import FeatureBuilder
from features.core.errors import InputError
from features.storage.store import Store
from models.recalibration import MIN_EACH, Spread, halves, recalibrate, repeated_halves, verdict
from models.registry import load_model

AS_OF = "2025-06-30"


@pytest.fixture(scope="module")
def site(served, tmp_path_factory):
    """Every person of the city as of AS_OF, with outcomes drawn at 40% of the model's
    probability: a place where the model ranks as well as anywhere but overstates risk."""
    use_mlflow(served)
    root = tmp_path_factory.mktemp("site")
    store = Store(served / "city")
    model, facts = load_model("relapse")
    persons = pd.read_parquet(served / "city" / "persons.parquet")
    spine = pd.DataFrame({"person_id": persons.person_id, "as_of": pd.Timestamp(AS_OF).date()})
    p = model.score(FeatureBuilder(store).build(spine)).probability
    y = (np.random.default_rng(11).random(len(p)) < 0.4 * p).astype(int)
    labels = root / "local.csv"
    spine.assign(label=y).to_csv(labels, index=False)
    return root, store, labels, facts


def test_recalibration_repairs_the_probabilities_and_keeps_the_ranking(site):
    root, store, labels, facts = site
    r = recalibrate(store, "relapse", labels, facts["version"])
    assert r.source_version == facts["version"] and r.rows == r.fit_rows + r.check_rows
    assert r.before["ece"] > 0.05 > r.after["ece"]
    assert r.after["brier"] < r.before["brier"]
    # the old calibrator's miss is beyond what chance gives on this many rows
    assert r.after["ece_chance_median"] < r.after["ece_chance_p95"] < r.before["ece"]
    assert sum(b["n"] for b in r.curves["after"]) == r.check_rows
    new, new_facts = load_model("relapse", version=str(r.version))
    old, _ = load_model("relapse", version=facts["version"])
    assert (
        new_facts["version"] == str(r.version)
        and new.metadata["recalibrated_from"] == (facts["version"])
    )
    frame = FeatureBuilder(store).build(pd.read_csv(labels).head(300).drop(columns="label"))
    # the same booster: the same raw scores, tiers and percentiles; other probabilities
    assert np.array_equal(new.raw_scores(frame), old.raw_scores(frame))
    a, b = new.score(frame), old.score(frame)
    assert list(a.tier) == list(b.tier) and np.allclose(a.percentile, b.percentile)
    assert np.mean(a.probability) < np.mean(b.probability)
    client = MlflowClient()
    version = client.get_model_version("sunshine-relapse", str(r.version))
    assert str(client.get_model_version_by_alias("sunshine-relapse", "challenger").version) == str(
        r.version
    )
    run = client.get_run(version.run_id)
    assert run.data.tags["recalibrated_from"] == facts["version"]
    assert run.data.metrics["local_ece_after"] == pytest.approx(r.after["ece"])
    assert run.data.metrics["local_ece_chance_p95"] == pytest.approx(r.after["ece_chance_p95"])
    source = client.get_run(facts["run_id"]).data
    assert run.data.metrics["test_auroc"] == source.metrics["test_auroc"]
    assert run.data.tags["label_definition"] == source.tags["label_definition"]


def test_halves_keep_a_person_on_one_side_and_both_outcomes_on_each():
    rng = np.random.default_rng(2)
    persons = pd.Series(rng.integers(0, 300, 1000).astype(str))
    y = (rng.random(1000) < 0.3).astype(int)
    fit, check = halves(persons, y)
    assert (fit ^ check).all()
    assert not set(persons[fit]) & set(persons[check])
    assert abs(y[fit].mean() - y[check].mean()) < 0.05


def test_too_few_outcomes_is_refused_saying_how_many_are_needed(site, tmp_path):
    _, store, labels, facts = site
    few = pd.read_csv(labels)
    few = pd.concat([few[few.label == 1].head(MIN_EACH - 1), few[few.label == 0].head(500)])
    path = tmp_path / "few.csv"
    few.to_csv(path, index=False)
    with pytest.raises(
        InputError, match=rf"{MIN_EACH - 1} event\(s\).*at least {MIN_EACH} of each"
    ):
        recalibrate(store, "relapse", path, facts["version"])


def test_the_command(site):
    root, store, labels, facts = site
    served = store.source.parent  # where the served models' MLflow store is
    command = ["recalibrate", "--task", "relapse", "--data", store.source]
    r = sunshine(served, *command, "--labels", labels, "--from-version", facts["version"])
    assert "ECE on the held-out half" in r.stdout and "as challenger" in r.stdout
    said = " ".join(r.stdout.split())
    assert "over 100 halves drawn afresh" in said and "90% range" in said
    assert "by chance alone: the new calibrator" in said
    bad = sunshine(served, *command, "--labels", root / "missing.csv", check=False)
    assert bad.returncode == 2 and "missing.csv" in bad.stderr


def test_the_verdict_is_judged_on_many_halves_not_one():
    """Outcomes drawn from the scores themselves: the old calibrator is perfect. Over many
    halves its ECE sits on the chance floor; a calibrator that doubles every probability
    is said to be off by more than chance, whichever half one would have drawn."""
    rng = np.random.default_rng(0)
    n = 4000
    raw = rng.normal(-1.5, 1.0, n)
    p = 1 / (1 + np.exp(-raw))
    y = (rng.random(n) < p).astype(int)
    persons = pd.Series([f"P{i:05d}" for i in range(n)])
    spread = repeated_halves(persons, y, raw, p, repeats=20)
    assert spread["before"].low <= spread["before"].median <= spread["before"].high
    # the source calibrator is the truth: its ECE is within what chance gives a perfect one
    assert spread["floor"].median < spread["floor_p95"].median
    assert spread["before"].median <= spread["floor_p95"].median
    assert spread["after"].median <= spread["floor_p95"].median
    assert verdict(spread) == "the new calibrator cannot be told from perfect calibration"
    worse = {**spread, "after": Spread(0.2, 0.18, 0.22)}
    assert verdict(worse) == "the new calibrator is no better than the old one"
    better = {**spread, "before": Spread(0.3, 0.28, 0.32), "after": Spread(0.1, 0.09, 0.11)}
    assert verdict(better).startswith("the new calibrator is better than the old, but off")
    assert Spread.of([1.0, 2.0, 3.0]) == Spread(2.0, 1.1, 2.9)
