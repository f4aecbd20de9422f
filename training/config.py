"""Training configuration: the task's default from the task registry, or a YAML file."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from features.compute.labels import cadence_dates
from features.core.errors import ConfigError
from features.spec import FEATURE_NAMES, PROTECTED_FEATURES
from features.tasks import get_task

SPLIT_MODES = ("temporal", "cv", "group")
# `fixed` is not written in a config: `sunshine train --split FILE` sets it
FIXED = "fixed"
# person attributes a group split may hold out whole (district: where the person lived on as_of)
# what split.by may name: a column of the persons table (district: where the person lived on
# as_of), or a coded assessment's first answer (item:CODE: a trial, a site, a school)
GROUP_BY = re.compile(r"[a-z_][a-z0-9_]*|item:[a-z0-9_]+")


@dataclass(frozen=True)
class TrainConfig:
    """`split.mode: temporal` (the default) splits by as-of date. `cv` is for data without a
    shared calendar, such as trials whose participants each start on their own day 0: it holds
    out a stratified share of persons for the test, and cross-validates over the rest.
    `group` holds out whole groups of a person attribute (`by`): the test is one group
    (`test_group`, by default the largest) and every group is also held out in turn, each by a
    model trained on the others (leave-one-group-out), which is what a model used in a new
    district or site faces. `fixed` takes the test persons from a file."""

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
    # protected attributes a model may still use as features, each with the reason
    allowed_features: dict[str, str] = field(default_factory=dict)
    fairness_min_group: int = 30
    cadence_months: int = 3
    label_days: int = 365
    group_by: str = ""
    test_group: str | None = None

    @property
    def evaluation_title(self) -> str:
        if self.split_mode == "group":
            return f"leave-one-group-out evaluation (by {self.group_by})"
        if self.split_mode in ("cv", FIXED):
            return f"{self.cv_folds}-fold cross-validation (development set)"
        return "rolling-origin evaluation"

    @property
    def test_title(self) -> str:
        if self.split_mode == "group":
            return f"held-out {self.group_by} {self.test_group or '(the largest)'}"
        return "test period" if self.split_mode == "temporal" else "held-out test set"

    def as_of_dates(self) -> list[dt.date]:
        """The task's cadence from first to last, inclusive."""
        first, last = self._dates(self.as_of_first, self.as_of_last, "as_of.first", "as_of.last")
        return cadence_dates(first, last, self.cadence_months)

    def split_dates(self) -> tuple[dt.date, dt.date]:
        """(valid_start, test_start) of a temporal split."""
        return self._dates(
            self.valid_start, self.test_start, "split.valid_start", "split.test_start"
        )

    def _dates(
        self, a: dt.date | None, b: dt.date | None, name_a: str, name_b: str
    ) -> tuple[dt.date, dt.date]:
        if a is None or b is None:
            raise ConfigError(f"{self.source}: {name_a} and {name_b} are needed here")
        return a, b

    def model_features(self, available: Sequence[str] = FEATURE_NAMES) -> list[str]:
        """The features built (by default the spec's) less every protected attribute's, unless
        allowed with a reason: a protected attribute reaches a model only by a decision the
        model card states. A frame's features are `feature_columns(frame.columns)`, with its
        codebook's."""
        blocked = {
            name
            for attr in self.protected_attributes
            if attr not in self.allowed_features
            for name in PROTECTED_FEATURES.get(attr, ())
        }
        return [f for f in available if f not in blocked]


def _date(raw: Any, where: str) -> dt.date:
    if isinstance(raw, dt.date):
        return raw
    try:
        return dt.date.fromisoformat(str(raw))
    except ValueError:
        raise ConfigError(f"{where}: {raw!r} is not a date (YYYY-MM-DD)") from None


def default_config(**overrides: Any) -> dict[str, Any]:
    """The training settings both built-in tasks start from (dates are as-of dates); a task's
    `lightgbm` overrides change only the parameters they name."""
    config: dict[str, Any] = {
        # as-of dates: every cadence step from `first` to `last` (inclusive)
        "as_of": {"first": "2021-07-01", "last": "2025-04-01"},
        # validation and test periods; a row's label window may not reach past the start of
        # the next period, so training labels never see the test period
        "split": {
            "valid_start": "2023-07-01",
            "test_start": "2025-01-01",
            "rolling_test_starts": ["2024-01-01", "2024-07-01", "2025-01-01"],
        },
        "lightgbm": {
            "objective": "binary",
            "learning_rate": 0.05,
            "num_leaves": 15,
            "max_depth": 5,
            "min_child_samples": 40,
            "feature_fraction": 0.8,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "lambda_l2": 1.0,
            "n_estimators": 400,
            "early_stopping_rounds": 40,
        },
        # caseworkers' capacity: the share of the cohort they can reach (top-k metrics, tiers)
        "capacity": 0.10,
        # audited for fairness; never model features unless allowed below with a reason
        "protected_attributes": ["sex", "ethnicity", "age_band", "district"],
        "allowed_features": {},
        # groups smaller than this are reported with their counts and CIs, never flagged
        "fairness_min_group": 30,
    }
    lightgbm = {**config["lightgbm"], **overrides.pop("lightgbm", {})}
    config.update(overrides, lightgbm=lightgbm)
    return config


def load_config(task: str, path: Path | None = None) -> TrainConfig:
    """Read a task's config; without a path, the task's default from the registry."""
    declared = get_task(task)
    if path is None:
        text = yaml.safe_dump(
            {"task": task, **default_config(**declared.training)}, sort_keys=False
        )
        source = f"the default config of task {task}"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
        source = str(path)
    cfg = _parse(text, source, task)
    _check(cfg, task)
    return cfg


def _parse(text: str, source: str, task: str) -> TrainConfig:
    """The settings of a config's text, typed; a missing or malformed one names itself."""
    declared = get_task(task)
    try:
        raw = yaml.safe_load(text) or {}
        split = raw["split"]
        mode = split.get("mode", "temporal")
        if mode not in SPLIT_MODES:
            raise ConfigError(
                f"{source}: split.mode {mode!r} is not one of {', '.join(SPLIT_MODES)}"
            )
        temporal = mode == "temporal"
        dates = raw["as_of"] if temporal or (mode == "group" and "as_of" in raw) else {}

        def date(where: dict, key: str, label: str) -> dt.date | None:
            return _date(where[key], f"{source}: {label}") if key in where or temporal else None

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
            allowed_features={
                str(k): str(v) for k, v in (raw.get("allowed_features") or {}).items()
            },
            fairness_min_group=int(raw.get("fairness_min_group", 30)),
            cadence_months=declared.cadence_months,
            label_days=declared.label_days,
            group_by=str(split.get("by", "")),
            test_group=None if split.get("test_group") is None else str(split["test_group"]),
        )
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({exc})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: missing or malformed setting {exc}") from None
    return cfg


def _check(cfg: TrainConfig, task: str) -> None:
    """Settings that are each well formed but do not fit together, or the task."""
    source, temporal, mode = cfg.source, cfg.split_mode == "temporal", cfg.split_mode
    if cfg.task != task:
        raise ConfigError(f"{source}: is for task {cfg.task!r}, not {task!r}")
    if temporal:
        first, last = cfg._dates(cfg.as_of_first, cfg.as_of_last, "as_of.first", "as_of.last")
        valid, test = cfg.split_dates()
        if not first <= valid < test <= last:
            raise ConfigError(
                f"{source}: need as_of.first <= split.valid_start < split.test_start <= as_of.last"
            )
    if mode == "group" and not GROUP_BY.fullmatch(cfg.group_by):
        raise ConfigError(
            f"{source}: split.by must name a persons column (district, sex, ethnicity, "
            "primary_substance, or any other the persons file has) or a coded assessment's "
            f"first answer as item:CODE (got {repr(cfg.group_by) if cfg.group_by else 'nothing'})"
        )
    if not temporal and not (cfg.cv_folds >= 2 and 0 < cfg.test_share < 0.5):
        raise ConfigError(f"{source}: split.folds must be at least 2 and test_share in (0, 0.5)")
    unknown = sorted(set(cfg.allowed_features) - set(cfg.protected_attributes))
    if unknown:
        raise ConfigError(
            f"{source}: allowed_features names {', '.join(unknown)}, which are not "
            "protected_attributes"
        )
    if not all(reason.strip() for reason in cfg.allowed_features.values()):
        raise ConfigError(f"{source}: every allowed feature needs its reason")
    if not 0 < cfg.capacity < 1:
        raise ConfigError(f"{source}: capacity must be a share between 0 and 1")
