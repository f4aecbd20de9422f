"""The feature spec: every model feature, declared once, with its readable labels.

A feature is added here and nowhere else. The builder derives its SQL from these declarations,
training reads the monotone directions from them, and explanations show caseworkers the English
and Chinese labels. Protected attributes (ethnicity) are deliberately absent: they are kept in
the persons table for fairness audits only.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from features.contract.vocabulary import (
    DISTRICTS,
    EVENT_TYPES,
    EVENT_TYPES_BY_NAME,
    MEDICATIONS,
    OPIOIDS,
    RESIDENTIAL_SQL,
    SEXES,
    SUBSTANCES,
)
from features.core.errors import ContractError

if TYPE_CHECKING:
    from features.contract.codebook import Codebook

WINDOWS: tuple[int | None, ...] = (30, 90, 180, 365, None)  # days; None = all history

# Agreed risk directions (+1 more never lowers risk, -1 more never raises it), for the counts,
# means and maxima of these event types. Types not listed are left unconstrained.
RISK_DIRECTION: dict[str, int] = {
    "urine_test": +1,  # mean and max are the positive rate and "any positive"
    "drug_arrest": +1,
    "checkin_missed": +1,
    "methadone_missed": +1,
    "contact_known_user": +1,
    "venue_encounter": +1,
    "school_discipline": +1,
    "school_absence": +1,
    "school_dropout": +1,
    "family_drug_record": +1,
    "training_certificate": -1,
    "family_support_contact": -1,
    "self_reported_use": +1,
    "injection_drug_use": +1,
}

# Readable names of a valued type's statistics where "mean of X" would confuse a caseworker.
STAT_LABELS: dict[tuple[str, str], tuple[str, str]] = {
    ("urine_test", "mean"): ("positive-test rate", "尿检阳性率"),
    ("urine_test", "max"): ("any positive test", "有阳性尿检"),
    ("urine_test", "last"): ("last urine test result", "最近一次尿检结果"),
    ("left_behind_status", "last"): ("left-behind status, latest", "最近一次留守状态"),
    ("left_behind_status", "mean"): ("share of left-behind records", "留守记录占比"),
    ("left_behind_status", "max"): ("ever left behind", "曾为留守儿童"),
    ("injection_drug_use", "mean"): ("days injected in a month, mean", "每月注射天数平均值"),
    ("injection_drug_use", "max"): ("days injected in a month, most", "每月注射天数最大值"),
    ("injection_drug_use", "last"): ("days injected in a month, latest", "最近一次每月注射天数"),
}


# What a count of a valued type's events is a count of, in Chinese: the type's own label names
# the value ("methadone dose (mg)"), which would make a count read like an amount.
COUNT_ZH: dict[str, str] = {
    "urine_test": "尿检",
    "methadone_dose": "美沙酮服药",
    "mental_health_screening": "心理健康筛查",
    "school_absence": "缺课报告",
    "left_behind_status": "留守状态变化",
    "buprenorphine_dose": "丁丙诺啡服药",
    "withdrawal_assessment": "戒断评估",
    "injection_drug_use": "注射吸毒报告",
    "pain_report": "疼痛评估",
    "nicotine_dependence": "尼古丁依赖评估",
}


@dataclass(frozen=True)
class Feature:
    name: str
    label_en: str
    label_zh: str
    kind: str  # window | last | recency | static | domain | ratio
    event_type: str | None = None
    agg: str | None = None  # count | mean | max, for kind == "window"
    window: int | None = None
    sql: str | None = None  # static: over persons p and spine s; domain: aggregate over j
    ratio: tuple[str, str] | None = None  # (numerator, other): num / (num + other)
    categories: tuple[str, ...] | None = None  # set for categorical features
    monotone: int = 0
    fill: float | None = None  # value when nothing was observed; None = missing
    item: str | None = None  # an assessment item's code, for features from a codebook
    # a categorical item's answers, in the order of `categories`
    answers: tuple[float, ...] | None = None
    # how a reader is shown a value (see `reading`), where the kind does not say it
    shows: str | None = None

    @property
    def categorical(self) -> bool:
        return self.categories is not None

    @functools.cached_property
    def reading(self) -> str:
        """How a value of this feature reads to a person: category (a code's label), yes_no,
        percent (a share), count (times), days (a number of days), days_ago, age, years,
        words (a yes/no event's last value: 阳性, 阴性), or amount (a number with its event
        type's unit). Kept once computed: every reason shown reads it."""
        if self.categorical:
            return "category"
        if self.shows:
            return self.shows
        if self.kind == "recency":
            return "days_ago"
        if self.kind == "ratio":
            return "percent"
        if self.agg == "count":
            return "count"
        event = EVENT_TYPES_BY_NAME.get(self.event_type or "")
        if event is not None and event.value_words and self.kind in ("window", "last"):
            return {"mean": "percent", "max": "yes_no"}.get(self.agg or "", "words")
        return "amount"


def _window_text(w: int | None) -> tuple[str, str]:
    return ("all history", "全部历史") if w is None else (f"last {w} days", f"近{w}天")


def window_suffix(w: int | None) -> str:
    return "all" if w is None else f"{w}d"


def _event_features() -> list[Feature]:
    out: list[Feature] = []
    for e in (e for e in EVENT_TYPES if e.features):
        direction = RISK_DIRECTION.get(e.name, 0)
        aggs = ("count", "mean", "max") if e.valued else ("count",)
        for agg in aggs:
            for w in WINDOWS if e.windowed else (None,):
                wen, wzh = _window_text(w)
                if agg == "count" and e.valued:
                    en = f"number of {e.singular_en}s, {wen}"
                    zh = f"{COUNT_ZH[e.name]}次数（{wzh}）"
                elif agg == "count":
                    en, zh = f"{e.label_en}, {wen}", f"{e.label_zh}次数（{wzh}）"
                else:
                    base_en, base_zh = STAT_LABELS.get(
                        (e.name, agg),
                        (
                            f"{agg} {e.label_en}",
                            f"{e.label_zh}{'平均值' if agg == 'mean' else '最大值'}",
                        ),
                    )
                    en, zh = f"{base_en}, {wen}", f"{base_zh}（{wzh}）"
                out.append(
                    Feature(
                        f"{e.name}__{agg}_{window_suffix(w)}",
                        en,
                        zh,
                        "window",
                        event_type=e.name,
                        agg=agg,
                        window=w,
                        monotone=direction,
                        fill=0.0 if agg == "count" else None,
                    )
                )
        if e.valued:
            en, zh = STAT_LABELS.get(
                (e.name, "last"), (f"last {e.label_en}", f"最近一次{e.label_zh}")
            )
            out.append(Feature(f"{e.name}__last", en, zh, "last", event_type=e.name))
        out.append(
            Feature(
                f"{e.name}__days_since",
                f"days since the last {e.singular_en}",
                f"距最近一次{COUNT_ZH.get(e.name, e.label_zh)}的天数",
                "recency",
                event_type=e.name,
            )
        )
    return out


_OPIOIDS = ", ".join(f"'{k}'" for k in OPIOIDS)


def _opioid_features() -> list[Feature]:
    """Opioid use specifically: a cannabis positive says less about heroin relapse than an
    opioid positive does, and the per-type statistics above mix all substances. A screen that
    found two opioids (heroin and methadone, say) is two results."""
    out = []
    for w in (30, None):
        wen, wzh = _window_text(w)
        within = "" if w is None else f" AND d <= {w}"
        out += [
            Feature(
                f"opioid_positive_tests_{window_suffix(w)}",
                f"opioid-positive test results, {wen}",
                f"阿片类阳性尿检结果数（{wzh}）",
                "domain",
                sql="count(*) FILTER (WHERE event_type = 'urine_test' AND value = 1 "
                f"AND detail IN ({_OPIOIDS}){within})",
                monotone=+1,
                fill=0.0,
            ),
            Feature(
                f"opioid_use_days_reported_{window_suffix(w)}",
                f"self-reported days of opioid use, {wen}",
                f"自报阿片类使用天数（{wzh}）",
                "domain",
                sql="count(DISTINCT d) FILTER (WHERE event_type = 'self_reported_use' "
                f"AND detail IN ({_OPIOIDS}){within})",
                monotone=+1,
                fill=0.0,
                shows="days",
            ),
        ]
    return out


def _medication_features() -> list[Feature]:
    """Which medication the person is on: one indicator each, from the latest start."""
    zh = {"methadone": "美沙酮", "buprenorphine": "丁丙诺啡", "naltrexone": "纳曲酮"}
    return [
        Feature(
            f"on_{m}",
            f"on {m} treatment",
            f"正在接受{zh[m]}治疗",
            "domain",
            sql="CASE WHEN arg_max(detail, event_time) FILTER "
            f"(WHERE event_type = 'medication_start') = '{m}' THEN 1.0 ELSE 0.0 END",
            fill=0.0,
            shows="yes_no",
        )
        for m in MEDICATIONS
    ]


STATIC_FEATURES: tuple[Feature, ...] = (
    Feature(
        "age_years",
        "age",
        "年龄",
        "static",
        sql="date_diff('day', p.birth_date, s.as_of) / 365.25",
        shows="age",
    ),
    Feature("sex", "sex", "性别", "static", sql="p.sex", categories=SEXES),
    Feature("district", "district", "区县", "static", sql="p.district", categories=DISTRICTS),
    Feature(
        "years_since_registration",
        "years since first registered",
        "首次登记至今年数",
        "static",
        sql="CASE WHEN p.registration_date < s.as_of "
        "THEN date_diff('day', p.registration_date, s.as_of) / 365.25 END",
        shows="years",
    ),
    Feature(
        "primary_substance",
        "primary substance",
        "主要滥用物质",
        "static",
        sql="CASE WHEN p.registration_date < s.as_of THEN p.primary_substance END",
        categories=SUBSTANCES,
    ),
)

DOMAIN_FEATURES: tuple[Feature, ...] = (
    Feature(
        "days_since_positive_test",
        "days since last positive test",
        "距最近一次阳性尿检的天数",
        "domain",
        sql="min(d) FILTER (WHERE event_type = 'urine_test' AND value = 1)",
        monotone=-1,
        shows="days_ago",
    ),
    Feature(
        "days_since_residential_discharge",
        "days since the last discharge from residential rehab",
        "距最近一次出所的天数",
        "domain",
        sql="min(d) FILTER (WHERE event_type = 'rehab_discharge' "
        f"AND detail IN ({RESIDENTIAL_SQL}))",
        shows="days_ago",
    ),
    Feature(
        "employed_now",
        "currently employed",
        "目前在业",
        "domain",
        sql="CASE WHEN arg_max(CAST(event_type AS VARCHAR), event_time) FILTER "
        "(WHERE event_type IN ('employment_start', 'employment_end')) = 'employment_start' "
        "THEN 1.0 ELSE 0.0 END",
        monotone=-1,
        fill=0.0,
        shows="yes_no",
    ),
    Feature(
        "longest_negative_run",
        "longest run of negative tests",
        "最长连续阴性尿检次数",
        "domain",
        monotone=-1,
        fill=0.0,
    ),
    Feature(
        "checkin_adherence_90d",
        "check-in adherence, last 90 days",
        "报到率（近90天）",
        "ratio",
        ratio=("checkin_attended__count_90d", "checkin_missed__count_90d"),
        monotone=-1,
    ),
    Feature(
        "checkin_adherence_365d",
        "check-in adherence, last 365 days",
        "报到率（近365天）",
        "ratio",
        ratio=("checkin_attended__count_365d", "checkin_missed__count_365d"),
        monotone=-1,
    ),
    Feature(
        "methadone_adherence_90d",
        "methadone adherence, last 90 days",
        "美沙酮服药依从率（近90天）",
        "ratio",
        ratio=("methadone_dose__count_90d", "methadone_missed__count_90d"),
        monotone=-1,
    ),
    *_opioid_features(),
    *_medication_features(),
)

FEATURES: tuple[Feature, ...] = (*STATIC_FEATURES, *_event_features(), *DOMAIN_FEATURES)
FEATURES_BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
PROTECTED_ATTRIBUTES: tuple[str, ...] = ("ethnicity",)
# the features that carry a protected attribute: a config's protected_attributes keep these out
# of a model unless its allowed_features names the attribute with a reason
PROTECTED_FEATURES: dict[str, tuple[str, ...]] = {
    "sex": ("sex",),
    "district": ("district",),
    "age_band": ("age_years",),
    "ethnicity": (),
}


# features of the codebooks seen by this process (datasets' and models'), beside the spec's
_REGISTERED: list[Feature] = []
ITEM_WINDOWS: tuple[int | None, ...] = (90, 365, None)


def codebook_features(codebook: Codebook) -> tuple[Feature, ...]:
    """The features a dataset's codebook adds, derived the same way for every item: its last
    answer (a category for a categorical item), and for a numeric or ordinal item the mean and
    the maximum answer over 90 days, 365 days and all history. Labels come from the codebook,
    so explanations and rosters read them in both languages."""
    out: list[Feature] = []
    for i in codebook.items:
        base = f"item__{i.code}"
        categorical = i.kind == "categorical"
        answers = tuple(sorted(i.answers)) if categorical else None
        out.append(
            Feature(
                f"{base}__last",
                f"{i.label_en}, last answer",
                f"{i.label_zh}（最近一次回答）",
                "item_last",
                event_type="assessment",
                categories=tuple(i.answers[a] for a in answers) if answers else None,
                monotone=0 if categorical else i.direction,  # no order among categories
                item=i.code,
                answers=answers,
            )
        )
        if categorical:
            continue
        for agg in ("mean", "max"):
            for w in ITEM_WINDOWS:
                wen, wzh = _window_text(w)
                out.append(
                    Feature(
                        f"{base}__{agg}_{window_suffix(w)}",
                        f"{i.label_en}, {agg} ({wen})",
                        f"{i.label_zh}{'平均值' if agg == 'mean' else '最大值'}({wzh})",
                        "item_window",
                        event_type="assessment",
                        agg=agg,
                        window=w,
                        monotone=i.direction,
                        item=i.code,
                    )
                )
    return tuple(out)


def register(features: tuple[Feature, ...]) -> None:
    """Make codebook features known to every layer of this process (labels, monotone
    directions, categories). The same definition twice is a no-op; another definition under
    a name already taken is refused, so two codebooks never disagree silently."""
    for f in features:
        known = FEATURES_BY_NAME.get(f.name)
        if known is None:
            FEATURES_BY_NAME[f.name] = f
            _REGISTERED.append(f)
        elif known != f:
            raise ContractError(
                f"feature {f.name} is already defined differently (another codebook declares "
                f"item {f.item} otherwise); give the item another code"
            )


def feature_columns(columns: Sequence[str]) -> list[str]:
    """The columns of a built frame that are features (the spec's and its codebook's)."""
    return [c for c in columns if c in FEATURES_BY_NAME]


def with_inputs(names: list[str]) -> tuple[Feature, ...]:
    """These features and what they are computed from (a ratio's two counts), in spec order:
    what a builder must compute for a model that uses only some of the spec."""
    wanted = set(names)
    for n in names:
        wanted.update(FEATURES_BY_NAME[n].ratio or ())
    return tuple(f for f in (*FEATURES, *_REGISTERED) if f.name in wanted)


assert len(FEATURES_BY_NAME) == len(FEATURES), "feature names must be unique"
assert not set(PROTECTED_ATTRIBUTES) & set(FEATURES_BY_NAME), (
    "protected attributes are not features"
)
