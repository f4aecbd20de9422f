"""Point-in-time features for (person, as_of) spine rows, computed in DuckDB from the spec.

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

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.io import atomic_path
from features.spec import FEATURES, Feature
from features.store import DataError, Store
from features.vocabulary import EVENT_TYPES

TYPE_INDEX = {e.name: i for i, e in enumerate(EVENT_TYPES)}
DEFAULT_CHUNK_ROWS = 250_000


def _suffix(w: int | None) -> str:
    return "all" if w is None else f"{w}d"


class FeatureBuilder:
    """Builds the spec's features; one instance per store, reusable for many spines."""

    def __init__(self, store: Store, features: tuple[Feature, ...] = FEATURES) -> None:
        self.store = store
        self.features = features
        self.names = [f.name for f in features]
        self.col = {f.name: i for i, f in enumerate(features)}
        self._plan()

    # -- SQL generated from the spec -----------------------------------------------------------
    def _plan(self) -> None:
        window = [f for f in self.features if f.kind == "window"]
        # one long-form column per (agg, window); scatter maps (column, event type) -> feature
        self.long_cols: dict[str, str] = {}
        self.scatter: dict[str, np.ndarray] = {}
        for f in window:
            col = f"{f.agg}_{_suffix(f.window)}"
            cond = "" if f.window is None else f" FILTER (WHERE d <= {f.window})"
            expr = {"count": "count(*)", "mean": "avg(value)", "max": "max(value)"}[f.agg]
            self.long_cols[col] = expr + cond
        for f in self.features:
            if f.kind == "last":
                self.long_cols["last"] = (
                    "arg_max(value, (event_time, value)) FILTER (WHERE value IS NOT NULL)"
                )
            if f.kind == "recency":
                self.long_cols["days_since"] = "min(d)"
        for col in self.long_cols:
            self.scatter[col] = np.full(len(EVENT_TYPES), -1, np.int64)
        for f in self.features:
            col = {
                "window": f"{f.agg}_{_suffix(f.window)}",
                "last": "last",
                "recency": "days_since",
            }.get(f.kind)
            if col:
                self.scatter[col][TYPE_INDEX[f.event_type]] = self.col[f.name]
        self.domain = [f for f in self.features if f.kind == "domain" and f.sql]
        self.statics = [f for f in self.features if f.kind == "static"]
        self.ratios = [f for f in self.features if f.kind == "ratio"]
        self.want_negative_run = "longest_negative_run" in self.col
        self.fill = np.array(
            [np.nan if f.fill is None else f.fill for f in self.features], np.float32
        )

    # -- public API --------------------------------------------------------------------------
    def build(self, spine: pd.DataFrame, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> pd.DataFrame:
        """Features for every spine row, in the spine's order, with the spine's columns first."""
        spine = spine.reset_index(drop=True)
        parts = list(self.iter_chunks(spine, chunk_rows))
        if not parts:
            return self._frame(spine.iloc[:0], np.empty((0, len(self.features)), np.float32))
        return pd.concat(parts).sort_index()

    def write(self, spine: pd.DataFrame, out: Path, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> int:
        """Stream the features to a Parquet file, atomically; returns the number of rows."""
        rows = 0
        with atomic_path(Path(out)) as tmp:
            writer = None
            for part in self.iter_chunks(spine, chunk_rows):
                table = pa.Table.from_pandas(part, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                rows += len(part)
            if writer is None:
                empty = self._frame(spine.iloc[:0], np.empty((0, len(self.features)), np.float32))
                pq.write_table(pa.Table.from_pandas(empty, preserve_index=False), tmp)
            else:
                writer.close()
        return rows

    def iter_chunks(self, spine: pd.DataFrame, chunk_rows: int) -> Iterator[pd.DataFrame]:
        """Yield feature frames indexed by the spine's positional row numbers."""
        spine = spine.reset_index(drop=True)
        con = self.store.con
        keyed = self._register_spine(spine)
        bounds = _chunk_bounds(keyed, chunk_rows)
        for lo, hi in bounds:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE spine_c AS SELECT * FROM spine_k "
                "WHERE pk BETWEEN $lo AND $hi",
                {"lo": lo, "hi": hi},
            )
            rows = con.execute("SELECT row_id FROM spine_c ORDER BY row_id").fetchnumpy()["row_id"]
            yield self._chunk(spine, rows)
        con.execute("DROP TABLE IF EXISTS spine_c")
        con.execute("DROP TABLE IF EXISTS j")

    # -- internals ---------------------------------------------------------------------------
    def _register_spine(self, spine: pd.DataFrame) -> pd.DataFrame:
        for col in ("person_id", "as_of"):
            if col not in spine.columns:
                raise DataError(f"spine: missing column {col}")
        con = self.store.con
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
            raise DataError("spine: unknown person_id(s):\n  " + "\n  ".join(ids))
        return con.execute("SELECT pk, count(*) AS n FROM spine_k GROUP BY pk ORDER BY pk").df()

    def _chunk(self, spine: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
        con = self.store.con
        n = len(rows)
        local = np.full(int(rows.max()) + 1 if n else 0, -1, np.int64)
        local[rows] = np.arange(n)
        wide = np.tile(self.fill, (n, 1))
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE j AS
            SELECT s.row_id, e.event_type, e.value, e.detail, e.event_time,
                   date_diff('day', CAST(e.event_time AS DATE), s.as_of) AS d
            FROM spine_c s JOIN events e
              ON e.pk = s.pk AND e.event_time < s.as_of_ts AND e.available_time < s.as_of_ts
            """
        )
        select = ", ".join(f"{expr} AS {col}" for col, expr in self.long_cols.items())
        long = con.execute(
            f"SELECT row_id, enum_code(event_type) AS t, {select} FROM j GROUP BY ALL"
        ).fetchnumpy()
        r = local[long["row_id"]]
        t = np.asarray(long["t"], np.int64)
        for col, targets in self.scatter.items():
            dest = targets[t]
            ok = dest >= 0
            vals = long[col]
            vals = (
                np.ma.filled(vals.astype(np.float64), np.nan) if np.ma.isMaskedArray(vals) else vals
            )
            vals = np.asarray(vals, np.float64)[ok]
            keep = ~np.isnan(vals)
            wide[r[ok][keep], dest[ok][keep]] = vals[keep]
        if self.domain:
            select = ", ".join(f"{f.sql} AS {f.name}" for f in self.domain)
            self._put(
                wide,
                local,
                con.execute(f"SELECT row_id, {select} FROM j GROUP BY row_id").fetchnumpy(),
                self.domain,
            )
        if self.want_negative_run:
            res = con.execute(
                """
                WITH t AS (
                    SELECT row_id, value, sum(CASE WHEN value = 1 THEN 1 ELSE 0 END) OVER (
                        PARTITION BY row_id ORDER BY event_time, value
                        ROWS UNBOUNDED PRECEDING) AS grp
                    FROM j WHERE event_type = 'urine_test'
                )
                SELECT row_id, max(n) AS longest_negative_run FROM (
                    SELECT row_id, grp, count(*) FILTER (WHERE value = 0) AS n
                    FROM t GROUP BY row_id, grp
                ) GROUP BY row_id
                """
            ).fetchnumpy()
            self._put(wide, local, res, [self.features[self.col["longest_negative_run"]]])
        for f in self.ratios:
            num = wide[:, self.col[f.ratio[0]]]
            den = num + wide[:, self.col[f.ratio[1]]]
            with np.errstate(invalid="ignore", divide="ignore"):
                wide[:, self.col[f.name]] = np.where(den > 0, num / den, np.nan)
        statics = con.execute(
            "SELECT s.row_id, "
            + ", ".join(f"{f.sql} AS {f.name}" for f in self.statics)
            + " FROM spine_c s JOIN persons p USING (pk) ORDER BY s.row_id"
        ).df()
        frame = self._frame(spine.iloc[rows], wide)
        for f in self.statics:
            frame[f.name] = (
                pd.Categorical(statics[f.name], categories=f.categories)
                if f.categorical
                else statics[f.name].astype(np.float32).to_numpy()
            )
        return frame

    def _put(self, wide: np.ndarray, local: np.ndarray, res: dict, feats: list[Feature]) -> None:
        r = local[res["row_id"]]
        for f in feats:
            vals = res[f.name]
            if np.ma.isMaskedArray(vals):
                vals = np.ma.filled(vals.astype(np.float64), np.nan)
            vals = np.asarray(vals, np.float64)
            keep = ~np.isnan(vals)
            wide[r[keep], self.col[f.name]] = vals[keep]

    def _frame(self, spine_part: pd.DataFrame, wide: np.ndarray) -> pd.DataFrame:
        frame = pd.DataFrame(wide, columns=self.names, index=spine_part.index)
        return pd.concat([spine_part, frame], axis=1)


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
