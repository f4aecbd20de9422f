"""Optional hyper-parameter search with Optuna, each trial reported to a callback (MLflow)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
import pandas as pd

from features.spec import FEATURE_NAMES
from training.config import TrainConfig
from training.metrics import auroc
from training.splits import temporal_split


def tune(
    frame: pd.DataFrame,
    config: TrainConfig,
    trials: int,
    on_trial: Callable[[int, dict[str, Any], float], None] | None = None,
    seed: int = 0,
) -> TrainConfig:
    """Search on the training part, scored by validation AUROC; returns the tuned config."""
    from training.trainer import _fit  # the same fit as the final model

    X = frame[list(FEATURE_NAMES)]
    y = frame["label"].to_numpy().astype(int)
    split = temporal_split(frame["as_of"], config.valid_start, config.test_start)

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
        booster = _fit(trial_config, X, y, split, constrained=True)
        score = auroc(y[split.valid], booster.predict(X[split.valid], raw_score=True))
        if on_trial:
            on_trial(trial.number, params, score)
        return score if np.isfinite(score) else 0.0

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials)
    return dataclasses.replace(config, lightgbm={**config.lightgbm, **study.best_params})
