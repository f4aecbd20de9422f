"""The CTN-0094 trials as persons and events of the registry contract.

Time. The trials count study days from signed consent (day 0). Every participant's day 0 maps to
the same calendar date, DAY_ZERO, and an event of study day d happens at 00:00 of DAY_ZERO + d.
Calendar dates therefore carry no meaning across participants, which is why the benchmark splits
by person, not by date.

What becomes what:
- `uds`, `visit`: a urine test on every day with an attended visit or a screen result. Each
  substance found is a positive test with the substance as detail; a day with none is one negative
  test. The study medication of the participant's arm (methadone, buprenorphine) is expected in
  the urine once prescribed, so it is not a positive from then on. An attended visit is an
  attended check-in; a missed visit is a missed check-in on its scheduled day (week n of the
  phase = n weeks after that phase's randomization).
- `tlfb`: a self-reported day of use per substance.
- `randomization`: a medication start (the arm's medication) on each randomization day.
- `treatment`: a methadone or buprenorphine dose (mg), or a naltrexone injection, by arm.
- `withdrawal`: a withdrawal assessment (grade 0-3). `detox`: admission and discharge of a
  medically supervised withdrawal.
- Baseline surveys, dated at consent: injection drug use (`asi`, `rbs_iv`), pain (dated as
  recorded), nicotine dependence (`fagerstrom`), and a job (`demographics`) as an employment
  start. The yes/no intake questions (psychiatric and substance use disorder diagnoses in
  `psychiatric`, stable living in `demographics`, homelessness in `qol`) are coded items of the
  dataset's codebook (`codebook.csv`), answered as `assessment` events: a "no" stays apart
  from a question never asked, which the presence-only types `psychiatric_diagnosis` and
  `unstable_housing` could not keep apart.
- `demographics`: birth date (from age at consent), sex; race as the protected attribute, kept
  for audits only. Hispanic ethnicity and the trial stay in the participants table, for audits.

Nothing is dropped silently: whatever cannot be placed (a participant without an age, a visit
without a day) is counted in `Trial.left_out`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.core.io import atomic_path, write_table
from features.storage.store import METADATA_FILE

DAY_ZERO = dt.date(2000, 1, 1)

ARM_MEDICATION = {
    "Methadone": "methadone",
    "Outpatient BUP": "buprenorphine",
    "Outpatient BUP + EMM": "buprenorphine",
    "Outpatient BUP + SMM": "buprenorphine",
    "Inpatient BUP": "buprenorphine",
    "Inpatient NR-NTX": "naltrexone",
}
DOSE_EVENT = {
    "methadone": "methadone_dose",
    "buprenorphine": "buprenorphine_dose",
    "naltrexone": "naltrexone_injection",
}
UDS_SUBSTANCE = {
    "Opioid": "opioid",
    "Methadone": "methadone",
    "Buprenorphine": "buprenorphine",
    "Cocaine": "cocaine",
    "Thc": "cannabis",
    "Amphetamine": "amphetamine",
    "Benzodiazepine": "benzodiazepine",
    "Sedatives": "sedative",
    "Alcohol": "alcohol",
}
TLFB_SUBSTANCE = {
    **UDS_SUBSTANCE,
    "Heroin": "heroin",
    "THC": "cannabis",
    "K2": "cannabis",
    "Methylphenidate": "amphetamine",
    "Cathinones": "amphetamine",
}
# intake questions answered yes or no, as coded items of the dataset's codebook: a "no" is kept
# apart from a question never asked (a missing answer), which a presence-only event type could
# not do. column -> (item code, English, Chinese)
YES_NO_ITEMS = {
    "has_schizophrenia": (
        "dx_schizophrenia",
        "ever diagnosed with schizophrenia",
        "曾诊断精神分裂症",
    ),
    "has_major_dep": (
        "dx_major_depression",
        "ever diagnosed with major depression",
        "曾诊断重度抑郁",
    ),
    "has_bipolar": ("dx_bipolar", "ever diagnosed with bipolar disorder", "曾诊断双相障碍"),
    "has_anx_pan": (
        "dx_anxiety_panic",
        "ever diagnosed with anxiety or panic disorder",
        "曾诊断焦虑或惊恐障碍",
    ),
    "has_brain_damage": ("dx_brain_damage", "ever had a brain injury", "曾有脑损伤"),
    "has_epilepsy": ("dx_epilepsy", "ever diagnosed with epilepsy", "曾诊断癫痫"),
    "has_alcol_dx": ("dx_alcohol_use", "alcohol use disorder diagnosed", "诊断酒精使用障碍"),
    "has_amphetamines_dx": (
        "dx_amphetamine_use",
        "amphetamine use disorder diagnosed",
        "诊断苯丙胺类使用障碍",
    ),
    "has_cannabis_dx": ("dx_cannabis_use", "cannabis use disorder diagnosed", "诊断大麻使用障碍"),
    "has_cocaine_dx": ("dx_cocaine_use", "cocaine use disorder diagnosed", "诊断可卡因使用障碍"),
    "has_sedatives_dx": (
        "dx_sedative_use",
        "sedative use disorder diagnosed",
        "诊断镇静剂使用障碍",
    ),
    "is_living_stable": ("living_stable", "living situation stable", "居住情况稳定"),
    "is_homeless": ("homeless", "homeless", "无家可归"),
}
YES_NO = {"Yes": 1.0, "No": 2.0}
CODEBOOK = "code,label_en,label_zh,kind,min,max,values,direction\n" + "".join(
    f"{code},{en},{zh},categorical,,,1=yes;2=no,\n" for code, en, zh in YES_NO_ITEMS.values()
)
PAIN = {"No Pain": 0.0, "Very mild to Moderate Pain": 1.0, "Severe Pain": 2.0}
SCHEDULED_WEEK = re.compile(r"^(?:P(?P<phase>[12]))?WK(?P<week>\d+)", re.IGNORECASE)


@dataclass
class Trial:
    persons: pd.DataFrame
    events: pd.DataFrame
    participants: pd.DataFrame  # one row per person: trial, arm, randomization days, audit data
    left_out: dict[str, int] = field(default_factory=dict)

    @property
    def reference_date(self) -> dt.date:
        return (self.events["event_time"].max() + pd.Timedelta(days=1)).date()


def person_id(who: pd.Series) -> pd.Series:
    return "ctn" + who.astype(int).astype(str).str.zfill(4)


def study_time(day: pd.Series) -> pd.Series:
    return pd.Timestamp(DAY_ZERO) + pd.to_timedelta(day.astype(float), unit="D")


def _participants(t: dict[str, pd.DataFrame]) -> pd.DataFrame:
    rand = t["randomization"].assign(which=lambda f: f["which"].astype(str))
    first = rand[rand.which == "1"].set_index("who")
    second = rand[rand.which == "2"].set_index("who")
    demo = t["demographics"].set_index("who")
    p = t["everybody"].set_index("who")[["project"]].astype(str)
    p["arm"] = first["treatment"]
    p["medication"] = p["arm"].map(ARM_MEDICATION)
    p["first_randomization_day"] = first["when"]
    # Luo et al.'s population: participants of the treatment phase, the second randomization
    # of CTN-0030 (after a failed taper) and the one randomization of CTN-0027 and CTN-0051
    p["randomization_day"] = second["when"]
    p["age"] = demo["age"]
    p["sex"] = demo["is_male"].map({"Yes": "M", "No": "F"})
    p["race"] = demo["race"].where(demo["race"] != "Refused/missing")
    p["hispanic"] = demo["is_hispanic"]
    p = p.reset_index()
    p.insert(0, "person_id", person_id(p["who"]))
    return p


def _events(
    pid: pd.Series, day: pd.Series, event_type: str, value=None, detail=None
) -> pd.DataFrame:
    n = len(pid)
    return pd.DataFrame(
        {
            "person_id": pid.to_numpy(),
            "event_time": study_time(day).to_numpy(),
            "event_type": event_type,
            "value": np.full(n, np.nan) if value is None else np.asarray(value, float),
            "detail": np.full(n, None, object) if detail is None else np.asarray(detail, object),
        }
    )


def _usable(frame: pd.DataFrame, what: str, left_out: dict[str, int], *cols: str) -> pd.DataFrame:
    """The rows with every one of `cols`; the others are counted, not silently lost."""
    keep = frame[list(cols)].notna().all(axis=1)
    if (~keep).any():
        left_out[f"{what} rows without {' or '.join(cols)}"] = int((~keep).sum())
    return frame[keep]


def _urine_tests(t: dict[str, pd.DataFrame], part: pd.DataFrame, left_out: dict) -> pd.DataFrame:
    prescribed = part.set_index("who")[["medication", "first_randomization_day"]]
    uds = _usable(t["uds"], "uds", left_out, "when").join(prescribed, on="who")
    uds["substance"] = uds["what"].map(UDS_SUBSTANCE).fillna("other")
    expected = (uds["substance"] == uds["medication"]) & (
        uds["when"] >= uds["first_randomization_day"]
    )
    positives = uds.loc[~expected, ["who", "when", "substance"]].drop_duplicates()
    visits = t["visit"]
    days = pd.concat(
        [uds[["who", "when"]], visits.loc[visits["what"] == "visit", ["who", "when"]]]
    ).drop_duplicates()
    negative = days.merge(positives[["who", "when"]].drop_duplicates(), how="left", indicator=True)
    negative = negative[negative["_merge"] == "left_only"]
    return pd.concat(
        [
            _events(
                person_id(positives.who), positives.when, "urine_test", 1.0, positives.substance
            ),
            _events(person_id(negative.who), negative.when, "urine_test", np.zeros(len(negative))),
        ]
    )


def _visits(t: dict[str, pd.DataFrame], part: pd.DataFrame, left_out: dict) -> pd.DataFrame:
    v = t["visit"]
    attended = v.loc[v["what"] == "visit", ["who", "when"]].drop_duplicates()
    missed = v[v["what"] == "MISSING"].join(
        part.set_index("who")[["first_randomization_day", "randomization_day", "project"]],
        on="who",
    )
    week = missed["visit"].astype(str).str.extract(SCHEDULED_WEEK)
    second_phase = (week["phase"] == "2").to_numpy()
    base = np.where(
        second_phase, missed["randomization_day"], missed["first_randomization_day"]
    ).astype(float)
    scheduled = missed["when"].fillna(
        pd.Series(base + 7 * week["week"].astype(float).to_numpy(), index=missed.index)
    )
    dated = scheduled.notna()
    left_out["missed visits without a scheduled day"] = int((~dated).sum())
    left_out["visits recorded as 'no visit' (not scheduled or excused)"] = int(
        (v["what"] == "no visit").sum()
    )
    missed = missed.assign(day=scheduled)[dated].drop_duplicates(["who", "day"])
    return pd.concat(
        [
            _events(person_id(attended.who), attended.when, "checkin_attended"),
            _events(person_id(missed.who), missed.day, "checkin_missed"),
        ]
    )


def _treatment(t: dict[str, pd.DataFrame], part: pd.DataFrame, left_out: dict) -> pd.DataFrame:
    by_who = part.set_index("who")
    rand = part.dropna(subset=["first_randomization_day", "medication"])
    second = rand[rand["randomization_day"] != rand["first_randomization_day"]].dropna(
        subset=["randomization_day"]
    )
    out = [
        _events(
            person_id(rand.who),
            rand.first_randomization_day,
            "medication_start",
            None,
            rand.medication,
        ),
        _events(
            person_id(second.who),
            second.randomization_day,
            "medication_start",
            None,
            second.medication,
        ),
    ]
    doses = _usable(t["treatment"], "treatment", left_out, "when", "amount")
    doses = doses.join(by_who["medication"], on="who")
    left_out["doses of participants never randomized to a medication"] = int(
        doses["medication"].isna().sum()
    )
    for med, kind in DOSE_EVENT.items():
        d = doses[doses["medication"] == med]
        value = None if kind == "naltrexone_injection" else d["amount"]
        out.append(_events(person_id(d.who), d.when, kind, value))
    return pd.concat(out)


def _clinical(t: dict[str, pd.DataFrame], left_out: dict) -> pd.DataFrame:
    tl = _usable(t["tlfb"], "tlfb", left_out, "when")
    tl = tl.assign(substance=tl["what"].map(TLFB_SUBSTANCE).fillna("other"))
    tl = tl[["who", "when", "substance"]].drop_duplicates()
    w = _usable(t["withdrawal"], "withdrawal", left_out, "when", "withdrawal")
    dx = _usable(t["detox"], "detox", left_out, "when")
    pain = t["pain"].assign(level=lambda f: f["pain"].map(PAIN))
    pain = _usable(pain, "pain", left_out, "when", "level")
    return pd.concat(
        [
            _events(person_id(tl.who), tl.when, "self_reported_use", None, tl.substance),
            _events(person_id(w.who), w.when, "withdrawal_assessment", w.withdrawal.astype(float)),
            _events(
                person_id(dx.who),
                dx.when,
                dx["what"].map({"admission": "rehab_admission", "discharge": "rehab_discharge"}),
                None,
                np.full(len(dx), "detox", object),
            ),
            _events(person_id(pain.who), pain.when, "pain_report", pain.level),
        ]
    )


def _baseline(t: dict[str, pd.DataFrame], left_out: dict) -> pd.DataFrame:
    """Survey answers at consent (study day 0), before any randomization."""
    demo = t["demographics"]
    out = []

    def at_consent(who: pd.Series, kind: str, value=None, detail=None) -> None:
        out.append(_events(person_id(who), pd.Series(0.0, index=who.index), kind, value, detail))

    job = demo[demo["job"].isin(["Full Time", "Part Time"])]
    at_consent(job.who, "employment_start", None, job.job.str.lower())
    iv = t["asi"].merge(t["rbs_iv"][["who", "days"]], on="who", how="outer")
    iv = iv[(iv["used_iv"] == "Yes") | (iv["days"] > 0)]
    at_consent(iv.who, "injection_drug_use", iv["days"].clip(0, 30))
    for table in (demo, t["psychiatric"], t["qol"]):
        columns = [c for c in YES_NO_ITEMS if c in table.columns]
        answers = table.melt("who", columns, "column", "answer")
        answers = answers[answers["answer"].isin(list(YES_NO))]  # unasked or unanswered: none
        codes = answers["column"].map(lambda c: YES_NO_ITEMS[c][0])
        at_consent(answers.who, "assessment", answers.answer.map(YES_NO), codes)
    ftnd = t["fagerstrom"].assign(score=lambda f: pd.to_numeric(f["ftnd"], errors="coerce"))
    ftnd = _usable(ftnd, "fagerstrom", left_out, "score")
    at_consent(ftnd.who, "nicotine_dependence", ftnd.score)
    return pd.concat(out)


def convert(t: dict[str, pd.DataFrame]) -> Trial:
    left_out = {
        f"{name} rows without a participant id": f.attrs["rows_without_participant"]
        for name, f in t.items()
        if f.attrs.get("rows_without_participant")
    }
    part = _participants(t)
    events = pd.concat(
        [
            _urine_tests(t, part, left_out),
            _visits(t, part, left_out),
            _treatment(t, part, left_out),
            _clinical(t, left_out),
            _baseline(t, left_out),
        ],
        ignore_index=True,
    )
    known = part.dropna(subset=["age"])
    left_out["participants without an age (the contract needs a birth date)"] = len(part) - len(
        known
    )
    unknown = ~events["person_id"].isin(known["person_id"])
    left_out["events of those participants"] = int(unknown.sum())
    events = events[~unknown].sort_values(["person_id", "event_time", "event_type"])
    # age in whole years at consent: born half a year before that birthday, on average
    birth = pd.Timestamp(DAY_ZERO) - pd.to_timedelta((known["age"] + 0.5) * 365.25, unit="D")
    persons = pd.DataFrame(
        {
            "person_id": known["person_id"],
            "birth_date": birth.dt.date,
            "sex": known["sex"],
            "district": None,
            "ethnicity": known["race"],
            "registration_date": DAY_ZERO,  # enrolled with opioid use disorder
            "primary_substance": "opioid",
        }
    )
    return Trial(persons.reset_index(drop=True), events.reset_index(drop=True), part, left_out)


def subset(trial: Trial, persons: pd.Series) -> Trial:
    """The same trial restricted to some persons, for quick runs and tests."""
    keep = set(persons)
    return Trial(
        trial.persons[trial.persons["person_id"].isin(keep)].reset_index(drop=True),
        trial.events[trial.events["person_id"].isin(keep)].reset_index(drop=True),
        trial.participants[trial.participants["person_id"].isin(keep)].reset_index(drop=True),
        dict(trial.left_out),
    )


def write_dataset(trial: Trial, out: Path) -> None:
    """persons.parquet, events.parquet and dataset.json: a registry folder like any other."""
    out = Path(out)
    write_table(trial.persons, out / "persons.parquet")
    write_table(trial.events, out / "events.parquet")
    with atomic_path(out / "codebook.csv") as tmp:
        tmp.write_text(CODEBOOK, encoding="utf-8")
    meta = {
        "reference_date": trial.reference_date.isoformat(),
        "source": "CTN-0094 (public.ctn0094data, public.ctn0094extra; MIT licence)",
        "day_zero": DAY_ZERO.isoformat(),
        "persons": len(trial.persons),
        "events": len(trial.events),
        "left_out": trial.left_out,
    }
    with atomic_path(out / METADATA_FILE) as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
