"""Indicators that do not rank noise and publish no small cell: intervals, funnel limits,
rank ranges and disclosure control, each against a figure worked out by hand here."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.contract.vocabulary import DISTRICTS
from features.indicators.inputs import CITY, IndicatorConfig
from features.indicators.ranking import publish
from features.indicators.uncertainty import (
    BINOMIAL,
    POISSON,
    excess_variance,
    funnel,
    interval,
    limits,
)

RELAPSE = "relapse_rate"
YOUTH = "youth_new_user_rate"


def test_clopper_pearson_interval_by_hand():
    # 3 of 10: the p with P(X >= 3) = 2.5% and the p with P(X <= 3) = 2.5%, (6.67%, 65.25%)
    lo, hi = interval(np.array([3]), np.array([10]), BINOMIAL, 100)
    assert lo[0] == pytest.approx(6.674, abs=1e-3) and hi[0] == pytest.approx(65.245, abs=1e-3)
    # 0 of 20 still has an upper bound, 1 - 0.025^(1/20) = 16.84%; 20 of 20 a lower one
    lo, hi = interval(np.array([0, 20, 0]), np.array([20, 20, 0]), BINOMIAL, 100)
    assert lo[0] == 0 and hi[0] == pytest.approx(100 * (1 - 0.025 ** (1 / 20)), abs=1e-6)
    assert hi[1] == 100 and lo[1] == pytest.approx(100 * 0.025 ** (1 / 20), abs=1e-6)
    assert math.isnan(lo[2]) and math.isnan(hi[2])  # 0 of 0: no figure at all


def test_exact_poisson_interval_by_hand():
    # 0 events: upper -ln(0.025) = 3.6889; 5 events: Garwood's (1.6235, 11.6683)
    lo, hi = interval(np.array([0, 5]), np.array([10_000, 10_000]), POISSON, 10_000)
    assert lo[0] == 0 and hi[0] == pytest.approx(3.6889, abs=1e-4)
    assert lo[1] == pytest.approx(1.6235, abs=1e-4) and hi[1] == pytest.approx(11.6683, abs=1e-4)


def test_exact_funnel_limits_by_hand():
    # n = 4 at a target of one half: F = 1/16, 5/16, 11/16, 15/16, 1. The 97.5% point is 4
    # persons, less (1 - 0.975) / (1/16) = 0.4: limit 3.6 of 4 = 90%; the 99.9% point
    # 4 - 0.016: 99.6%. The low points are 0 less a share of the first step: below 0, so 0.
    out = limits(np.array([4.0]), 0.5, BINOMIAL, 100)
    assert out["hi95"][0] == pytest.approx(90.0) and out["hi998"][0] == pytest.approx(99.6)
    assert out["lo95"][0] == 0 and out["lo998"][0] == 0
    # a large unit: the exact limits meet the normal ones, 30% ± 1.96 × √(0.21 / 10,000)
    big = limits(np.array([10_000.0]), 0.3, BINOMIAL, 100)
    half = 1.959964 * math.sqrt(0.21 / 10_000) * 100
    assert big["lo95"][0] == pytest.approx(30 - half, abs=0.02)
    assert big["hi95"][0] == pytest.approx(30 + half, abs=0.02)


def test_overdispersion_by_hand():
    # three units of 100 at 30%, 50%, 70% around 50%: s² = 0.0025, z = -4, 0, 4, φ = 32/3;
    # Iφ = 32 > χ²₂(95%) = 5.99, so τ² = (32 - 2) / (1200 - 3 × 400² / 1200) = 0.0375
    k, n = np.array([30.0, 50.0, 70.0]), np.array([100.0, 100.0, 100.0])
    assert excess_variance(k / n, n, 0.5, BINOMIAL) == pytest.approx(0.0375)
    calls, tau2 = funnel(k, n, 0.5, BINOMIAL, 100)
    assert tau2 == pytest.approx(0.0375)
    # widened limits: 50 ± 3.09 × √(0.0025 + 0.0375) = 50 ± 61.8, so nobody is called out,
    # where the exact limits (about 50 ± 15) would call out two of three
    assert list(calls["versus"]) == ["within"] * 3
    exact = limits(n, 0.5, BINOMIAL, 100)
    assert ((k < exact["lo998"]) | (k > exact["hi998"])).sum() == 2
    # units that vary no more than chance: no widening
    assert excess_variance(np.array([0.48, 0.5, 0.52]), n, 0.5, BINOMIAL) == 0.0


def _raw(month_counts: dict[str, dict[str, tuple[int, int]]], unknown=(0, 0)) -> pd.DataFrame:
    """A computed indicator table: per month, each district's (numerator, denominator) of the
    relapse rate (absent districts: 0 of 0); the city is their sum and `unknown`."""
    rows = []
    for month, counts in month_counts.items():
        for d in DISTRICTS:
            k, n = counts.get(d, (0, 0))
            rows.append((month, d, RELAPSE, k, n))
        k = sum(c[0] for c in counts.values()) + unknown[0]
        n = sum(c[1] for c in counts.values()) + unknown[1]
        rows.append((month, CITY, RELAPSE, k, n))
    frame = pd.DataFrame(
        rows, columns=["month", "district", "indicator", "numerator", "denominator"]
    )
    frame["value"] = np.where(
        frame.denominator > 0,
        frame.numerator / frame.denominator.where(frame.denominator > 0) * 100,
        np.nan,
    )
    return frame


CONFIG = IndicatorConfig(weights={RELAPSE: 1.0})


def test_a_small_district_inside_the_funnel_is_not_called_worst():
    # nine districts of 1,000 near 30%, one of 12 with 5 relapses (41.7%): last on point value,
    # but inside the 99.8% limits for 12 persons (about 30% ± 41), and its rank's range is wide
    counts = {d: (290 + 5 * i, 1000) for i, d in enumerate(DISTRICTS[:-2])}
    counts[DISTRICTS[-2]] = (400, 1000)
    counts[DISTRICTS[-1]] = (5, 12)
    out = publish(_raw({"2026-05": counts, "2026-06": counts}), ["2026-06"], CONFIG, suppress=False)
    small = out[(out.district == DISTRICTS[-1]) & (out.indicator == RELAPSE)].iloc[0]
    assert small["rank"] == len(DISTRICTS)  # the point ranking puts it last
    assert small["versus_city"] == "within"
    assert small["rank_lo"] <= 4  # chance alone could put it among the best few
    # a large district at 40%, outside its narrow limits (the city's 32% ± 4.6), is called out
    big = out[(out.district == DISTRICTS[-2]) & (out.indicator == RELAPSE)].iloc[0]
    assert big["versus_city"] == "above" and big["funnel_hi998"] < 37
    # the composite carries the same uncertainty: ranges, not an order, at the top
    comp = out[out.indicator == "composite"].set_index("district")
    assert (comp["rank_lo"] <= comp["rank"]).all() and (comp["rank"] <= comp["rank_hi"]).all()
    assert (comp["lower"] <= comp["value"]).all() and (comp["value"] <= comp["upper"]).all()


def test_ties_at_zero_are_a_range_not_a_shared_first_place():
    # the demo's "0.00 #1" five times over: five districts without a relapse of 50 persons each
    counts = {d: (0, 50) for d in DISTRICTS[:5]} | {d: (10, 50) for d in DISTRICTS[5:]}
    out = publish(_raw({"2026-05": counts, "2026-06": counts}), ["2026-06"], CONFIG, suppress=False)
    zeros = out[out.district.isin(DISTRICTS[:5]) & (out.indicator == RELAPSE)]
    assert (zeros["rank"] == 1).all()
    assert (zeros["rank_lo"] == 1).all() and (zeros["rank_hi"] >= 4).all()


def test_rank_ranges_are_reproducible():
    counts = {d: (10 + i, 60) for i, d in enumerate(DISTRICTS)}
    raw = _raw({"2026-05": counts, "2026-06": counts})
    a = publish(raw, ["2026-06"], CONFIG, suppress=False)
    b = publish(raw, ["2026-06"], CONFIG, suppress=False)
    pd.testing.assert_frame_equal(a, b)


def _row(out: pd.DataFrame, district: str, month: str = "2026-06") -> pd.Series:
    return out[(out.district == district) & (out.indicator == RELAPSE) & (out.month == month)].iloc[
        0
    ]


def test_a_cell_of_three_and_the_cell_that_would_give_it_back():
    a, b, c = DISTRICTS[:3]
    counts = {a: (3, 40), b: (10, 40), c: (20, 60)}
    out = publish(_raw({"2026-05": counts, "2026-06": counts}), ["2026-06"], CONFIG)
    small = _row(out, a)
    assert small["numerator_shown"] == "<5" and pd.isna(small["numerator"])
    for derived in ("value", "lower", "upper", "rank", "change", "funnel_hi998"):
        assert pd.isna(small[derived]), derived
    # the city's 33 less the published 20 would leave 13 for a and b together: b goes too
    assert _row(out, b)["numerator_shown"] == "*" and pd.isna(_row(out, b)["value"])
    assert _row(out, c)["numerator_shown"] == "20" and _row(out, c)["value"] == pytest.approx(
        33.33, abs=0.01
    )
    assert _row(out, CITY)["numerator_shown"] == "33"
    assert _row(out, a)["denominator_shown"] == "40"  # 40 persons is no small count


def test_persons_of_no_district_are_not_given_back_by_the_total():
    # every district's count is publishable, but the city holds two persons of no district
    counts = {d: (10 + i, 50) for i, d in enumerate(DISTRICTS)}
    out = publish(_raw({"2026-06": counts}, unknown=(2, 4)), ["2026-06"], CONFIG)
    shown = [_row(out, d)["numerator_shown"] for d in DISTRICTS]
    assert shown.count("*") == 1 and shown[0] == "*"  # the smallest district's goes
    assert _row(out, DISTRICTS[0])["denominator_shown"] == "*"  # the 4 persons likewise
    # with 9 persons of no district, only the 2 relapses among them need covering
    out = publish(_raw({"2026-06": counts}, unknown=(2, 9)), ["2026-06"], CONFIG)
    assert _row(out, DISTRICTS[0])["denominator_shown"] == "50"


def test_a_small_complement_is_withheld_and_the_change_from_a_withheld_month():
    a = DISTRICTS[0]
    before = {a: (18, 20), DISTRICTS[1]: (30, 100), DISTRICTS[2]: (40, 100)}
    now = {a: (10, 20), DISTRICTS[1]: (30, 100), DISTRICTS[2]: (40, 100)}
    out = publish(_raw({"2026-05": before, "2026-06": now}), ["2026-05", "2026-06"], CONFIG)
    # 18 of 20 relapsed: the 2 who did not are as few as a count of 2
    assert _row(out, a, "2026-05")["numerator_shown"] == "*"
    # June is published, but its change from a withheld May would give May back
    june = _row(out, a, "2026-06")
    assert june["numerator_shown"] == "10" and pd.isna(june["change"])


def test_the_threshold_is_configurable_and_the_raw_export_keeps_everything():
    counts = {DISTRICTS[0]: (7, 40), DISTRICTS[1]: (30, 100), DISTRICTS[2]: (40, 100)}
    raw = _raw({"2026-06": counts})
    strict = publish(raw, ["2026-06"], IndicatorConfig(weights={RELAPSE: 1.0}, suppress_below=10))
    assert _row(strict, DISTRICTS[0])["numerator_shown"] == "<10"
    assert _row(publish(raw, ["2026-06"], CONFIG), DISTRICTS[0])["numerator_shown"] == "7"
    whole = publish(
        raw, ["2026-06"], IndicatorConfig(weights={RELAPSE: 1.0}, suppress_below=10), suppress=False
    )
    assert _row(whole, DISTRICTS[0])["numerator"] == 7


def test_residents_are_public_but_youth_new_users_are_not():
    rows = []
    for d in DISTRICTS:
        rows.append(("2026-06", d, YOUTH, 2 if d == DISTRICTS[0] else 6, 100_000))
    rows.append(("2026-06", CITY, YOUTH, 2 + 6 * (len(DISTRICTS) - 1), 100_000 * len(DISTRICTS)))
    raw = pd.DataFrame(rows, columns=["month", "district", "indicator", "numerator", "denominator"])
    raw["value"] = raw.numerator / raw.denominator * 10_000
    out = publish(raw, ["2026-06"], IndicatorConfig(weights={YOUTH: 1.0}))
    first = out[(out.district == DISTRICTS[0]) & (out.indicator == YOUTH)].iloc[0]
    assert first["numerator_shown"] == "<5" and first["denominator_shown"] == "100000"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 30), min_size=len(DISTRICTS), max_size=len(DISTRICTS)),
    st.integers(0, 6),
)
def test_no_withheld_count_can_be_worked_out_from_the_published_ones(numerators, unknown):
    """Whatever the counts, a withheld district's count is never the city's less the
    published districts' (the one way a reader could give it back)."""
    counts = {d: (k, 40) for d, k in zip(DISTRICTS, numerators, strict=True)}
    out = publish(_raw({"2026-06": counts}, unknown=(unknown, unknown)), ["2026-06"], CONFIG)
    shown = out[out.indicator == RELAPSE].set_index("district")["numerator_shown"]
    assert not shown.isin([str(k) for k in range(1, 5)]).any()  # no small count shown
    if not shown[CITY].isdigit():
        return
    hidden = [d for d in DISTRICTS if not shown[d].isdigit()]
    unknowns = len(hidden) + (unknown > 0)  # what the city less the published leaves
    if any(0 < counts[d][0] < 5 for d in hidden) or 0 < unknown < 5:
        assert unknowns >= 2


def test_a_zero_of_a_withheld_denominator_is_withheld_too():
    # 0 relapses among 3 persons: "0 of <5" would say that every one of them stayed abstinent
    counts = {DISTRICTS[0]: (0, 3), DISTRICTS[1]: (30, 100), DISTRICTS[2]: (40, 100)}
    out = publish(_raw({"2026-06": counts}), ["2026-06"], CONFIG)
    row = _row(out, DISTRICTS[0])
    assert row["denominator_shown"] == "<5" and row["numerator_shown"] == "*"
    assert pd.isna(row["numerator"]) and pd.isna(row["value"])
