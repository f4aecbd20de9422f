"""A plain logistic regression, beside the task's own one-rule baseline (`Task.baseline`).

A model earns its place only if it beats both on the same test rows.
"""

from __future__ import annotations

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from features.spec import FEATURES_BY_NAME


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
