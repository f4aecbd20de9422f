"""Apache Spark (`local[2]`, on loopback): the same features, labels and scores as DuckDB."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
from conftest import ev, sunshine, use_mlflow, write_dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_codebook import CODEBOOK
from test_no_lookahead import a_case, batch_features

from features.compute.labels import cohort_spine
from features.core.errors import ContractError, InputError
from features.storage.store import Store
from features.tasks import get_task

AS_OF = dt.date(2025, 4, 1)


def read_dir(path, dates: bool = True) -> pd.DataFrame:
    """A Parquet folder as pandas, with a hive partition's as_of as a date again."""
    frame = ds.dataset(path, format="parquet", partitioning="hive").to_table().to_pandas()
    if dates:
        frame["as_of"] = pd.to_datetime(frame["as_of"].astype(str)).dt.date
    return frame.sort_values(["as_of", "person_id"]).reset_index(drop=True)


def assert_same(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    """Every column equal: numbers within 1e-9 and missing where missing, the rest exactly."""
    assert list(ours.columns) == list(theirs.columns)
    assert len(ours) == len(theirs) > 0
    for c in ours.columns:
        a, b = ours[c], theirs[c]
        if pd.api.types.is_numeric_dtype(a) and not pd.api.types.is_bool_dtype(a):
            x, y = a.to_numpy(float), pd.to_numeric(b).to_numpy(float)
            same = (np.isnan(x) & np.isnan(y)) | (np.abs(x - y) <= 1e-9)
        else:
            same = (a.isna() & b.isna()).to_numpy() | (
                a.astype(object).to_numpy() == b.astype(object).to_numpy()
            )
        assert same.all(), f"{c}: {(~same).sum()} rows differ, first {np.flatnonzero(~same)[:5]}"


def test_every_feature_and_label_is_the_same_on_spark_and_duckdb(served, spark, tmp_path):
    """All ~290 features of the relapse cohort at two dates, through `sunshine features`."""
    city, dates = served / "city", ["2024-07-01", "2025-04-01"]
    args = ["features", "--data", city, "--task", "relapse", *[a for d in dates
            for a in ("--as-of", d)]]  # fmt: skip
    sunshine(tmp_path, *args, "--out", tmp_path / "duck.parquet")
    r = sunshine(tmp_path, *args, "--out", tmp_path / "spark.parquet", "--engine", "spark")
    assert "partitioned by as_of" in r.stdout
    duck = pd.read_parquet(tmp_path / "duck.parquet")
    duck = duck.sort_values(["as_of", "person_id"]).reset_index(drop=True)
    ours = read_dir(tmp_path / "spark.parquet")[list(duck.columns)]
    partitions = sorted(p.name for p in (tmp_path / "spark.parquet").iterdir() if p.is_dir())
    assert partitions == [f"as_of={d}" for d in dates]
    assert duck.label.sum() > 0
    assert_same(ours, duck)


def test_the_youth_cohort_and_labels_are_the_same_on_spark_and_duckdb(served, spark):
    """The other task's own SQL (its cohort by age, no drug record, its label window); its
    features are the same function of (person, as_of) as the test above checks."""
    from features.compute import spark as engine
    from features.compute.labels import build_spine

    task, dates = get_task("youth_uptake"), [dt.date(2024, 7, 1), dt.date(2025, 4, 1)]
    duck = build_spine(Store(served / "city"), task, dates).reset_index(drop=True)
    rows = engine.spine(engine.SparkRegistry(spark, served / "city"), task, dates)
    ours = rows.select("person_id", "as_of", "label").toArrow().to_pandas()
    ours = ours.sort_values(["as_of", "person_id"]).reset_index(drop=True)
    assert len(duck) > 1000 and duck.label.sum() > 0
    assert_same(ours, duck)


def test_the_cohort_scored_on_spark_is_the_roster_scorers_to_1e9(served, spark, tmp_path):
    """Probabilities, tiers, the three reasons in their order and the support options."""
    use_mlflow(served)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{served / 'mlflow.db'}"}
    city = served / "city"
    common = ["--task", "relapse", "--data", city, "--as-of", str(AS_OF), "--lang", "zh"]
    sunshine(tmp_path, "score-cohort", *common, "--out", tmp_path / "duck.parquet", env=env)
    r = sunshine(tmp_path, "score-cohort", *common, "--out", tmp_path / "spark.parquet",
                 "--engine", "spark", env=env)  # fmt: skip
    use_mlflow(served)
    assert "scored" in r.stdout
    duck = pd.read_parquet(tmp_path / "duck.parquet").sort_values("person_id")
    ours = read_dir(tmp_path / "spark.parquet", dates=False).sort_values("person_id")
    duck = duck.reset_index(drop=True)
    expected = cohort_spine(Store(city), get_task("relapse"), AS_OF)
    assert sorted(ours.person_id) == sorted(expected.person_id)  # the whole cohort, once each
    assert set(ours.status) == {"ok"} and ours.probability.between(0, 1).all()
    assert ours.factor_1.str.len().gt(0).all()
    assert_same(ours.reset_index(drop=True)[list(duck.columns)], duck)


def test_a_roster_scored_on_spark_is_the_same_file_row_by_row(served, spark, tmp_path):
    """Every status of a roster (scored, outside the cohort, unknown, missing, undated, in
    the future, repeated), at two dates, in three pieces (the first and last quarter of a chunk
    are pieces of their own): the same output as DuckDB's."""
    use_mlflow(served)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{served / 'mlflow.db'}"}
    city = served / "city"
    members = cohort_spine(Store(city), get_task("relapse"), AS_OF).person_id.sample(
        150, random_state=4
    )
    others = pd.read_parquet(city / "persons.parquet").person_id.sample(80, random_state=5)
    roster = pd.concat(
        [
            pd.DataFrame({"person_id": members, "as_of": str(AS_OF)}),
            pd.DataFrame({"person_id": others, "as_of": ""}),
            pd.DataFrame(
                {
                    "person_id": ["NOBODY", "", members.iloc[0], members.iloc[1], members.iloc[2]],
                    "as_of": ["", "", "31/02/2024", "2999-01-01", str(AS_OF)],
                }
            ),
        ],
        ignore_index=True,
    )
    roster["站点"] = "花溪社区戒毒站"
    roster.to_csv(tmp_path / "roster.csv", index=False)
    common = ["score-roster", tmp_path / "roster.csv", "--task", "relapse", "--data", city,
              "--chunk-rows", "1000", "--lang", "zh"]  # fmt: skip
    sunshine(tmp_path, *common, "--out", tmp_path / "duck.csv", env=env)
    r = sunshine(tmp_path, *common, "--out", tmp_path / "spark.csv", "--engine", "spark", env=env)
    use_mlflow(served)
    assert f"wrote {len(roster)} rows" in r.stdout
    duck = pd.read_csv(tmp_path / "duck.csv", keep_default_na=False, na_values=[""])
    ours = pd.read_csv(tmp_path / "spark.csv", keep_default_na=False, na_values=[""])
    counts = ours.status.value_counts()
    assert counts["ok"] >= 150 and counts["not_in_cohort"] > 30 and counts["error"] == 5
    assert ours.error.str.contains("duplicate of row", na=False).sum() == 1
    assert ours.error.str.contains("unknown person NOBODY", na=False).sum() == 1
    assert ours.factor_1.notna().sum() == counts["ok"]
    assert_same(ours, duck)
    assert not list(tmp_path.glob("*.parts"))  # the chunks' parts are gone once whole


def test_spark_binds_loopback_and_shows_no_ui(spark):
    conf = spark.sparkContext.getConf()
    assert conf.get("spark.driver.host") == "127.0.0.1"
    assert conf.get("spark.driver.bindAddress") == "127.0.0.1"
    assert spark.sparkContext.uiWebUrl is None
    assert os.environ["SPARK_LOCAL_IP"] == "127.0.0.1"


def test_spark_refuses_what_it_cannot_read_with_a_clear_error(spark, tmp_path):
    from features.compute import spark as engine

    csv_city = write_dataset(tmp_path / "csv", [{"person_id": "A"}], [], fmt="csv")
    with pytest.raises(InputError, match="reads Parquet"):
        engine.SparkRegistry(spark, csv_city)
    events = [{"person_id": "NOBODY", "event_time": "2024-01-01", "event_type": "checkin_missed",
               "value": None, "detail": None}]  # fmt: skip
    orphan = write_dataset(tmp_path / "orphan", [{"person_id": "A"}], events, fmt="parquet")
    with pytest.raises(ContractError, match="row 1: person_id: unknown person NOBODY"):
        engine.SparkRegistry(spark, orphan)
    shoes = write_dataset(tmp_path / "shoes", [{"person_id": "A", "shoe": 42}], [], fmt="parquet")
    with pytest.raises(ContractError, match="column.s. shoe are not part of the data contract"):
        engine.SparkRegistry(spark, shoes)
    url = "postgresql://x@127.0.0.1/test"
    r = sunshine(tmp_path, "features", "--data", url, "--task", "relapse", "--out",
                 tmp_path / "o.parquet", "--engine", "spark", check=False)  # fmt: skip
    assert r.returncode == 2 and "reads a folder of Parquet files" in r.stderr


BROKEN_PERSONS = [
    {"person_id": "P1", "smokes": 1.0, "registration_date": "2020-01-01"},
    {"person_id": "P1"},  # a duplicate: its events are P1's, the first row's
    {"person_id": "P2", "sex": "X"},  # rejected: its events are named as such
    {"person_id": " P3"},
    {"person_id": "P4", "birth_date": "2027-01-01", "district": "atlantis"},
    {"person_id": "P5", "registration_date": "1899-12-31", "primary_substance": "tea"},
    {"person_id": "P6", "smokes": 7.0, "registration_date": "2020-01-01"},
    {"person_id": "P7", "smokes": 2.0},  # an answer at registration needs its date
]
BROKEN_EVENTS = [
    ev("P1", "2026-01-01", "urine_test", 1.0, "heroin"),
    ev("P1", "2026-01-02", "urine_test", 5.0),
    ev("P1", "2026-01-03", "urine_test", None),
    ev("P1", "2026-01-04", "urine_test", float("nan")),
    ev("P1", "2026-01-05", "checkin_missed", 1.0),
    ev("P1", "2026-01-06", "rehab_admission", None, "holiday"),
    ev("P1", "2026-01-07", "teleportation"),
    ev("P1", "2026-07-02", "checkin_missed"),
    ev("P1", "1899-12-31", "checkin_missed"),
    ev("P1", "2026-01-08", "checkin_missed", recorded_time="2026-01-07"),
    ev("P1", "2026-01-09", "assessment", 30.0, "k6_total"),
    ev("P1", "2026-01-10", "assessment", 2.5, "family_conflict"),
    ev("P1", "2026-01-11", "assessment", 7.0, "smokes"),
    ev("P1", "2026-01-12", "assessment", 1.0, "shoe_size"),
    ev("P1", "2026-01-13", "assessment", 2.0, None),
    ev("P1", "2026-01-14", "assessment", 3.0, "k6_total"),
    ev("P2", "2026-01-01", "checkin_missed"),
    ev("NOBODY", "2026-01-01", "checkin_missed"),
    ev("P1 ", "2026-01-01", "checkin_missed"),
]


def test_spark_refuses_what_duckdb_refuses_naming_the_same_rows(spark, tmp_path):
    """The whole contract on Spark: persons (duplicates, codes, dates, answers at
    registration) and events (persons unknown or rejected, types, dates, values, kinds,
    codebook items), each problem named by file, row, field and reason as DuckDB names it."""
    from features.compute import spark as engine

    root = write_dataset(tmp_path / "broken", BROKEN_PERSONS, BROKEN_EVENTS, fmt="parquet")
    (root / "codebook.csv").write_text(CODEBOOK, encoding="utf-8")
    with pytest.raises(ContractError) as duck:
        Store(root)
    with pytest.raises(ContractError) as ours:
        engine.SparkRegistry(spark, root)
    assert len(duck.value.problems) == 20  # the listing's limit: the rest are counted
    assert [str(p) for p in ours.value.problems] == [str(p) for p in duck.value.problems]
    assert ours.value.total == duck.value.total > 20
    assert "row 2: value: 5.0 outside 0..1 for urine_test" in str(ours.value)


def test_without_java_the_setup_says_how_to_install_it(monkeypatch):
    from features.compute import spark as engine

    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(InputError, match="apt-get install openjdk-17-jre-headless"):
        engine.session()


@pytest.mark.skipif(
    os.environ.get("SUNSHINE_SPARK_CLUSTER") != "1",
    reason="local-cluster (a driver and two executor JVMs, a minute) is outside the suite's "
    "time budget: `make spark-cluster-check` runs it",
)
def test_local_cluster_builds_the_same_features(tmp_path):
    """Separate executor processes, as on a real cluster (its own driver: one per process)."""
    import subprocess
    import sys

    city = tmp_path / "city"
    sunshine(tmp_path, "synth", "--out", city, "--persons", 300, "--seed", 5)
    args = ["features", "--data", city, "--task", "relapse", "--as-of", "2025-04-01"]
    sunshine(tmp_path, *args, "--out", tmp_path / "duck.parquet")
    cli = Path(sys.executable).with_name("sunshine")
    master = "local-cluster[2,1,1024]"
    r = subprocess.run(
        [cli, *map(str, args), "--out", tmp_path / "lc.parquet", "--engine", "spark",
         "--master", master],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    duck = pd.read_parquet(tmp_path / "duck.parquet").sort_values("person_id")
    ours = read_dir(tmp_path / "lc.parquet")[list(duck.columns)]
    assert_same(ours, duck.reset_index(drop=True))


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_the_same_property_holds_on_both_engines(engine, request):
    """test_no_lookahead's property, batched: a Spark job per history would take minutes,
    so each example is a dozen histories (and their twins) in one registry."""
    spark = request.getfixturevalue("spark") if engine == "spark" else None

    @settings(
        max_examples=2 if engine == "spark" else 8,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(cases=st.lists(a_case(), min_size=12, max_size=12))
    def check(cases):
        with tempfile.TemporaryDirectory() as d:
            built = batch_features(cases, Path(d), engine, spark)
        for i in range(len(cases)):
            base, more = built.loc[f"B{i}"], built.loc[f"M{i}"]
            pd.testing.assert_series_equal(base, more, check_names=False)

    check()
