"""Shared helpers: tiny registries written to real CSV or Parquet files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

REF = "2026-06-30"

PERSON_DEFAULTS = {
    "birth_date": "1990-01-01",
    "sex": "M",
    "district": "nanming",
    "ethnicity": "han",
    "registration_date": None,
    "primary_substance": None,
}


def write_dataset(
    root: Path,
    persons: list[dict],
    events: list[dict] | None,
    fmt: str = "csv",
    reference_date: str | None = REF,
) -> Path:
    """Write persons/events as `fmt`; rows given as dicts, persons filled from defaults."""
    root.mkdir(parents=True, exist_ok=True)
    p = pd.DataFrame([{**PERSON_DEFAULTS, **row} for row in persons])
    tables = {"persons": p}
    if events is not None:
        e = pd.DataFrame(
            events, columns=["person_id", "event_time", "event_type", "value", "detail"]
        )
        if any("recorded_time" in row for row in events):
            e["recorded_time"] = [row.get("recorded_time") for row in events]
        tables["events"] = e
    for name, frame in tables.items():
        if fmt == "csv":
            frame.to_csv(root / f"{name}.csv", index=False)
        else:
            frame.to_parquet(root / f"{name}.parquet", index=False)
    if reference_date:
        (root / "dataset.json").write_text(json.dumps({"reference_date": reference_date}))
    return root


def ev(
    pid: str, time: str, etype: str, value: float | None = None, detail: str | None = None, **extra
) -> dict:
    return {
        "person_id": pid,
        "event_time": time,
        "event_type": etype,
        "value": value,
        "detail": detail,
        **extra,
    }


@pytest.fixture
def dataset(tmp_path: Path):
    def make(persons, events, **kw) -> Path:
        return write_dataset(tmp_path / "data", persons, events, **kw)

    return make
