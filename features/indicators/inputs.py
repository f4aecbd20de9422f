"""What the programme indicators read besides the registry: their settings, residents by
district and age band, and indicators from outside the registry (drug price, satisfaction).

Each file is checked like the registry's own: every bad row is named by file, row, field and
reason, and nothing is dropped silently.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pandas as pd
import yaml

from features.contract.vocabulary import DISTRICTS
from features.core.errors import ConfigError, ContractError, InputError, Problem
from features.core.io import UNREADABLE, table_columns, text_chunks

CITY = "city"  # the whole city's row, beside the districts
MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
BAND = re.compile(r"(\d{1,3})(?:-(\d{1,3})|\+)")
MAX_LISTED = 20

# the package that ships the default settings and population file
HERE = resources.files("features.indicators")


@dataclass(frozen=True)
class External:
    """An indicator from outside the registry, and which way is better."""

    name: str
    en: str
    zh: str
    direction: int  # +1: higher is better; -1: lower is better


@dataclass(frozen=True)
class IndicatorConfig:
    youth_age_bound: int = 35
    control_lookback_months: int = 12
    consolidation_years: int = 3
    community_order_days: int = 1095
    methadone_active_days: int = 30
    relapse_task: str = "relapse"
    # a count of persons below this is published as "<5" (see `disclosure`)
    suppress_below: int = 5
    weights: dict[str, float] = field(default_factory=dict)
    external: dict[str, External] = field(default_factory=dict)
    source: str = "default"


def load_indicator_config(path: Path | None = None) -> IndicatorConfig:
    """The package's `indicators.yaml`, or a user's file of the same shape."""
    where = str(path) if path else "features/indicators/indicators.yaml"
    try:
        text = (
            Path(path).read_text(encoding="utf-8")
            if path
            else HERE.joinpath("indicators.yaml").read_text("utf-8")
        )
        raw = yaml.safe_load(text) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{where}: cannot read the indicator config ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of settings")
    try:
        external = {
            name: External(name, str(e["en"]), str(e["zh"]), int(e["direction"]))
            for name, e in (raw.pop("external", None) or {}).items()
        }
        weights = {str(k): float(v) for k, v in (raw.pop("weights", None) or {}).items()}
        config = IndicatorConfig(**raw, weights=weights, external=external, source=where)
    except (TypeError, KeyError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    bad = [n for n, e in external.items() if e.direction not in (1, -1)]
    if bad:
        raise ConfigError(f"{where}: external indicator {bad[0]}: direction must be 1 or -1")
    if config.suppress_below < 1:
        raise ConfigError(f"{where}: suppress_below must be 1 or more (1: nothing withheld)")
    if any(w < 0 or math.isnan(w) for w in weights.values()):
        raise ConfigError(f"{where}: weights must be zero or more")
    return config


def default_population() -> Path:
    return Path(str(HERE.joinpath("data/guiyang_population_2020.csv")))


def _band(text: str) -> tuple[int, int] | None:
    """An age band `LO-HI` (inclusive) or `LO+`, as (lo, hi + 1); None if malformed."""
    m = BAND.fullmatch(text)
    if not m:
        return None
    lo = int(m.group(1))
    hi = int(m.group(2)) + 1 if m.group(2) else 200
    return (lo, hi) if hi > lo else None


def _read_rows(path: Path, what: str) -> pd.DataFrame:
    """A CSV or Excel file as text cells, empty cells empty, rows numbered from 1 (see
    `features.core.io.text_chunks`: a formula in a workbook is refused)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such {what} file")
    if path.suffix.lower() not in (".csv", ".xlsx"):
        raise InputError(f"{path}: unsupported {what} format (use .csv or .xlsx)")
    try:
        chunks = list(text_chunks(path, 100_000, what))
    except (*UNREADABLE, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{path}: cannot read the {what} file ({exc})") from None
    frame = (
        pd.concat(chunks, ignore_index=True)
        if chunks
        else pd.DataFrame(columns=table_columns(path, what), dtype=str)
    )
    frame.index = pd.RangeIndex(1, len(frame) + 1)
    return frame


def _require(frame: pd.DataFrame, path: Path, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)} in the {what} file "
            f"(expected {', '.join(columns)})"
        )


def _raise(path: Path, what: str, problems: list[Problem]) -> None:
    if problems:
        raise ContractError(
            f"{path}: {len({p.row for p in problems})} {what} row(s) are not usable:",
            problems[:MAX_LISTED],
            len(problems),
        )


def _count(text: str) -> int | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value >= 0 and value == int(value) else None


def read_population(path: Path | None = None) -> pd.DataFrame:
    """Residents by district and age band: district, lo, hi (ages lo..hi-1), count."""
    path = Path(path) if path else default_population()
    frame = _read_rows(path, "population")
    _require(frame, path, ("district", "age_band", "count"), "population")
    problems: list[Problem] = []
    rows = []
    seen: dict[tuple[str, str], int] = {}
    for row, (d, b, c) in enumerate(
        zip(frame["district"], frame["age_band"], frame["count"], strict=True), 1
    ):
        name = path.name
        if d not in DISTRICTS:
            problems.append(Problem(name, row, "district", f"unknown district {d!r}"))
        band = _band(b)
        if band is None:
            problems.append(Problem(name, row, "age_band", f"{b!r} is not LO-HI or LO+"))
        count = _count(c)
        if count is None:
            problems.append(Problem(name, row, "count", f"{c!r} is not a whole number >= 0"))
        if (d, b) in seen:
            problems.append(Problem(name, row, "age_band", f"duplicate of row {seen[(d, b)]}"))
        seen.setdefault((d, b), row)
        if band and count is not None:
            rows.append((d, band[0], band[1], count))
    _raise(path, "population", problems)
    out = pd.DataFrame(rows, columns=["district", "lo", "hi", "count"])
    for district, bands in out.sort_values("lo").groupby("district"):
        los, his = bands["lo"].to_numpy(), bands["hi"].to_numpy()
        if (los[1:] < his[:-1]).any():
            raise ContractError(f"{path}: the age bands of {district} overlap")
    return out


def residents_under(population: pd.DataFrame, bound: int, path: str = "population") -> pd.Series:
    """Residents younger than `bound`, by district. A band that straddles the bound cannot be
    split without guessing, so it is an error that says which bands would do."""
    straddle = population[(population.lo < bound) & (population.hi > bound)]
    if len(straddle):
        r = straddle.iloc[0]
        raise ConfigError(
            f"{path}: the youth age bound {bound} falls inside the band {r.lo}-{r.hi - 1} of "
            f"{r.district}; set youth_age_bound to a band edge"
        )
    under = population[population.hi <= bound]
    return under.groupby("district")["count"].sum().reindex(list(DISTRICTS), fill_value=0)


def read_external(path: Path, config: IndicatorConfig, last_month: str) -> pd.DataFrame:
    """Indicators from outside the registry: district (or `city`), month, indicator, value."""
    path = Path(path)
    frame = _read_rows(path, "external indicators")
    columns = ("district", "month", "indicator", "value")
    _require(frame, path, columns, "external indicators")
    problems: list[Problem] = []
    rows = []
    seen: dict[tuple[str, str, str], int] = {}
    name = path.name
    for row, (d, m, i, v) in enumerate(zip(*(frame[c] for c in columns), strict=True), 1):
        if d not in DISTRICTS and d != CITY:
            problems.append(Problem(name, row, "district", f"unknown district {d!r}"))
        if not MONTH.fullmatch(m):
            problems.append(Problem(name, row, "month", f"{m!r} is not a month (YYYY-MM)"))
        elif m > last_month:
            problems.append(Problem(name, row, "month", f"{m} is after the data ({last_month})"))
        if i not in config.external:
            known = ", ".join(config.external) or "none configured"
            problems.append(Problem(name, row, "indicator", f"unknown indicator {i!r} ({known})"))
        try:
            value = float(v)
            ok = math.isfinite(value)
        except ValueError:
            ok = False
        if not ok:
            problems.append(Problem(name, row, "value", f"{v!r} is not a finite number"))
        key = (d, m, i)
        if key in seen:
            problems.append(Problem(name, row, "indicator", f"duplicate of row {seen[key]}"))
        seen.setdefault(key, row)
        if ok:
            rows.append({"district": d, "month": m, "indicator": i, "value": value})
    _raise(path, "external indicator", problems)
    return pd.DataFrame(rows, columns=["district", "month", "indicator", "value"])
