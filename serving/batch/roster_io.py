"""Reading rosters (CSV, Parquet, Excel) in chunks, and writing outputs in the same formats."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.core.errors import InputError
from features.core.io import UNREADABLE, defuse, table_columns, text_chunks

ROSTER_FORMATS = (".csv", ".parquet", ".xlsx")


def check_format(path: Path, what: str) -> None:
    if path.suffix.lower() not in ROSTER_FORMATS:
        raise InputError(f"{path}: unsupported {what} format (use {', '.join(ROSTER_FORMATS)})")


def check_roster(path: Path) -> None:
    """Format, existence and a person_id column, from the header alone: called before the
    model and the registry are loaded, so an unusable roster fails in a moment."""
    check_format(path, "roster")
    if not path.is_file():
        raise InputError(f"{path}: no such roster")
    columns = roster_columns(path)
    if "person_id" not in columns:
        raise InputError(f"{path}: no person_id column (found: {', '.join(columns)})")


def roster_columns(path: Path) -> list[str]:
    return table_columns(path, "roster")


def read_chunks(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    """The roster as string columns, chunk by chunk, with a 1-based `_row` index; at least one
    chunk, empty for a roster with a header and no rows."""
    start = 0
    try:
        for chunk in text_chunks(path, rows, "roster"):
            chunk.index = pd.RangeIndex(start + 1, start + 1 + len(chunk), name="_row")
            start += len(chunk)
            yield chunk
        if not start:  # a header and no rows: one empty chunk, so the output has the columns
            columns = roster_columns(path)
            yield pd.DataFrame({c: pd.Series(dtype=str) for c in columns}).rename_axis("_row")
    except UNREADABLE as exc:
        raise InputError(f"{path}: cannot read roster ({exc})") from None


def defused(table: pa.Table) -> pa.Table:
    """Every text column of a table for a spreadsheet format, defused, and its column names
    (a roster's own header is copied to the output)."""
    table = table.rename_columns([str(defuse(n)) for n in table.column_names])
    for i, field in enumerate(table.schema):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            values = [defuse(v) for v in table.column(i).to_pylist()]
            table = table.set_column(i, field, pa.array(values, field.type))
    return table


def write_output(parts: list[Path], out: Path, tmp: Path, drop: list[str]) -> None:
    """Concatenate part files (Parquet) into `tmp` in the output's format, streaming."""
    suffix = out.suffix.lower()

    def read(p: Path) -> pa.Table:
        t = pq.read_table(p)
        t = t.drop_columns([c for c in drop if c in t.column_names])
        return t if suffix == ".parquet" else defused(t)

    if suffix == ".parquet":
        # a chunk with nothing of a kind (no reasons where only the high tier is explained)
        # has that column typed null; the other chunks say its type
        schema = pa.unify_schemas([pq.read_schema(p) for p in parts], promote_options="permissive")
        schema = pa.schema([f for f in schema if f.name not in drop], metadata=schema.metadata)
        writer = None
        for p in parts:
            t = read(p).select(schema.names).cast(schema)
            writer = writer or pq.ParquetWriter(tmp, schema)
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
                sheet.append(list(frame.columns))  # defused with the cells
            for row in frame.itertuples(index=False):
                sheet.append([None if pd.isna(v) else v for v in row])
        book.save(tmp)
