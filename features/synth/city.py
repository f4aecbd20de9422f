"""A synthetic Guiyang-like registry: registered drug users and at-risk young people.

The population is simulated month by month, vectorised across persons, so a million persons
take minutes. Each person moves between states (not yet using, using, in residential rehab, in
community follow-up); events follow from the state and from a few latent traits, and outcomes
follow from the documented effects in `TRUE_EFFECTS`, so a trained model can be checked against
the truth. Real registry warts are added on purpose: duplicate events, missing values and events
recorded late.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from features.contract.vocabulary import DISTRICTS, EVENT_TYPES, SUBSTANCES
from features.core.io import atomic_path
from features.storage.store import METADATA_FILE
from features.synth.support import (
    OPTION_CODES,
    PILOT_DISTRICT,
    PILOT_FROM,
    PILOT_TO,
    SUPPORT_EFFECTS,
    Month,
    SupportSim,
)

REFERENCE_DATE = dt.date(2026, 6, 30)
HISTORY_START = dt.date(2020, 7, 1)
N_MONTHS = 72

NONE, USING, REHAB, COMMUNITY = 0, 1, 2, 3

# Monthly log-odds effects that drive outcomes. Relapse applies to persons in community
# follow-up; uptake to young people aged 12-24 with no drug record. Window terms are read at the
# end of each month from what the person's own events show.
TRUE_EFFECTS = {
    "relapse": {
        "intercept": -2.5,
        "missed check-ins in the last 2 months (per check-in)": +0.45,
        "positive test in the first 3 months after discharge": +1.0,
        "missed methadone doses last month (per dose)": +0.25,
        "contact with a known user in the last 3 months": +0.7,
        "mental-health score of 15 or more at the last screening": +0.5,
        "employed": -0.8,
        "holds a training certificate": -0.4,
        "family-support contact in the last 3 months": -0.6,
        "months since discharge (per month)": -0.03,
    },
    "youth_uptake": {
        "intercept": -6.9,
        "left behind (parents away)": +0.7,
        "family member with a drug record": +0.9,
        "contact with a known user in the last 3 months": +1.1,
        "entertainment-venue encounter in the last 3 months": +0.7,
        "5 or more days absent last month": +0.5,
        "discipline incident in the last 6 months": +0.5,
        "dropped out of school": +0.8,
        "aged 16-21": +0.3,
        "prevention class in the last 12 months": -0.5,
        "family-support contact in the last 3 months": -0.4,
    },
}
# The support options' effects are documented beside these, in `synth.support.SUPPORT_EFFECTS`:
# an accepted offer adds its effect to the monthly log-odds above for the year after it is made,
# by the person's situation on each month's first day (what the registry shows that day).
E_REL = TRUE_EFFECTS["relapse"]
E_UP = TRUE_EFFECTS["youth_uptake"]

DISTRICT_WEIGHTS = np.array([0.15, 0.15, 0.10, 0.06, 0.06, 0.10, 0.10, 0.10, 0.09, 0.09])
RURAL = np.array([d in ("qingzhen", "kaiyang", "xifeng", "xiuwen") for d in DISTRICTS])
ETHNICITIES = ("han", "miao", "buyi", "dong", "tujia", "yi", "other")
ETHNIC_URBAN = np.array([0.82, 0.07, 0.05, 0.02, 0.02, 0.01, 0.01])
ETHNIC_RURAL = np.array([0.62, 0.16, 0.13, 0.03, 0.03, 0.02, 0.01])
DETAILS = (
    *SUBSTANCES,
    "compulsory_isolation",
    "voluntary",
    "community_rehab",
    "community_recovery",
    "PHQ-9",
    "cooking",
    "auto repair",
    "cosmetology",
    "catering",
    "sunshine project",
    "construction",
    "fighting",
    "truancy",
    "school programme",
    "father",
    "mother",
    "sibling",
    "KTV",
    "bar",
    "internet cafe",
    "both parents",
    *DISTRICTS,
    *OPTION_CODES,
)
_D = {d: i for i, d in enumerate(DETAILS)}
_T = {e.name: i for i, e in enumerate(EVENT_TYPES)}
DAY = 86_400
# a person using drugs is tested, arrested or admitted (compulsorily, after an arrest) each
# month with these chances; `RELAPSE_FOUND` is the chance a relapse is found in a month
TESTED_USING, ARRESTED_USING, ADMITTED_USING, COMPULSORY = 0.15, 0.06, 0.12, 0.75
RELAPSE_FOUND = 1 - (1 - TESTED_USING) * (1 - ARRESTED_USING) * (1 - ADMITTED_USING * COMPULSORY)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _month_starts() -> np.ndarray:
    starts = []
    for m in range(N_MONTHS + 1):
        y, mo = divmod(HISTORY_START.month - 1 + m, 12)
        d = dt.date(HISTORY_START.year + y, mo + 1, 1)
        starts.append(int(dt.datetime(d.year, d.month, d.day).timestamp()))
    return np.array(starts, dtype=np.int64)


def _substance_mix(year: np.ndarray, rng: np.random.Generator, youth: bool) -> np.ndarray:
    """The drug mix moves from heroin toward methamphetamine and new-type drugs over the years."""
    heroin = np.clip(0.70 - 0.07 * (year - 2012), 0.08, 0.70)
    if youth:
        heroin = heroin * 0.2
    nps = np.clip(0.04 + 0.02 * (year - 2016), 0.04, 0.22)
    rest = 1.0 - heroin - nps
    w = np.stack([heroin, rest * 0.72, rest * 0.14, nps, rest * 0.08, rest * 0.06], axis=1)
    u = rng.random(len(year))[:, None]
    return (u > np.cumsum(w, axis=1)).sum(axis=1).clip(0, len(SUBSTANCES) - 1)


@dataclass(frozen=True)
class Drift:
    """A scenario of things going wrong from a month on, for testing monitoring: one district
    stops recording community check-ins, and young people's school absence doubles."""

    start: dt.date = dt.date(2025, 1, 1)
    district: str = "nanming"

    def month(self) -> int:
        return (self.start.year - HISTORY_START.year) * 12 + self.start.month - HISTORY_START.month


@dataclass
class Population:
    persons: pa.Table
    events: pa.Table
    n_duplicates: int
    n_late: int
    # each person's hidden traits, kept apart from the registry (see `truth_table`)
    truth: pa.Table | None = None
    # each task's person-months with and without each support option (see synth.support)
    support_truth: dict[str, pa.Table] | None = None


class _People:
    """The city's persons as arrays, one element a person: traits drawn once, and the states
    and recent history (months of last contacts, missed check-ins...) the simulation updates
    month by month."""

    youth: np.ndarray
    district: np.ndarray
    rural: np.ndarray
    eth: np.ndarray
    male: np.ndarray
    start_age: np.ndarray
    birth: np.ndarray
    reg_month: np.ndarray
    before: np.ndarray
    reg_time: np.ndarray
    substance: np.ndarray
    users: np.ndarray
    engage: np.ndarray
    peer: np.ndarray
    family: np.ndarray
    distress: np.ndarray
    school: np.ndarray
    left_behind: np.ndarray
    fam_rec_month: np.ndarray
    on_mmt: np.ndarray
    mmt_dose: np.ndarray
    state: np.ndarray
    in_programme: np.ndarray
    rehab_left: np.ndarray
    rehab_kind: np.ndarray
    since_discharge: np.ndarray
    employed: np.ndarray
    certified: np.ndarray
    early_pos: np.ndarray
    dropped: np.ndarray
    missed_1: np.ndarray
    missed_2: np.ndarray
    mmt_missed: np.ndarray
    last_peer: np.ndarray
    last_fam: np.ndarray
    last_venue: np.ndarray
    last_disc: np.ndarray
    last_prev: np.ndarray
    last_score: np.ndarray
    absence: np.ndarray
    all_idx: np.ndarray


# the traits support's effects depend on (the situation flags of `_relapse_flags` and
# `_youth_flags`)
SITUATION = (
    "on_mmt",
    "missed_1",
    "missed_2",
    "employed",
    "last_fam",
    "last_peer",
    "last_score",
    "absence",
    "last_disc",
    "last_venue",
    "left_behind",
)


class _Simulator:
    def __init__(self, n: int, seed: int, drift: Drift | None = None) -> None:
        self.n = n
        self.drift = drift
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        # the yearly left-behind reviews draw their days from a stream of their own, so every
        # other event is the same with or without them
        self.reviews = np.random.default_rng([seed, 3])
        self.ms = _month_starts()
        self.parts: list[tuple[np.ndarray, ...]] = []
        self.support = SupportSim(n, seed, len(DISTRICTS), DISTRICTS.index(PILOT_DISTRICT))

    # -- event emission ----------------------------------------------------------------------
    def emit(
        self,
        idx: np.ndarray,
        etype: str,
        m: int,
        value: np.ndarray | float | None = None,
        detail: np.ndarray | str | None = None,
        t: np.ndarray | None = None,
    ) -> None:
        k = len(idx)
        if k == 0:
            return
        if t is None:
            t = self.ms[m] + self.rng.integers(0, self.ms[m + 1] - self.ms[m], k)
        val = np.full(k, np.nan, np.float32) if value is None else np.broadcast_to(value, k)
        if detail is None:
            det = np.full(k, -1, np.int16)
        elif isinstance(detail, str):
            det = np.full(k, _D[detail], np.int16)
        else:
            det = detail.astype(np.int16)
        self.parts.append(
            (idx.astype(np.int32), np.full(k, _T[etype], np.int8), t, val.astype(np.float32), det)
        )

    def emit_counts(self, idx: np.ndarray, counts: np.ndarray, etype: str, m: int, **kw) -> None:
        self.emit(np.repeat(idx, counts), etype, m, **kw)

    def chance(self, idx: np.ndarray, p: np.ndarray | float) -> np.ndarray:
        """The subset of idx for which an event with probability p happens."""
        return idx[self.rng.random(len(idx)) < p]

    # -- the simulation ----------------------------------------------------------------------
    def run(self) -> Population:
        """The city month by month: who registers, who is using, in residential rehab or in
        community follow-up, and what young people with no drug record meet, each month's
        events emitted as they happen. The draws are made in a fixed order, so a seed gives
        the same city."""
        p = self._people()
        for m in range(N_MONTHS):
            moved = np.zeros(self.n, bool)  # a person changes state at most once a month
            # the situation on the month's first day, before its events: what support's
            # effects depend on, and what the registry shows a caseworker at a review that day
            self.first_day = _situation(p)
            self._register(p, m)
            self._using(p, m, moved)
            self._in_rehab(p, m, moved)
            self._in_community(p, m, moved)
            self._young(p, m)
        pop = self._assemble(p.youth, p.district, p.eth, p.male, p.birth, p.reg_time, p.substance)
        pop.truth = truth_table(pop.persons["person_id"], p)
        pop.support_truth = self.support.truth_tables(pop.persons["person_id"], self.ms)
        return pop

    def _people(self) -> _People:
        """The persons' traits, latent ones included (never written out), and their state when
        the history starts."""
        n, rng = self.n, self.rng
        p = _People()
        p.youth = rng.random(n) < 0.70
        p.district = rng.choice(len(DISTRICTS), n, p=DISTRICT_WEIGHTS)
        p.rural = RURAL[p.district]
        p.eth = np.where(
            p.rural,
            rng.choice(len(ETHNICITIES), n, p=ETHNIC_RURAL),
            rng.choice(len(ETHNICITIES), n, p=ETHNIC_URBAN),
        )
        p.male = np.where(p.youth, rng.random(n) < 0.52, rng.random(n) < 0.85)
        # young people are of every age from 2 to 20 when the history starts, so children keep
        # growing into the prevention ages (12-24) all through it: from its fifth year on, the
        # group's ages are the same every month, as in a real city. A closed group of 8- to
        # 20-year-olds would age out of them, and monitoring would see the calendar as drift.
        p.start_age = np.where(p.youth, rng.uniform(2, 20, n), rng.uniform(18, 50, n))
        p.birth = self.ms[0] - (p.start_age * 365.25 * DAY).astype(np.int64)

        # registered users: 55% registered before the history starts, the rest during it
        p.reg_month = np.full(n, 10_000, np.int64)
        p.before = ~p.youth & (rng.random(n) < 0.55)
        p.reg_month[p.before] = rng.integers(-120, 0, p.before.sum())
        during = ~p.youth & ~p.before
        p.reg_month[during] = rng.integers(0, N_MONTHS, during.sum())
        p.reg_time = np.full(n, -1, np.int64)
        p.reg_time[p.before] = self.ms[0] + p.reg_month[p.before] * 30 * DAY
        p.substance = np.full(n, -1, np.int64)
        p.users = ~p.youth
        reg_year = 2020 + (p.reg_month[p.users] + 6) / 12.0
        p.substance[p.users] = _substance_mix(reg_year, rng, youth=False)

        # latent traits, never written out
        p.engage = rng.normal(0, 1, n)
        p.peer = rng.random(n) < 0.3
        p.family = rng.random(n) < 0.55
        p.distress = rng.normal(0, 1, n)
        p.school = rng.normal(0, 1, n)
        p.left_behind = p.youth & (rng.random(n) < np.where(p.rural, 0.35, 0.15))
        p.fam_rec_month = np.where(
            p.youth & (rng.random(n) < 0.10), rng.integers(0, N_MONTHS, n), -1
        )
        p.on_mmt = p.users & (p.substance == 0) & (rng.random(n) < 0.35)
        p.mmt_dose = rng.normal(60, 15, n).clip(20, 150).round()

        self._start(p)
        return p

    def _start(self, p: _People) -> None:
        """Each person's state when the history starts (registered users in rehab, in
        community follow-up or using), the months of their last contacts, and a left-behind
        child's status recorded when it began."""
        n, rng = self.n, self.rng
        p.state = np.full(n, NONE, np.int8)
        p.in_programme = np.zeros(n, bool)
        p.rehab_left = np.zeros(n, np.int64)
        p.rehab_kind = np.zeros(n, np.int64)
        p.since_discharge = np.zeros(n, np.int64)
        start = rng.random(n)
        init_rehab = p.before & (start < 0.30)
        init_comm = p.before & (start >= 0.30) & (start < 0.75)
        init_using = p.before & (start >= 0.75)
        p.state[init_rehab] = REHAB
        p.rehab_left[init_rehab] = rng.integers(1, 19, init_rehab.sum())
        p.rehab_kind[init_rehab] = _D["compulsory_isolation"]
        p.state[init_comm] = COMMUNITY
        p.in_programme[init_comm] = True
        p.since_discharge[init_comm] = rng.integers(3, 37, init_comm.sum())
        p.state[init_using] = USING

        p.employed = rng.random(n) < np.where(p.state == COMMUNITY, 0.35, 0.0)
        p.certified = np.zeros(n, bool)
        p.early_pos = np.zeros(n, bool)
        p.dropped = np.zeros(n, bool)
        never = -1000
        p.missed_1 = np.zeros(n, np.int64)
        p.missed_2 = np.zeros(n, np.int64)
        p.mmt_missed = np.zeros(n, np.int64)
        p.last_peer = np.full(n, never)
        p.last_fam = np.full(n, never)
        p.last_venue = np.full(n, never)
        p.last_disc = np.full(n, never)
        p.last_prev = np.full(n, never)
        p.last_score = np.zeros(n)
        p.absence = np.zeros(n, np.int64)
        p.all_idx = np.arange(n)

        # a child's left-behind status was recorded when it began, years before the history
        # starts for most, not all on one day (a "days since" feature would then be a clock)
        behind = p.all_idx[p.left_behind]
        began = (rng.random(len(behind)) * (p.start_age[behind] - 1) * 365.25 * DAY).astype(
            np.int64
        )
        self.emit(behind, "left_behind_status", 0, 1.0, "both parents", t=self.ms[0] - began)

        return p

    def _register(self, p: _People, m: int) -> None:
        """New registrations: an arrest and a positive test put a person on the registry."""
        rng = self.rng
        new = p.all_idx[p.reg_month == m]
        if len(new):
            t = self.ms[m] + rng.integers(0, 20 * DAY, len(new))
            p.reg_time[new] = t
            p.state[new] = USING
            self.emit(self.chance(new, 0.7), "drug_arrest", m)
            self.emit(new, "urine_test", m, 1.0, p.substance[new], t=t)

    def _using(self, p: _People, m: int, moved: np.ndarray) -> None:
        """Using: detection, arrests, and admission to residential rehab."""
        rng = self.rng
        using = p.all_idx[p.state == USING]
        tested = self.chance(using, TESTED_USING)
        self.emit(tested, "urine_test", m, 1.0, p.substance[tested])
        arrested = self.chance(using, ARRESTED_USING)
        self.emit(arrested, "drug_arrest", m, detail=p.substance[arrested])
        prog = using[p.in_programme[using]]
        no_show = rng.random(len(prog)) < 0.85
        self.emit(prog[no_show], "checkin_missed", m)
        self.emit(prog[~no_show], "checkin_attended", m)
        peers = self.chance(using, 0.15)
        self.emit(peers, "contact_known_user", m, detail="KTV")
        p.last_peer[peers] = m
        admit = self.chance(using, ADMITTED_USING)
        if len(admit):
            compulsory = rng.random(len(admit)) < COMPULSORY
            kind = np.where(compulsory, _D["compulsory_isolation"], _D["voluntary"])
            t = self.ms[m] + rng.integers(0, self.ms[m + 1] - self.ms[m], len(admit))
            self.emit(admit, "rehab_admission", m, detail=kind, t=t)
            arrested = admit[compulsory]
            self.emit(arrested, "drug_arrest", m, detail=p.substance[arrested], t=t[compulsory])
            p.state[admit] = REHAB
            moved[admit] = True
            p.in_programme[admit] = False
            p.employed[admit] = False
            p.rehab_kind[admit] = kind
            p.rehab_left[admit] = np.where(
                compulsory, rng.integers(12, 25, len(admit)), rng.integers(3, 7, len(admit))
            )

    def _in_rehab(self, p: _People, m: int, moved: np.ndarray) -> None:
        """Residential rehab: tests, training, visits; discharge into community recovery."""
        rng = self.rng
        rehab = p.all_idx[(p.state == REHAB) & ~moved]
        p.missed_1[rehab] = 0  # no check-in is due in rehab, so none is missed
        p.missed_2[rehab] = 0
        self.emit(self.chance(rehab, 0.1), "urine_test", m, 0.0)
        trained = self.chance(rehab, 0.12)
        self.emit(trained, "skills_training", m, detail="cooking")
        cert = self.chance(trained, 0.5)
        self.emit(cert, "training_certificate", m, detail="cooking")
        p.certified[cert] = True
        visits = self.chance(rehab, np.where(p.family[rehab], 0.12, 0.02))
        self.emit(visits, "family_support_contact", m)
        p.last_fam[visits] = m
        p.rehab_left[rehab] -= 1
        out = rehab[p.rehab_left[rehab] <= 0]
        if len(out):
            t = self.ms[m] + rng.integers(0, self.ms[m + 1] - self.ms[m], len(out))
            self.emit(out, "rehab_discharge", m, detail=p.rehab_kind[out], t=t)
            self.emit(out, "rehab_admission", m, detail="community_recovery", t=t)
            p.state[out] = COMMUNITY
            moved[out] = True
            p.in_programme[out] = True
            p.since_discharge[out] = 0
            p.early_pos[out] = False

    def _in_community(self, p: _People, m: int, moved: np.ndarray) -> None:
        """Community follow-up: check-ins, tests, methadone, contacts, screening, training
        and work, and relapse by the documented effects (E_REL)."""
        rng = self.rng
        comm = p.all_idx[(p.state == COMMUNITY) & ~moved]
        p.since_discharge[comm] += 1
        sd = p.since_discharge[comm]
        sched = np.where(sd <= 3, 2, np.where(sd <= 12, 1, rng.random(len(comm)) < 1 / 3))
        p_miss = _sigmoid(
            -1.8 - 0.9 * p.engage[comm] + 0.6 * p.peer[comm] + 0.5 * (p.distress[comm] > 0.8)
        )
        missed = rng.binomial(sched, p_miss)
        self.emit_counts(comm, missed, "checkin_missed", m)
        self.emit_counts(comm, sched - missed, "checkin_attended", m)
        p.missed_2[comm] = p.missed_1[comm]
        p.missed_1[comm] = missed
        test_chance = np.select([sd <= 6, sd <= 12], [0.6, 0.3], 0.1)
        lapse_chance = _sigmoid(-3.6 + 0.6 * p.peer[comm] - 0.6 * p.engage[comm])
        tested = self.chance(comm, test_chance)
        lapse = rng.random(len(tested)) < lapse_chance[np.searchsorted(comm, tested)]
        self.emit(tested[lapse], "urine_test", m, 1.0, p.substance[tested[lapse]])
        self.emit(tested[~lapse], "urine_test", m, 0.0)
        p.early_pos[tested[lapse & (p.since_discharge[tested] <= 3)]] = True
        mmt = comm[p.on_mmt[comm]]
        mm = rng.binomial(2, _sigmoid(-2.0 - 0.8 * p.engage[mmt]))
        p.mmt_missed[:] = 0
        p.mmt_missed[mmt] = mm
        self.emit_counts(mmt, 2 - mm, "methadone_dose", m, value=np.repeat(p.mmt_dose[mmt], 2 - mm))
        self.emit_counts(mmt, mm, "methadone_missed", m)
        fam_c = self.chance(comm, np.where(p.family[comm], 0.2, 0.03))
        self.emit(fam_c, "family_support_contact", m)
        p.last_fam[fam_c] = m
        self.emit(self.chance(comm, 0.12), "social_worker_contact", m)
        self.emit(self.chance(comm, 0.05), "volunteer_contact", m)
        peers = self.chance(comm, np.where(p.peer[comm], 0.15, 0.02))
        self.emit(peers, "contact_known_user", m, detail="KTV")
        p.last_peer[peers] = m
        screened = comm[(sd % 6) == 1]
        # clipped before rounding: rounding a small negative first gave -0.0
        score = np.round(
            np.clip(9 + 5 * p.distress[screened] + rng.normal(0, 2, len(screened)), 0, 27)
        )
        self.emit(screened, "mental_health_screening", m, score, "PHQ-9")
        p.last_score[screened] = score
        trained = self.chance(comm[~p.certified[comm]], 0.04)
        self.emit(trained, "skills_training", m, detail="auto repair")
        cert = self.chance(trained, 0.6)
        self.emit(cert, "training_certificate", m, detail="auto repair")
        p.certified[cert] = True
        jobless = comm[~p.employed[comm]]
        hired = self.chance(jobless, np.where(p.certified[jobless], 0.12, 0.06))
        self.emit(hired, "employment_start", m, detail="sunshine project")
        working = comm[p.employed[comm]]
        fired = self.chance(working, 0.04)
        self.emit(fired, "employment_end", m, detail="construction")
        p.employed[hired] = True
        p.employed[fired] = False

        # the caseload: community follow-up, with those who relapsed unseen and are still in
        # the programme; relapse is drawn for those in community follow-up
        cases = p.all_idx[p.in_programme & ((p.state == USING) | ((p.state == COMMUNITY) & ~moved))]
        at_risk = np.isin(cases, comm, assume_unique=True)
        logit = _relapse_logit(p, cases, m)
        now = self._support(
            "relapse", m, cases, at_risk, logit, _relapse_flags(self.first_day, cases, m), p
        )
        outcome = np.zeros(len(cases), bool)
        outcome[at_risk] = rng.random(len(comm)) < _sigmoid(now.logit[at_risk])
        lapse_found = np.zeros(len(cases))
        lapse_found[at_risk] = test_chance * lapse_chance
        self.support.record("relapse", m, cases, logit, now, lapse_found, outcome, at_risk)
        p.state[cases[outcome]] = USING

    def _support(
        self,
        task: str,
        m: int,
        cases: np.ndarray,
        at_risk: np.ndarray,
        logit: np.ndarray,
        flags: dict[str, np.ndarray],
        p: _People,
    ) -> Month:
        """The month's support for a task's caseload: offers at a quarterly review (emitted
        as `support_offered` events), and what acts (synth.support)."""
        month = dt.date.fromtimestamp(int(self.ms[m]))
        pilot = PILOT_FROM <= month <= PILOT_TO
        now = self.support.act(task, m, cases, at_risk, logit, flags, p.district[cases], pilot)
        offers = now.offers
        if offers is not None:
            self.emit(
                offers.person,
                "support_offered",
                m,
                offers.accepted.astype(float),
                np.array([_D[c] for c in offers.code], np.int16),
                t=self.ms[m] + offers.second,
            )
        return now

    def _young(self, p: _People, m: int) -> None:
        """Young people with no drug record: school, family, peers and venues, and first use
        by the documented effects (E_UP)."""
        rng = self.rng
        age = (self.ms[m] - p.birth) / (365.25 * DAY)
        yo = p.all_idx[p.youth & (p.state == NONE)]
        ya = age[yo]
        school_kid = yo[(ya < 18) & (ya >= 6) & ~p.dropped[yo]]
        days = rng.poisson(
            np.exp(-2.2 + 0.9 * p.school[school_kid] + 0.4 * p.left_behind[school_kid])
        )
        if self.drift and m >= self.drift.month():
            days = np.minimum(days * 2, 22)  # no new random draw: the rest stays the same
        p.absence[yo] = 0
        p.absence[school_kid] = days
        absent = days > 0
        self.emit(school_kid[absent], "school_absence", m, np.minimum(days[absent], 22))
        disc = self.chance(school_kid, _sigmoid(-4.2 + 1.2 * p.school[school_kid]))
        self.emit(disc, "school_discipline", m, detail="fighting")
        p.last_disc[disc] = m
        older = school_kid[age[school_kid] >= 14]
        drop = self.chance(
            older, _sigmoid(-7.0 + 1.3 * p.school[older] + 0.5 * p.left_behind[older])
        )
        self.emit(drop, "school_dropout", m)
        p.dropped[drop] = True
        prev = self.chance(yo, np.where(np.isin(yo, school_kid), 0.05, 0.01))
        self.emit(prev, "prevention_class", m, detail="school programme")
        p.last_prev[prev] = m
        fam_c = self.chance(yo, np.where(p.family[yo], 0.05, 0.01))
        self.emit(fam_c, "family_support_contact", m)
        p.last_fam[fam_c] = m
        linked = yo[p.fam_rec_month[yo] == m]
        self.emit(linked, "family_drug_record", m, detail="father")
        p_peer = _sigmoid(
            -4.2
            + 0.9 * p.school[yo]
            + 1.0 * (p.fam_rec_month[yo].clip(-1) >= 0) * (p.fam_rec_month[yo] <= m)
            + 0.4 * p.left_behind[yo]
            + 0.5 * (ya >= 16)
        )
        peers = self.chance(yo, p_peer)
        self.emit(peers, "contact_known_user", m, detail="internet cafe")
        p.last_peer[peers] = m
        venue = self.chance(yo, _sigmoid(-5.0 + 0.7 * p.school[yo] + 0.8 * (ya >= 16)))
        self.emit(venue, "venue_encounter", m, detail="KTV")
        p.last_venue[venue] = m
        # the yearly review records who is still left behind (each child in a month of its
        # own), not only the changes: the status is seen, and "days since" stays within a year
        reviewed = yo[p.left_behind[yo] & (yo % 12 == m % 12)]
        day = self.reviews.integers(0, self.ms[m + 1] - self.ms[m], len(reviewed))
        self.emit(reviewed, "left_behind_status", m, 1.0, "both parents", self.ms[m] + day)
        back = self.chance(yo[p.left_behind[yo]], 0.012)
        self.emit(back, "left_behind_status", m, 0.0)
        p.left_behind[back] = False
        away = self.chance(yo[~p.left_behind[yo] & (ya < 18)], 0.004)
        self.emit(away, "left_behind_status", m, 1.0, "both parents")
        p.left_behind[away] = True

        elig = yo[(ya >= 12) & (ya < 25)]
        # the caseload: young people with no drug record, with those registering this month
        # (they took up last month), who are still in the prevention group on its first day
        joining = p.all_idx[p.youth & (p.reg_month == m) & (age >= 12) & (age < 25)]
        cases = np.union1d(elig, joining)
        at_risk = np.isin(cases, elig, assume_unique=True)
        ca = age[cases]
        logit = _uptake_logit(p, cases, m, ca)
        flags = _youth_flags(self.first_day, cases, m, ca)
        now = self._support("youth_uptake", m, cases, at_risk, logit, flags, p)
        outcome = np.zeros(len(cases), bool)
        outcome[at_risk] = rng.random(len(elig)) < _sigmoid(now.logit[at_risk])
        self.support.record("youth_uptake", m, cases, logit, now, 0.0, outcome, at_risk)
        took_up = cases[outcome]
        if len(took_up) and m + 1 < N_MONTHS:
            year = np.full(len(took_up), 2020 + (m + 7) / 12.0)
            p.substance[took_up] = _substance_mix(year, rng, youth=True)
            p.reg_month[took_up] = m + 1  # registered next month, with the arrest or test

    def _moves(self, district: np.ndarray, *cols: np.ndarray) -> tuple[np.ndarray, ...]:
        """About 1% of persons move to another district once during the history, recorded a
        day later. Drawn from a stream of their own, so every other event is the same with
        or without them."""
        pid, typ, t, val, det, rec = cols
        rng = np.random.default_rng([self.seed, 2])
        movers = np.flatnonzero(rng.random(self.n) < 0.01)
        when = rng.integers(self.ms[0], self.ms[N_MONTHS - 1], len(movers))
        to = (district[movers] + rng.integers(1, len(DISTRICTS), len(movers))) % len(DISTRICTS)
        k = len(movers)
        return (
            np.concatenate([pid, movers.astype(pid.dtype)]),
            np.concatenate([typ, np.full(k, _T["district_move"], typ.dtype)]),
            np.concatenate([t, when.astype(t.dtype)]),
            np.concatenate([val, np.full(k, np.nan, val.dtype)]),
            np.concatenate([det, (_D[DISTRICTS[0]] + to).astype(det.dtype)]),
            np.concatenate([rec, (when + DAY).astype(rec.dtype)]),
        )

    def _assemble(
        self,
        youth: np.ndarray,
        district: np.ndarray,
        eth: np.ndarray,
        male: np.ndarray,
        birth: np.ndarray,
        reg_time: np.ndarray,
        substance: np.ndarray,
    ) -> Population:
        rng, n = self.rng, self.n

        def stream(i: int) -> np.random.Generator:
            # each wart draws from a stream of its own, one array at a time: an event's wart
            # then depends on its place in the history alone, not on how many events came
            # after it, so a drifted city keeps its twin's warts until the drift starts
            return np.random.default_rng([self.seed, 10 + i])

        pid, typ, t, val, det = (np.concatenate(col) for col in zip(*self.parts, strict=True))
        self.parts = []
        k = len(pid)
        # warts of registry data: late recording, missing values, duplicates
        delay = stream(0).exponential(1.5 * DAY, k).astype(np.int64)
        late = stream(1).random(k) < 0.05
        delay[late] += stream(2).integers(30 * DAY, 120 * DAY, late.sum())
        rec = t + delay
        end = int(dt.datetime.combine(REFERENCE_DATE, dt.time()).timestamp()) + DAY - 1
        keep = rec <= end  # not yet recorded by the reference date: not in the extract
        pid, typ, t, val, det, rec, late = (a[keep] for a in (pid, typ, t, val, det, rec, late))
        k = len(pid)
        val[(typ == _T["methadone_dose"]) & (stream(3).random(k) < 0.03)] = np.nan
        det[(typ == _T["urine_test"]) & (val == 1.0) & (stream(4).random(k) < 0.05)] = -1
        dup = np.flatnonzero(stream(5).random(k) < 0.01)
        pid, typ, t, val, det, rec = (
            np.concatenate([a, a[dup]]) for a in (pid, typ, t, val, det, rec)
        )
        n_dup, n_late = len(dup), int(late.sum())
        if self.drift:
            # dropped after every random draw, so all else is as in the undrifted twin
            kept = ~(
                np.isin(typ, [_T["checkin_attended"], _T["checkin_missed"]])
                & (district[pid] == DISTRICTS.index(self.drift.district))
                & (t >= self.ms[self.drift.month()])
            )
            n_dup, n_late = int(kept[k:].sum()), int((late & kept[:k]).sum())
            pid, typ, t, val, det, rec = (a[kept] for a in (pid, typ, t, val, det, rec))
        pid, typ, t, val, det, rec = self._moves(district, pid, typ, t, val, det, rec)
        order = np.lexsort((t, pid))
        ids = pa.array(np.char.add("P", np.char.zfill(np.arange(1, n + 1).astype(str), 7)))
        type_names = pa.array([e.name for e in EVENT_TYPES])
        details = pa.array(DETAILS)
        det = det[order]
        events = pa.table(
            {
                "person_id": ids.take(pa.array(pid[order])),
                "event_time": pa.array(t[order].astype("datetime64[s]")),
                "event_type": pa.DictionaryArray.from_arrays(pa.array(typ[order]), type_names),
                "value": pa.array(val[order].astype(np.float64), from_pandas=True),
                "detail": pa.DictionaryArray.from_arrays(pa.array(det, mask=det < 0), details),
                "recorded_time": pa.array(rec[order].astype("datetime64[s]")),
            }
        )
        registered = reg_time >= 0
        sex = np.where(male, "M", "F").astype(object)
        sex[rng.random(n) < 0.005] = None
        dist = np.array(DISTRICTS, dtype=object)[district]
        dist[rng.random(n) < 0.01] = None
        ethn = np.array(ETHNICITIES, dtype=object)[eth]
        ethn[rng.random(n) < 0.02] = None
        subst = np.array(SUBSTANCES, dtype=object)[substance.clip(0)]
        subst[~registered | (substance < 0)] = None
        persons = pa.table(
            {
                "person_id": ids,
                "birth_date": pa.array(birth.astype("datetime64[s]").astype("datetime64[D]")),
                "sex": pa.array(sex, pa.string()),
                "district": pa.array(dist, pa.string()),
                "ethnicity": pa.array(ethn, pa.string()),
                "registration_date": pa.array(
                    reg_time.astype("datetime64[s]").astype("datetime64[D]"), mask=~registered
                ),
                "primary_substance": pa.array(subst, pa.string()),
            }
        )
        return Population(persons, events, n_duplicates=n_dup, n_late=n_late)


def _situation(p: _People) -> _People:
    """A copy of the persons' SITUATION traits as they stand now."""
    s = _People()
    for name in SITUATION:
        setattr(s, name, getattr(p, name).copy())
    return s


def _relapse_flags(s: _People, idx: np.ndarray, m: int) -> dict[str, np.ndarray]:
    """The situation flags relapse support's effects depend on (SUPPORT_EFFECTS), as they
    stood on month m's first day: each "in the last k months" counts the k months before it,
    as a feature as of that day does."""
    last = m - 1
    return {
        "on_methadone": s.on_mmt[idx],
        "missed_checkins": s.missed_1[idx] + s.missed_2[idx] > 0,
        "unemployed": ~s.employed[idx],
        "no_family_contact": last - s.last_fam[idx] >= 3,
        "peer_contact": last - s.last_peer[idx] < 3,
        "distressed": s.last_score[idx] >= 15,
    }


def _youth_flags(s: _People, idx: np.ndarray, m: int, age: np.ndarray) -> dict[str, np.ndarray]:
    """The situation flags youth support's effects depend on, as they stood on month m's first
    day (`s`), and the age that month."""
    last = m - 1
    return {
        "under_16": age < 16,
        "school_trouble": (s.absence[idx] >= 5) | (last - s.last_disc[idx] < 6),
        "peer_or_venue": (last - s.last_peer[idx] < 3) | (last - s.last_venue[idx] < 3),
        "left_behind": s.left_behind[idx],
    }


def _relapse_logit(p: _People, idx: np.ndarray, m: int) -> np.ndarray:
    """The monthly log-odds of relapse without support, by the documented effects (E_REL)."""
    return (
        E_REL["intercept"]
        + E_REL["missed check-ins in the last 2 months (per check-in)"]
        * (p.missed_1[idx] + p.missed_2[idx])
        + E_REL["positive test in the first 3 months after discharge"] * p.early_pos[idx]
        + E_REL["missed methadone doses last month (per dose)"] * p.mmt_missed[idx]
        + E_REL["contact with a known user in the last 3 months"] * (m - p.last_peer[idx] < 3)
        + E_REL["mental-health score of 15 or more at the last screening"]
        * (p.last_score[idx] >= 15)
        + E_REL["employed"] * p.employed[idx]
        + E_REL["holds a training certificate"] * p.certified[idx]
        + E_REL["family-support contact in the last 3 months"] * (m - p.last_fam[idx] < 3)
        + E_REL["months since discharge (per month)"] * np.minimum(p.since_discharge[idx], 36)
    )


def _uptake_logit(p: _People, idx: np.ndarray, m: int, age: np.ndarray) -> np.ndarray:
    """The monthly log-odds of first use without support, by the documented effects (E_UP)."""
    return (
        E_UP["intercept"]
        + E_UP["left behind (parents away)"] * p.left_behind[idx]
        + E_UP["family member with a drug record"]
        * ((p.fam_rec_month[idx] >= 0) & (p.fam_rec_month[idx] <= m))
        + E_UP["contact with a known user in the last 3 months"] * (m - p.last_peer[idx] < 3)
        + E_UP["entertainment-venue encounter in the last 3 months"] * (m - p.last_venue[idx] < 3)
        + E_UP["5 or more days absent last month"] * (p.absence[idx] >= 5)
        + E_UP["discipline incident in the last 6 months"] * (m - p.last_disc[idx] < 6)
        + E_UP["dropped out of school"] * p.dropped[idx]
        + E_UP["aged 16-21"] * ((age >= 16) & (age <= 21))
        + E_UP["prevention class in the last 12 months"] * (m - p.last_prev[idx] < 12)
        + E_UP["family-support contact in the last 3 months"] * (m - p.last_fam[idx] < 3)
    )


TRUTH_DIR = "truth"  # beside the registry's files, never read as registry data


def truth_table(ids: pa.Array, p: _People) -> pa.Table:
    """Each person's hidden traits, as the simulation drew them and no registry records
    them: which population they come from (the young people it follows, or adults who may
    register), and the latent dispositions that drive their events and outcomes (school
    difficulty, peer-proneness, family support, engagement with treatment, distress). Time
    does not change them, so they are known at every as_of without looking ahead. Written
    apart (`truth/persons.parquet`): no model reads them; `sunshine train --ceiling` fits the
    same learner with them too, to say how far the model is from what the city allows."""
    return pa.table(
        {
            "person_id": ids,
            "youth_population": pa.array(p.youth.astype(float)),
            "school_difficulty": pa.array(p.school),
            "peer_prone": pa.array(p.peer.astype(float)),
            "family_support": pa.array(p.family.astype(float)),
            "engagement": pa.array(p.engage),
            "distress": pa.array(p.distress),
        }
    )


def synthesize(n_persons: int, seed: int, drift: Drift | None = None) -> Population:
    """Deterministic for a seed: the same arguments always give the same tables."""
    if n_persons < 1:
        raise ValueError("the population needs at least one person")
    return _Simulator(n_persons, seed, drift).run()


def write_population(pop: Population, out: Path, seed: int, drift: Drift | None = None) -> None:
    """Write persons, events and the dataset metadata, each file atomically, and the hidden
    truth apart in `truth/`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, table in (("persons", pop.persons), ("events", pop.events)):
        with atomic_path(out / f"{name}.parquet") as tmp:
            pq.write_table(table, tmp, row_group_size=1_000_000)
    truths = {"persons": pop.truth} if pop.truth is not None else {}
    truths.update({f"support_{t}": table for t, table in (pop.support_truth or {}).items()})
    for name, table in truths.items():
        (out / TRUTH_DIR).mkdir(exist_ok=True)
        with atomic_path(out / TRUTH_DIR / f"{name}.parquet") as tmp:
            pq.write_table(table, tmp)
    meta = {
        "reference_date": REFERENCE_DATE.isoformat(),
        "history_start": HISTORY_START.isoformat(),
        "generator": "sunshine synth",
        "seed": seed,
        "persons": pop.persons.num_rows,
        "events": pop.events.num_rows,
        "duplicate_events_added": pop.n_duplicates,
        "late_recorded_events": pop.n_late,
        "true_effects": TRUE_EFFECTS,
        "support_effects": {
            task: {code: e.why for code, e in options.items()}
            for task, options in SUPPORT_EFFECTS.items()
        },
    }
    if drift:
        meta["drift"] = {
            "from": drift.start.isoformat(),
            "district_without_checkins": drift.district,
            "school_absence": "doubled",
        }
    with atomic_path(out / METADATA_FILE) as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
