"""Reading rosters (CSV, Parquet, Excel) in chunks, and writing outputs in the same formats."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.store import DataError

FORMATS = (".csv", ".parquet", ".xlsx")


def check_format(path: Path, what: str) -> None:
    if path.suffix.lower() not in FORMATS:
        raise DataError(f"{path}: unsupported {what} format (use {', '.join(FORMATS)})")


def check_roster(path: Path) -> None:
    check_format(path, "roster")
    if not path.is_file():
        raise DataError(f"{path}: no such roster")


def read_chunks(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    """The roster as string columns, chunk by chunk, with a 1-based `_row` index."""
    check_roster(path)
    start = 0
    try:
        for chunk in _raw_chunks(path, rows):
            chunk.index = pd.RangeIndex(start + 1, start + 1 + len(chunk), name="_row")
            start += len(chunk)
            yield chunk
    except (ValueError, OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"{path}: cannot read roster ({exc})") from None


def _raw_chunks(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        yield from pd.read_csv(
            path, dtype=str, keep_default_na=False, encoding="utf-8-sig", chunksize=rows
        )
    elif suffix == ".parquet":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
            yield batch.to_pandas().astype(object).where(lambda f: f.notna(), "").astype(str)
    else:
        from openpyxl import load_workbook

        book = load_workbook(path, read_only=True, data_only=True)
        sheet = book.worksheets[0]
        it = sheet.iter_rows(values_only=True)
        header = [str(h) if h is not None else "" for h in next(it, [])]
        buf: list[list[str]] = []
        for values in it:
            buf.append(
                [
                    ""
                    if v is None
                    else (
                        v.date().isoformat()
                        if hasattr(v, "date") and hasattr(v, "hour")
                        else str(v)
                    )
                    for v in values
                ]
            )
            if len(buf) == rows:
                yield pd.DataFrame(buf, columns=header)
                buf = []
        if buf:
            yield pd.DataFrame(buf, columns=header)
        book.close()


def write_output(parts: list[Path], out: Path, tmp: Path, drop: list[str]) -> None:
    """Concatenate part files (Parquet) into `tmp` in the output's format, streaming."""
    suffix = out.suffix.lower()

    def read(p: Path) -> pa.Table:
        t = pq.read_table(p)
        return t.drop_columns([c for c in drop if c in t.column_names])

    if suffix == ".parquet":
        writer = None
        for p in parts:
            t = read(p)
            writer = writer or pq.ParquetWriter(tmp, t.schema)
            writer.write_table(t)
        if writer:
            writer.close()
    elif suffix == ".csv":
        with open(tmp, "wb") as fh:
            fh.write("\ufeff".encode())  # a BOM, so Excel shows Chinese text correctly
            for i, p in enumerate(parts):
                t = read(p)
                pacsv.write_csv(t, fh, pacsv.WriteOptions(include_header=i == 0))
    else:
        from openpyxl import Workbook

        book = Workbook(write_only=True)
        sheet = book.create_sheet("scores")
        for i, p in enumerate(parts):
            frame = read(p).to_pandas()
            if i == 0:
                sheet.append(list(frame.columns))
            for row in frame.itertuples(index=False):
                sheet.append([None if pd.isna(v) else v for v in row])
        book.save(tmp)
