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


@dataclass(frozen=True)
class TrainConfig:
    task: str
    as_of_first: dt.date
    as_of_last: dt.date
    valid_start: dt.date
    test_start: dt.date
    rolling_test_starts: tuple[dt.date, ...]
    lightgbm: dict[str, Any]
    capacity: float = 0.10
    protected_attributes: tuple[str, ...] = ("sex", "ethnicity", "age_band", "district")
    source: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

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
        cfg = TrainConfig(
            task=raw.get("task", task),
            as_of_first=_date(raw["as_of"]["first"], f"{source}: as_of.first"),
            as_of_last=_date(raw["as_of"]["last"], f"{source}: as_of.last"),
            valid_start=_date(split["valid_start"], f"{source}: split.valid_start"),
            test_start=_date(split["test_start"], f"{source}: split.test_start"),
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
        )
    except yaml.YAMLError as exc:
        raise DataError(f"{source}: not valid YAML ({exc})") from None
    except (KeyError, TypeError) as exc:
        raise DataError(f"{source}: missing setting {exc}") from None
    if cfg.task != task:
        raise DataError(f"{source}: is for task {cfg.task!r}, not {task!r}")
    if not cfg.as_of_first <= cfg.valid_start < cfg.test_start <= cfg.as_of_last:
        raise DataError(
            f"{source}: need as_of.first <= split.valid_start < split.test_start <= as_of.last"
        )
    if not 0 < cfg.capacity < 1:
        raise DataError(f"{source}: capacity must be a share between 0 and 1")
    return cfg
