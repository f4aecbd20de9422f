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
