"""The one reason renderer: a model's top factors in a caseworker's words, for the API, the
batch scorer and the web pages alike.

A reason is a feature's label in the chosen language, the person's own value of it, and
whether it raises or lowers the risk. Rendering works on whole columns of a `TopK`, so a
100,000-row roster costs no more than a handful of numpy operations per reason.

`sentence` says a reason as a caseworker reads it: the value in the words its feature's kind
calls for (是/否, a percentage, a count with its unit, "2 天前", whole years, a code's label),
a missing value as missing, and never a raw code or a bare 1. Fixed background (age, sex,
district, how long ago someone was registered) is marked apart: a caseworker cannot act on it,
so it is never a caseload's top reason.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from features.contract.vocabulary import EVENT_TYPES_BY_NAME, code_label
from features.spec import FEATURES_BY_NAME, Feature

if TYPE_CHECKING:  # LightGBM is imported only where a model is loaded
    from training.explain import TopK

EFFECT = {
    "en": {"raises": "raises", "lowers": "lowers"},
    "zh": {"raises": "升高", "lowers": "降低"},
}
# what a reason does to the risk, said in full; a missing value's effect says it is the
# missing record that counts
EFFECT_TEXT = {
    "en": {
        (True, False): "raises the risk",
        (False, False): "lowers the risk",
        (True, True): "having no record raises the risk",
        (False, True): "having no record lowers the risk",
    },
    "zh": {
        (True, False): "使风险升高",
        (False, False): "使风险降低",
        (True, True): "没有记录使风险升高",
        (False, True): "没有记录使风险降低",
    },
}
NONE_RECORDED = {"en": "none recorded", "zh": "无记录"}
COLON = {"en": ": ", "zh": "\uff1a"}


def is_background(name: str) -> bool:
    """Fixed facts about a person (age, sex, district, registration): shown apart."""
    return FEATURES_BY_NAME[name].kind == "static"


def missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def sentence(name: str, value: object, lang: str) -> str:
    """A reason as a sentence: "报到率（近90天）：67%", "last urine test: 2 days ago"."""
    f = FEATURES_BY_NAME[name]
    label = f.label_zh if lang == "zh" else f.label_en
    if f.reading == "days_ago":
        label = _ago_label(f, lang)
    return f"{label}{COLON[lang]}{reading(f, value, lang)}"


def effect(raises: bool, value: object, lang: str) -> str:
    return EFFECT_TEXT[lang][(bool(raises), missing(value))]


def reading(f: Feature, value: object, lang: str) -> str:
    """A value in the words its feature's kind calls for."""
    zh = lang == "zh"
    if missing(value):
        return NONE_RECORDED[lang]
    if f.reading == "category":
        return code_label(str(value), lang)
    v = float(value)  # type: ignore[arg-type]
    if f.reading == "yes_no":
        return ("是" if zh else "yes") if v >= 0.5 else ("否" if zh else "no")
    if f.reading == "percent":
        return f"{v * 100:.0f}%"
    if f.reading == "count":
        n = int(round(v))
        return f"{n}次" if zh else f"{n} time" + ("" if n == 1 else "s")
    if f.reading == "days":
        n = int(round(v))
        return f"{n}天" if zh else f"{n} day" + ("" if n == 1 else "s")
    if f.reading == "days_ago":
        return ago(v, lang)
    if f.reading == "age":
        return f"{int(v)}岁" if zh else f"{int(v)} years old"
    if f.reading == "years":
        return f"{v:.0f}年" if zh else f"{v:.0f} years"
    # words (a yes/no event's last value) or an amount with its event type's unit
    return event_value(f.event_type or "", v, lang, words=f.reading == "words")


def event_value(event_type: str, value: float, lang: str, words: bool = True) -> str:
    """An event type's value in words: 阳性/阴性 for a yes/no one (with `words`), else the
    number with its unit ("60毫克", "60 mg"), at most one decimal."""
    event = EVENT_TYPES_BY_NAME.get(event_type)
    zh = lang == "zh"
    if words and event is not None and event.value_words:
        return event.value_words[0 if value >= 0.5 else 1][zh]
    number = f"{value:.1f}".removesuffix(".0")
    if event is None or event.unit is None:
        return number
    return f"{number}{event.unit[1]}" if zh else f"{number} {event.unit[0]}"


def ago(days: float, lang: str) -> str:
    """How long ago, in the unit a person would use: days, then months, then years."""
    zh = lang == "zh"
    if days < 1:
        return "今天" if zh else "today"
    if days < 60:
        n = int(days)
        return f"{n}天前" if zh else f"{n} day{'' if n == 1 else 's'} ago"
    if days < 730:
        n = round(days / 30.44)
        return f"约{n}个月前" if zh else f"about {n} months ago"
    n = round(days / 365.25)
    return f"约{n}年前" if zh else f"about {n} years ago"


def _ago_label(f: Feature, lang: str) -> str:
    """ "days since the last X" as "last X" (a value says "2 days ago")."""
    if lang == "zh":
        return f.label_zh.removeprefix("距").removesuffix("的天数")
    return f.label_en.removeprefix("days since ").removeprefix("the ")


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
    contribution (log-odds) and the direction; a reason of exactly 0 is no reason. Row by
    row: the API returns at most a page of records, where one row's few reasons cost less
    one by one than a column's array operations do."""
    names = top.names
    return [
        [
            factor(names[p], top.value_at(i, k), c)
            for k, (p, c) in enumerate(zip(positions, weights, strict=True))
            if c != 0
        ]
        for i, (positions, weights) in enumerate(
            zip(top.position.tolist(), top.contribution.tolist(), strict=True)
        )
    ]


def factor(name: str, value: object, contribution: float) -> dict[str, Any]:
    """One reason as the API returns it."""
    f = FEATURES_BY_NAME[name]
    raises = contribution > 0
    return {
        "feature": name,
        "label_en": f.label_en,
        "label_zh": f.label_zh,
        "value": value,
        "contribution": contribution,
        "direction": EFFECT["en"]["raises" if raises else "lowers"],
        "text_en": sentence(name, value, "en"),
        "text_zh": sentence(name, value, "zh"),
        "effect_en": effect(raises, value, "en"),
        "effect_zh": effect(raises, value, "zh"),
        "background": is_background(name),
    }
