"""The feature spec on Apache Spark, for registries that outgrow one machine.

Nothing here restates a feature, a cohort or a label: the statements are the plan's
(`features.compute.plan`) and the tasks' (`features.tasks`), written in DuckDB's dialect and
compiled to Spark's by sqlglot. Where DuckDB scatters a long-form pass into the wide matrix with
numpy, Spark pivots it with one conditional aggregate per (column, type) cell of the same scatter
map.

Spark keys persons by their `person_id` (DuckDB numbers them, `pk`): the statements only join
on the key, and numbering tens of millions of ids would take a global sort.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import sqlglot
from sqlglot import exp

from features.compute.plan import JOIN_SQL, NEGATIVE_RUN_SQL, FeaturePlan
from features.contract import checks as contract
from features.contract.codebook import Codebook, find_codebook, read_codebook
from features.contract.vocabulary import EVENT_TYPES
from features.core.errors import ContractError, InputError, Problem
from features.core.io import atomic_dir
from features.core.settings import settings
from features.residence import districts_sql
from features.spec import FEATURES, Feature, codebook_features, register
from features.storage.store import (
    MAX_LISTED_PROBLEMS,
    METADATA_FILE,
    find_table,
    identity_of,
    read_reference_date,
)
from features.tasks import Task

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

LOOPBACK = "127.0.0.1"
JAVA_MISSING = (
    "Spark needs a Java runtime (17 or newer) and none was found (no `java` on PATH, no "
    "JAVA_HOME). Install one: apt-get install openjdk-17-jre-headless"
)
SPARK_MISSING = "Spark is not installed here: pip install -e '.[spark]'"


def session(master: str | None = None, app: str = "sunshine") -> SparkSession:
    """A Spark session; `master` None is `local[2]`. A local master binds the driver to
    loopback and nothing else (by default Spark binds the machine's network interface), and
    no session starts the web UI."""
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise InputError(JAVA_MISSING)
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise InputError(SPARK_MISSING) from None
    # said on every pandas conversion; the equality tests are what show it works with ours
    warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
    master = master or "local[2]"
    builder = (
        SparkSession.builder.master(master)
        .appName(app)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(settings().spark_partitions))
    )
    if master.startswith("local"):
        os.environ["SPARK_LOCAL_IP"] = LOOPBACK
        # the executors' Python is this one, which has the project; on a cluster it is the
        # environment shipped with the job (docs/spark.md)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = builder.config("spark.driver.host", LOOPBACK).config(
            "spark.driver.bindAddress", LOOPBACK
        )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


@contextlib.contextmanager
def command_session(master: str | None) -> Iterator[SparkSession]:
    """The session of one command: one already running in this process (a notebook's, a
    test's) is used and left running; one made here is stopped at the end, so executors of a
    cluster are released cleanly rather than killed with the process."""
    from pyspark.sql import SparkSession

    before = SparkSession.getActiveSession()
    spark = session(master)
    try:
        yield spark
    finally:
        if before is None:
            spark.stop()


def to_spark(sql: str) -> str:
    """A statement of DuckDB's dialect in Spark's. Decimal literals become doubles: DuckDB
    divides by 365.25 in floating point, Spark would in fixed-point decimals."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    tree = tree.transform(
        lambda node: (
            exp.cast(node.copy(), "DOUBLE")
            if isinstance(node, exp.Literal) and not node.is_string and "." in node.this
            else node
        )
    )
    return tree.sql(dialect="spark")


class SparkRegistry:
    """A registry folder's persons and events (Parquet: a file or a directory of files each)
    as the Spark views the statements read: `persons` and `events`, keyed by `pk`."""

    def __init__(
        self, spark: SparkSession, data: Path, reference_date: dt.date | None = None
    ) -> None:
        self.spark, self.data = spark, Path(data)
        ref = reference_date or read_reference_date(self.data)
        if ref is None:
            raise InputError(f"{data}: no {METADATA_FILE}; give --reference-date")
        self.reference_date = ref
        path = find_codebook(self.data)
        self.codebook = read_codebook(path) if path else Codebook(())
        extra = codebook_features(self.codebook)
        register(extra)
        self.features: tuple[Feature, ...] = (*FEATURES, *extra)
        where, have = self._raw("persons", contract.PERSON_COLUMNS)
        self._raw("events", contract.EVENT_COLUMNS)
        # the persons columns a codebook declares: answers at registration
        self.declared = [
            self.codebook.item(c) for c in contract.declared_columns(where, have, self.codebook)
        ]
        self._views()

    def _path(self, table: str) -> Path:
        path = find_table(self.data, table)
        if path is None:
            raise InputError(f"{self.data}: no {table}.parquet")
        if path.suffix != ".parquet":
            raise InputError(
                f"{path}: the Spark engine reads Parquet; convert it (for example with "
                f"`sunshine load-registry`'s input checks, then DuckDB's COPY ... TO '{table}"
                ".parquet')"
            )
        return path

    def _raw(self, table: str, columns: tuple[contract.Column, ...]) -> tuple[str, list[str]]:
        """A registry table as the view `raw_{table}` that the contract's checks read: every
        contract column (an absent optional one as NULLs), and each record's file and 1-based
        row in it, as problems name them. Returns the file's name for problems and its own
        columns."""
        from pyspark.sql import functions as F
        from pyspark.sql.types import DateType, StringType, TimestampNTZType, TimestampType

        path = self._path(table)
        frame = self.spark.read.parquet(str(path))
        contract.require_columns(str(path), columns, frame.columns)
        textual = (StringType, DateType, TimestampType, TimestampNTZType)
        kinds = {f.name: f.dataType for f in frame.schema.fields}
        # a column with no value at all is stored as integers by some writers, which Spark
        # will neither cast to a time nor compare with text: such a column goes through text
        as_text = {
            c.name
            for c in columns
            if c.sql_type != "DOUBLE" and c.name in kinds and not isinstance(kinds[c.name], textual)
        }
        frame.select(
            *(F.col(n).cast("string").alias(n) if n in as_text else F.col(n) for n in kinds),
            *(F.lit(None).cast("string").alias(c.name) for c in columns if c.name not in kinds),
            frame["_metadata.file_name"].alias("_file"),
            (frame["_metadata.row_index"] + 1).alias("_row"),
        ).createOrReplaceTempView(f"raw_{table}")
        return str(path), list(kinds)

    def _views(self) -> None:
        spark = self.spark
        spark.sql(
            "CREATE OR REPLACE TEMP VIEW persons AS SELECT CAST(person_id AS STRING) AS pk, "
            "CAST(person_id AS STRING) AS person_id, CAST(birth_date AS DATE) AS birth_date, "
            "CAST(sex AS STRING) AS sex, CAST(district AS STRING) AS district, "
            "CAST(registration_date AS DATE) AS registration_date, "
            "CAST(primary_substance AS STRING) AS primary_substance FROM raw_persons"
        )
        answers = [
            "SELECT CAST(person_id AS STRING) AS pk, "
            "CAST(CAST(registration_date AS DATE) AS TIMESTAMP_NTZ) AS t, "
            f"CAST({item.code} AS DOUBLE) AS value, '{item.code}' AS detail FROM raw_persons "
            f"WHERE {item.code} IS NOT NULL"
            for item in self.declared
        ]
        at_registration = (
            " UNION ALL SELECT pk, t, t, 'assessment', value, detail FROM ("
            + " UNION ALL ".join(answers)
            + ")"
            if answers
            else ""
        )
        t, recorded = "CAST(event_time AS TIMESTAMP_NTZ)", "CAST(recorded_time AS TIMESTAMP_NTZ)"
        spark.sql(
            "CREATE OR REPLACE TEMP VIEW events AS SELECT DISTINCT CAST(person_id AS STRING) "
            f"AS pk, {t} AS event_time, greatest({t}, coalesce({recorded}, {t})) "
            "AS available_time, CAST(event_type AS STRING) AS event_type, "
            "CAST(value AS DOUBLE) AS value, CAST(detail AS STRING) AS detail FROM raw_events"
            + at_registration
        )
        # where each person lives on the reference date, as the DuckDB store's `residence`
        ref = f"CAST(DATE '{self.reference_date}' AS TIMESTAMP) + INTERVAL 1 DAY"
        spark.sql(f"CREATE OR REPLACE TEMP VIEW residence AS {to_spark(districts_sql(ref))}")
        self._check()

    def _check(self) -> None:
        """The data contract, row by row, as the DuckDB store applies it: the same checks
        (features.contract.checks), in Spark's dialect. Spark has no --lenient, so a registry with a
        row that breaks the contract is refused, naming the first problems, as a strict run
        on DuckDB refuses it."""
        spark = self.spark
        self._codebook_view()
        checks = contract.person_checks() + contract.registration_answer_checks(self.declared)
        bad_person, person_problems = self._problems(checks)
        persons = (
            "raw_persons r LEFT JOIN (SELECT person_id, min(_row) AS first_row FROM "
            "raw_persons WHERE person_id IS NOT NULL GROUP BY person_id) f USING (person_id)"
        )
        spark.sql(
            "CREATE OR REPLACE TEMP VIEW unaccepted AS "
            "WITH people AS (SELECT CAST(r.person_id AS STRING) AS person_id, "
            f"max(NOT ({bad_person})) AS accepted FROM {persons} GROUP BY 1) "
            "SELECT e.person_id, coalesce(NOT p.accepted, false) AS rejected_person FROM "
            "(SELECT DISTINCT CAST(person_id AS STRING) AS person_id FROM raw_events) e "
            "LEFT JOIN people p ON p.person_id = e.person_id WHERE NOT coalesce(p.accepted, false)"
        )
        # an event's person is judged through the few ids that are not accepted persons, a
        # small table joined to every event by broadcast, rather than every event shuffled
        # to meet its person
        events = (
            "(SELECT /*+ BROADCAST(u, c) */ e.*, "
            "CASE WHEN u.person_id IS NULL THEN CAST(e.person_id AS STRING) END AS pk, "
            "coalesce(u.rejected_person, false) AS rejected_person, "
            "c.code AS cb_code, c.kind AS cb_kind, c.low AS cb_low, c.high AS cb_high, "
            "c.answers AS cb_answers, c.allows AS cb_allows FROM raw_events e "
            "LEFT JOIN unaccepted u ON u.person_id = CAST(e.person_id AS STRING) "
            "LEFT JOIN codebook_items c ON e.event_type = 'assessment' AND c.code = e.detail) r"
        )
        bad_event, event_problems = self._problems(contract.event_checks())
        found = spark.sql(
            "SELECT _file, _row, problems, count(*) OVER () AS rows, "
            "sum(size(problems)) OVER () AS total FROM ("
            f"SELECT 0 AS part, r._file, r._row, {person_problems} AS problems FROM {persons} "
            f"WHERE {bad_person} UNION ALL SELECT 1, r._file, r._row, {event_problems} "
            f"FROM {events} WHERE {bad_event}) "
            f"ORDER BY part, _file, _row LIMIT {MAX_LISTED_PROBLEMS}"
        ).collect()
        if not found:
            return
        problems = [
            Problem(r["_file"], r["_row"], *reason.split(": ", 1))
            for r in found
            for reason in r["problems"]
        ]
        raise ContractError(
            f"{self.data}: {found[0]['rows']} row(s) fail the data contract "
            "(the Spark engine has no --lenient; `sunshine validate --lenient` sets them "
            "aside in a rejects file):",
            problems[:MAX_LISTED_PROBLEMS],
            int(found[0]["total"]),
        )

    def _problems(self, checks: list[str]) -> tuple[str, str]:
        """The contract's checks (DuckDB SQL over `r`) in Spark's: whether any applies to a
        row, and the array of the reasons that do. The first is what every row costs; the
        array, built through a lambda that Spark evaluates row by row without compiling, only
        for the rows it finds. Two functions differ: DuckDB names a text column's type
        VARCHAR, Spark `string`; Spark has no isinf."""
        ref = f"DATE '{self.reference_date}'"

        def spark_only(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.IsInf):
                return exp.EQ(
                    this=exp.Abs(this=node.this.copy()),
                    expression=exp.cast(exp.Literal.string("Infinity"), "DOUBLE"),
                )
            if isinstance(node, exp.EQ) and isinstance(node.this, exp.Typeof):
                return exp.EQ(this=node.this.copy(), expression=exp.Literal.string("string"))
            return node

        def spark(sql: str) -> str:
            tree = sqlglot.parse_one(sql.replace("$ref", ref), read="duckdb")
            return tree.transform(spark_only).sql(dialect="spark")

        return (
            spark(f"coalesce({', '.join(checks)}) IS NOT NULL"),
            spark(contract.problem_list(checks)),
        )

    def _codebook_view(self) -> None:
        """The codebook's items as the checks join them (`codebook_items`)."""
        from pyspark.sql.types import (
            ArrayType,
            DoubleType,
            StringType,
            StructField,
            StructType,
        )

        schema = StructType(
            [
                StructField("code", StringType()),
                StructField("kind", StringType()),
                StructField("low", DoubleType()),
                StructField("high", DoubleType()),
                StructField("answers", ArrayType(DoubleType())),
                StructField("allows", StringType()),
            ]
        )
        rows = [
            (i.code, i.kind, i.low, i.high, sorted(map(float, i.answers)) or None, i.allows())
            for i in self.codebook.items
        ]
        self.spark.createDataFrame(rows, schema).createOrReplaceTempView("codebook_items")

    def identity(self, content: bool = False) -> dict:
        return identity_of(self.data, self.reference_date, content)

    def default_dates(self, task: Task) -> list[dt.date]:
        from features.compute.labels import task_dates

        first = self.spark.sql("SELECT min(event_time) AS t FROM events").first()
        return task_dates(task, first.t if first else None, self.reference_date)


def cohort(registry: SparkRegistry, task: Task, dates: Sequence[dt.date]) -> DataFrame:
    """(row_id, person_id, pk, as_of) of the task's cohort at each date, without labels: who
    is scored then, on any date up to the reference date. Persisted, so each row keeps the
    id it was given however often the plan reads it."""
    spark = registry.spark
    from pyspark.sql import Row

    spark.createDataFrame([Row(as_of=d) for d in sorted(set(dates))]).createOrReplaceTempView(
        "dates_in"
    )
    spark.sql(
        "CREATE OR REPLACE TEMP VIEW dates AS SELECT CAST(as_of AS DATE) AS as_of, "
        "CAST(CAST(as_of AS DATE) AS TIMESTAMP_NTZ) AS as_of_ts FROM dates_in"
    )
    spark.sql(f"CREATE OR REPLACE TEMP VIEW cohort AS {to_spark(task.cohort_sql)}")
    return spark.sql(
        "SELECT monotonically_increasing_id() AS row_id, p.person_id, c.pk, c.as_of "
        "FROM cohort c JOIN persons p USING (pk)"
    ).persist()


def spine(registry: SparkRegistry, task: Task, dates: Sequence[dt.date]) -> DataFrame:
    """(row_id, person_id, pk, as_of, label) of the task's cohort at each date: the task's
    own cohort and label statements, compiled."""
    cohort(registry, task, dates).createOrReplaceTempView("cohort_rows")
    return registry.spark.sql(
        "SELECT r.row_id, r.person_id, r.pk, r.as_of, CAST(l.label AS TINYINT) AS label "
        f"FROM cohort_rows r JOIN ({to_spark(task.label_query())}) l USING (pk, as_of)"
    )


def features(
    registry: SparkRegistry, rows: DataFrame, wanted: tuple[Feature, ...] | None = None
) -> DataFrame:
    """`rows`' columns (with `row_id` and `pk`) and every feature, as DuckDB builds them:
    floats (NULL where DuckDB has NaN) and categories as their labels."""
    spark = registry.spark
    plan = FeaturePlan(registry.features if wanted is None else wanted)
    rows.createOrReplaceTempView("spine_rows")
    spark.sql(
        "CREATE OR REPLACE TEMP VIEW spine_c AS SELECT row_id, pk, as_of, "
        "CAST(as_of AS TIMESTAMP_NTZ) AS as_of_ts FROM spine_rows"
    )
    if spark.catalog.tableExists("j"):  # the previous build's joined events, cached for it
        spark.catalog.uncacheTable("j")
    j = spark.sql(to_spark(JOIN_SQL)).persist()
    j.createOrReplaceTempView("j")
    parts: list[tuple[str, list[str]]] = []  # (query, the feature columns it gives)
    types = [e.name for e in EVENT_TYPES]
    for cols, where in plan.passes:
        parts.append(
            _pivot(
                plan.pass_sql(cols, where, "event_type"),
                plan.targets({c: plan.scatter[c] for c in cols}, types),
            )
        )
    if plan.item_cols:
        items = sorted(plan.item_index, key=plan.item_index.__getitem__)
        parts.append(_pivot(plan.items_sql(), plan.targets(plan.item_scatter, items), "detail"))
    if plan.domain:
        parts.append((to_spark(plan.domain_sql()), [f.name for f in plan.domain]))
    if plan.want_negative_run:
        parts.append((to_spark(NEGATIVE_RUN_SQL), ["longest_negative_run"]))
    statics = to_spark(plan.statics_sql())
    parts.append((statics, [f.name for f in plan.statics]))
    joins: list[str] = []
    source: dict[str, str] = {}
    for k, (query, names) in enumerate(parts):
        joins.append(f"LEFT JOIN ({query}) x{k} USING (row_id)")
        source |= {n: f"x{k}.{n}" for n in names}
    inner = ", ".join(_filled(f, source[f.name]) for f in plan.features if f.kind != "ratio")
    outer = ", ".join(_final(f, plan) for f in plan.features)
    kept = ", ".join(f"r.{c}" for c in rows.columns)
    kept_names = ", ".join(rows.columns)
    return spark.sql(
        f"SELECT {kept_names}, {outer} FROM (SELECT {kept}, {inner} FROM spine_rows r "
        + " ".join(joins)
        + ")"
    )


def _pivot(
    long_sql: str, targets: list[tuple[str, str, Feature]], key: str = "t"
) -> tuple[str, list[str]]:
    """A long-form pass made wide: each (column, key) cell of the scatter map, one column."""
    cells = ", ".join(
        f"max(CASE WHEN {key} = '{k}' THEN {col} END) AS {f.name}" for col, k, f in targets
    )
    return f"SELECT row_id, {cells} FROM ({to_spark(long_sql)}) GROUP BY row_id", [
        f.name for _, _, f in targets
    ]


def _filled(f: Feature, column: str) -> str:
    """A feature as DuckDB's builder leaves it: a float (its fill where nothing was seen), a
    static category among the known ones, or a categorical item's answer as its label."""
    if f.kind == "static" and f.categorical:
        known = ", ".join(f"'{c}'" for c in f.categories or ())
        return f"CASE WHEN {column} IN ({known}) THEN {column} END AS {f.name}"
    if f.categorical:
        cases = " ".join(
            f"WHEN CAST({column} AS FLOAT) = CAST({a!r} AS FLOAT) THEN '{label}'"
            for a, label in zip(f.answers or (), f.categories or (), strict=True)
        )
        return f"CASE {cases} END AS {f.name}"
    value = column if f.fill is None else f"coalesce({column}, {f.fill!r})"
    return f"CAST({value} AS FLOAT) AS {f.name}"


def _final(f: Feature, plan: FeaturePlan) -> str:
    """A ratio from its two counts as filled (num / (num + other), none when both are 0)."""
    if f.kind != "ratio":
        return f.name
    numerator, other = f.ratio or ("", "")
    return (
        f"CAST(CASE WHEN {numerator} + {other} > 0 THEN "
        f"{numerator} / ({numerator} + {other}) END AS FLOAT) AS {f.name}"
    )


def write(frame: DataFrame, out: Path) -> int:
    """Parquet partitioned by as_of, whole or not at all; returns the row count."""
    with atomic_dir(out) as tmp:
        frame.write.partitionBy("as_of").parquet(str(tmp))
    return parquet_rows(out)


def parquet_rows(path: Path) -> int:
    import pyarrow.dataset as ds

    return ds.dataset(path, format="parquet", partitioning="hive").count_rows()
