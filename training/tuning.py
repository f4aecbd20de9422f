"""Optional hyper-parameter search with Optuna, each trial reported to a callback (MLflow)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
import pandas as pd

from features.spec import feature_columns
from training.config import TrainConfig
from training.metrics import auroc
from training.splits import Split, temporal_split
from training.trainer import held_out


def _search_splits(frame: pd.DataFrame, y: np.ndarray, config: TrainConfig) -> list[Split]:
    """What a trial is scored on, by the configured split mode: the validation period, or
    the cross-validation folds of the development set (the test set is never seen)."""
    if config.split_mode != "temporal":
        return held_out(frame, y, config)[1]
    return [temporal_split(frame["as_of"], *config.split_dates(), config.label_days)]


def tune(
    frame: pd.DataFrame,
    config: TrainConfig,
    trials: int,
    raw: Callable[[Any, np.ndarray], np.ndarray],
    on_trial: Callable[[int, dict[str, Any], float], None] | None = None,
    seed: int = 0,
) -> TrainConfig:
    """Search scored by validation AUROC (mean over folds in cv mode); returns the tuned
    config. `raw(booster, rows)` scores rows through the deployed model's path."""
    from training.trainer import _fit  # the same fit as the final model

    X = frame[config.model_features(feature_columns(frame.columns))]
    y = frame["label"].to_numpy().astype(int)
    splits = _search_splits(frame, y, config)

    def objective(trial: optuna.Trial) -> float:
        params = {
            **config.lightgbm,
            "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 7, 63, log=True),
            "max_depth": trial.suggest_int("max_depth", 3, 8),
            "min_child_samples": trial.suggest_int("min_child_samples", 10, 200, log=True),
            "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
            "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
        }
        trial_config = dataclasses.replace(config, lightgbm=params)
        scores = []
        for split in splits:
            booster = _fit(trial_config, X, y, split, constrained=True)
            scores.append(auroc(y[split.valid], raw(booster, split.valid)))
        score = float(np.nanmean(scores)) if np.isfinite(scores).any() else float("nan")
        if on_trial:
            on_trial(trial.number, trial.params, score)
        return score if np.isfinite(score) else 0.0

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials)
    return dataclasses.replace(config, lightgbm={**config.lightgbm, **study.best_params})
