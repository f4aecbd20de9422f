"""A registry's CSV file read as text, every row accounted for.

Only an empty field is missing: "NaN", "NA" or "null" are text like any other, which the
contract checks and names. A row whose bytes are not UTF-8 is kept, its text decoded with
replacement characters and its problem in the column `_encoding`, so the contract names its
row and field and `--lenient` sets it aside like any other bad row (one bad byte used to
refuse the whole file, naming no row). A line longer than MAX_LINE_BYTES is refused naming
its line (the CSV reader said only that an object straddled two blocks).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from features.core.errors import ContractError

MAX_LINE_BYTES = 16 * 2**20  # a registry row is a few hundred bytes
ENCODING = "_encoding"  # a row's encoding problem, or null


def read_registry_csv(path: Path) -> pa.Table:
    """The file's columns as text, with a 1-based `_row` and, where some row's bytes are not
    UTF-8, `_encoding`."""
    header = _header(path)
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=MAX_LINE_BYTES),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.binary() for c in header},
                strings_can_be_null=True,
                null_values=[""],
            ),
        )
    except pa.ArrowInvalid as exc:
        if "straddling" in str(exc):
            raise ContractError(f"{path}: {_long_line(path)}") from None
        raise ContractError(f"{path}: not a readable CSV file ({exc})") from None
    except OSError as exc:
        raise ContractError(f"{path}: not a readable CSV file ({exc})") from None
    columns: list[pa.ChunkedArray] = []
    problems: list[str | None] = [None] * table.num_rows
    for name in table.column_names:
        column, bad = _text(table.column(name))
        columns.append(column)
        for row in bad:
            problems[row] = problems[row] or f"{name}: not valid UTF-8 text"
    text = pa.table(columns, names=table.column_names)
    text = text.append_column("_row", pa.array(range(1, text.num_rows + 1), pa.int64()))
    if any(problems):
        text = text.append_column(ENCODING, pa.array(problems, pa.string()))
    return text


def _header(path: Path) -> list[str]:
    with open(path, "rb") as fh:
        first = fh.readline(MAX_LINE_BYTES + 1)
    if len(first) > MAX_LINE_BYTES:
        raise ContractError(f"{path}: {_long_line(path)}")
    text = first.decode("utf-8-sig", errors="replace")
    return next(csv.reader(io.StringIO(text)), [])


def _text(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, list[int]]:
    """A binary column as text; where it is not UTF-8 (checked in C), the rows that are not,
    decoded with replacement characters."""
    try:
        return column.cast(pa.string()), []  # the cast checks the bytes, in C
    except pa.ArrowInvalid:
        pass
    values = column.to_pylist()
    bad = []
    for i, v in enumerate(values):
        if v is not None:
            try:
                values[i] = v.decode("utf-8")
            except UnicodeDecodeError:
                values[i] = v.decode("utf-8", errors="replace")
                bad.append(i)
    return pa.chunked_array([pa.array(values, pa.string())]), bad


def _long_line(path: Path) -> str:
    """Which line is over MAX_LINE_BYTES, found by reading the file in blocks."""
    line, length = 1, 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            start = 0
            while (end := block.find(b"\n", start)) >= 0:
                if length + end - start > MAX_LINE_BYTES:
                    break
                line, length, start = line + 1, 0, end + 1
            else:
                length += len(block) - start
                if length <= MAX_LINE_BYTES:
                    continue
            break
    return (
        f"line {line} is longer than {MAX_LINE_BYTES // 2**20} MiB; a registry row is a few "
        "hundred bytes (is it the right file, with line breaks?)"
    )
