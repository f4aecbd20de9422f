"""Scoring on Spark's executors through the API's own path: the champion `RiskModel`,
broadcast once, scores each partition's rows, and `serving.batch.columns.put_scores` renders their
reasons and support options, the renderer of every other batch."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.compute import spark as engine
from features.core.io import atomic_dir
from features.tasks import SupportOption, Task
from models.risk_model import RiskModel
from serving.batch.columns import (
    RESULT_COLUMNS,
    SCORE_COLUMNS,
    empty_result,
    put_scores,
    score_and_explain,
)
from serving.batch.job import RosterJob
from serving.batch.runner import RosterScorer

if TYPE_CHECKING:
    from pyspark import Broadcast
    from pyspark.sql import DataFrame

NUMBERS = ("probability", "percentile")
RESULT_TYPES = {
    c: "double" if c in NUMBERS else "boolean" if c == "in_cohort" else "string"
    for c in RESULT_COLUMNS
}


def scored(
    built: DataFrame, keys: dict[str, str], names: list[str], shared: Broadcast
) -> DataFrame:
    """Each row of `built` scored and explained on the executors: its `keys` columns (name:
    Spark type) and the output columns of a roster. `shared` is the broadcast (model, facts,
    options, lang, explain)."""

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model, facts, options, lang, explain = shared.value
        for batch in batches:
            out = empty_result(len(batch), facts)
            out["in_cohort"][:] = True
            if len(batch):
                scores = score_and_explain(model, batch[names], explain)
                put_scores(out, np.arange(len(batch)), scores, options, lang)
            result = batch[list(keys)].reset_index(drop=True)
            for c in RESULT_COLUMNS:
                result[c] = pd.to_numeric(out[c]) if c in NUMBERS else out[c]
            yield result

    schema = ", ".join(f"{c} {t}" for c, t in (keys | RESULT_TYPES).items())
    return built.select(*keys, *names).mapInPandas(score, schema)


def score_cohort(
    registry: engine.SparkRegistry,
    task: Task,
    as_of: dt.date,
    model: RiskModel,
    facts: dict,
    options: tuple[SupportOption, ...],
    lang: str,
    explain: str,
    out: Path,
) -> int:
    """Everyone in the task's cohort on as_of, scored and explained; Parquet, whole or not at
    all. Returns the rows written."""
    spark = registry.spark
    rows = engine.cohort(registry, task, [as_of])
    wanted = model.needed_features()
    names = [f.name for f in wanted]
    built = engine.features(registry, rows, wanted)
    built = built.withColumn("as_of", built["as_of"].cast("string"))  # as a roster gives it
    shared = spark.sparkContext.broadcast((model, facts, options, lang, explain))
    keys = {"person_id": "string", "as_of": "string"}
    with atomic_dir(out) as tmp:
        scored(built, keys, names, shared).write.parquet(str(tmp))
    return engine.parquet_rows(out)


class SparkRosterScorer(RosterScorer):
    """A roster run whose registry steps run on Spark: the persons looked up, the cohort
    checked, the features built and the rows scored there, a chunk at a time; the row checks,
    statuses, parts, resume and output are the one-machine run's."""

    def __init__(
        self,
        job: RosterJob,
        registry: engine.SparkRegistry,
        model: RiskModel,
        facts: dict,
        options: tuple[SupportOption, ...],
    ) -> None:
        self._begin(job, registry, model, facts, options)
        self.registry, self.spark = registry, registry.spark
        self.wanted = model.needed_features()
        self.shared = self.spark.sparkContext.broadcast(
            (model, facts, options, job.lang, job.explain)
        )
        self.cohort_frames: dict[dt.date, DataFrame] = {}  # each day's cohort, persisted

    def _frame(self, columns: dict[str, object], schema: str) -> DataFrame:
        return self.spark.createDataFrame(pd.DataFrame(columns), schema=schema)

    def _look_up(self, pid: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """Spark keys persons by id: `where` only tells a known person (0) from an unknown
        one (-1)."""
        ids = self._frame(
            {"i": np.arange(len(pid)), "person_id": pid.to_numpy(object)},
            "i long, person_id string",
        )
        persons = self.spark.table("persons").select("person_id", "pk")
        residence = self.spark.table("residence")
        found = ids.join(persons, "person_id").join(residence, "pk").select("i", "district")
        found = found.toArrow().to_pandas()
        where = np.full(len(pid), -1, np.int64)
        where[found.i] = 0
        district = np.full(len(pid), "unknown", object)
        district[found.i] = found.district.fillna("unknown").to_numpy(object)
        return where, district

    def _members(self, pid: pd.Series, days: np.ndarray, where: np.ndarray) -> np.ndarray:
        member = np.zeros(len(days), bool)
        if not len(days):
            return member
        cohorts = []
        for day in pd.unique(days):
            if day not in self.cohort_frames:
                self.cohort_frames[day] = engine.cohort(self.registry, self.task, [day])
            cohorts.append(self.cohort_frames[day].select("person_id", "as_of"))
        rows = self._frame(
            {"i": np.arange(len(days)), "person_id": pid.to_numpy(object), "as_of": days},
            "i long, person_id string, as_of date",
        )
        union = functools.reduce(lambda a, b: a.unionByName(b), cohorts)
        found = (
            rows.join(union, ["person_id", "as_of"], "left_semi").select("i").toArrow().to_pandas()
        )
        member[found.i] = True
        return member

    def _features(self, spine: pd.DataFrame) -> pd.DataFrame:
        """The rows' features built and scored on Spark: the score columns, in the spine's
        order, for `_render` to place."""
        rows = self._frame(
            {
                "row_id": np.arange(len(spine)),
                "pk": spine.person_id.to_numpy(object),
                "as_of": spine.as_of.to_numpy(object),
            },
            "row_id long, pk string, as_of date",
        )
        built = engine.features(self.registry, rows, self.wanted)
        names = [f.name for f in self.wanted]
        result = scored(built, {"row_id": "long"}, names, self.shared).toArrow().to_pandas()
        return result.sort_values("row_id").reset_index(drop=True)

    def _score(self, pending) -> pd.DataFrame | None:
        """Scored already, on the executors, with the features."""
        return pending.frame

    def _render(self, out: dict[str, np.ndarray], rows: np.ndarray, scores) -> None:
        for c in SCORE_COLUMNS:
            out[c][rows] = scores[c].to_numpy(object)
