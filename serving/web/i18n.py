"""The web pages' words: Chinese first, English one click away.

Every text a page shows comes through `Texts`. Interface words, tiers, statuses, outcomes and
errors are messages of one gettext catalogue (`locale/zh_CN/LC_MESSAGES/messages.po`, read
with Babel; English is the message id itself, so English needs no catalogue). The names of the
programme's own things are declared bilingually where they are defined, once for the API, the
rosters and the pages alike, and `Texts` reads them there: district names (vocabulary), event
types (vocabulary), factor labels (feature spec), support options and task titles (task
registry), indicator titles (indicators). A test extracts every message from the templates
and this package and fails on one the catalogue does not translate.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
from babel.messages.pofile import read_po

from features.contract.vocabulary import DISTRICT_LABELS_ZH, EVENT_TYPES_BY_NAME, code_label
from features.indicators.inputs import CITY
from features.tasks import SupportOption, Task
from serving.scoring.reasons import COLON, event_value

CATALOGUE = Path(__file__).parent / "locale" / "zh_CN" / "LC_MESSAGES" / "messages.po"
DEFAULT_LANG = "zh"
HTML_LANG = {"zh": "zh-CN", "en": "en"}


def N_(message: str) -> str:
    """Marks a message whose use is chosen at run time, so extraction still finds it."""
    return message


TIER_LABELS = {"high": N_("High risk"), "medium": N_("Medium risk"), "low": N_("Low risk")}
# a support option's estimated fall in risk, as the person and caseload pages say it; shown only
# where it lowers the risk by at least 0.05 points, so it never reads "about 0.0 points"
LOWERS_BY = N_("%(option)s: lowers the risk by about %(points)s percentage points")
SHOWN_FALL = -0.0005
OUTCOME_LABELS = {"offered": N_("Offered"), "accepted": N_("Accepted"), "declined": N_("Declined")}
STATUSES = {
    "ok": N_("OK"),
    "warning": N_("Warning"),
    "alert": N_("Alert"),
    None: N_("Not checked yet"),
}
SORT_LABELS = {
    "risk": N_("Risk, highest first"),
    "change": N_("Change, largest rise first"),
    "contact": N_("Last contact, longest ago first"),
    "benefit": N_("Expected benefit of support, largest first"),
}
ROLE_LABELS = {
    "caseworker": N_("Caseworker"),
    "analyst": N_("Analyst"),
    "admin": N_("Administrator"),
}


def share_above(percentile: float) -> int:
    """The percent of comparable persons at or above a score, in whole percent: at least 1,
    so a page never says "top 0%" (nor a percentile of 100)."""
    return max(1, math.ceil(100 - percentile))


@cache
def catalogue() -> dict[str, str]:
    """The Chinese of every translated message (fuzzy entries are not translations yet)."""
    with CATALOGUE.open("rb") as f:
        po = read_po(f, locale="zh_CN")
    return {
        m.id: m.string
        for m in po
        if isinstance(m.id, str) and m.id and isinstance(m.string, str) and m.string and not m.fuzzy
    }


@dataclass(frozen=True)
class Texts:
    lang: str

    def __call__(self, message: str, **values: Any) -> str:
        text = catalogue().get(message, message) if self.lang == "zh" else message
        return text % values if values else text

    @property
    def html_lang(self) -> str:
        return HTML_LANG[self.lang]

    def both(self, en: str, zh: str) -> str:
        return zh if self.lang == "zh" else en

    def district(self, code: str | None) -> str:
        if not isinstance(code, str):  # registered without one (about 1% of a registry)
            return self(N_("District unknown"))
        if code == CITY:
            return self(N_("Whole city"))
        return self.both(code.capitalize(), DISTRICT_LABELS_ZH.get(code, code))

    def tier(self, tier: str) -> str:
        return self(TIER_LABELS[tier])

    def outcome(self, outcome: str) -> str:
        return self(OUTCOME_LABELS[outcome])

    def status(self, status: str | None) -> str:
        return self(STATUSES.get(status, STATUSES[None]))

    def sort(self, sort: str) -> str:
        return self(SORT_LABELS[sort])

    def parenthesised(self, text: str) -> str:
        """Text in brackets as each language writes them: （花溪区） or " (huaxi)"."""
        return f"\uff08{text}\uff09" if self.lang == "zh" else f" ({text})"

    @property
    def colon(self) -> str:
        return COLON[self.lang]

    @property
    def list_separator(self) -> str:
        return "、" if self.lang == "zh" else ", "

    def role(self, role: str) -> str:
        return self(ROLE_LABELS[role])

    def event(self, name: str) -> str:
        e = EVENT_TYPES_BY_NAME.get(name)
        return self.both(e.label_en, e.label_zh) if e else name

    def option(self, option: SupportOption | dict) -> str:
        if isinstance(option, dict):
            return self.both(option["en"], option["zh"])
        return self.both(option.en, option.zh)

    def lowers_by(self, option: SupportOption | dict, change: float) -> str:
        """An option's estimated change in the chance of the outcome, as a fall in points."""
        return self(LOWERS_BY, option=self.option(option), points=f"{-100 * change:.1f}")

    def factor(self, factor: dict) -> str:
        """A reason in plain words, as the one reason renderer said it."""
        return self.both(factor["text_en"], factor["text_zh"])

    def effect(self, factor: dict) -> str:
        return self.both(factor["effect_en"], factor["effect_zh"])

    def code(self, code: str) -> str:
        """A registry code (a substance, a rehab kind, a venue) as its label."""
        return code_label(code, self.lang)

    def event_value(self, name: str, value: float) -> str:
        """An event's value in words: 阳性/阴性 for a yes/no, an amount with its unit."""
        return event_value(name, value, self.lang)

    def date(self, day: dt.date | None) -> str:
        """2026年6月30日 in Chinese, 30 Jun 2026 in English."""
        if day is None:
            return self(N_("none recorded"))
        if self.lang == "zh":
            return f"{day.year}年{day.month}月{day.day}日"
        return f"{day.day} {day:%b} {day.year}"

    def moment(self, iso: str | None) -> str:
        """An ISO time (a check's, a record's) as a date and minute in the page's words."""
        if not iso:
            return "—"
        t = dt.datetime.fromisoformat(iso)
        return f"{self.date(t.date())} {t:%H:%M}"

    def month(self, day: dt.date) -> str:
        """A chart's month: 2025年9月, Sep 2025."""
        return f"{day.year}年{day.month}月" if self.lang == "zh" else f"{day:%b} {day.year}"

    def rank(self, n: int) -> str:
        return self(N_("No. %(n)s"), n=n)

    def rank_range(self, lo: float | None, hi: float | None) -> str:
        """A rank with the range chance allows ("第1–4名"), or the rank alone when chance
        cannot move it; "" for none."""
        if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
            return ""
        if lo == hi:
            return self.rank(int(lo))
        return self(N_("No. %(lo)s–%(hi)s"), lo=int(lo), hi=int(hi))

    def top_share(self, percentile: float | None) -> str:
        """Where a score stands as the share above it ("前3%"): never "100", never 0%."""
        if percentile is None or math.isnan(percentile):
            return "—"
        return self(N_("top %(share)s%%"), share=share_above(percentile))

    def times_average(self, p: float, average: float) -> str:
        """A probability against the cohort's average: "约为平均水平的3倍"."""
        if not average or math.isnan(p):
            return ""
        ratio = p / average
        shown = f"{ratio:.1f}" if ratio < 10 else f"{ratio:.0f}"
        return self(N_("about %(times)s× the average"), times=shown.removesuffix(".0"))

    def points(self, change: float) -> str:
        """A change of probability in percentage points, signed."""
        return self(N_("%(points)s points"), points=f"{change * 100:+.1f}")

    def task(self, task: Task) -> str:
        return self.both(task.title_en, task.title_zh)

    def risk_sentence(self, tier: str, percentile: float | None) -> str:
        """The score as a caseworker reads it aloud: the tier, then where the person stands
        among comparable persons (the model's reference cohort)."""
        if percentile is None or math.isnan(percentile):
            return self.tier(tier)
        if percentile >= 50:
            return self(
                N_("%(tier)s: in the top %(share)s%% of comparable persons"),
                tier=self.tier(tier),
                share=share_above(percentile),
            )
        return self(
            N_("%(tier)s: higher than %(share)s%% of comparable persons"),
            tier=self.tier(tier),
            share=int(percentile),
        )
