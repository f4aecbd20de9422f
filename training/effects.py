"""Which support helps whom: an option's effect on each person's chance of the outcome,
estimated from the offers caseworkers recorded, with how sure the estimate is, and a refusal
where the data cannot tell.

The design. A row is a person in the task's cohort on an as_of date; the treatment is whether
the option was offered in the month after it (`features.compute.offers`), the outcome the
task's label. Offers are not random: caseworkers offer more to those at higher risk, and
districts differ. So:

- overlap first: the chance of being offered (the propensity, cross-fitted by person) must be
  neither near 0 nor near 1; rows outside [5%, 95%] are named and left out, and an option with
  too few offers, or too few inside that range, is refused, saying how many are needed;
- the effect for each person (the CATE) comes from EconML's DR-learner with LightGBM for the
  propensity, the outcome and the final stage, cross-fitted with a person's rows in one fold.
  The propensity and outcome models read every input (the confounders); the final stage reads
  only the option's own factors and the risk score (the effect modifiers a caseworker would
  name), which keeps a noisy stage small: on the synthetic city it ranks true benefit better
  than the same stage over every input. Its LightGBM model is what serving loads, so serving
  needs no EconML;
- everything said of the estimates rests on doubly-robust (AIPW) scores, cross-fitted by
  person, with intervals that treat a person's rows as one cluster: the average effect and the
  effect by group use every row; the calibration, the Qini curve and the value of targeting
  policies use the held-out persons only, whom the effect model never saw.

Effects are changes in the probability of the outcome over the label window: negative means
the option lowers the risk. Policy values are outcomes prevented per 1,000 persons of the
cohort, offering to `capacity` of each as_of's cohort.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin, clone
from sklearn.exceptions import DataConversionWarning
from sklearn.model_selection import GroupKFold

from features.core.cpus import usable_cpus
from features.core.errors import InputError

MIN_OFFERS = 200  # offers (and rows without one) inside the overlap an estimate needs
OVERLAP = (
    0.05,
    0.95,
)  # the propensities a row must have to be compared (Crump et al. 2009 use 0.1)
FOLDS = 3
MISSING = -1e9  # EconML refuses NaN: a missing value becomes a number below every real one
QINI_PERCENTILES = np.linspace(5, 95, 19)
POLICIES = ("benefit", "risk", "rule", "random", "nobody")


class Refused(InputError):
    """The data cannot tell this option's effect: too few offers, or no overlap."""


@dataclass(frozen=True)
class EffectsData:
    """The rows an option is judged on, in the risk model's encoding."""

    X: np.ndarray  # float32, NaN for missing
    y: np.ndarray  # the task's label, 0/1
    persons: np.ndarray  # person_id per row: the cluster
    as_of: np.ndarray  # the row's as_of: policies offer to a share of each date's cohort
    risk: np.ndarray  # the risk model's score: the risk-ranking policy
    held_out: np.ndarray  # bool: persons the effect model never sees
    groups: pd.DataFrame  # columns to report the effect by (district, age band, factors)
    modifiers: list[int]  # the option's own factors: columns of X the final stage reads


@dataclass
class OptionEffects:
    code: str
    rows: int
    offered: int
    # person_id, as_of, propensity of rows outside the overlap, by their position in the data
    excluded: pd.DataFrame
    ate: tuple[float, float, float]  # estimate, 95% low, high
    by_group: pd.DataFrame  # dimension, group, rows, offered, effect, low, high
    calibration: pd.DataFrame  # bin, rows, estimated, doubly_robust, low, high
    qini: pd.DataFrame  # share_offered, gain, low, high
    qini_area: tuple[float, float, float]
    policies: pd.DataFrame  # policy, offered, prevented_per_1000, low, high
    benefit_vs_risk: tuple[float, float, float]  # prevented per 1,000: benefit minus risk
    booster: lgb.Booster  # reads effect_inputs(X, modifiers, risk)
    held_out_estimates: np.ndarray = field(repr=False)  # the CATE of the held-out kept rows
    held_out_index: np.ndarray = field(repr=False)  # their positions in the data

    @property
    def detectable(self) -> bool:
        """The average effect's interval leaves out 0."""
        return self.ate[1] > 0 or self.ate[2] < 0

    @property
    def serve(self) -> bool:
        """The gate: offering by estimated benefit prevents outcomes (its interval above 0)
        and more than offering by risk, on persons the model never saw."""
        prevented = self.policies.set_index("policy").loc["benefit"]
        return bool(prevented["low"] > 0 and self.benefit_vs_risk[0] > 0)

    def verdict(self) -> str:
        if not self.detectable:
            return "no detectable effect: the average effect's 95% interval includes 0"
        if self.serve:
            return (
                "served: offering by estimated benefit beats offering by risk on held-out persons"
            )
        return (
            "not served: offering by estimated benefit does not beat offering by risk on "
            "held-out persons"
        )


def _models(
    seed: int, rows: int = 0
) -> tuple[lgb.LGBMClassifier, lgb.LGBMClassifier, lgb.LGBMRegressor]:
    """Propensity, outcome and final-stage models: small, regularised LightGBM, since offers
    and outcomes are noisy and the doubly-robust pseudo-outcomes noisier still: the final
    stage's leaves hold at least 8% of its `rows` (tried on the synthetic city: leaves of 400
    rows, 7 leaves and 200 rounds ranked true benefit at Spearman 0.24 for skills training,
    these 0.40)."""
    common: dict[str, Any] = dict(verbose=-1, n_jobs=usable_cpus(), random_state=seed)
    nuisance: dict[str, Any] = dict(
        n_estimators=150, learning_rate=0.05, num_leaves=15, min_child_samples=100
    )
    final = lgb.LGBMRegressor(
        n_estimators=100,
        learning_rate=0.02,
        num_leaves=4,
        min_child_samples=max(100, int(0.08 * rows)),
        reg_lambda=100.0,
        **common,
    )
    return lgb.LGBMClassifier(**nuisance, **common), lgb.LGBMClassifier(**nuisance, **common), final


def _filled(X: np.ndarray) -> np.ndarray:
    return np.nan_to_num(X, nan=MISSING)


def effect_inputs(X: np.ndarray, columns: list[int], risk: np.ndarray) -> np.ndarray:
    """The final-stage model's input: the option's own factors (`columns` of the risk model's
    encoding) and the risk model's raw score, missing values filled as in training (serving
    calls this too)."""
    return _filled(np.column_stack([X[:, columns], risk]))


def _folds(persons: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(GroupKFold(FOLDS).split(persons, groups=persons))


def _propensity(X: np.ndarray, t: np.ndarray, persons: np.ndarray, seed: int) -> np.ndarray:
    """The chance of being offered and of not, (n, 2) in EconML's layout, cross-fitted with a
    person's rows in one fold: no row's own offer informs its chance."""
    model: ClassifierMixin = _models(seed)[0]
    prop = np.zeros((len(t), 2))
    for train, test in _folds(persons):
        prop[test] = clone(model).fit(X[train], t[train]).predict_proba(X[test])
    return prop


def _nuisances(
    X: np.ndarray, t: np.ndarray, y: np.ndarray, persons: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-fitted (by person) outcome predictions without and with the offer, and the
    propensity, as (n, 2) arrays in EconML's layout."""
    out_model = _models(seed)[1]
    reg = np.zeros((len(y), 2))
    for train, test in _folds(persons):
        for arm in (0, 1):
            rows = train[t[train] == arm]
            if y[rows].min() == y[rows].max():  # one class in this arm and fold
                reg[test, arm] = y[rows][0] if len(rows) else y[train].mean()
                continue
            reg[test, arm] = clone(out_model).fit(X[rows], y[rows]).predict_proba(X[test])[:, 1]
    return reg, _propensity(X, t, persons, seed)


def cluster_mean(values: np.ndarray, clusters: np.ndarray) -> tuple[float, float, float]:
    """A mean with its 95% interval, a person's rows counted as one cluster (CR1)."""
    import statsmodels.api as sm

    if len(values) < 2:
        v = float(values.mean()) if len(values) else float("nan")
        return v, float("nan"), float("nan")
    codes = pd.factorize(clusters)[0]
    fit = sm.OLS(values, np.ones(len(values))).fit(cov_type="cluster", cov_kwds={"groups": codes})
    lo, hi = fit.conf_int(0.05)[0]
    return float(fit.params[0]), float(lo), float(hi)


def _top_share(order_key: np.ndarray, as_of: np.ndarray, capacity: float) -> np.ndarray:
    """Who is offered when each date's cohort offers to its `capacity` share with the highest
    key (ties broken by position, so the choice is reproducible)."""
    chosen = np.zeros(len(order_key), bool)
    for day in pd.unique(as_of):
        rows = np.flatnonzero(as_of == day)
        k = int(round(capacity * len(rows)))
        if k:
            chosen[rows[np.argsort(-order_key[rows], kind="stable")[:k]]] = True
    return chosen


def _policies(
    dr: np.ndarray,
    cate: np.ndarray,
    risk: np.ndarray,
    rule: np.ndarray,
    as_of: np.ndarray,
    persons: np.ndarray,
    capacity: float,
) -> tuple[pd.DataFrame, tuple[float, float, float]]:
    """Outcomes prevented per 1,000 persons by each way of choosing whom to offer, from the
    doubly-robust scores (dr = estimated change in the outcome if offered)."""
    rule_key = np.where(rule, risk, -np.inf)
    chosen = {
        "benefit": _top_share(-cate, as_of, capacity),
        "risk": _top_share(risk, as_of, capacity),
        "rule": _top_share(rule_key, as_of, capacity) & rule,
    }
    rows = []
    for name, sel in chosen.items():
        est, lo, hi = cluster_mean(-1000 * sel * dr, persons)
        rows.append((name, int(sel.sum()), est, lo, hi))
    est, lo, hi = cluster_mean(-1000 * capacity * dr, persons)
    rows.append(("random", int(round(capacity * len(dr))), est, lo, hi))
    rows.append(("nobody", 0, 0.0, 0.0, 0.0))
    table = pd.DataFrame(rows, columns=["policy", "offered", "prevented_per_1000", "low", "high"])
    diff = cluster_mean(-1000 * (chosen["benefit"].astype(float) - chosen["risk"]) * dr, persons)
    return table, diff


def _calibration(
    cate_train: np.ndarray, cate: np.ndarray, dr: np.ndarray, persons: np.ndarray, bins: int = 5
) -> pd.DataFrame:
    """Estimated against doubly-robust effect by quantile of the estimate (cut on the training
    rows' estimates): where the model says an option helps more, does it?"""
    cuts = np.quantile(cate_train, np.linspace(0, 1, bins + 1)[1:-1])
    which = np.searchsorted(cuts, cate, side="right")
    rows = []
    for b in range(bins):
        inside = which == b
        est, lo, hi = cluster_mean(dr[inside], persons[inside])
        estimated = float(cate[inside].mean()) if inside.any() else float("nan")
        rows.append((b + 1, int(inside.sum()), estimated, est, lo, hi))
    return pd.DataFrame(rows, columns=["bin", "rows", "estimated", "doubly_robust", "low", "high"])


def _by_group(
    groups: pd.DataFrame, t: np.ndarray, dr: np.ndarray, persons: np.ndarray
) -> pd.DataFrame:
    rows = []
    for dim in groups.columns:
        values = groups[dim].astype(object).where(groups[dim].notna(), "(unknown)")
        for value in sorted(values.unique(), key=str):
            inside = (values == value).to_numpy()
            est, lo, hi = cluster_mean(dr[inside], persons[inside])
            rows.append((dim, str(value), int(inside.sum()), int(t[inside].sum()), est, lo, hi))
    return pd.DataFrame(
        rows, columns=["dimension", "group", "rows", "offered", "effect", "low", "high"]
    )


def _qini(
    cate_train: np.ndarray, cate: np.ndarray, dr: np.ndarray, seed: int
) -> tuple[pd.DataFrame, tuple[float, float, float]]:
    """EconML's Qini curve of the held-out rows ranked by estimated benefit: the outcomes
    prevented beyond random choice when offering to the top share, and its area (0 when the
    ranking finds nothing)."""
    from econml.validate.utils import calc_uplift

    state = np.random.get_state()
    np.random.seed(seed)  # calc_uplift's bootstrap draws from the global generator
    try:  # a share where every estimate ties has no spread: its band is not drawn
        with np.errstate(invalid="ignore", divide="ignore"):
            area, se, curve = calc_uplift(
                -cate_train, -cate, -dr, QINI_PERCENTILES, "qini", n_bootstrap=200
            )
    finally:
        np.random.set_state(state)
    table = pd.DataFrame(
        {
            "share_offered": curve["Percentage treated"].to_numpy() / 100,
            "gain": curve["value"].to_numpy(),
            "low": curve["value"].to_numpy() - 1.96 * curve["err"].to_numpy(),
            "high": curve["value"].to_numpy() + 1.96 * curve["err"].to_numpy(),
        }
    )
    return table, (float(area), float(area - 1.96 * se), float(area + 1.96 * se))


def _overlap(
    data: EffectsData, t: np.ndarray, code: str, X: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The cross-fitted propensity and which rows lie inside the overlap; refuses an option
    with too few offers, or too few inside it."""
    offered = int(t.sum())
    if offered < MIN_OFFERS or len(t) - offered < MIN_OFFERS:
        raise Refused(
            f"{code}: {offered:,} of {len(t):,} cohort rows were offered it; estimating an "
            f"effect needs at least {MIN_OFFERS} rows offered it and {MIN_OFFERS} not"
        )
    propensity = _propensity(X, t, data.persons, seed)[:, 1]
    keep = (propensity >= OVERLAP[0]) & (propensity <= OVERLAP[1])
    kept_offers = int(t[keep].sum())
    if kept_offers < MIN_OFFERS or int((~t[keep].astype(bool)).sum()) < MIN_OFFERS:
        raise Refused(
            f"{code}: no overlap: only {kept_offers:,} offered rows have a chance of being "
            f"offered between {OVERLAP[0]:.0%} and {OVERLAP[1]:.0%}; at least {MIN_OFFERS} are "
            "needed, with as many not offered"
        )
    return propensity, keep


def estimate(
    data: EffectsData,
    treated: np.ndarray,
    code: str,
    rule: np.ndarray,
    capacity: float = 0.10,
    seed: int = 0,
) -> OptionEffects:
    """One option's effects: overlap, the DR-learner's CATE, and what the doubly-robust scores
    say of it (see the module's docstring). Raises Refused when the data cannot tell."""
    from econml.dr import DRLearner

    t = np.asarray(treated, int)
    X = _filled(data.X)
    propensity, keep = _overlap(data, t, code, X, seed)
    # indexed by the row's position in the data, which the benchmark reads
    excluded = pd.DataFrame(
        {"person_id": data.persons, "as_of": data.as_of, "propensity": propensity}
    )[~keep]
    idx = np.flatnonzero(keep)
    Xk, tk, yk, pk = X[idx], t[idx], data.y[idx], data.persons[idx]
    reg, prop = _nuisances(Xk, tk, yk, pk, seed)
    from econml.validate.utils import calculate_dr_outcomes

    dr = calculate_dr_outcomes(tk, yk, reg, prop)[:, 0]
    fit_rows = ~data.held_out[idx]
    prop_model, out_model, final = _models(seed, int(fit_rows.sum()))
    learner = DRLearner(
        model_propensity=prop_model,
        model_regression=out_model,
        model_final=final,
        discrete_outcome=True,
        cv=FOLDS,
        min_propensity=OVERLAP[0],
        random_state=seed,
    )
    modifiers = effect_inputs(data.X[idx], data.modifiers, data.risk[idx])
    with warnings.catch_warnings():  # EconML hands scikit-learn column vectors: not ours
        warnings.simplefilter("ignore", DataConversionWarning)
        learner.fit(
            yk[fit_rows], tk[fit_rows], X=modifiers[fit_rows], W=Xk[fit_rows], groups=pk[fit_rows]
        )
    booster = learner.model_cate(T=1).booster_
    cate = booster.predict(modifiers)
    val = ~fit_rows
    policies, diff = _policies(
        dr[val],
        cate[val],
        data.risk[idx][val],
        rule[idx][val],
        data.as_of[idx][val],
        pk[val],
        capacity,
    )
    qini, area = _qini(cate[fit_rows], cate[val], dr[val], seed)
    return OptionEffects(
        code=code,
        rows=len(t),
        offered=int(t.sum()),
        excluded=excluded,
        ate=cluster_mean(dr, pk),
        by_group=_by_group(data.groups.iloc[idx].reset_index(drop=True), tk, dr, pk),
        calibration=_calibration(cate[fit_rows], cate[val], dr[val], pk[val]),
        qini=qini,
        qini_area=area,
        policies=policies,
        benefit_vs_risk=diff,
        booster=booster,
        held_out_estimates=cate[val],
        held_out_index=idx[val],
    )
