"""File helpers shared by every writer: outputs appear under their final name only when whole."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.core.errors import InputError

# what reading a damaged or mislabelled file raises, by format: all of it is the user's file
UNREADABLE = (ValueError, OSError, KeyError, pa.ArrowInvalid, zipfile.BadZipFile)
# a tabular input's cells: a spreadsheet's own limit, which no id, code or date comes near
MAX_CELL_CHARS = 32_767
# an Excel workbook's parts, unpacked: a million-row roster's shared strings are ~30 MiB
MAX_WORKBOOK_PART = 256 * 2**20


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


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """As `atomic_path`, for a directory (a partitioned Parquet dataset): written under a
    temporary name beside `final`, swapped into place only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent))
    old = final.with_name(f".{final.name}.old")
    try:
        tmp.rmdir()  # the writer makes it, as Spark insists on
        yield tmp
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
    finally:
        for leftover in (tmp, old):
            if leftover.is_dir():
                shutil.rmtree(leftover)
            elif leftover.exists():
                leftover.unlink()


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


def read_text_table(path: Path, what: str, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """A small user file (labels, a split, a codebook) from CSV or Parquet, CSV cells as text
    with only an empty cell missing; an unreadable file or a missing required column is a
    one-line error naming the file."""
    path = Path(path)
    try:
        raw = (
            pd.read_parquet(path)
            if path.suffix == ".parquet"
            else pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        )
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read {what} ({exc})") from None
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    return raw


def table_columns(path: Path, what: str) -> list[str]:
    """The header of a CSV, Parquet or Excel file (its first sheet); [] for an empty file."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return list(pd.read_csv(path, nrows=0, encoding="utf-8-sig").columns)
        if suffix == ".parquet":
            return pq.read_schema(path).names
        from openpyxl import load_workbook

        _check_workbook_size(path, what)
        book = load_workbook(path, read_only=True)
        try:
            return _header(path, what, next(book.worksheets[0].iter_rows(values_only=True), ()))
        finally:
            book.close()
    except pd.errors.EmptyDataError:
        return []
    except UNREADABLE as exc:
        raise InputError(f"{path}: cannot read {what} ({exc})") from None


def text_chunks(path: Path, rows: int, what: str) -> Iterator[pd.DataFrame]:
    """A CSV, Parquet or Excel file (its first sheet) as text cells, `rows` at a time: an
    empty cell is "", a date is YYYY-MM-DD. A formula in a workbook is refused, never read
    as whatever (or nothing) it last computed. Reading errors are raised as they come (the
    caller says what file it was)."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".parquet"):
        first = 2 if suffix == ".csv" else 1  # a CSV's row 1 is its header
        for chunk in _flat_chunks(path, rows):
            if (why := long_cells(chunk, first)) is not None:
                raise InputError(f"{path}: {why}")
            first += len(chunk)
            yield chunk
    else:
        from openpyxl import load_workbook

        _check_workbook_size(path, what)
        book = load_workbook(path, read_only=True, data_only=False)
        try:
            it = book.worksheets[0].iter_rows(values_only=True)
            header = _header(path, what, next(it, ()))
            buf: list[list[str]] = []
            for r, values in enumerate(it, 2):
                _check_cells(path, what, r, values)
                buf.append([_cell_text(v) for v in values])
                if len(buf) == rows:
                    yield pd.DataFrame(buf, columns=header)
                    buf = []
            if buf:
                yield pd.DataFrame(buf, columns=header)
        finally:
            book.close()


def _flat_chunks(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    if path.suffix.lower() == ".csv":
        yield from pd.read_csv(
            path, dtype=str, keep_default_na=False, encoding="utf-8-sig", chunksize=rows
        )
        return
    for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
        yield batch.to_pandas().astype(object).where(lambda f: f.notna(), "").astype(str)


def _header(path: Path, what: str, first: tuple) -> list[str]:
    """A workbook's header row, checked as every row is (a formula in it is refused too)."""
    _check_cells(path, what, 1, first)
    return [str(h) if h is not None else "" for h in first]


def _check_cells(path: Path, what: str, row: int, values: tuple) -> None:
    """A workbook's row holds values only, each within a spreadsheet's own cell limit."""
    from openpyxl.utils import get_column_letter

    for c, v in enumerate(values):
        if not isinstance(v, str) or (not v.startswith("=") and len(v) <= MAX_CELL_CHARS):
            continue
        cell = f"{get_column_letter(c + 1)}{row}"  # named only for the message
        if v.startswith("="):
            raise InputError(
                f"{path}: cell {cell} holds a formula; a {what} holds values only (paste the "
                "values, or save a copy as CSV)"
            )
        if len(v) > MAX_CELL_CHARS:
            raise InputError(
                f"{path}: cell {cell} holds {len(v):,} characters; a cell holds at most "
                f"{MAX_CELL_CHARS:,} (a spreadsheet's own limit)"
            )


def _check_workbook_size(path: Path, what: str) -> None:
    """A workbook is a zip: refused when a part of it would unpack past MAX_WORKBOOK_PART,
    before any of it is read (one 300 MB cell packs into 310 KB)."""
    try:
        parts = zipfile.ZipFile(path).infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{path}: cannot read {what} ({exc})") from None
    for part in parts:
        if part.file_size > MAX_WORKBOOK_PART:
            raise InputError(
                f"{path}: {part.filename} unpacks to {part.file_size / 2**20:,.0f} MiB; a "
                f"{what} workbook part holds at most {MAX_WORKBOOK_PART // 2**20} MiB (save it "
                "as CSV, or split it)"
            )


def long_cells(frame: pd.DataFrame, first_row: int) -> str | None:
    """The first cell of a text frame over MAX_CELL_CHARS, named by row and column."""
    for name in frame.columns:
        lengths = frame[name].str.len()
        if len(lengths) and lengths.max() > MAX_CELL_CHARS:
            at = int(np.argmax(lengths.to_numpy() > MAX_CELL_CHARS))
            return (
                f"row {first_row + at}, column {name}: {int(lengths.iat[at]):,} characters; a "
                f"cell holds at most {MAX_CELL_CHARS:,}"
            )
    return None


def _cell_text(v: object) -> str:
    if v is None:
        return ""
    if hasattr(v, "date") and hasattr(v, "hour"):
        return v.date().isoformat()  # type: ignore[attr-defined]
    return str(v)


# a cell starting with one of these is a formula to a spreadsheet (OWASP, CSV injection)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


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
