"""The event vocabulary: every event type the registry may record, and what its fields mean.

This is the single place an event type is defined. Validation, the synthetic generator, the
feature spec and the README table all read from it, so a new type is added here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

RESIDENTIAL_REHAB = ("compulsory_isolation", "voluntary")
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


SINGULAR_EN = {
    "urine_test": "urine test",
    "drug_arrest": "drug-use arrest",
    "rehab_admission": "rehab admission",
    "rehab_discharge": "rehab discharge",
    "checkin_attended": "attended check-in",
    "checkin_missed": "missed check-in",
    "methadone_dose": "methadone dose",
    "methadone_missed": "missed methadone dose",
    "skills_training": "skills-training session",
    "training_certificate": "training certificate",
    "employment_start": "job start",
    "employment_end": "job end",
    "family_support_contact": "family-support contact",
    "social_worker_contact": "social-worker contact",
    "volunteer_contact": "volunteer contact",
    "mental_health_screening": "mental-health screening",
    "school_absence": "school absence report",
    "school_discipline": "discipline incident",
    "school_dropout": "school dropout",
    "prevention_class": "prevention class",
    "family_drug_record": "family drug-record link",
    "contact_known_user": "contact with a known user",
    "left_behind_status": "left-behind status change",
    "venue_encounter": "entertainment-venue encounter",
    "self_reported_use": "self-reported day of use",
    "medication_start": "medication start",
    "buprenorphine_dose": "buprenorphine dose",
    "naltrexone_injection": "naltrexone injection",
    "withdrawal_assessment": "withdrawal assessment",
    "injection_drug_use": "injection-drug-use report",
    "psychiatric_diagnosis": "psychiatric diagnosis",
    "pain_report": "pain report",
    "nicotine_dependence": "nicotine-dependence assessment",
    "unstable_housing": "unstable-housing report",
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
    group: str = "treatment"  # treatment | support | youth | clinical
    # False for baseline assessments, asked once or rarely: their statistics over 30 to 365
    # days repeat the all-history ones, so only all-history features are built.
    windowed: bool = True

    @property
    def singular_en(self) -> str:
        """One such event, for "days since the last ..."."""
        return SINGULAR_EN.get(self.name, self.label_en)

    @property
    def valued(self) -> bool:
        return self.value is not None


EVENT_TYPES: tuple[EventType, ...] = (
    EventType(
        "urine_test",
        "A urine drug screen was taken.",
        "urine tests",
        "尿检",
        value="result: 1 = positive, 0 = negative",
        value_range=(0, 1),
        value_required=True,
        detail="substance detected when positive (one of the substance codes); empty if negative",
    ),
    EventType(
        "drug_arrest",
        "Arrest or police record for drug use.",
        "drug-use arrests",
        "吸毒被查获",
        detail="substance involved, if recorded",
    ),
    EventType(
        "rehab_admission",
        "Start of a rehabilitation episode.",
        "rehab admissions",
        "戒毒入所/入册",
        detail="kind of rehab",
        detail_choices=REHAB_KINDS,
    ),
    EventType(
        "rehab_discharge",
        "End of a rehabilitation episode (release from a facility or end of a community order).",
        "rehab discharges",
        "戒毒出所/解除",
        detail="kind of rehab",
        detail_choices=REHAB_KINDS,
    ),
    EventType(
        "checkin_attended",
        "A scheduled community check-in the person attended.",
        "check-ins attended",
        "按时报到",
    ),
    EventType(
        "checkin_missed",
        "A scheduled community check-in the person missed.",
        "check-ins missed",
        "未按时报到",
    ),
    EventType(
        "methadone_dose",
        "A methadone maintenance dose dispensed at a clinic visit.",
        "methadone dose (mg)",
        "美沙酮服药剂量(毫克)",
        value="dose in mg (may be missing)",
        value_range=(0, 400),
    ),
    EventType(
        "methadone_missed",
        "A scheduled methadone clinic visit the person missed.",
        "missed methadone doses",
        "美沙酮漏服",
    ),
    EventType(
        "skills_training",
        "Attendance at a vocational skills course.",
        "skills training sessions",
        "技能培训",
        detail="course name, free text",
    ),
    EventType(
        "training_certificate",
        "A vocational certificate was awarded.",
        "training certificates",
        "职业技能证书",
        detail="certificate name, free text",
    ),
    EventType(
        "employment_start",
        "Started a job (including Sunshine-project placements).",
        "jobs started",
        "开始就业",
        detail="sector or employer kind, free text",
    ),
    EventType(
        "employment_end",
        "A job ended.",
        "jobs ended",
        "结束就业",
        detail="reason, free text",
    ),
    EventType(
        "family_support_contact",
        "Contact with family support (family committee, family visit or family counselling).",
        "family-support contacts",
        "家庭帮教",
        group="support",
    ),
    EventType(
        "social_worker_contact",
        "Contact with the assigned drug-control social worker.",
        "social-worker contacts",
        "禁毒社工帮扶",
        group="support",
    ),
    EventType(
        "volunteer_contact",
        "Contact with a programme volunteer.",
        "volunteer contacts",
        "志愿者帮扶",
        group="support",
    ),
    EventType(
        "mental_health_screening",
        "A mental-health screening was scored.",
        "mental-health screening score",
        "心理健康筛查得分",
        value="score; higher is worse (PHQ-9 scale 0-27)",
        value_range=(0, 27),
        value_required=True,
        detail="instrument, e.g. PHQ-9",
        group="support",
    ),
    EventType(
        "school_absence",
        "A school reported days absent in the past month (reported only when above zero).",
        "school absence (days)",
        "缺课天数",
        value="days absent in the month",
        value_range=(0, 31),
        value_required=True,
        group="youth",
    ),
    EventType(
        "school_discipline",
        "A school discipline incident.",
        "school discipline incidents",
        "校纪处分",
        detail="kind of incident, free text",
        group="youth",
    ),
    EventType(
        "school_dropout",
        "The young person left school before completing it.",
        "school dropout",
        "辍学",
        group="youth",
    ),
    EventType(
        "prevention_class",
        "Attendance at a drug-prevention class or activity.",
        "prevention classes",
        "禁毒预防教育",
        detail="programme name, free text",
        group="youth",
    ),
    EventType(
        "family_drug_record",
        "The registry linked a family member with a drug record.",
        "family member with a drug record",
        "家庭成员有吸毒记录",
        detail="relation, free text",
        group="youth",
    ),
    EventType(
        "contact_known_user",
        "Recorded contact with a known drug user.",
        "contacts with known users",
        "与吸毒人员接触",
        detail="setting, free text",
        group="youth",
    ),
    EventType(
        "left_behind_status",
        "Left-behind-child status changed (parents working away from home).",
        "left-behind status",
        "留守儿童状态",
        value="1 = parents away (left behind), 0 = a parent returned",
        value_range=(0, 1),
        value_required=True,
        detail="which parents are away, free text",
        group="youth",
    ),
    EventType(
        "venue_encounter",
        "Encountered at an entertainment venue during an inspection (KTV, bar, internet cafe).",
        "entertainment-venue encounters",
        "娱乐场所被查见",
        detail="venue kind, free text",
        group="youth",
    ),
    EventType(
        "self_reported_use",
        "A day of substance use the person reported (timeline follow-back interview).",
        "self-reported days of use",
        "自报使用天数",
        detail="substance code",
        detail_choices=SUBSTANCES,
        group="clinical",
    ),
    EventType(
        "medication_start",
        "Started or switched to a medication for opioid use disorder.",
        "medication starts",
        "开始药物维持治疗",
        detail="medication",
        detail_choices=MEDICATIONS,
        group="clinical",
    ),
    EventType(
        "buprenorphine_dose",
        "A buprenorphine dose dispensed.",
        "buprenorphine dose (mg)",
        "丁丙诺啡剂量(毫克)",
        value="dose in mg",
        value_range=(0, 100),
        group="clinical",
    ),
    EventType(
        "naltrexone_injection",
        "An extended-release naltrexone injection was given.",
        "naltrexone injections",
        "纳曲酮注射",
        group="clinical",
    ),
    EventType(
        "withdrawal_assessment",
        "Opioid withdrawal severity was assessed.",
        "withdrawal severity",
        "戒断症状严重程度",
        value="grade: 0 none, 1 mild, 2 moderate, 3 severe",
        value_range=(0, 3),
        value_required=True,
        group="clinical",
    ),
    EventType(
        "injection_drug_use",
        "The person reported injecting drugs.",
        "injection-drug-use reports",
        "注射吸毒报告",
        value="days injected in the past 30 days, if asked",
        value_range=(0, 30),
        group="clinical",
        windowed=False,
    ),
    EventType(
        "psychiatric_diagnosis",
        "A psychiatric diagnosis was recorded (one event per diagnosis).",
        "psychiatric diagnoses",
        "精神科诊断",
        detail="diagnosis, e.g. major_depression, bipolar, anxiety, schizophrenia",
        group="clinical",
        windowed=False,
    ),
    EventType(
        "pain_report",
        "Pain was self-rated.",
        "pain level",
        "疼痛程度",
        value="0 no pain, 1 very mild to moderate, 2 severe",
        value_range=(0, 2),
        value_required=True,
        group="clinical",
        windowed=False,
    ),
    EventType(
        "nicotine_dependence",
        "Nicotine dependence was scored (Fagerstrom test).",
        "nicotine dependence score",
        "尼古丁依赖评分",
        value="Fagerstrom score, 0-10",
        value_range=(0, 10),
        value_required=True,
        group="clinical",
        windowed=False,
    ),
    EventType(
        "unstable_housing",
        "The person reported unstable housing or homelessness.",
        "unstable-housing reports",
        "居住不稳定",
        group="clinical",
        windowed=False,
    ),
)

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
