"""Reading rosters (CSV, Parquet, Excel) in chunks, and writing outputs in the same formats."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.errors import InputError

FORMATS = (".csv", ".parquet", ".xlsx")
# what reading a damaged or mislabelled file raises, by format: all of it is the user's file
UNREADABLE = (ValueError, OSError, KeyError, pa.ArrowInvalid, zipfile.BadZipFile)
# a cell starting with one of these is a formula to a spreadsheet (OWASP, CSV injection)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def check_format(path: Path, what: str) -> None:
    if path.suffix.lower() not in FORMATS:
        raise InputError(f"{path}: unsupported {what} format (use {', '.join(FORMATS)})")


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
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return list(pd.read_csv(path, nrows=0, encoding="utf-8-sig").columns)
        if suffix == ".parquet":
            return pq.read_schema(path).names
        from openpyxl import load_workbook

        book = load_workbook(path, read_only=True)
        try:
            return _xlsx_header(book.worksheets[0].iter_rows(values_only=True))
        finally:
            book.close()
    except pd.errors.EmptyDataError:
        return []
    except UNREADABLE as exc:
        raise InputError(f"{path}: cannot read roster ({exc})") from None


def _xlsx_header(rows: Iterator[tuple]) -> list[str]:
    return [str(h) if h is not None else "" for h in next(rows, ())]


def read_chunks(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    """The roster as string columns, chunk by chunk, with a 1-based `_row` index; at least one
    chunk, empty for a roster with a header and no rows."""
    start = 0
    try:
        for chunk in _raw_chunks(path, rows):
            chunk.index = pd.RangeIndex(start + 1, start + 1 + len(chunk), name="_row")
            start += len(chunk)
            yield chunk
        if not start:  # a header and no rows: one empty chunk, so the output has the columns
            columns = roster_columns(path)
            yield pd.DataFrame({c: pd.Series(dtype=str) for c in columns}).rename_axis("_row")
    except UNREADABLE as exc:
        raise InputError(f"{path}: cannot read roster ({exc})") from None


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
        from openpyxl.utils import get_column_letter

        # formulas as written, not their cached results: a formula is refused, never read
        # as whatever (or nothing) it last computed
        book = load_workbook(path, read_only=True, data_only=False)
        sheet = book.worksheets[0]
        it = sheet.iter_rows(values_only=True)
        header = _xlsx_header(it)
        buf: list[list[str]] = []
        for r, values in enumerate(it, 2):
            for c, v in enumerate(values):
                if isinstance(v, str) and v.startswith("="):
                    raise InputError(
                        f"{path}: cell {get_column_letter(c + 1)}{r} holds a formula; a roster "
                        "holds values only (paste the values, or save a copy as CSV)"
                    )
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


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def defuse(value: object) -> object:
    """A text cell a spreadsheet would run as a formula gets a leading apostrophe, which
    spreadsheets show as text; plain numbers ("-3.5") are left as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not _is_number(value):
        return "'" + value
    return value


def defused(table: pa.Table) -> pa.Table:
    """Every text column of a table for a spreadsheet format, defused."""
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
