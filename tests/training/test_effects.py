"""Effect estimation on hand-made data whose truth is known: the average and group effects
with their intervals, overlap, refusals, and the policies at capacity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.effects import MIN_OFFERS, EffectsData, Refused, estimate


def _data(n_persons=3000, effect=-0.25, offer=None, seed=1):
    """Two rows per person; x0 > 0 marks who the option helps (by `effect` on a 0.4 chance),
    x1 drives the risk, and the offer is random (chance 0.35) unless `offer` says otherwise."""
    rng = np.random.default_rng(seed)
    n = 2 * n_persons
    X = rng.normal(size=(n, 4)).astype(np.float32)
    X[rng.random((n, 4)) < 0.05] = np.nan
    persons = np.repeat(np.array([f"P{i:05d}" for i in range(n_persons)]), 2)
    t = (rng.random(n) < 0.35) if offer is None else offer(X, rng)
    helped = np.nan_to_num(X[:, 0]) > 0
    base = 0.25 + 0.15 * (np.nan_to_num(X[:, 1]) > 0)
    y = (rng.random(n) < base + effect * t * helped).astype(int)
    as_of = np.tile(np.array(["2024-01-01", "2024-04-01"], dtype="datetime64[D]"), n_persons)
    held = np.repeat(rng.random(n_persons) < 0.5, 2)
    data = EffectsData(
        X=X,
        y=y,
        persons=persons,
        as_of=as_of,
        risk=np.nan_to_num(X[:, 1]),
        held_out=held,
        groups=pd.DataFrame({"helped": np.where(helped, "yes", "no")}),
        modifiers=[0],
    )
    return data, t, helped


@pytest.fixture(scope="module")
def planted():
    data, t, helped = _data()
    return estimate(data, t, "x", rule=np.zeros(len(t), bool), capacity=0.2), helped


def test_average_effect_covers_the_planted_one(planted):
    r, helped = planted
    true = -0.25 * helped.mean()  # about -0.125
    est, lo, hi = r.ate
    assert lo < true < hi
    assert hi < 0 and r.detectable


def test_effect_by_group_finds_who_it_helps(planted):
    r, _ = planted
    g = r.by_group.set_index("group")
    assert g.loc["yes", "high"] < -0.1 and g.loc["yes", "low"] > -0.4
    assert g.loc["no", "low"] < 0 < g.loc["no", "high"]
    assert g["rows"].sum() == r.rows


def test_targeting_by_benefit_beats_risk_and_is_served(planted):
    r, _ = planted
    p = r.policies.set_index("policy")
    # the top 20% by estimated benefit are nearly all helped: about 0.2 * 0.25 * 1000 = 50
    assert p.loc["benefit", "prevented_per_1000"] > 35
    assert p.loc["benefit", "low"] > p.loc["risk", "prevented_per_1000"]
    assert p.loc["nobody", "prevented_per_1000"] == 0
    assert r.benefit_vs_risk[1] > 0
    assert r.serve
    assert r.qini_area[1] > 0  # the ranking finds real heterogeneity
    # calibration: the bin the model ranks most helped shows the largest doubly-robust effect
    cal = r.calibration
    assert cal.loc[cal["estimated"].idxmin(), "doubly_robust"] < cal["doubly_robust"].max()


def test_an_option_that_helps_nobody_has_no_detectable_effect():
    data, t, _ = _data(effect=0.0, seed=2)
    r = estimate(data, t, "none", rule=np.zeros(len(t), bool))
    assert r.ate[1] < 0 < r.ate[2]
    assert not r.detectable
    assert "no detectable effect" in r.verdict()


def test_too_few_offers_are_refused_saying_how_many_are_needed():
    data, _, _ = _data(n_persons=600, seed=3)
    t = np.zeros(len(data.y), bool)
    t[:50] = True
    with pytest.raises(Refused, match=rf"50 of 1,200 .* at least {MIN_OFFERS}"):
        estimate(data, t, "rare", rule=t)


def test_no_overlap_is_refused():
    """Offered exactly when x2 > 0: the propensity is 0 or 1, so no one can be compared."""
    data, t, _ = _data(offer=lambda X, rng: np.nan_to_num(X[:, 2]) > 0, seed=4)
    with pytest.raises(Refused, match="no overlap"):
        estimate(data, t, "by_rule", rule=t)


def test_rows_outside_the_overlap_are_named_and_left_out():
    """Those with x3 > 1.5 (about 7%) are never offered: outside the overlap, by name."""
    data, t, _ = _data(
        offer=lambda X, rng: (rng.random(len(X)) < 0.35) & ~(np.nan_to_num(X[:, 3]) > 1.5),
        seed=5,
    )
    r = estimate(data, t, "x", rule=np.zeros(len(t), bool))
    never = np.nan_to_num(data.X[:, 3]) > 1.5
    named = set(zip(r.excluded["person_id"], r.excluded["as_of"], strict=True))
    assert len(named) >= 0.7 * never.sum()
    rows = set(zip(data.persons[never], data.as_of[never], strict=True))
    assert len(named & rows) >= 0.9 * len(named)
    assert r.rows == len(t) and len(r.excluded) < len(t)
