"""Property: events at or after as_of, or recorded at or after it, never change its features."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from conftest import write_dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.compute.builder import build_features
from features.contract.vocabulary import EVENT_TYPES
from features.storage.store import Store

START = dt.datetime(2019, 1, 1)
AS_OF = dt.date(2023, 1, 1)
AS_OF_TS = dt.datetime(2023, 1, 1)
REF = "2026-06-30"
# every dataset here declares these items, so assessment answers (and their features) count too
CODEBOOK = """code,label_en,label_zh,kind,min,max,values,direction
distress,distress score,心理困扰,numeric,0,24,,+1
conflict,family conflict,家庭冲突,ordinal,0,3,,+1
smoker,smokes,吸烟,categorical,,,1=yes;2=no,
"""
ITEMS = {"distress": (0, 24), "conflict": (0, 3), "smoker": (1, 2)}


@st.composite
def an_event(draw, lo: dt.datetime, hi: dt.datetime, late_ok: bool):
    e = draw(st.sampled_from(EVENT_TYPES))
    t = draw(st.datetimes(min_value=lo, max_value=hi))
    value = None
    if e.name == "assessment":
        item = draw(st.sampled_from(sorted(ITEMS)))
        value = float(draw(st.integers(*ITEMS[item])))
    elif e.value_range:
        lo_v, hi_v = e.value_range
        value = float(draw(st.integers(int(lo_v), int(hi_v))))
    elif e.valued:
        value = draw(st.none() | st.floats(0, 300, allow_nan=False))
    detail = draw(st.sampled_from(e.detail_choices)) if e.detail_choices else None
    if e.name == "assessment":
        detail = item
    rec = None
    if late_ok and draw(st.booleans()):
        rec = t + dt.timedelta(seconds=draw(st.integers(0, 200 * 86400)))
    return {
        "event_type": e.name,
        "event_time": t,
        "value": value,
        "detail": detail,
        "recorded_time": rec,
    }


def _features(history: list[dict], tmp: Path) -> pd.Series:
    events = [
        {
            "person_id": "P",
            **{k: (str(v) if isinstance(v, dt.datetime) else v) for k, v in e.items()},
        }
        for e in history
    ]
    write_dataset(
        tmp,
        [{"person_id": "P", "registration_date": "2018-05-05", "primary_substance": "heroin"}],
        events,
        fmt="parquet",
        reference_date=REF,
    )
    (tmp / "codebook.csv").write_text(CODEBOOK, encoding="utf-8")
    store = Store(tmp, lenient=True, rejects_path=tmp / "rejects.csv")
    assert store.report.rejected_events == 0
    spine = pd.DataFrame({"person_id": ["P"], "as_of": [AS_OF]})
    return build_features(store, spine).iloc[0]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    past=st.lists(an_event(START, AS_OF_TS - dt.timedelta(seconds=1), late_ok=True), max_size=25),
    future=st.lists(
        an_event(AS_OF_TS, dt.datetime(2026, 6, 30), late_ok=False), min_size=1, max_size=10
    ),
    n_recorded_late=st.integers(0, 5),
    seconds_late=st.integers(0, 86400 * 90),
)
def test_future_or_unrecorded_events_never_change_features(
    past, future, n_recorded_late, seconds_late
):
    # past events recorded only at/after as_of are as invisible as future ones
    late = [
        {**e, "recorded_time": AS_OF_TS + dt.timedelta(seconds=seconds_late)}
        for e in past[:n_recorded_late]
    ]
    with tempfile.TemporaryDirectory() as d:
        base = _features(past, Path(d) / "base")
        more = _features(past + future + late, Path(d) / "more")
    pd.testing.assert_series_equal(base, more, check_names=False)


def test_the_property_test_would_catch_a_leak():
    """Guard on the guard: an event just before as_of does change the features."""
    with tempfile.TemporaryDirectory() as d:
        base = _features([], Path(d) / "base")
        one = {
            "event_type": "checkin_missed",
            "event_time": AS_OF_TS - dt.timedelta(seconds=1),
            "value": None,
            "detail": None,
            "recorded_time": None,
        }
        more = _features([one], Path(d) / "more")
    diff = base.index[(base != more) & ~(pd.isna(base) & pd.isna(more))]
    assert set(diff) == {
        "checkin_missed__count_30d",
        "checkin_missed__count_90d",
        "checkin_missed__count_180d",
        "checkin_missed__count_365d",
        "checkin_missed__count_all",
        "checkin_missed__days_since",
        "checkin_adherence_90d",
        "checkin_adherence_365d",
    }
    assert np.isclose(more["checkin_adherence_90d"], 0.0)


@st.composite
def a_case(draw):
    """One person's history: past events (some recorded only at or after as_of), and future
    ones. Its twin without the future and the late records must get the same features."""
    past = draw(st.lists(an_event(START, AS_OF_TS - dt.timedelta(seconds=1), True), max_size=15))
    future = draw(
        st.lists(an_event(AS_OF_TS, dt.datetime(2026, 6, 30), False), min_size=1, max_size=6)
    )
    late_at = AS_OF_TS + dt.timedelta(seconds=draw(st.integers(0, 86400 * 90)))
    late = [{**e, "recorded_time": late_at} for e in past[: draw(st.integers(0, 4))]]
    return past, past + future + late


def batch_features(cases: list, tmp: Path, engine: str, spark=None) -> pd.DataFrame:
    """Every case's two persons (B<i>: what was known at as_of, M<i>: with the future and
    the late records) in one registry, built by one engine; rows by person_id."""
    persons, events = [], []
    for i, (base, more) in enumerate(cases):
        for pid, history in ((f"B{i}", base), (f"M{i}", more)):
            persons.append({"person_id": pid, "registration_date": "2018-05-05"})
            persons[-1]["primary_substance"] = "heroin"
            events += [
                {"person_id": pid, **{k: str(v) if v is not None else v for k, v in e.items()}}
                for e in history
            ]
    for e in events:
        e["value"] = None if e["value"] is None else float(e["value"])
    write_dataset(tmp, persons, events, fmt="parquet", reference_date=REF)
    (tmp / "codebook.csv").write_text(CODEBOOK, encoding="utf-8")
    spine = pd.DataFrame({"person_id": [p["person_id"] for p in persons], "as_of": AS_OF})
    if engine == "duckdb":
        built = build_features(Store(tmp), spine)
    else:
        from features.compute import spark as engine_

        registry = engine_.SparkRegistry(spark, tmp)
        rows = spark.createDataFrame(
            pa.Table.from_pandas(spine.assign(row_id=range(len(spine)), pk=spine.person_id))
        )
        built = engine_.features(registry, rows).drop("row_id", "pk").toArrow().to_pandas()
    return built.set_index("person_id").drop(columns="as_of")
