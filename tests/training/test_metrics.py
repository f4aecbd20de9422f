"""Metrics, calibration, splits and fairness against values worked out by hand."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.isotonic import IsotonicRegression

from training.calibration import Calibrator, choose_calibrator, fit_calibrator
from training.fairness import fairness_table, flag_top, ratio, wilson, worst_disparity
from training.metrics import auroc, brier, calibration_bins, capture_at_top, ece, evaluate
from training.splits import rolling_splits, temporal_split

Y = np.array([1, 0, 1, 0, 0, 1, 0, 0, 0, 0])
P = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])


def test_capture_at_top_precision_and_recall():
    assert capture_at_top(Y, P, 0.10) == (1.0, pytest.approx(1 / 3))  # k = 1: the 0.9, a positive
    assert capture_at_top(Y, P, 0.20) == (0.5, pytest.approx(1 / 3))  # k = 2
    assert capture_at_top(Y, P, 0.30) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert capture_at_top(Y, P, 0.01) == (1.0, pytest.approx(1 / 3))  # at least one row
    assert capture_at_top(Y, P, 0.60) == (0.5, 1.0)  # k = 6 holds all three positives


def test_auroc_brier_and_ece_by_hand():
    # positives at ranks 1, 3, 6 of 10: pairs won = 7 + 6 + 4 = 17 of 21
    assert auroc(Y, P) == pytest.approx(17 / 21)
    assert brier([0, 1], [0.2, 0.6]) == pytest.approx((0.04 + 0.16) / 2)
    y, p = np.array([0, 1, 1, 1]), np.array([0.15, 0.15, 0.85, 0.85])
    # bin 0.1-0.2: predicted .15, observed .5; bin 0.8-0.9: predicted .85, observed 1
    assert ece(y, p) == pytest.approx(0.5 * 0.35 + 0.5 * 0.15)
    assert [(b["n"], b["observed"]) for b in calibration_bins(y, p)] == [(2, 0.5), (2, 1.0)]
    perfect = evaluate(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]), with_ci=False)
    assert perfect["auroc"] == 1.0 and perfect["precision_top20"] == 1.0


def test_bootstrap_ci_brackets_the_estimate():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p = y * 0.3 + rng.random(400)
    m = evaluate(y, p)
    assert m["auroc_ci_low"] < m["auroc"] < m["auroc_ci_high"]
    assert m["auroc_ci_high"] - m["auroc_ci_low"] < 0.2


def test_calibrators_store_plain_numbers_and_match_sklearn():
    rng = np.random.default_rng(1)
    raw = rng.normal(0, 1, 2000)
    y = (rng.random(2000) < 1 / (1 + np.exp(-(2 * raw - 1)))).astype(int)
    platt = fit_calibrator("platt", raw, y)
    assert platt.params["slope"][0] == pytest.approx(2.0, abs=0.25)
    assert platt.params["intercept"][0] == pytest.approx(-1.0, abs=0.2)
    iso = fit_calibrator("isotonic", raw, y)
    # sklearn's steps, each shrunk towards the base rate: never 0 or 1
    ref = IsotonicRegression(out_of_bounds="clip").fit(raw, y)
    assert ref.predict([-4, 4]).tolist() == [0.0, 1.0]
    grid = np.linspace(-4, 4, 50)
    got = iso.transform(grid)
    assert got.min() > 0 and got.max() < 1 and (np.diff(got) >= 0).all()
    assert np.abs(got - ref.predict(grid)).max() < 0.1  # the same map but at its ends
    again = Calibrator.from_dict(iso.to_dict())
    assert np.array_equal(again.transform(grid), iso.transform(grid))
    chosen, scores = choose_calibrator(raw, y)
    assert chosen.method == min(scores, key=scores.get)
    assert set(scores) == {"isotonic", "platt"}


def test_isotonic_steps_are_shrunk_towards_the_base_rate_by_hand():
    # PAV on 0, 0, 1, 0, 1, 1 makes three steps of two: rates 0, 1/2 and 1; with one person
    # more at the base rate (1/2), (events + 1/2) / (persons + 1): 1/6, 1/2 and 5/6
    cal = fit_calibrator("isotonic", np.arange(6.0), np.array([0, 0, 1, 0, 1, 1]))
    assert cal.params["x"] == [0, 1, 2, 3, 4, 5]
    assert cal.params["y"] == pytest.approx([1 / 6, 1 / 6, 1 / 2, 1 / 2, 5 / 6, 5 / 6])
    got = cal.transform(np.array([-1, 0.5, 1.5, 9]))
    assert got == pytest.approx([1 / 6, 1 / 6, 1 / 3, 5 / 6])  # clipped, flat, between steps
    # one person without the event, 20 with one event among them, then 10 with it: steps of
    # 0, 1/20 and 1; the base rate is 11/31, so (0 + b) / 2 and (1 + b) / 21 are out of order
    # and pooled by persons into one step
    cal = fit_calibrator("isotonic", np.arange(31.0), np.r_[0, 1, np.zeros(19), np.ones(10)])
    b = 11 / 31
    pooled = (1 * b / 2 + 20 * (1 + b) / 21) / 21
    got = cal.transform(np.array([0, 10, 20, 21, 30]))
    assert got == pytest.approx([pooled] * 3 + [(10 + b) / 11] * 2)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-5, 5), st.integers(0, 1)), min_size=2, max_size=60).filter(
        lambda rows: len({y for _, y in rows}) == 2
    )
)
def test_an_isotonic_map_is_ordered_and_never_certain(rows):
    raw = np.array([x for x, _ in rows], float)  # ties too
    y = np.array([y for _, y in rows])
    got = fit_calibrator("isotonic", raw, y).transform(np.linspace(-6, 6, 121))
    assert (np.diff(got) >= -1e-12).all()
    assert got.min() > 0 and got.max() < 1
    # a step of n persons moves by at most max(b, 1 - b) / (n + 1) from sklearn's (b, the
    # base rate), under a half (pooled again, it stays between its steps' rates)
    ref = IsotonicRegression(out_of_bounds="clip").fit(raw, y).predict(np.linspace(-6, 6, 121))
    assert np.abs(got - ref).max() < 0.5


def test_temporal_split_keeps_training_labels_out_of_the_test_period():
    dates = pd.Series(pd.date_range("2021-01-01", "2025-04-01", freq="QS").date)
    s = temporal_split(dates, dt.date(2023, 7, 1), dt.date(2025, 1, 1))
    train, valid, test = dates[s.train], dates[s.valid], dates[s.test]
    assert train.max() == dt.date(2023, 4, 1) and train.min() == dt.date(2021, 1, 1)
    assert (valid.min(), valid.max()) == (dt.date(2023, 7, 1), dt.date(2024, 1, 1))
    assert list(test) == [dt.date(2025, 1, 1), dt.date(2025, 4, 1)]
    assert s.purged == 3  # 2024-04, -07, -10: their windows reach into 2025
    ends = pd.to_datetime(pd.concat([train, valid])) + pd.Timedelta(days=365)
    assert (ends <= pd.Timestamp("2025-01-01")).all()
    rolled = rolling_splits(
        dates, dt.date(2023, 7, 1), dt.date(2025, 1, 1), (dt.date(2024, 1, 1), dt.date(2025, 1, 1))
    )
    first = rolled[0][1]
    assert list(dates[first.test]) == [
        dt.date(2024, 1, 1),
        dt.date(2024, 4, 1),
        dt.date(2024, 7, 1),
        dt.date(2024, 10, 1),
    ]
    assert dates[first.train | first.valid].max() == dt.date(2023, 1, 1)


def test_fairness_table_on_constructed_disparity():
    # group A: 100 rows, 20 flagged; group B: 50 rows, 20 flagged -> flag-rate ratio 2.0
    p = np.r_[np.full(20, 0.9), np.full(80, 0.1), np.full(20, 0.9), np.full(30, 0.1)]
    y = np.r_[
        np.ones(10),
        np.zeros(10),
        np.ones(10),
        np.zeros(70),
        np.ones(10),
        np.zeros(10),
        np.zeros(30),
    ]
    groups = pd.DataFrame({"district": ["A"] * 100 + ["B"] * 50})
    share = 40 / 150
    assert (flag_top(p, share) == (p == 0.9)).all()
    t = fairness_table(groups, y, p, p, share).set_index("group")
    assert t.loc["A", "reference"] == "A"
    assert t.loc["A", "flag_rate"] == pytest.approx(0.2)
    assert t.loc["B", "flag_rate"] == pytest.approx(0.4)
    assert t.loc["B", "flag_rate_ratio"] == pytest.approx(2.0)
    assert t.loc["A", "tpr"] == pytest.approx(0.5)  # 10 of 20 positives flagged
    assert t.loc["B", "tpr"] == pytest.approx(1.0)
    assert t.loc["B", "fpr"] == pytest.approx(10 / 40)
    assert t.loc["A", "fpr"] == pytest.approx(10 / 80)
    assert t.loc["B", "precision"] == pytest.approx(0.5)
    # on rates smoothed by half a count: flag rate (20.5/51) / (20.5/101), the largest
    assert worst_disparity(t.reset_index()) == pytest.approx(101 / 51)
    # the same groups ten times over: the intervals narrow around the same ratios
    big = fairness_table(
        pd.concat([groups] * 10), np.tile(y, 10), np.tile(p, 10), np.tile(p, 10), share
    ).set_index("group")
    beyond = set(big.loc["B", "rates_beyond_four_fifths"].split(","))
    assert beyond == {"flag_rate", "tpr", "fpr"}  # precision: ratio 1.0
    assert big.loc["B", "flag_rate_ratio_ci_low"] > 1.25
    assert big.loc["B", "precision_ratio_ci_low"] < 1 < big.loc["B", "precision_ratio_ci_high"]
    assert big.loc["A", "rates_beyond_four_fifths"] == ""


def test_a_disparity_is_marked_only_where_its_interval_excludes_parity():
    """The same flag-rate ratio of 1.5 in a small group is noise, in a large one a finding."""
    rng = np.random.default_rng(5)

    def table(n_b: int) -> pd.DataFrame:
        n_a = 2000
        # A: 10% flagged; B: 15% flagged (ratio 1.5), outcomes unrelated to the flags
        raw = np.r_[(rng.random(n_a) < 0.10) * 1.0, (rng.random(n_b) < 0.15) * 1.0]
        raw = raw + rng.random(len(raw)) * 0.01  # ties broken, flags kept
        y = (rng.random(len(raw)) < 0.2).astype(int)
        share = float((raw >= 1).mean())
        groups = pd.DataFrame({"district": ["A"] * n_a + ["B"] * n_b})
        return fairness_table(groups, y, np.full(len(y), 0.2), raw, share).set_index("group")

    small, large = table(40), table(1500)
    assert small.loc["B", "flag_rate_ratio"] > 1.25
    assert "flag_rate" not in small.loc["B", "rates_beyond_four_fifths"]
    assert large.loc["B", "flag_rate_ratio"] == pytest.approx(1.5, abs=0.2)
    assert "flag_rate" in large.loc["B", "rates_beyond_four_fifths"]
    assert large.loc["B", "flags"] == ""  # error rates are reported, never flags


def test_calibration_and_ranking_are_audited_per_group_with_intervals():
    rng = np.random.default_rng(6)
    n = 3000
    score = rng.random(2 * n)
    p = 0.1 + 0.2 * score
    # A: outcomes follow the score and its probabilities; B: twice as many outcomes as
    # predicted, and in an order the score does not know
    y_a = rng.random(n) < p[:n]
    y_b = rng.random(n) < 2 * p[n:]
    rank = np.r_[score[:n], rng.random(n)]
    groups = pd.DataFrame({"sex": ["F"] * n + ["M"] * n})
    y = np.r_[y_a, y_b].astype(int)
    # F is the reference (ties on n go to the first), with the ranking the score has
    t = fairness_table(groups, y, p, np.r_[rank[:n] * 0 + score[:n], rank[n:]], 0.1)
    t = t.set_index("group")
    assert t.loc["M", "oe_ratio"] == pytest.approx(2.0, abs=0.15)
    assert t.loc["M", "oe_ci_low"] > 1.25 and "calibration" in t.loc["M", "flags"]
    assert t.loc["F", "oe_ci_low"] < 1 < t.loc["F", "oe_ci_high"]
    assert "calibration" not in t.loc["F", "flags"]
    assert t.loc["M", "auroc_ci_high"] < t.loc["F", "auroc"] - 0.05
    assert "auroc" in t.loc["M", "flags"]
    assert t.loc["M", "auroc_ci_low"] < 0.5 < t.loc["M", "auroc_ci_high"]


def test_ranking_uses_the_raw_score_where_the_calibrator_ties():
    """20 rows, raw scores strictly ordered, a step calibrator that maps the top 10 to one
    probability. The 2 positives are the two highest raw scores: top 10% (2 rows) by raw
    score holds both; by the tied probability it would be decided by row order."""
    raw = np.arange(20, dtype=float)
    p = np.where(raw >= 10, 0.3, 0.05)  # isotonic-like steps: ten rows tie at 0.3
    y = np.zeros(20, int)
    y[[18, 19]] = 1
    m = evaluate(y, p, raw, with_ci=False)
    assert m["precision_top10"] == 1.0 and m["recall_top10"] == 1.0
    assert m["auroc"] == 1.0  # the raw order is perfect
    assert m["auroc_calibrated"] == pytest.approx(auroc(y, p)) and m["auroc_calibrated"] < 1.0
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))  # probabilities: calibrated
    flagged = flag_top(raw, 0.10)
    assert flagged.sum() == 2 and flagged[[18, 19]].all()


def test_a_ratio_of_zero_is_a_large_finite_disparity_not_a_missing_one():
    # district B (40 persons) has no false positives at all: FPR ratio 0 against A
    y = np.r_[np.zeros(60), np.ones(40), np.zeros(30), np.ones(10)]
    raw = np.r_[np.linspace(0, 2.5, 60), np.linspace(0.5, 2, 40), np.full(30, -1.0), np.full(10, 3)]
    groups = pd.DataFrame({"district": ["A"] * 100 + ["B"] * 40})
    t = fairness_table(groups, y, raw, raw, 0.2).set_index("group")
    assert t.loc["B", "fpr"] == 0.0 and t.loc["A", "fpr"] > 0
    assert t.loc["B", "fpr_ratio"] == 0.0 and "fpr" in t.loc["B", "rates_beyond_four_fifths"]
    # A flags none of its 40 events in many replicates: B's TPR ratio is infinite in them,
    # so its interval reaches infinity (it is not a bound that could not be computed)
    assert t.loc["B", "tpr_ratio_ci_high"] == float("inf") > t.loc["B", "tpr_ratio_ci_low"] > 1
    # the raw 0 stays in the table; the disparity is finite, on rates smoothed by half a
    # count: B's FPR 0.5/31 against A's (hits + 0.5)/61
    assert t.loc["B", "fpr_smoothed"] == pytest.approx(0.5 / 31)
    a_fpr = (t.loc["A", "fpr"] * 60 + 0.5) / 61
    assert worst_disparity(t.reset_index()) >= a_fpr / (0.5 / 31) > 10
    assert np.isfinite(worst_disparity(t.reset_index()))
    assert ratio(0.0, 0.0) == 1.0 and ratio(0.2, 0.0) == float("inf")
    assert np.isnan(ratio(float("nan"), 0.1))


def test_small_groups_are_reported_with_cis_but_never_flagged_or_gated():
    # group B has 10 persons, far off parity; below the minimum of 30 it is only reported
    y = np.r_[np.zeros(90), np.ones(10), np.ones(10)]
    raw = np.r_[np.zeros(90), np.ones(10), np.full(10, 2.0)]
    groups = pd.DataFrame({"sex": ["F"] * 100 + ["M"] * 10})
    t = fairness_table(groups, y, raw, raw, 0.1, min_group=30).set_index("group")
    assert t.loc["M", "flag_rate"] == 1.0 and t.loc["M", "flag_rate_ratio"] > 1.25
    assert t.loc["M", "flags"] == "" and not t.loc["M", "gated"]
    # its figures are in the table, but a group too small to gate is never listed as beyond
    assert t.loc["M", "rates_beyond_four_fifths"] == ""
    assert t.loc["M", "flag_rate_ci_low"] < 1.0 == t.loc["M", "flag_rate_ci_high"]
    assert worst_disparity(t.reset_index()) == 1.0  # only F is gated, against itself
    flagged = fairness_table(groups, y, raw, raw, 0.1, min_group=5).set_index("group")
    assert "calibration" in flagged.loc["M", "flags"]  # 10 outcomes where raw 2.0 expects 20


def test_wilson_interval_by_hand():
    # 10 of 20: centre 0.5, half-width 1.96 * sqrt(0.0125 + 0.002401) / 1.19208 = 0.2007
    lo, hi = wilson(10, 20)
    assert (lo, hi) == pytest.approx((0.2993, 0.7007), abs=1e-4)
    assert all(np.isnan(wilson(0, 0)))


def test_fast_bootstrap_matches_resampling_with_sklearn():
    from sklearn.metrics import roc_auc_score

    from training.metrics import auroc_ci

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 300)
    p = np.round(y * 0.4 + rng.random(300), 1)  # rounded: many ties
    lo, hi = auroc_ci(y, p, n_boot=300, seed=9)
    # the same resamples, scored by sklearn
    rng = np.random.default_rng(9)
    ref = []
    for _ in range(300):
        idx = rng.integers(0, 300, 300)
        ref.append(roc_auc_score(y[idx], p[idx]))
    assert (lo, hi) == pytest.approx(tuple(np.quantile(ref, [0.025, 0.975])), abs=1e-12)


def test_ece_by_chance_matches_the_binomial_spread():
    """Constant scores of 0.5 on 400 rows: ECE is |mean(y) - 0.5|, whose sd is 0.025, so its
    median is 0.6745 * 0.025 = 0.0169 and its 95th percentile 1.96 * 0.025 = 0.049."""
    from training.metrics import ece_by_chance

    median, high = ece_by_chance(np.full(400, 0.5), draws=4000)
    assert median == pytest.approx(0.0169, abs=0.003)
    assert high == pytest.approx(0.049, abs=0.005)


def test_with_the_count_fixed_constant_scores_show_no_ece_by_chance():
    """A stratified half of 400 rows at 0.5 with 200 events: every vector drawn has 200
    events, so its observed rate is 0.5 exactly and ECE is 0, where free draws show 0.017."""
    from training.metrics import ece_by_chance

    assert ece_by_chance(np.full(400, 0.5), events=200, draws=500) == (0.0, 0.0)


def test_outcomes_with_a_fixed_count_follow_the_conditional_law():
    """Scores 0.2, 0.5, 0.8 and one event: the event falls on a row with probability
    proportional to its odds (0.25, 1, 4 of 5.25), the law of independent outcomes given
    their count."""
    from training.metrics import perfect_outcomes

    drawn = perfect_outcomes(np.array([0.2, 0.5, 0.8]), 40_000, np.random.default_rng(3), 1)
    assert drawn.shape == (40_000, 3) and (drawn.sum(axis=1) == 1).all()
    assert drawn.mean(axis=0) == pytest.approx([0.25 / 5.25, 1 / 5.25, 4 / 5.25], abs=0.01)
    none = perfect_outcomes(np.array([0.2, 0.5]), 5, np.random.default_rng(3), 0)
    assert not none.any() and none.shape == (5, 2)
    with pytest.raises(ValueError, match="3 events among 2 rows"):
        perfect_outcomes(np.array([0.2, 0.5]), 5, np.random.default_rng(3), 3)


def test_where_the_exact_count_would_cost_too_much_outcomes_are_drawn_freely(monkeypatch):
    from training import metrics

    monkeypatch.setattr(metrics, "EXACT_COUNT_CELLS", 10)
    drawn = metrics.perfect_outcomes(np.full(200, 0.5), 50, np.random.default_rng(3), 100)
    assert len(set(drawn.sum(axis=1))) > 5
