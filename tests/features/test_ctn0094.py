"""The CTN-0094 adapter, outcome and benchmark on the real public trial data.

The data are not part of the project; without them these tests skip and say where they looked.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from experiments.ctn0094 import across_fits
from features.adapters.ctn0094 import outcome
from features.adapters.ctn0094.adapter import DAY_ZERO, convert, subset, write_dataset
from features.adapters.ctn0094.tables import find_data_dir, read_tables
from features.compute.builder import FeatureBuilder
from features.core.errors import SunshineError
from features.storage.store import Store
from serving.cli.main import app

try:
    DATA = find_data_dir()
except SunshineError as exc:
    pytest.skip(f"CTN-0094 data not available: {exc}", allow_module_level=True)


@pytest.fixture(scope="module")
def tables():
    return read_tables(DATA)


@pytest.fixture(scope="module")
def trial(tables):
    return convert(tables)


def day(d: int) -> pd.Timestamp:
    return pd.Timestamp(DAY_ZERO) + pd.Timedelta(days=d)


def test_every_participant_with_an_age_becomes_a_person_and_the_rest_are_counted(tables, trial):
    demo = tables["demographics"]
    assert len(trial.persons) == demo["age"].notna().sum() == 3352
    assert trial.left_out["participants without an age (the contract needs a birth date)"] == 208
    # one medication start per randomization into a treatment phase: every first one, plus
    # CTN-0030's second phase (a new randomization after the taper)
    rand = tables["randomization"]
    assert (trial.events["event_type"] == "medication_start").sum() == 2492 + 360
    assert (rand["which"].astype(str) == "1").sum() == 2492


def test_the_adapted_folder_passes_the_contract_with_no_rejects(trial, tmp_path):
    write_dataset(trial, tmp_path)
    store = Store(tmp_path)
    assert store.report.rejected_events == 0 and store.report.rejected_persons == 0
    assert store.report.events == len(trial.events)
    assert store.reference_date == trial.reference_date


def test_participant_10_by_hand(trial):
    """CTN-0027, outpatient buprenorphine, randomized on study day 19 (raw rows read by eye)."""
    ev = trial.events[trial.events["person_id"] == "ctn0010"]
    tests = ev[ev["event_type"] == "urine_test"]
    day0 = tests[tests["event_time"] == day(0)]
    assert sorted(day0["detail"]) == ["cocaine", "opioid"] and (day0["value"] == 1).all()
    # the randomization visit found nothing: one negative test
    assert tests[tests["event_time"] == day(19)][["value", "detail"]].values.tolist() == [
        [0.0, None]
    ]
    # day 61: methadone is not prescribed in a buprenorphine arm, so it is a positive
    assert "methadone" in set(tests[tests["event_time"] == day(61)]["detail"])
    start = ev[ev["event_type"] == "medication_start"]
    assert start[["event_time", "detail"]].values.tolist() == [[day(19), "buprenorphine"]]
    doses = ev[ev["event_type"] == "buprenorphine_dose"].set_index("event_time")["value"]
    assert doses[day(19)] == 8 and doses[day(20)] == 16 and doses[day(21)] == 24
    # weeks 1-12 after day 19: 26 cocaine; 33 cocaine; none; 41 cocaine; 48 cocaine;
    # 55 cocaine + 61 opioid (mixed); 68 opioid; 75 opioid; none; 83 cocaine; 91 opioid; 97 opioid
    pattern = outcome.weekly_pattern(trial).set_index("person_id")["pattern"]
    assert pattern["ctn0010"] == "--o--*++o-++"
    labels = outcome.labels(trial, "week3").set_index("person_id")
    assert labels.loc["ctn0010", "label"] == 1  # weeks 6-9: * + + o
    assert labels.loc["ctn0010", "as_of"] == (day(19 + 22)).date()


def test_participant_10_features_at_entry_and_week3(trial, tmp_path):
    small = subset(trial, pd.Series(["ctn0010"]))
    write_dataset(small, tmp_path)
    store = Store(tmp_path)
    spine = pd.concat([outcome.labels(small, p) for p in ("entry", "week3")], ignore_index=True)
    f = FeatureBuilder(store).build(spine).set_index(spine["as_of"].map(str).to_numpy())
    entry, week3 = f.loc[str(day(20).date())], f.loc[str(day(41).date())]
    assert entry["opioid_positive_tests_all"] == 1  # day 0 only
    assert entry["checkin_attended__count_all"] == 2  # days 0 and 19
    assert entry["on_buprenorphine"] == 1 and entry["on_methadone"] == 0
    assert entry["buprenorphine_dose__last"] == 8
    assert week3["opioid_positive_tests_all"] == 1
    assert week3["opioid_positive_tests_30d"] == 0  # day 0 is 41 days before as_of
    assert week3["checkin_attended__count_all"] == 4  # days 0, 19, 26, 33
    assert week3["buprenorphine_dose__count_all"] == 22  # every day from 19 to 40


def test_participant_23_by_hand(trial, tmp_path):
    """CTN-0051, inpatient naltrexone: detox from study day -2 to 4, randomized on day 2, one
    injection on day 4, screens on days 1 and 3 (methadone, not prescribed here), then gone."""
    ev = trial.events[trial.events["person_id"] == "ctn0023"]
    assert ev[ev.event_type == "rehab_admission"][["event_time", "detail"]].values.tolist() == [
        [day(-2), "detox"]
    ]
    assert ev[ev.event_type == "naltrexone_injection"]["event_time"].tolist() == [day(4)]
    assert ev[ev.event_type == "medication_start"]["detail"].tolist() == ["naltrexone"]
    tests = ev[ev.event_type == "urine_test"]
    assert sorted(tests[tests.event_time == day(1)]["detail"]) == ["methadone", "opioid"]
    assert tests[tests.event_time == day(3)]["detail"].tolist() == ["methadone"]
    # missed visits from week 7 on, each dated at randomization + 7 weeks x n
    missed = ev[ev.event_type == "checkin_missed"]["event_time"].tolist()
    assert missed[:5] == [day(2 + 7 * n) for n in range(7, 12)]
    withdrawal = ev[ev.event_type == "withdrawal_assessment"]
    assert withdrawal[["event_time", "value"]].values.tolist() == [[day(1), 0.0], [day(4), 0.0]]
    pattern = outcome.weekly_pattern(trial).set_index("person_id")["pattern"]
    assert pattern["ctn0023"] == "+ooooooooooo"  # week 1 holds day 3's screen
    small = subset(trial, pd.Series(["ctn0023"]))
    write_dataset(small, tmp_path)
    spine = pd.concat([outcome.labels(small, p) for p in ("entry", "week3")], ignore_index=True)
    assert spine["label"].tolist() == [1, 1]
    f = FeatureBuilder(Store(tmp_path)).build(spine)
    entry, week3 = f.iloc[0], f.iloc[1]
    assert entry["opioid_positive_tests_all"] == 2  # day 1: methadone and an opioid
    assert entry["on_naltrexone"] == 1 and entry["naltrexone_injection__count_all"] == 0
    assert entry["rehab_admission__count_all"] == 1 and entry["rehab_discharge__count_all"] == 0
    assert week3["naltrexone_injection__count_all"] == 1
    assert week3["rehab_discharge__count_all"] == 1
    assert week3["opioid_positive_tests_all"] == 3
    assert week3["checkin_missed__count_all"] == 0  # the first missed visit is on day 51


def test_participant_2_is_not_in_the_population(trial):
    """CTN-0030, randomized once (day 7) and never re-randomized into the treatment phase:
    adapted, but not among Luo et al.'s 2,199."""
    ev = trial.events[trial.events["person_id"] == "ctn0002"]
    negative = ev[(ev.event_type == "urine_test") & (ev.value == 0)]["event_time"].tolist()
    # visits on days 55, 69 and 83 found nothing; every other screen found something
    assert sorted(negative) == [day(55), day(69), day(83)]
    assert "ctn0002" not in set(outcome.population(trial)["person_id"])


def test_outcome_matches_the_derived_weekly_pattern(tables, trial):
    derived = tables["derived_weeklyOpioidPattern"]
    theirs = outcome.derived_pattern(derived, trial)
    on_their_grid = outcome.agreement(
        outcome.weekly_pattern(trial, outcome.derived_week_grid(derived, trial)), theirs
    )
    assert on_their_grid["participants"] == 2199  # Luo et al.'s N
    assert on_their_grid["outcome_equal"] == 1.0
    assert on_their_grid["week_symbols_equal"] > 0.998
    ours = outcome.agreement(outcome.weekly_pattern(trial), theirs)
    assert ours["outcome_equal"] > 0.99
    assert 0.50 < ours["prevalence"] < 0.56


def test_week3_features_ignore_events_after_day_21(trial, tmp_path):
    """Remove every later event, or add copies of all of them later: features do not move."""
    rng = np.random.default_rng(3)
    people = outcome.population(trial)["person_id"].sample(40, random_state=1)
    small = subset(trial, people)
    spine = outcome.labels(small, "week3")
    cut = small.events.merge(spine[["person_id", "as_of"]], on="person_id")
    later = cut["event_time"] >= pd.to_datetime(cut["as_of"])
    shifted = cut[~later].copy()
    shifted["event_time"] = pd.to_datetime(shifted["as_of"]) + pd.to_timedelta(
        rng.integers(0, 60, len(shifted)), unit="D"
    )
    variants = {
        "as is": small.events,
        "without later events": cut.loc[~later, small.events.columns],
        "with more later events": pd.concat([small.events, shifted[small.events.columns]]),
    }
    built = {}
    for name, events in variants.items():
        d = tmp_path / name.replace(" ", "_")
        variant = subset(small, people)
        variant.events = events.reset_index(drop=True)
        write_dataset(variant, d)
        built[name] = FeatureBuilder(Store(d)).build(spine)
    assert later.any()
    for name in ("without later events", "with more later events"):
        pd.testing.assert_frame_equal(built["as is"], built[name], obj=name)


def test_the_experiment_runs_end_to_end_on_a_sample(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs" / "benchmarks").mkdir(parents=True)
    tracked = tmp_path / "docs" / "benchmarks" / "ctn0094.md"
    tracked.write_text("the tracked copy")
    result = CliRunner().invoke(
        app, ["experiment", "ctn0094", "--data-dir", str(DATA), "--sample", "600"]
    )
    # without --write-docs the tracked report is left alone: a clean clone stays clean
    assert tracked.read_text() == "the tracked copy"
    report = tmp_path / "bench-out" / "ctn0094" / "ctn0094.md"
    assert result.exit_code == 0, result.output
    assert "at treatment entry: test AUROC" in result.output
    text = report.read_text(encoding="utf-8")
    assert "A quick run on a random sample of 600 participants" in text
    assert "**N = 600**" in text
    for heading in ("### At treatment entry", "### After 3 weeks of treatment", "hispanic"):
        assert heading in text
    # leave-one-trial-out at both points, beside the random split, with the plain model
    held = text.split("## Held out by trial", 1)[1].split("## Population", 1)[0]
    for trial in ("CTN-27", "CTN-30", "CTN-51"):
        assert held.count(f"| {trial} |") >= 2  # both prediction points
    assert "logistic regression AUROC" in held and "### Local recalibration" in held
    # where it does not transport, the inputs that moved there (the trials' protocols differ)
    assert "moved by a major shift" in held and re.search(r"CTN-\d+: [^.]+ \(PSI \d+\.\d\)", held)
    assert "ECE by chance, 95th pct" in held
    # and repeated on many random halves, beside a perfect calibrator on the same halves
    assert "The same on many random halves" in held and "| perfect, median |" in held
    # a quick run repeats fewer: trial, checked on, halves
    assert "| halves |" in held and re.search(r"\| CTN-\d+ \| \d+ \| 4 \|", held)
    # and over several fits of the model, since one fit's figure is one draw too (two here)
    assert "fits of the model (LightGBM seeds)" in held and "| fit medians |" in held
    assert re.search(r"\| CTN-\d+ \| 2 \| 0\.\d{3} \| 0\.\d{3}-0\.\d{3} \|", held)
    client = MlflowClient()
    exp = client.get_experiment_by_name("ctn0094")
    runs = client.search_runs([exp.experiment_id])
    names = sorted(r.info.run_name for r in runs)
    # each point trained on the random split and left one trial out, week 3 twice (two fits)
    assert names[0] == "ctn0094-report" and len(names) == 6
    # training runs say what they are: task, time, config and the label file
    assert all(n.startswith("relapse-") and "ctn0094-labels:labels-" in n for n in names[1:])
    assert {n.rsplit("labels-", 1)[1] for n in names[1:]} == {"entry", "week3"}
    report_run = next(r for r in runs if r.info.run_name == "ctn0094-report")
    assert 0.5 < report_run.data.metrics["week3_test_auroc"] <= 1
    assert client.search_registered_models() == []  # trial models never reach the registry


def test_a_missing_data_dir_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["experiment", "ctn0094", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2  # a user error, as everywhere in the CLI
    assert "no CTN-0094 data at" in result.output and "Traceback" not in result.output


def test_yes_no_intake_questions_are_codebook_items_keeping_no_apart_from_unasked(
    tables, trial, tmp_path
):
    from features.adapters.ctn0094.adapter import person_id

    psych = tables["psychiatric"].set_index("who")["has_major_dep"]
    psych.index = person_id(psych.index.to_series())
    known = set(trial.persons.person_id)
    said_no = next(p for p in psych[psych == "No"].index if p in known)
    unasked = next(p for p in psych[psych.isna()].index if p in known)
    write_dataset(trial, tmp_path / "r")
    store = Store(tmp_path / "r")
    assert "dx_major_depression" in {i.code for i in store.codebook.items}
    answers = (
        store.con.execute(
            "SELECT p.person_id, e.value FROM events e JOIN persons p USING (pk) "
            "WHERE e.event_type = 'assessment' AND e.detail = 'dx_major_depression'"
        )
        .df()
        .set_index("person_id")["value"]
    )
    assert answers[said_no] == 2.0  # "no" is an answer
    assert unasked not in answers.index  # never asked: no answer at all
    spine = pd.DataFrame({"person_id": [said_no, unasked], "as_of": [day(1).date()] * 2})
    built = FeatureBuilder(store).build(spine)
    assert built.loc[0, "item__dx_major_depression__last"] == "no"
    assert pd.isna(built.loc[1, "item__dx_major_depression__last"])


def test_across_fits_by_hand():
    # two fits' medians for two trials: 0.06 and 0.08 (median 0.07), 0.04 and 0.05 (0.045)
    fit = [
        pd.DataFrame({"trial": ["CTN-30", "CTN-51"], "after, median": a, "perfect, median": 0.04})
        for a in ([0.06, 0.04], [0.08, 0.05])
    ]
    out = across_fits(fit).set_index("trial")
    assert out.loc["CTN-30", "after, median over fits"] == pytest.approx(0.07)
    assert out.loc["CTN-51", "after, median over fits"] == pytest.approx(0.045)
    assert out.loc["CTN-30", "fit medians"] == "0.060-0.080"
    assert out.loc["CTN-51", "fits under 0.05"] == "1 of 2" and (out["fits"] == 2).all()
    assert across_fits([]).empty
