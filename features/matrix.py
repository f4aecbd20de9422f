"""Today's features of every person as one float32 matrix: what the service reads from.

The encoding is the models' own (`RiskModel.prepare`): numbers as float32, a category as its
position in the spec's list, NaN for missing. So a model's input for any person is a slice of
rows and columns, with no pandas on the request path, and the matrix can be a file that every
worker maps read-only: the operating system keeps one copy in memory for all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.builder import DEFAULT_CHUNK_ROWS, FeatureBuilder
from features.spec import FEATURES_BY_NAME


class FeatureMatrix:
    """One row per person, in the order of the spine it was built from; columns `names`."""

    def __init__(self, values: np.ndarray, names: Sequence[str]) -> None:
        self.values = values
        self.names = list(names)
        self._col = {n: i for i, n in enumerate(self.names)}
        self._selections: dict[tuple[str, ...], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.values)

    def columns(self, names: Sequence[str]) -> np.ndarray:
        """Positions of `names`, remembered: a model asks for the same list every request."""
        key = tuple(names)
        if key not in self._selections:
            self._selections[key] = np.array([self._col[n] for n in names], np.int64)
        return self._selections[key]

    def encoded(self, rows: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """A model's input for `rows`: float32, its columns in its order."""
        return self.values[np.asarray(rows)][:, self.columns(names)]

    def column(self, name: str) -> np.ndarray:
        return np.asarray(self.values[:, self._col[name]])

    def frame(self, rows: np.ndarray, index: pd.Index) -> pd.DataFrame:
        """The rows as the feature builder gives them (categories as labels), for what works
        on frames: caseloads, pages, reports."""
        block = self.values[np.asarray(rows)]
        columns: dict[str, object] = {}
        for i, name in enumerate(self.names):
            spec = FEATURES_BY_NAME[name]
            if spec.categories is None:
                columns[name] = block[:, i]
            else:
                codes = np.where(np.isnan(block[:, i]), -1, block[:, i]).astype(np.int64)
                columns[name] = pd.Categorical.from_codes(codes, categories=spec.categories)
        return pd.DataFrame(columns, index=index)


def encode(table: pa.Table, names: Sequence[str]) -> np.ndarray:
    """A feature table's columns `names` in the models' encoding."""
    out = np.empty((table.num_rows, len(names)), np.float32)
    for i, name in enumerate(names):
        col = table.column(name)
        categories = FEATURES_BY_NAME[name].categories
        if categories is not None:
            col = pc.index_in(col.cast(pa.string()), value_set=pa.array(categories, pa.string()))
        out[:, i] = col.cast(pa.float32()).fill_null(np.nan).to_numpy()
    return out


def build_matrix(
    builder: FeatureBuilder, spine: pd.DataFrame, out: Path | None = None
) -> FeatureMatrix:
    """Every spine row's features, chunk by chunk into one matrix: in memory, or written to
    `out` as a .npy file (then mapped, not held) so memory stays bounded by one chunk."""
    names = [f.name for f in builder.features]
    shape = (len(spine), len(names))
    values = (
        np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=shape)
        if out is not None
        else np.empty(shape, np.float32)
    )
    for table, rows in builder.iter_chunks(spine, DEFAULT_CHUNK_ROWS):
        values[rows] = encode(table, names)
    if out is not None:
        values.flush()
        del values
        values = np.load(out, mmap_mode="r")
    return FeatureMatrix(values, names)
