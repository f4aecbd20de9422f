"""Explanations checked against an independent exact computation.

For a tree ensemble, the TreeSHAP value of a feature is the Shapley value of the game whose
worth for a set S of known features is the tree's expected output when the other features are
unknown, each unknown split averaging its two branches by how many training rows went each
way (the path-dependent expectation). Here that game is computed by brute force from the
booster's own dump, over every subset of a small model's features, and compared with what
the project's one explanation path (`training.explain.contributions`) returns.
"""

from __future__ import annotations

import itertools
import math

import lightgbm as lgb
import numpy as np
import pytest

from training.explain import contributions, top_k


def _goes_left(node: dict, x: np.ndarray) -> bool:
    value = x[node["split_feature"]]
    if node["decision_type"] == "==":  # a categorical split: the categories that go left
        return int(value) in {int(c) for c in str(node["threshold"]).split("||")}
    return value <= node["threshold"]


def _count(node: dict) -> float:
    return node.get("internal_count", node.get("leaf_count"))


def _expected(node: dict, x: np.ndarray, known: frozenset[int]) -> float:
    if "leaf_value" in node:
        return node["leaf_value"]
    left, right = node["left_child"], node["right_child"]
    if node["split_feature"] in known:
        return _expected(left if _goes_left(node, x) else right, x, known)
    return (
        _count(left) * _expected(left, x, known) + _count(right) * _expected(right, x, known)
    ) / _count(node)


def brute_force_shapley(booster: lgb.Booster, x: np.ndarray) -> np.ndarray:
    trees = [t["tree_structure"] for t in booster.dump_model()["tree_info"]]
    n = len(x)

    def worth(known: frozenset[int]) -> float:
        return sum(_expected(t, x, known) for t in trees)

    phi = np.zeros(n + 1)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for size in range(n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for subset in itertools.combinations(others, size):
                s = frozenset(subset)
                phi[i] += weight * (worth(s | {i}) - worth(s))
    phi[n] = worth(frozenset())
    return phi


@pytest.fixture(scope="module")
def small_model():
    """Five features, the last categorical with six levels; a few shallow trees."""
    rng = np.random.default_rng(11)
    n = 3000
    X = np.column_stack(
        [
            rng.normal(size=n),
            rng.integers(0, 5, n).astype(float),
            rng.random(n),
            rng.normal(size=n),
            rng.integers(0, 6, n).astype(float),
        ]
    )
    logit = 0.8 * X[:, 0] - 0.5 * X[:, 1] + 2 * (X[:, 2] > 0.7) + np.isin(X[:, 4], [1, 4]) * 1.2
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    params = {
        "objective": "binary",
        "num_leaves": 6,
        "learning_rate": 0.3,
        "min_data_in_leaf": 20,
        "min_data_per_group": 5,
        "cat_smooth": 1,
        "max_cat_to_onehot": 2,
        "verbose": -1,
        "seed": 3,
    }
    data = lgb.Dataset(X, y, categorical_feature=[4])
    return lgb.train(params, data, num_boost_round=8), X


def test_the_model_has_categorical_splits(small_model):
    booster, _ = small_model

    def kinds(node: dict) -> set[str]:
        if "leaf_value" in node:
            return set()
        return {node["decision_type"]} | kinds(node["left_child"]) | kinds(node["right_child"])

    found = set().union(*(kinds(t["tree_structure"]) for t in booster.dump_model()["tree_info"]))
    assert found == {"<=", "=="}


def test_contributions_equal_brute_force_shapley_values(small_model):
    booster, X = small_model
    rows = X[:40]
    ours = contributions(booster, rows)
    for i, x in enumerate(rows):
        assert ours[i] == pytest.approx(brute_force_shapley(booster, x), abs=1e-9)
    # the efficiency property: base value + contributions = the raw score
    raw = booster.predict(rows, raw_score=True)
    assert ours.sum(axis=1) == pytest.approx(raw, abs=1e-9)


def test_top_k_picks_the_largest_contributions_by_magnitude():
    contrib = np.array([[0.1, -0.5, 0.3, 0.0, 9.0], [0.0, 0.0, -0.2, 0.2, 9.0]])
    X = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    names = ["checkin_missed__count_90d", "employed_now", "age_years", "urine_test__count_90d"]
    top = top_k(contrib, X, names, k=3)
    assert top.position[0].tolist() == [1, 2, 0]
    assert top.contribution[0].tolist() == [-0.5, 0.3, 0.1]
    assert top.value[0].tolist() == [2.0, 3.0, 1.0]
    # ties in magnitude keep feature order; a contribution of exactly 0 is not shown
    assert top.position[1].tolist()[:2] == [2, 3] and not top.shown[1, 2]
