"""Training configuration: one YAML per task in experiments/, with a packaged default."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from features.labels import check_task
from features.store import DataError

SPLIT_MODES = ("temporal", "cv")


@dataclass(frozen=True)
class TrainConfig:
    """`split.mode: temporal` (the default) splits by as-of date. `cv` is for data without a
    shared calendar, such as trials whose participants each start on their own day 0: it holds
    out a stratified share of persons for the test, and cross-validates over the rest."""

    task: str
    as_of_first: dt.date | None
    as_of_last: dt.date | None
    valid_start: dt.date | None
    test_start: dt.date | None
    rolling_test_starts: tuple[dt.date, ...]
    lightgbm: dict[str, Any]
    capacity: float = 0.10
    protected_attributes: tuple[str, ...] = ("sex", "ethnicity", "age_band", "district")
    source: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    split_mode: str = "temporal"
    cv_folds: int = 5
    test_share: float = 0.2
    split_seed: int = 7

    @property
    def evaluation_title(self) -> str:
        if self.split_mode == "cv":
            return f"{self.cv_folds}-fold cross-validation (development set)"
        return "rolling-origin evaluation"

    @property
    def test_title(self) -> str:
        return "held-out test set" if self.split_mode == "cv" else "test period"

    def as_of_dates(self) -> list[dt.date]:
        """Quarterly as-of dates from first to last, inclusive."""
        dates, d = [], self.as_of_first
        while d <= self.as_of_last:
            dates.append(d)
            y, m = divmod(d.month - 1 + 3, 12)
            d = dt.date(d.year + y, m + 1, 1)
        return dates


def _date(raw: Any, where: str) -> dt.date:
    if isinstance(raw, dt.date):
        return raw
    try:
        return dt.date.fromisoformat(str(raw))
    except ValueError:
        raise DataError(f"{where}: {raw!r} is not a date (YYYY-MM-DD)") from None


def load_config(task: str, path: Path | None = None) -> TrainConfig:
    """Read a task's config; without a path, the packaged experiments/<task>.yaml."""
    check_task(task)
    if path is None:
        text = resources.files("experiments").joinpath(f"{task}.yaml").read_text()
        source = f"experiments/{task}.yaml"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise DataError(f"{path}: cannot read config ({exc.strerror})") from None
        source = str(path)
    try:
        raw = yaml.safe_load(text) or {}
        split = raw["split"]
        mode = split.get("mode", "temporal")
        if mode not in SPLIT_MODES:
            raise DataError(f"{source}: split.mode {mode!r} is not one of {', '.join(SPLIT_MODES)}")
        temporal = mode == "temporal"
        dates = raw["as_of"] if temporal else {}

        def date(where: dict, key: str, label: str) -> dt.date | None:
            return _date(where[key], f"{source}: {label}") if temporal else None

        cfg = TrainConfig(
            task=raw.get("task", task),
            as_of_first=date(dates, "first", "as_of.first"),
            as_of_last=date(dates, "last", "as_of.last"),
            valid_start=date(split, "valid_start", "split.valid_start"),
            test_start=date(split, "test_start", "split.test_start"),
            rolling_test_starts=tuple(
                _date(d, f"{source}: split.rolling_test_starts")
                for d in split.get("rolling_test_starts", [])
            ),
            lightgbm=dict(raw.get("lightgbm", {})),
            capacity=float(raw.get("capacity", 0.10)),
            protected_attributes=tuple(
                raw.get("protected_attributes", TrainConfig.protected_attributes)
            ),
            source=source,
            raw=raw,
            split_mode=mode,
            cv_folds=int(split.get("folds", 5)),
            test_share=float(split.get("test_share", 0.2)),
            split_seed=int(split.get("seed", 7)),
        )
    except yaml.YAMLError as exc:
        raise DataError(f"{source}: not valid YAML ({exc})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{source}: missing or malformed setting {exc}") from None
    if cfg.task != task:
        raise DataError(f"{source}: is for task {cfg.task!r}, not {task!r}")
    if temporal and not cfg.as_of_first <= cfg.valid_start < cfg.test_start <= cfg.as_of_last:
        raise DataError(
            f"{source}: need as_of.first <= split.valid_start < split.test_start <= as_of.last"
        )
    if not temporal and not (cfg.cv_folds >= 2 and 0 < cfg.test_share < 0.5):
        raise DataError(f"{source}: split.folds must be at least 2 and test_share in (0, 0.5)")
    if not 0 < cfg.capacity < 1:
        raise DataError(f"{source}: capacity must be a share between 0 and 1")
    return cfg
