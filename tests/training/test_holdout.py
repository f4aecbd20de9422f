"""Validation in a place the model never saw: a held-out group, leave-one-group-out, and a
split fixed outside the project, on the `served` city with labels made to shift by district."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import use_mlflow

from features.core.errors import ConfigError, ContractError, InputError
from features.storage.store import Store
from models.training_run import run_training
from training.config import load_config
from training.holdout import shifted_inputs, view
from training.model_card import transport
from training.splits import held_out_split

AS_OF = "2025-01-01"
FAST = (
    "lightgbm: {num_leaves: 7, n_estimators: 60, early_stopping_rounds: 15, learning_rate: 0.1}\n"
)


@pytest.fixture(scope="module")
def shifted(served, tmp_path_factory):
    """Labels that follow age everywhere but in huaxi, where they follow it the other way
    round: a rule no model trained elsewhere can learn."""
    use_mlflow(served)
    root = tmp_path_factory.mktemp("holdout")
    persons = pd.read_parquet(served / "city" / "persons.parquet")
    age = (pd.Timestamp(AS_OF) - pd.to_datetime(persons["birth_date"])).dt.days / 365.25
    older = (age > age.median()).to_numpy()
    label = np.where(persons["district"].to_numpy() == "huaxi", ~older, older).astype(int)
    labels = root / "labels.csv"
    pd.DataFrame({"person_id": persons["person_id"], "as_of": AS_OF, "label": label}).to_csv(
        labels, index=False
    )
    return root, labels, Store(served / "city")


def config(root, text: str, name: str = "c.yaml"):
    path = root / name
    path.write_text("task: relapse\n" + text + FAST)
    return load_config("relapse", path)


def test_leave_one_group_out_shows_where_the_model_does_not_transport(shifted):
    root, labels, store = shifted
    cfg = config(root, "split: {mode: group, by: district, test_group: huaxi, folds: 3}\n")
    result, version, _ = run_training(
        store, cfg, labels, experiment="holdout-test", register_model=False
    )
    assert version is None and result.config.test_group == "huaxi"
    # the test rows are exactly huaxi's persons
    persons = pd.read_parquet(store.source / "persons.parquet")
    movers = set(
        store.con.execute(
            "SELECT DISTINCT p.person_id FROM events e JOIN persons p USING (pk) "
            "WHERE e.event_type = 'district_move'"
        )
        .df()
        .person_id
    )
    huaxi = set(persons.person_id[persons.district == "huaxi"]) - movers
    tested = set(result.test_persons)
    assert huaxi <= tested and len(tested - huaxi) <= len(movers)
    table = result.evaluation.set_index("group")
    assert table["rows"].sum() == len(persons)  # every row in exactly one group
    assert set(table.index) == {*persons.district.dropna(), "(none recorded)"}
    assert np.isnan(table.at["(none recorded)", "auroc"])  # listed, never held out
    # huaxi, never seen, is ranked the wrong way round; the others transport
    assert table.at["huaxi", "auroc"] < 0.3
    others = table.drop(index=["huaxi", "(none recorded)"])
    assert (others["auroc"] > 0.7).all()
    # a logistic regression on the same features, trained on the same others, fares alike
    assert table.at["huaxi", "logistic_auroc"] < 0.3 and (others["logistic_auroc"] > 0.7).all()
    for group, got in result.group_scores.items():
        assert len(got["y"]) == table.at[group, "rows"] == len(got["p"]) == len(got["raw"])
    evaluated = table[table["auroc"].notna()]
    assert (evaluated["auroc_ci_low"] <= evaluated["auroc"]).all()
    assert (evaluated["auroc"] <= evaluated["auroc_ci_high"]).all()
    assert ((evaluated["ece"] >= 0) & (evaluated["ece"] <= 1)).all()
    assert set(result.group_calibration) == set(evaluated.index)
    for group, bins in result.group_calibration.items():
        assert sum(b["n"] for b in bins) == table.at[group, "rows"]
    assert result.metrics["auroc"] < 0.3  # the registered test is the held-out group
    said = transport(result)  # the model card says it plainly
    assert "**Does not transport**" in said and "huaxi (0." in said
    assert not any(f"{g} (" in said.split("Miscalibrated")[0] for g in others.index)
    # as people read it (console, model card): each AUROC beside its interval, dashes for a
    # group listed but not evaluated
    shown = view(result.evaluation).set_index("held out")
    h = table.loc["huaxi"]
    assert shown.at["huaxi", "AUROC (95% CI)"] == (
        f"{h.auroc:.3f} ({h.auroc_ci_low:.3f}-{h.auroc_ci_high:.3f})"
    )
    assert shown.at["huaxi", "outcome rate"] == f"{h.positives / h.rows:.1%}"
    assert shown.at["(none recorded)", "AUROC (95% CI)"] == "—"
    assert shown.at["(none recorded)", "N"] == table.at["(none recorded)", "rows"]
    # what moved is huaxi's outcome, not its inputs (the same city, labels flipped there)
    assert table.at["huaxi", "shifted_inputs"] == ""
    assert "In huaxi" in said and "none of the 10 inputs its scores lean on most moved" in said


def test_a_split_fixed_outside_the_project(shifted):
    root, labels, store = shifted
    persons = pd.read_parquet(store.source / "persons.parquet")
    test = persons.person_id.sample(frac=0.25, random_state=3)
    split = root / "split.csv"
    pd.DataFrame(
        {
            "person_id": persons.person_id,
            "part": np.where(persons.person_id.isin(test), "test", "train"),
        }
    ).to_csv(split, index=False)
    cfg = config(root, "split: {mode: cv, folds: 3, test_share: 0.2}\n", "cv.yaml")
    result, _, _ = run_training(
        store, cfg, labels, experiment="holdout-test", register_model=False, split=split
    )
    assert result.config.split_mode == "fixed"
    assert set(result.test_persons) == set(test)

    bad = root / "bad.csv"
    bad.write_text("person_id,part\nP0000001,test\nNOBODY,train\nP0000002,validation\n")
    with pytest.raises(ContractError) as info:
        run_training(store, cfg, labels, register_model=False, split=bad)
    problems = [(p.row, p.column) for p in info.value.problems]
    assert problems == [(2, "person_id"), (3, "part")]
    partial = root / "partial.csv"
    partial.write_text("person_id,part\nP0000001,test\n")
    with pytest.raises(InputError, match="have no part"):
        run_training(store, cfg, labels, register_model=False, split=partial)


def test_groups_fixed_outside_the_project(shifted):
    """`--split FILE` with a group column: trials, sites or schools the registry has no column
    for, held out one at a time."""
    root, labels, store = shifted
    persons = pd.read_parquet(store.source / "persons.parquet")
    trial = np.where(
        persons.district == "huaxi", "CTN-A", np.where(persons.index % 2 == 0, "CTN-B", "CTN-C")
    )
    groups = root / "groups.csv"
    pd.DataFrame({"person_id": persons.person_id, "group": trial}).iloc[:-10].to_csv(
        groups, index=False
    )
    cfg = config(root, "split: {mode: cv, folds: 3, test_share: 0.2}\n", "g.yaml")
    result, _, _ = run_training(
        store, cfg, labels, experiment="holdout-test", register_model=False, split=groups
    )
    assert result.config.split_mode == "group" and result.config.group_by == "group of groups.csv"
    table = result.evaluation.set_index("group")
    assert list(table.index) == ["CTN-A", "CTN-B", "CTN-C", "(none recorded)"]
    assert table.at["(none recorded)", "rows"] == 10  # no group: never held out
    assert table.at["CTN-A", "auroc"] < 0.3 < 0.7 < table.at["CTN-B", "auroc"]
    assert result.config.test_group == "CTN-B" or result.config.test_group == "CTN-C"


def test_group_split_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="split.by must name a persons column .*got nothing"):
        config(tmp_path, "split: {mode: group}\n")
    with pytest.raises(ConfigError, match="or a coded assessment's first answer as item:CODE"):
        config(tmp_path, "split: {mode: group, by: 'Shoe Size'}\n")
    # any persons column or an item's first answer passes here; a column the persons file
    # lacks is refused when the groups are read (test_codebook)
    config(tmp_path, "split: {mode: group, by: shoe_size}\n")
    config(tmp_path, "split: {mode: group, by: 'item:trial'}\n")


def test_an_unknown_test_group_lists_the_groups(shifted):
    root, labels, store = shifted
    cfg = config(root, "split: {mode: group, by: district, test_group: atlantis}\n", "a.yaml")
    with pytest.raises(ConfigError, match=r"test_group 'atlantis' has no rows.*huaxi \("):
        run_training(store, cfg, labels, register_model=False)


def test_held_out_split_never_trains_on_the_test_rows_nor_splits_a_person():
    rng = np.random.default_rng(0)
    persons = pd.Series(rng.integers(0, 60, 400).astype(str))
    y = rng.integers(0, 2, 400)
    test = (persons.astype(int) < 15).to_numpy()
    split, folds = held_out_split(test, persons, y, 4, 7)
    assert (split.test == test).all() and (split.train == ~test).all()
    for fold in folds:
        assert not (fold.train & test).any() and not (fold.valid & test).any()
        assert (fold.train | fold.valid | test).all()
        assert not set(persons[fold.train]) & set(persons[fold.valid])


def test_the_inputs_that_moved_where_the_scores_lean_on_them():
    others, group = np.tile(np.arange(10.0), 10), np.full(50, 100.0)  # 100 and 50 rows
    steady = np.r_[others, np.tile(np.arange(10.0), 5)]  # the same deciles in both
    shifted = np.r_[others, group]
    columns = {
        "moved_used": (shifted, 1.0),
        "moved_gone": (np.r_[others, np.full(50, np.nan)], 0.9),  # not recorded there at all
        "used_steady": (steady, 0.8),
        "moved_third": (shifted, 0.7),
        "moved_fourth": (shifted, 0.6),  # a fourth: only three are shown
        **{f"filler_{k}": (steady, 0.5) for k in range(7)},
        "moved_light": (shifted, 0.1),  # twelfth by weight: not among the ten searched
        "moved_unused": (shifted, 0.0),  # the scores never use it
    }
    X = pd.DataFrame({name: values for name, (values, _) in columns.items()})
    test = np.r_[np.zeros(100, bool), np.ones(50, bool)]
    weights = np.array([w for _, w in columns.values()])
    signs = np.where(np.arange(50) % 2 == 0, 1.0, -1.0)[:, None]  # |contribution| is weighed
    contrib = np.c_[signs * weights, np.full(50, -1.0)]  # the last column: the base value
    moved = shifted_inputs(X, test, contrib)
    assert [name for name, _ in moved] == ["moved_used", "moved_gone", "moved_third"]
    # by hand: the others fill ten decile bins with 0.1 each; all the group's rows fall in
    # the top bin, or in the missing bin; empty shares are floored at 1e-4
    empty = (1e-4 - 0.1) * np.log(1e-4 / 0.1)
    assert moved[0][1] == pytest.approx(9 * empty + 0.9 * np.log(1 / 0.1))
    assert moved[1][1] == pytest.approx(10 * empty + (1 - 1e-4) * np.log(1 / 1e-4))
    assert moved[2][1] == moved[0][1]
