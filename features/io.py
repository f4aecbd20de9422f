"""File helpers shared by every writer: outputs appear under their final name only when whole."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


@contextlib.contextmanager
def atomic_path(final: Path, private: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it into place only if the block succeeds.
    A `private` file (secrets, the audit trail) stays readable by its owner only throughout."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if not private:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp's 0600 is for the temporary name only
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_table(table: pa.Table | pd.DataFrame, path: Path) -> None:
    """Write Parquet or CSV (chosen by extension) atomically. A CSV keeps a float a float
    ("3.0", not "3"), so a reader gets back the types that were written."""
    path = Path(path)
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            pq.write_table(table, tmp)
        elif path.suffix == ".csv":
            table.to_pandas().to_csv(tmp, index=False)
        else:
            raise ValueError(f"{path}: unsupported output format (use .parquet or .csv)")


def file_sha256(path: Path) -> str:
    """A file's SHA-256, read in 1 MiB blocks so a large file never sits in memory."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()
