"""Outputs appear under their final name only when complete."""

from __future__ import annotations

import pandas as pd
import pytest

from features.core.io import atomic_path, write_table


def test_failed_write_leaves_neither_final_nor_temporary_file(tmp_path):
    final = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_bytes(b"half a file")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_the_previous_file(tmp_path):
    final = tmp_path / "out.csv"
    write_table(pd.DataFrame({"a": [1]}), final)
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_text("a\n2\n")
        raise RuntimeError("killed")
    assert pd.read_csv(final).a.tolist() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_unsupported_extension_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unsupported output format"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "out.xls")
    assert list(tmp_path.iterdir()) == []
