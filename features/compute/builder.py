"""Point-in-time features for (person, as_of) spine rows, computed in DuckDB from the plan
of the spec (`features.compute.plan`).

A row sees only events that happened *and* were recorded strictly before its as_of (00:00 of
that date). Aggregation runs in long form, one row per (spine row, event type), and is scattered
into the wide matrix with numpy: measured ~3x cheaper than one GROUP BY with hundreds of FILTER
clauses. Spine rows are processed in chunks of contiguous person keys, so memory stays bounded
and the event table's zone maps skip the rest of the events for each chunk.

Nothing here is DuckDB-specific beyond the SQL dialect: the generated statements are plain
joins, filtered aggregates and window functions that a distributed SQL engine runs as well.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.compute.plan import JOIN_SQL, NEGATIVE_RUN_SQL, FeaturePlan
from features.core.errors import InputError
from features.core.io import atomic_path
from features.spec import Feature
from features.storage.store import Store

DEFAULT_CHUNK_ROWS = 250_000


class FeatureBuilder:
    """Builds the spec's features; one instance per store, reusable for many spines."""

    def __init__(
        self,
        store: Store,
        features: tuple[Feature, ...] | None = None,
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> None:
        self.store = store
        self.con = con or store.con  # pass a cursor to build from another thread
        # by default the spec's features and those of the store's codebook
        self.plan = FeaturePlan(store.features if features is None else features)
        self.features = self.plan.features
        self.names = self.plan.names

    def _build_items(self, wide: np.ndarray, local: np.ndarray) -> None:
        plan = self.plan
        if not plan.item_cols:
            return
        long = self.con.sql(plan.items_sql()).to_arrow_table()
        r = local[_column(long, "row_id")]
        codes = long.column("detail").to_pylist()
        known = np.array([c in plan.item_index for c in codes], bool)
        k = np.array([plan.item_index.get(c, 0) for c in codes], np.int64)
        for col in plan.item_cols:
            dest = np.where(known, plan.item_scatter[col][k], -1)
            self._scatter(wide, r, dest, _column(long, col))

    # -- public API --------------------------------------------------------------------------
    def build(self, spine: pd.DataFrame, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> pd.DataFrame:
        """Features for every spine row, in the spine's order, with the spine's columns first."""
        spine = spine.reset_index(drop=True)
        parts = list(self.iter_chunks(spine, chunk_rows))
        if not parts:
            return self._empty(spine).to_pandas()
        table = pa.concat_tables(t for t, _ in parts)
        order = np.argsort(np.concatenate([rows for _, rows in parts]), kind="stable")
        return table.take(pa.array(order)).to_pandas()

    def write(self, spine: pd.DataFrame, out: Path, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> int:
        """Stream features to Parquet, atomically, in person order; returns the row count.

        Rows come out grouped by person (person_id order), each person's rows in spine order,
        so memory stays bounded by one chunk whatever the spine's size. Categories are written
        as plain strings: a file is read by other programs (and by MLflow's schema check,
        which refuses pandas categories), not only by this builder.
        """
        rows = 0
        with atomic_path(Path(out)) as tmp:
            writer = None
            for chunk, _ in self.iter_chunks(spine, chunk_rows):
                table = _plain_categories(chunk)
                if writer is None:
                    # min/max statistics help readers filter on the spine's columns; on the
                    # hundreds of feature columns they only cost write time
                    spine_cols = table.column_names[: table.num_columns - len(self.features)]
                    writer = pq.ParquetWriter(tmp, table.schema, write_statistics=spine_cols)
                writer.write_table(table)
                rows += table.num_rows
            if writer is None:
                pq.write_table(_plain_categories(self._empty(spine)), tmp)
            else:
                writer.close()
        return rows

    def iter_chunks(
        self, spine: pd.DataFrame, chunk_rows: int
    ) -> Iterator[tuple[pa.Table, np.ndarray]]:
        """Yield (features table, the spine row numbers it holds) chunk by chunk."""
        spine = spine.reset_index(drop=True)
        con = self.con
        keyed = self._register_spine(spine)
        spine_table = pa.Table.from_pandas(spine, preserve_index=False)
        for lo, hi in _chunk_bounds(keyed, chunk_rows):
            con.execute(
                "CREATE OR REPLACE TEMP TABLE spine_c AS SELECT * FROM spine_k "
                "WHERE pk BETWEEN $lo AND $hi ORDER BY row_id",
                {"lo": lo, "hi": hi},
            )
            rows = _column(
                con.sql("SELECT row_id FROM spine_c ORDER BY row_id").to_arrow_table(), 0
            )
            rows = rows.astype(np.int64)
            yield self._chunk(spine_table, rows), rows
        con.execute("DROP TABLE IF EXISTS spine_c")
        con.execute("DROP TABLE IF EXISTS j")

    # -- internals ---------------------------------------------------------------------------
    def _register_spine(self, spine: pd.DataFrame) -> pd.DataFrame:
        for col in ("person_id", "as_of"):
            if col not in spine.columns:
                raise InputError(f"spine: missing column {col}")
        con = self.con
        frame = pd.DataFrame(
            {
                "row_id": np.arange(len(spine), dtype=np.int64),
                "person_id": spine["person_id"].astype(str).to_numpy(),
                "as_of": pd.to_datetime(spine["as_of"]).dt.date.to_numpy(),
            }
        )
        con.register("spine_in", frame)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE spine_k AS SELECT s.row_id, p.pk, "
            "CAST(s.as_of AS DATE) AS as_of, CAST(s.as_of AS TIMESTAMP) AS as_of_ts "
            "FROM spine_in s LEFT JOIN persons p USING (person_id)"
        )
        con.unregister("spine_in")
        unknown = con.execute(
            "SELECT row_id FROM spine_k WHERE pk IS NULL ORDER BY row_id LIMIT 20"
        ).fetchall()
        if unknown:
            ids = [f"row {r + 1}: {frame.person_id.iloc[r]}" for (r,) in unknown]
            raise InputError("spine: unknown person_id(s):\n  " + "\n  ".join(ids))
        return con.execute("SELECT pk, count(*) AS n FROM spine_k GROUP BY pk ORDER BY pk").df()

    def _chunk(self, spine_table: pa.Table, rows: np.ndarray) -> pa.Table:
        con, plan = self.con, self.plan
        n = len(rows)
        local = np.full(int(rows.max()) + 1 if n else 0, -1, np.int64)
        local[rows] = np.arange(n)
        # column-major, so each feature column is contiguous and goes to Arrow without a copy
        wide = np.zeros((n, len(self.features)), np.float32, order="F")
        wide[:, plan.fill_cols] = plan.fill[plan.fill_cols]
        con.execute(f"CREATE OR REPLACE TEMP TABLE j AS {JOIN_SQL}")
        for cols, where in plan.passes:
            long = con.sql(plan.pass_sql(cols, where, "enum_code(event_type)")).to_arrow_table()
            r = local[_column(long, "row_id")]
            t = _column(long, "t").astype(np.int64)
            for col in cols:
                self._scatter(wide, r, plan.scatter[col][t], _column(long, col))
        self._build_items(wide, local)
        if plan.domain:
            res = con.sql(plan.domain_sql()).to_arrow_table()
            self._put(wide, local, res, plan.domain)
        if plan.want_negative_run:
            res = con.sql(NEGATIVE_RUN_SQL).to_arrow_table()
            self._put(wide, local, res, [self.features[plan.col["longest_negative_run"]]])
        for f in plan.ratios:
            numerator, other = f.ratio or ("", "")
            num = wide[:, plan.col[numerator]]
            den = num + wide[:, plan.col[other]]
            with np.errstate(invalid="ignore", divide="ignore"):
                wide[:, plan.col[f.name]] = np.where(den > 0, num / den, np.nan)
        statics = con.sql(plan.statics_sql() + " ORDER BY s.row_id").to_arrow_table()
        columns = spine_table.take(pa.array(rows)).columns
        names = list(spine_table.column_names)
        for i, f in enumerate(self.features):
            if f.kind == "static":
                columns.append(_static_array(f, statics.column(f.name)))
            elif f.categorical:  # a categorical item's last answer, as its label
                columns.append(_answer_array(f, wide[:, i]))
            else:
                columns.append(pa.array(wide[:, i]))
            names.append(f.name)
        return pa.Table.from_arrays(columns, names=names)

    @staticmethod
    def _scatter(wide: np.ndarray, r: np.ndarray, dest: np.ndarray, vals: np.ndarray) -> None:
        """wide[r, dest] = vals where dest names a feature and the value is not missing,
        through the column-major matrix's flat view: a third cheaper than a 2-D index."""
        ok = dest >= 0
        if vals.dtype.kind == "f":
            ok &= ~np.isnan(vals)
        if not wide.flags.f_contiguous:  # the flat view below would be a copy
            raise ValueError("the feature matrix must be column-major")
        flat = wide.reshape(-1, order="F")
        flat[dest[ok] * len(wide) + r[ok]] = vals[ok]

    def _put(self, wide: np.ndarray, local: np.ndarray, res: pa.Table, feats: list) -> None:
        r = local[_column(res, "row_id")]
        for f in feats:
            dest = np.full(len(r), self.plan.col[f.name], np.int64)
            self._scatter(wide, r, dest, _column(res, f.name))

    def _empty(self, spine: pd.DataFrame) -> pa.Table:
        spine_table = pa.Table.from_pandas(spine.iloc[:0], preserve_index=False)
        fields = list(spine_table.schema)
        for f in self.features:
            kind = pa.dictionary(pa.int8(), pa.string()) if f.categorical else pa.float32()
            fields.append(pa.field(f.name, kind))
        return pa.schema(fields).empty_table()


def _plain_categories(table: pa.Table) -> pa.Table:
    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(pa.string()))
    return table


def _column(table: pa.Table, key: str | int) -> np.ndarray:
    """A result column as numpy, SQL NULL as NaN (an integer column with NULLs as floats)."""
    return table.column(key).to_numpy()


def _answer_array(f: Feature, answers: np.ndarray) -> pa.Array:
    """Answers (NaN where none) as the dictionary of the item's labels."""
    known = np.asarray(f.answers or (), np.float32)
    index = np.searchsorted(known, answers)
    found = ~np.isnan(answers) & (index < len(known))
    found[found] &= known[index[found]] == answers[found]
    indices = pa.array(np.where(found, index, 0).astype(np.int8), mask=~found)
    return pa.DictionaryArray.from_arrays(indices, pa.array(list(f.categories or ()), pa.string()))


def _static_array(f: Feature, values: pa.ChunkedArray) -> pa.Array:
    if not f.categorical:
        return pa.array(values.to_numpy(zero_copy_only=False).astype(np.float32), from_pandas=True)
    codes = pd.Categorical(values.to_pandas(), categories=f.categories).codes
    return pa.DictionaryArray.from_arrays(
        pa.array(codes, pa.int8(), mask=codes < 0), pa.array(f.categories, pa.string())
    )


def _chunk_bounds(keyed: pd.DataFrame, chunk_rows: int) -> list[tuple[int, int]]:
    """Contiguous person-key ranges holding at most ~chunk_rows spine rows each."""
    if keyed.empty:
        return []
    cum = keyed["n"].cumsum().to_numpy()
    group = (cum - 1) // max(chunk_rows, 1)
    pks = keyed["pk"].to_numpy()
    bounds = []
    for g in np.unique(group):
        sel = pks[group == g]
        bounds.append((int(sel[0]), int(sel[-1])))
    return bounds


def build_features(store: Store, spine: pd.DataFrame) -> pd.DataFrame:
    """The Python API: features for a spine of (person_id, as_of[, label]) rows."""
    return FeatureBuilder(store).build(spine)
