"""What a programme would do without a model, and a plain logistic regression.

A model earns its place only if it beats both on the same test rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from features.spec import FEATURES_BY_NAME


def _col(frame: pd.DataFrame, name: str) -> np.ndarray:
    return (
        frame[name].astype(float).fillna(0.0).to_numpy() if name in frame else np.zeros(len(frame))
    )


def one_rule_score(frame: pd.DataFrame, task: str) -> np.ndarray:
    """relapse: positive tests plus missed check-ins in the last 90 days.
    youth_uptake: the number of risk flags on record."""
    if task == "relapse":
        positives = _col(frame, "urine_test__count_90d") * _col(frame, "urine_test__mean_90d")
        return positives + _col(frame, "checkin_missed__count_90d")
    flags = [
        _col(frame, "left_behind_status__last") > 0,
        _col(frame, "family_drug_record__count_all") > 0,
        _col(frame, "contact_known_user__count_90d") > 0,
        _col(frame, "venue_encounter__count_90d") > 0,
        _col(frame, "school_absence__max_30d") >= 5,
        _col(frame, "school_discipline__count_180d") > 0,
        _col(frame, "school_dropout__count_all") > 0,
    ]
    return np.sum(flags, axis=0).astype(float)


def logistic_regression(features: list[str]):
    """Median-imputed, standardised numbers and one-hot categories into an L2 logistic model."""
    cats = [f for f in features if FEATURES_BY_NAME[f].categorical]
    nums = [f for f in features if f not in cats]
    pre = ColumnTransformer(
        [
            (
                "num",
                make_pipeline(
                    SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                    StandardScaler(),
                ),
                nums,
            ),
            ("cat", OneHotEncoder(handle_unknown="ignore"), cats),
        ]
    )
    return make_pipeline(pre, LogisticRegression(C=0.1, max_iter=2000))


def as_logit_input(frame: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Categories as strings with an explicit 'missing', which the one-hot encoder needs."""
    out = frame[features].copy()
    for f in features:
        if FEATURES_BY_NAME[f].categorical:
            out[f] = out[f].astype(object).where(out[f].notna(), "missing").astype(str)
    return out
