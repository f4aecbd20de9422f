"""Scoring on Spark's executors through the API's own path: the champion `RiskModel`,
broadcast once, scores each partition's rows, and `serving.batch.put_scores` renders their
reasons and support options, the renderer of every other batch."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from features import spark as engine
from features.io import atomic_dir
from features.tasks import SupportOption, Task
from models.deployable import RiskModel
from serving.batch import RESULT_COLUMNS, empty_result, put_scores, score_and_explain

NUMBERS = ("probability", "percentile")


def result_schema() -> str:
    """The output's columns and types, as score-roster writes them."""
    kinds = {
        c: "double" if c in NUMBERS else "boolean" if c == "in_cohort" else "string"
        for c in RESULT_COLUMNS
    }
    return "person_id string, as_of string, " + ", ".join(f"{c} {t}" for c, t in kinds.items())


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
    built = engine.features(registry, rows, wanted).select("person_id", "as_of", *names)
    shared = spark.sparkContext.broadcast((model, facts, options, lang, explain))

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model, facts, options, lang, explain = shared.value
        for batch in batches:
            out = empty_result(len(batch), facts)
            out["in_cohort"][:] = True
            if len(batch):
                scores = score_and_explain(model, batch[names], explain)
                put_scores(out, np.arange(len(batch)), scores, options, lang)
            result = batch[["person_id"]].reset_index(drop=True)
            result["as_of"] = batch["as_of"].astype(str).to_numpy()  # as a roster gives it
            for c in RESULT_COLUMNS:
                column = out[c]
                result[c] = pd.to_numeric(column) if c in NUMBERS else column
            yield result

    scored = built.mapInPandas(score, result_schema())
    with atomic_dir(out) as tmp:
        scored.write.parquet(str(tmp))
    return engine.parquet_rows(out)
