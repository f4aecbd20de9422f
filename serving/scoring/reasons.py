"""The one reason renderer: a model's top factors in a caseworker's words, for the API, the
batch scorer and the web pages alike.

A reason is a feature's label in the chosen language, the person's own value of it, and
whether it raises or lowers the risk. Rendering works on whole columns of a `TopK`, so a
100,000-row roster costs no more than a handful of numpy operations per reason.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from features.spec import FEATURES_BY_NAME

if TYPE_CHECKING:  # LightGBM is imported only where a model is loaded
    from training.explain import TopK

EFFECT = {
    "en": {"raises": "raises", "lowers": "lowers"},
    "zh": {"raises": "升高", "lowers": "降低"},
}


def labels(top: TopK, k: int, lang: str) -> np.ndarray:
    """The k-th reason's feature label of every row, in `lang`."""
    return _label_table(tuple(top.names), lang)[top.position[:, k]]


@functools.lru_cache(maxsize=16)
def _label_table(names: tuple[str, ...], lang: str) -> np.ndarray:
    """A model's feature labels in `lang`, by position: the same few lists on every request."""
    specs = [FEATURES_BY_NAME[n] for n in names]
    return np.array([f.label_zh if lang == "zh" else f.label_en for f in specs], object)


def directions(top: TopK, k: int, lang: str = "en") -> np.ndarray:
    """Whether the k-th reason raises or lowers each row's risk, in `lang`."""
    words = EFFECT[lang]
    return np.where(top.contribution[:, k] > 0, words["raises"], words["lowers"]).astype(object)


def display_values(top: TopK, k: int) -> np.ndarray:
    """The k-th reason's values as text: numbers to 4 significant digits (a zero never
    shown as "-0", whichever engine kept its sign), a category as itself, nothing when
    missing."""
    value = top.column_values(k)
    number = np.array([isinstance(v, float) for v in value.tolist()], bool)
    value[number] = [f"{v + 0.0:.4g}" for v in value[number].tolist()]
    return value


def factors(top: TopK) -> list[list[dict[str, Any]]]:
    """Each row's reasons as the API returns them: both languages, the value, the
    contribution (log-odds) and the direction; a reason of exactly 0 is no reason."""
    shown = top.shown
    columns = [
        (
            top.names,
            top.position[:, k],
            labels(top, k, "en"),
            labels(top, k, "zh"),
            top.column_values(k),
            top.contribution[:, k],
            directions(top, k),
        )
        for k in range(top.position.shape[1])
    ]
    out = []
    for i in range(len(top)):
        row = []
        for k, (names, pos, en, zh, val, contrib, way) in enumerate(columns):
            if shown[i, k]:
                row.append(
                    {
                        "feature": names[pos[i]],
                        "label_en": en[i],
                        "label_zh": zh[i],
                        "value": val[i],
                        "contribution": float(contrib[i]),
                        "direction": way[i],
                    }
                )
        out.append(row)
    return out
