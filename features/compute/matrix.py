"""Today's features of every person as one float32 matrix: what the service reads from.

The encoding is the models' own (`RiskModel.prepare`): numbers as float32, a category as its
position in the spec's list, NaN for missing. So a model's input for any person is a slice of
rows and columns, with no pandas on the request path, and the matrix can be a file that every
worker reads: the operating system keeps one copy in memory for all of them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.compute.builder import DEFAULT_CHUNK_ROWS, FeatureBuilder
from features.spec import FEATURES_BY_NAME


class FeatureMatrix:
    """One row per person of `index` (person ids), in its order; columns `names`."""

    def __init__(self, values: np.ndarray, names: Sequence[str], index: pd.Index) -> None:
        self.values = values
        self.names = list(names)
        self.index = index
        self._col = {n: i for i, n in enumerate(self.names)}
        self._selections: dict[tuple[str, ...], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.index)

    def rows(self, person_ids: Sequence[str] | pd.Index) -> np.ndarray:
        return self.index.get_indexer(person_ids)

    def columns(self, names: Sequence[str]) -> np.ndarray:
        """Positions of `names`, remembered: a model asks for the same list every request."""
        key = tuple(names)
        if key not in self._selections:
            self._selections[key] = np.array([self._col[n] for n in names], np.int64)
        return self._selections[key]

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Whole rows, every column."""
        return self.values[np.asarray(rows)]

    def encoded(self, rows: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """A model's input for `rows`: float32, its columns in its order."""
        return self.take(rows)[:, self.columns(names)]

    def column(self, name: str) -> np.ndarray:
        return np.asarray(self.values[:, self._col[name]])

    def frame(self, person_ids: Sequence[str] | pd.Index) -> pd.DataFrame:
        """The persons' rows as the feature builder gives them (categories as labels), for
        what works on frames: caseloads, pages, reports."""
        block = self.take(self.rows(person_ids))
        columns: dict[str, object] = {}
        for i, name in enumerate(self.names):
            spec = FEATURES_BY_NAME[name]
            if spec.categories is None:
                columns[name] = block[:, i]
            else:
                codes = np.where(np.isnan(block[:, i]), -1, block[:, i]).astype(np.int64)
                columns[name] = pd.Categorical.from_codes(codes, categories=spec.categories)
        return pd.DataFrame(columns, index=pd.Index(person_ids, name="person_id"))


class FileMatrix(FeatureMatrix):
    """A matrix `build_matrix` wrote to a .npy file, read from the file, never held.

    Every worker reads the same file, so the system's page cache keeps one copy for all. A
    request reads its row with one `pread`: mapping the file instead would put every page
    the kernel maps around each row (tens of KiB per read) into the worker's resident set,
    until a worker appears to hold the whole matrix. Bulk reads (a caseload's cohort) map
    the file for that read only."""

    FEW = 64  # rows read one by one; more, through a temporary mapping

    def __init__(self, path: Path, names: Sequence[str], index: pd.Index) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            fmt = np.lib.format
            version = fmt.read_magic(fh)
            header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, fortran, dtype = header(fh)
            self._offset = fh.tell()
        if fortran or dtype != np.float32 or shape != (len(index), len(names)):
            raise ValueError(f"{path}: not a C-ordered float32 matrix of {len(index)} rows")
        self._fd = os.open(self.path, os.O_RDONLY)
        self._row_bytes = len(names) * 4
        super().__init__(np.empty((0, len(names)), np.float32), names, index)

    def __del__(self) -> None:
        if hasattr(self, "_fd"):
            os.close(self._fd)

    def take(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        if len(rows) > self.FEW:
            mapped = np.load(self.path, mmap_mode="r")
            try:
                return np.array(mapped[rows])
            finally:
                del mapped
        out = np.empty((len(rows), len(self.names)), np.float32)
        for i, r in enumerate(rows.tolist()):
            data = os.pread(self._fd, self._row_bytes, self._offset + r * self._row_bytes)
            out[i] = np.frombuffer(data, np.float32)
        return out

    def column(self, name: str) -> np.ndarray:
        mapped = np.load(self.path, mmap_mode="r")
        try:
            return np.array(mapped[:, self._col[name]])
        finally:
            del mapped


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
    """Every spine row's features (one row per person), chunk by chunk into one matrix: in
    memory, or written to `out` as a .npy file (then read from it), so memory stays bounded by a
    chunk."""
    names = [f.name for f in builder.features]
    shape = (len(spine), len(names))
    if out is None:
        values = np.empty(shape, np.float32)
    else:
        values = np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=shape)
    for table, rows in builder.iter_chunks(spine, DEFAULT_CHUNK_ROWS):
        values[rows] = encode(table, names)
    index = pd.Index(spine["person_id"], name="person_id")
    if out is None:
        return FeatureMatrix(values, names, index)
    del values  # flushed to the file, which is then read from
    return open_matrix(out, names, index)


def open_matrix(path: Path, names: Sequence[str], index: pd.Index) -> FeatureMatrix:
    """A matrix `build_matrix` wrote, read from its file by every process that opens it."""
    return FileMatrix(path, names, index)
