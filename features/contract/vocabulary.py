"""The event vocabulary: every event type the registry may record, and what its fields mean.

This is the single place an event type is defined: the records of `vocabulary.yaml`, read
here into `EventType`s. Validation, the synthetic generator, the feature spec and the README
table all read from it, so a new type is added there and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import yaml

# the languages every label is kept in, Chinese first (the pages' default)
LANGS = ("zh", "en")
RESIDENTIAL_REHAB = ("compulsory_isolation", "voluntary")
# the residential kinds as a SQL list, for `detail IN (...)`
RESIDENTIAL_SQL = ", ".join(f"'{k}'" for k in RESIDENTIAL_REHAB)
COMMUNITY_PROGRAMMES = ("community_rehab", "community_recovery")
# Medically supervised withdrawal in hospital: clinical, not one of the programme's rehab orders,
# so it never puts a person into the relapse cohort.
MEDICAL_WITHDRAWAL = ("detox",)
REHAB_KINDS = RESIDENTIAL_REHAB + COMMUNITY_PROGRAMMES + MEDICAL_WITHDRAWAL

# Medications for opioid use disorder a clinic may start someone on.
MEDICATIONS = ("methadone", "buprenorphine", "naltrexone")

SUBSTANCES = (
    "heroin",
    "methamphetamine",
    "ketamine",
    "new_psychoactive",
    "cannabis",
    "other",
    # Urine-screen drug classes and self-reported substances of treatment clinics (US trials
    # among them). "opioid" is an opioid class a screen cannot split further (morphine,
    # oxycodone, ...); a positive for methadone or buprenorphine is recorded only when that
    # medication was not prescribed to the person.
    "opioid",
    "methadone",
    "buprenorphine",
    "cocaine",
    "amphetamine",
    "benzodiazepine",
    "sedative",
    "alcohol",
)
OPIOIDS = ("heroin", "opioid", "methadone", "buprenorphine")

SEXES = ("F", "M")

# Guiyang's six districts, one county-level city and three counties.
DISTRICTS = (
    "nanming",
    "yunyan",
    "huaxi",
    "wudang",
    "baiyun",
    "guanshanhu",
    "qingzhen",
    "kaiyang",
    "xifeng",
    "xiuwen",
)
DISTRICT_LABELS_ZH = {
    "nanming": "南明区",
    "yunyan": "云岩区",
    "huaxi": "花溪区",
    "wudang": "乌当区",
    "baiyun": "白云区",
    "guanshanhu": "观山湖区",
    "qingzhen": "清镇市",
    "kaiyang": "开阳县",
    "xifeng": "息烽县",
    "xiuwen": "修文县",
}


# Every code a registry writes in `detail` (and a person's sex), in English and Chinese: what
# a page, a roster or an explanation shows instead of the code. The closed lists above, and the
# free-text values the programme's registry uses (venues, courses, relations, instruments); a
# free text not listed here is the registry's own words and is shown as written.
CODE_LABELS: dict[str, tuple[str, str]] = {
    "heroin": ("heroin", "海洛因"),
    "methamphetamine": ("methamphetamine", "冰毒"),
    "ketamine": ("ketamine", "氯胺酮"),
    "new_psychoactive": ("new psychoactive substance", "新精神活性物质"),
    "cannabis": ("cannabis", "大麻"),
    "other": ("other substance", "其他物质"),
    "opioid": ("other opioid", "其他阿片类"),
    "methadone": ("methadone", "美沙酮"),
    "buprenorphine": ("buprenorphine", "丁丙诺啡"),
    "naltrexone": ("naltrexone", "纳曲酮"),
    "cocaine": ("cocaine", "可卡因"),
    "amphetamine": ("amphetamine", "苯丙胺"),
    "benzodiazepine": ("benzodiazepine", "苯二氮䓬类药物"),
    "sedative": ("sedative", "镇静催眠药"),
    "alcohol": ("alcohol", "酒精"),
    "compulsory_isolation": ("compulsory isolation", "强制隔离戒毒"),
    "voluntary": ("voluntary residential rehab", "自愿戒毒"),
    "community_rehab": ("community drug treatment", "社区戒毒"),
    "community_recovery": ("community rehabilitation", "社区康复"),
    "detox": ("medical withdrawal", "医疗脱毒"),
    "PHQ-9": ("depression questionnaire (PHQ-9)", "抑郁筛查量表"),
    "cooking": ("cooking", "烹饪"),
    "auto repair": ("auto repair", "汽车维修"),
    "cosmetology": ("beauty and hairdressing", "美容美发"),
    "catering": ("catering", "餐饮服务"),
    "sunshine project": ("Sunshine project job", "阳光工程岗位"),
    "construction": ("construction", "建筑业"),
    "fighting": ("fighting", "打架"),
    "truancy": ("truancy", "逃学"),
    "school programme": ("school prevention class", "校园禁毒课"),
    "father": ("father", "父亲"),
    "mother": ("mother", "母亲"),
    "sibling": ("brother or sister", "兄弟姐妹"),
    "both parents": ("both parents", "父母双方"),
    "KTV": ("karaoke bar", "歌厅"),
    "bar": ("bar", "酒吧"),
    "internet cafe": ("internet cafe", "网吧"),
    "F": ("female", "女"),
    "M": ("male", "男"),
}


# codes declared beside their meaning elsewhere: a task's support options, which a
# `support_offered` event names (features.tasks.register declares them)
DECLARED_LABELS: dict[str, tuple[str, str]] = {}


def declare_codes(labels: dict[str, tuple[str, str]]) -> None:
    """Codes declared beside their meaning elsewhere, with their English and Chinese labels."""
    DECLARED_LABELS.update(labels)


def code_label(code: str, lang: str) -> str:
    """A code as a reader sees it: its label in `lang`, a district by its name, and a free
    text nobody declared as written."""
    if lang == "zh" and code in DISTRICT_LABELS_ZH:
        return DISTRICT_LABELS_ZH[code]
    if code in DISTRICTS:
        return code.capitalize()
    labels = CODE_LABELS.get(code) or DECLARED_LABELS.get(code)
    return code if labels is None else labels[lang == "zh"]


@dataclass(frozen=True)
class EventType:
    name: str
    meaning: str
    label_en: str
    label_zh: str
    value: str | None = None  # what `value` holds; None means value must be empty
    value_range: tuple[float, float] | None = None
    value_required: bool = False
    detail: str | None = None  # what `detail` holds
    detail_choices: tuple[str, ...] | None = None  # closed set, checked by validation
    group: str = "treatment"  # treatment | support | youth | clinical | registry
    # False for baseline assessments, asked once or rarely: their statistics over 30 to 365
    # days repeat the all-history ones, so only all-history features are built.
    windowed: bool = True
    singular: str | None = None  # one such event, for "days since the last ..."
    # False for administrative facts (a move between districts) that describe the registry's
    # bookkeeping, not the person's behaviour: no model feature is built from them
    features: bool = True
    # what a value means to a reader: the unit of an amount, or the words for 1 and 0 of a
    # yes/no value (a urine test's result), each as (English, Chinese)
    unit: tuple[str, str] | None = None
    value_words: tuple[tuple[str, str], tuple[str, str]] | None = None  # (for 1, for 0)

    @property
    def singular_en(self) -> str:
        return self.singular or self.label_en

    @property
    def valued(self) -> bool:
        return self.value is not None


CHOICES = {
    "rehab_kinds": REHAB_KINDS,
    "substances": SUBSTANCES,
    "medications": MEDICATIONS,
    "districts": DISTRICTS,
}


def _load() -> tuple[EventType, ...]:
    """The declarations in vocabulary.yaml, a data file so that adding a type is adding a
    record (the closed lists of `detail` are named there, and defined above)."""
    raw = yaml.safe_load(
        resources.files("features.contract").joinpath("vocabulary.yaml").read_text("utf-8")
    )
    out = []
    for entry in raw:
        e = dict(entry)
        if "value_range" in e:
            e["value_range"] = tuple(e["value_range"])
        if "detail_choices" in e:
            e["detail_choices"] = CHOICES[e["detail_choices"]]
        for key in ("unit", "value_words"):
            if key in e:
                e[key] = tuple(tuple(x) if isinstance(x, list) else x for x in e[key])
        if "singular_en" in e:
            e["singular"] = e.pop("singular_en")
        out.append(EventType(**e))
    return tuple(out)


EVENT_TYPES: tuple[EventType, ...] = _load()
EVENT_TYPES_BY_NAME: dict[str, EventType] = {e.name: e for e in EVENT_TYPES}


def markdown_table() -> str:
    """Rendered into the README so the documentation cannot drift from the code."""
    rows = ["| event_type | meaning | value | detail |", "|---|---|---|---|"]
    for e in EVENT_TYPES:
        detail = e.detail or "empty"
        if e.detail_choices:
            detail += ": " + ", ".join(f"`{c}`" for c in e.detail_choices)
        value = e.value or "empty"
        if e.value_required:
            value += " (required)"
        rows.append(f"| `{e.name}` | {e.meaning} | {value} | {detail} |")
    return "\n".join(rows)
