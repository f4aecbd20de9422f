"""Behavioural tests of a trained model, in the spirit of CheckList.

- direction: raising an agreed risk factor never lowers the score (and a protective one never
  raises it);
- invariance: changing a protected attribute, which is not a feature, changes nothing;
- minimum function: clear-cut profiles rank as any caseworker would expect.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from features.spec import FEATURES_BY_NAME

Scorer = Callable[[pd.DataFrame], np.ndarray]

CLEAR_CASES = {
    "relapse": (
        {  # high risk
            "checkin_missed__count_90d": 6,
            "checkin_missed__count_30d": 2,
            "checkin_adherence_90d": 0.0,
            "urine_test__mean_90d": 1.0,
            "urine_test__max_90d": 1.0,
            "days_since_positive_test": 10,
            "contact_known_user__count_90d": 3,
            "contact_known_user__days_since": 5,
            "employed_now": 0,
            "family_support_contact__count_90d": 0,
        },
        {  # low risk
            "checkin_missed__count_90d": 0,
            "checkin_missed__count_30d": 0,
            "checkin_adherence_90d": 1.0,
            "urine_test__mean_90d": 0.0,
            "urine_test__max_90d": 0.0,
            "contact_known_user__count_90d": 0,
            "employed_now": 1,
            "training_certificate__count_all": 1,
            "family_support_contact__count_90d": 3,
            "family_support_contact__days_since": 10,
        },
    ),
    "youth_uptake": (
        {
            "left_behind_status__last": 1,
            "family_drug_record__count_all": 1,
            "contact_known_user__count_90d": 3,
            "contact_known_user__days_since": 5,
            "venue_encounter__count_90d": 2,
            "venue_encounter__days_since": 10,
            "school_dropout__count_all": 1,
            "school_discipline__count_180d": 2,
        },
        {
            "left_behind_status__last": 0,
            "family_drug_record__count_all": 0,
            "contact_known_user__count_90d": 0,
            "venue_encounter__count_90d": 0,
            "school_dropout__count_all": 0,
            "school_discipline__count_180d": 0,
            "prevention_class__count_365d": 3,
            "family_support_contact__count_90d": 3,
        },
    ),
}


def _with(template: pd.DataFrame, values: dict[str, float]) -> pd.DataFrame:
    out = template.copy()
    for k, v in values.items():
        if k in out:
            out[k] = np.float32(v)
    return out


def run_checks(
    score: Scorer, sample: pd.DataFrame, task: str, protected: pd.DataFrame
) -> list[dict]:
    """Run every check; `score` must select its own features from the frame it is given."""
    results = []
    for name in sample.columns:
        f = FEATURES_BY_NAME[name]
        if not f.monotone:
            continue
        # missing values take a learned branch, not an ordered one: start from observed values
        col = sample[name].astype(float).fillna(0.0)
        step = max(1.0, float(col.std()))
        start, raised = sample.copy(), sample.copy()
        start[name] = col.astype(np.float32)
        raised[name] = (col + step).astype(np.float32)
        change = (score(raised) - score(start)) * f.monotone
        worst = float(change.min())
        results.append(
            {
                "check": f"direction: {name}",
                "passed": worst >= -1e-9,
                "detail": f"raised by {step:.3g}; worst change in its direction {worst:+.3g}",
            }
        )
    # the scorer is handed the protected attributes too, as a caller might; it must ignore them
    with_attrs = pd.concat(
        [sample.reset_index(drop=True), protected.reset_index(drop=True)], axis=1
    )
    changed = with_attrs.copy()
    for col in protected.columns:
        changed[col] = np.roll(changed[col].to_numpy(), 1)
    same = bool(np.array_equal(score(with_attrs), score(changed)))
    results.append(
        {
            "check": "invariance: changing protected attributes changes no score",
            "passed": same,
            "detail": f"rotated {', '.join(protected.columns)} across rows; identical: {same}",
        }
    )
    high, low = CLEAR_CASES[task]
    template = sample.iloc[[0]].copy()
    for c in template.columns:
        if not FEATURES_BY_NAME[c].categorical:
            values = sample[c].astype(float).dropna()
            template[c] = np.float32(values.median()) if len(values) else np.nan
    s_high, s_low = score(_with(template, high))[0], score(_with(template, low))[0]
    results.append(
        {
            "check": "minimum function: clear high-risk profile above clear low-risk profile",
            "passed": bool(s_high > s_low),
            "detail": f"high {s_high:.3f} vs low {s_low:.3f}",
        }
    )
    return results
