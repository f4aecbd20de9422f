"""Support offered in the synthetic city: who is offered what, what it truly does, and the truth
kept apart from the registry, so an effect estimate can be scored against it.

Caseworkers review everyone on their caseload at the start of each quarter (January, April,
July, October) and may offer each of the task's support options. The caseload is who the
registry shows in the task's cohort: for relapse, persons in community follow-up, those who
relapsed unseen among them; for youth, young people with no drug record, those registering
this month among them. An offer is recorded as a `support_offered` event (1 = accepted,
0 = declined). An accepted offer changes the person's monthly log-odds of the task's outcome
for the next 12 months (the label's window) by the option's documented effect in
`SUPPORT_EFFECTS`, which depends on the person's situation on each month's first day (what the
registry shows that day; a month's own events count from the next month on); it is not offered
again meanwhile, and it ends when the person leaves the state it protects (a relapse, say).
A declined offer changes nothing.

Assignment is confounded, as in a real programme: the higher a person's risk that month, the
more often they are offered anything, and each district has its own habits per option. One
district ran a randomized pilot for two years, in which every option was offered with the same
probability to everyone, so a randomized subset exists.

The truth, each person-month's outcome probability without support and with each option, which
options acted, and the chance of each offer at a review, is written apart
(`truth/support_<task>.parquet`); training never reads it. `window_effects` turns it into the
true effect of an offer at a review on the task's 12-month label, the quantity an effect
estimate is scored against.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa

ACCEPTED = 0.75  # the share of offers accepted; a declined offer changes nothing
ACTIVE_MONTHS = 12  # an accepted offer acts for a year
REVIEW_MONTHS = 3  # caseworkers review their caseload every quarter
# the log-odds of an offer for a person of the month's average risk: young people with no drug
# record are many, and a prevention programme reaches fewer of them each quarter
OFFER_LOGIT = {"relapse": -2.0, "youth_uptake": -4.5}
RISK_SLOPE = 0.8  # each unit of risk log-odds above the month's average adds this much
PRACTICE_SD = 0.5  # how much districts' habits differ, per option, in log-odds
PILOT_DISTRICT = "baiyun"
PILOT_FROM, PILOT_TO = dt.date(2023, 1, 1), dt.date(2024, 12, 31)
PILOT_OFFER = 0.2  # in the pilot every option is offered with this probability, at random
WINDOW_MONTHS = 12  # the tasks' label windows, in months


@dataclass(frozen=True)
class Effect:
    """An option's change in the monthly log-odds of the outcome while an accepted offer acts:
    `if_true` for a person whose situation flag `when` holds that month, `otherwise` for the
    rest (with no flag, `if_true` for everyone)."""

    when: str | None
    if_true: float
    otherwise: float
    why: str

    def log_odds(self, flags: dict[str, np.ndarray], n: int) -> np.ndarray:
        if self.when is None:
            return np.full(n, self.if_true)
        return np.where(flags[self.when], self.if_true, self.otherwise)


# The true effects, per task and option code (the tasks' SupportOption.code). The situation
# flags are read on each month's first day from what the person's own events show by then
# (`_relapse_flags` and `_youth_flags` in city.py).
SUPPORT_EFFECTS: dict[str, dict[str, Effect]] = {
    "relapse": {
        "methadone_clinic_follow_up": Effect(
            "on_methadone", -2.0, 0.0, "only for a person on methadone maintenance"
        ),
        "skills_training_or_a_sunshine_project_job_placement": Effect(
            "unemployed", -1.5, 0.0, "only for the unemployed"
        ),
        "family_committee_and_family_support_visits": Effect(
            "no_family_contact",
            -1.5,
            -0.3,
            "most for a person with no family-support contact in the last 3 months",
        ),
        "social_worker_home_visit": Effect(
            "missed_checkins",
            -1.5,
            -0.3,
            "most for a person who missed a check-in in the last 2 months",
        ),
        "peer_risk_counselling_with_a_social_worker": Effect(
            "peer_contact", -2.0, 0.0, "only after contact with a known user in the last 3 months"
        ),
        "mental_health_referral": Effect(
            "distressed", -1.5, 0.0, "only with a screening score of 15 or more"
        ),
        "relapse_prevention_counselling": Effect(None, 0.0, 0.0, "helps nobody"),
    },
    "youth_uptake": {
        "family_committee_and_family_support_visits": Effect(
            "under_16", -1.5, -0.5, "more for the young: under 16"
        ),
        "school_prevention_programme": Effect(
            "school_trouble",
            -1.5,
            0.0,
            "only with 5 or more days absent last month or a discipline incident in 6 months",
        ),
        "peer_risk_counselling_with_a_social_worker": Effect(
            "peer_or_venue",
            -2.0,
            0.0,
            "only after a known-user contact or a venue encounter in the last 3 months",
        ),
        "mental_health_referral": Effect(None, 0.0, 0.0, "helps nobody"),
        "guardian_and_family_support_for_left_behind_children": Effect(
            "left_behind", -1.5, 0.0, "only for a left-behind child"
        ),
        "prevention_class_enrolment": Effect(None, -0.5, -0.5, "a little, for everyone"),
    },
}
OPTION_CODES = tuple(dict.fromkeys(c for options in SUPPORT_EFFECTS.values() for c in options))


def codes_list(task: str) -> list[str]:
    return list(SUPPORT_EFFECTS[task])


class Offers(NamedTuple):
    """A review's offers: to whom, which option (its code), whether accepted, and the day of
    the month (seconds after its start)."""

    person: np.ndarray
    code: np.ndarray
    accepted: np.ndarray
    second: np.ndarray


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


class SupportSim:
    """The offers and their truth for the simulation, month by month. Draws come from a stream
    of their own, so offers change the rest of the city only through their effects."""

    def __init__(self, n: int, seed: int, n_districts: int, pilot_district: int) -> None:
        self.rng = np.random.default_rng([seed, 4])
        self.pilot_district = pilot_district
        self.practice = {
            task: self.rng.normal(0.0, PRACTICE_SD, (n_districts, len(opts)))
            for task, opts in SUPPORT_EFFECTS.items()
        }
        # months an accepted offer still acts, per person and option
        self.left = {
            task: np.zeros((n, len(opts)), np.int8) for task, opts in SUPPORT_EFFECTS.items()
        }
        # each person's log-odds last month: what the registry shows a caseworker at a review
        # on the quarter's first day (this month's events come after it)
        self.shown = {task: np.full(n, np.nan) for task in SUPPORT_EFFECTS}
        self.rows: dict[str, list[tuple[np.ndarray, ...]]] = {t: [] for t in SUPPORT_EFFECTS}

    def act(
        self,
        task: str,
        month: int,
        caseload: np.ndarray,
        at_risk: np.ndarray,
        logit0: np.ndarray,
        flags: dict[str, np.ndarray],
        district: np.ndarray,
        pilot: bool,
    ) -> Month:
        """One month for a task's caseload (`at_risk`: those in the state the options
        protect): at a review, the offers; for everyone, the log-odds with the support that
        acts, each option's effect and each offer's chance."""
        codes = codes_list(task)
        n = len(caseload)
        effects = np.stack([e.log_odds(flags, n) for e in SUPPORT_EFFECTS[task].values()], axis=1)
        left = self.left[task]
        out = np.ones(len(left), bool)
        out[caseload[at_risk]] = False
        left[out] = 0  # support ends when the person leaves the state it protects
        chance = np.zeros((n, len(codes)))
        offers = None
        shown = self.shown[task]
        if month % REVIEW_MONTHS == 0:
            seen = shown[caseload]
            seen = np.where(
                np.isnan(seen), np.nanmean(seen) if np.isfinite(seen).any() else 0, seen
            )
            risk = RISK_SLOPE * (seen - seen.mean()) if n else seen
            chance = _sigmoid(OFFER_LOGIT[task] + risk[:, None] + self.practice[task][district])
            if pilot:
                chance[district == self.pilot_district] = PILOT_OFFER
            # not offered again while it acts; the truth keeps the chance it would have had
            drawn = np.where(left[caseload] > 0, 0.0, chance)
            offered = self.rng.random(chance.shape) < drawn
            accepted = offered & (self.rng.random(chance.shape) < ACCEPTED)
            rows, cols = np.nonzero(offered)
            day = self.rng.integers(0, 20 * 86_400, len(rows))
            offers = Offers(caseload[rows], np.array(codes)[cols], accepted[rows, cols], day)
            starts = accepted & at_risk[:, None]
            left[caseload] = np.where(starts, ACTIVE_MONTHS, left[caseload])
        shown[:] = np.nan
        shown[caseload] = logit0
        acting = left[caseload] > 0
        logit = logit0 + (effects * acting).sum(axis=1)
        left[caseload] = np.maximum(left[caseload] - 1, 0)
        return Month(logit, effects, acting, chance, offers)

    def record(
        self,
        task: str,
        month: int,
        idx: np.ndarray,
        logit0: np.ndarray,
        now: Month,
        other_route: np.ndarray | float,
        outcome: np.ndarray,
        keep: np.ndarray,
    ) -> None:
        """One month of the truth for the caseload rows `keep` (those at risk): the log-odds
        without support, each option's effect, which acted and each offer's chance, the
        chance of the outcome by another route (a lapse found by a test, for relapse) and
        whether the outcome happened."""
        k = int(keep.sum())
        self.rows[task].append(
            (
                idx[keep].astype(np.int32),
                np.full(k, month, np.int16),
                logit0[keep].astype(np.float32),
                now.effects[keep].astype(np.float16),
                now.acting[keep],
                now.chance[keep].astype(np.float16),
                np.broadcast_to(np.asarray(other_route, np.float32), len(idx))[keep].copy(),
                outcome[keep].astype(bool),
            )
        )

    def truth_tables(self, ids: pa.Array, month_start: np.ndarray) -> dict[str, pa.Table]:
        """The truth per task: each person-month's outcome probability without support and
        with each option, which options acted, each offer's chance at a review, the other
        route's chance and the outcome."""
        out = {}
        for task, parts in self.rows.items():
            codes = codes_list(task)
            k = len(codes)
            empty = (
                np.zeros(0, np.int32),
                np.zeros(0, np.int16),
                np.zeros(0, "f4"),
                np.zeros((0, k), "f2"),
                np.zeros((0, k), bool),
                np.zeros((0, k), "f2"),
                np.zeros(0, "f4"),
                np.zeros(0, bool),
            )
            pk, month, logit0, eff, acting, chance, other, outcome = (
                (np.concatenate(c) for c in zip(*parts, strict=True)) if parts else empty
            )
            cols: dict[str, pa.Array] = {
                "person_id": ids.take(pa.array(pk)),
                "month": pa.array(
                    month_start[month].astype("datetime64[s]").astype("datetime64[D]")
                ),
                "p_without": pa.array(_sigmoid(logit0).astype(np.float32)),
            }
            for j, code in enumerate(codes):
                p = _sigmoid(logit0 + eff[:, j].astype(np.float32))
                cols[f"p_with_{code}"] = pa.array(p.astype(np.float32))
                cols[f"acting_{code}"] = pa.array(acting[:, j])
                cols[f"offer_chance_{code}"] = pa.array(chance[:, j].astype(np.float32))
            cols["other_route"] = pa.array(other)
            cols["outcome"] = pa.array(outcome)
            out[task] = pa.table(cols)
        return out


class Month(NamedTuple):
    """What the support did in a month, per caseload row."""

    logit: np.ndarray  # the log-odds with the support that acts
    effects: np.ndarray  # each option's effect, (rows, options)
    acting: np.ndarray  # which options act
    chance: np.ndarray  # each offer's chance at a review were it not acting (0 between)
    offers: Offers | None


def window_effects(
    truth: pd.DataFrame,
    snapshots: pd.DataFrame,
    option: str,
    detect: float,
    at_offer: bool = False,
) -> np.ndarray:
    """The true effect of offering `option` at the review in each snapshot's first month
    (`person_id`, `as_of` on a review month's first day) on the chance of the 12-month label,
    against not offering it then, given the person's own months as they came.

    Offered, the person accepts (ACCEPTED) and the option acts all year, or declines and is as
    if not offered. Not offered, they may still be offered it at the next reviews, with the
    chances recorded then: the year's chance is averaged over when it first acts. Other
    options act as they did. Months after the outcome are carried on with that month's values
    (what would have come had it not happened); a snapshot with no truth row in its first
    month (not at risk then: already relapsed, say) gains nothing. The estimate excludes rows
    whose person the option already acts for, and so does this.

    With `at_offer`, the person's situation in the month of the offer is held for the year: the
    benefit as it stood when the caseworker chose, which no later month has changed yet (the
    quantity a ranking made on that day can be judged by).

    `detect` is the chance per month that a person in the outcome's state is found (1 for
    youth uptake, whose registration follows the next month)."""
    n = len(snapshots)
    first = pd.to_datetime(snapshots["as_of"]).to_numpy().astype("datetime64[M]")
    offsets = np.arange(WINDOW_MONTHS)
    grid = pd.DataFrame(
        {
            "person_id": np.repeat(snapshots["person_id"].to_numpy(), WINDOW_MONTHS),
            "month": (np.repeat(first, WINDOW_MONTHS) + np.tile(offsets, n)).astype(
                "datetime64[ns]"
            ),
        }
    )
    t = truth.assign(month=pd.to_datetime(truth["month"]).astype("datetime64[ns]"))
    others = [c[7:] for c in t.columns if c.startswith("acting_") and c != f"acting_{option}"]
    base_logit = _logit(t["p_without"].to_numpy(np.float64))
    acting_others = sum(
        np.where(t[f"acting_{c}"], _logit(t[f"p_with_{c}"].to_numpy(np.float64)) - base_logit, 0)
        for c in others
    )
    t = pd.DataFrame(
        {
            "person_id": t["person_id"],
            "month": t["month"],
            "base": base_logit + acting_others,
            "effect": _logit(t[f"p_with_{option}"].to_numpy(np.float64)) - base_logit,
            "chance": t[f"offer_chance_{option}"].astype(np.float64),
            "other": t["other_route"].astype(np.float64),
            "outcome": t["outcome"],
        }
    )
    g = grid.merge(t, how="left", on=["person_id", "month"])
    seen = g["base"].notna().to_numpy().reshape(n, WINDOW_MONTHS)
    happened = g["outcome"].fillna(False).to_numpy(bool).reshape(n, -1) & seen
    stop = np.where(happened.any(axis=1), happened.argmax(axis=1), WINDOW_MONTHS)
    after = offsets[None, :] > stop[:, None]
    rows = np.arange(n)[:, None]
    last = np.minimum(stop, WINDOW_MONTHS - 1)[:, None]
    arrays = {}
    for col in ("base", "effect", "chance", "other"):
        a = g[col].to_numpy(np.float64).reshape(n, -1)
        arrays[col] = np.nan_to_num(np.where(after, a[rows, last], a))
    live = (seen | after) & seen[:, :1]
    if at_offer:
        arrays = {k: np.repeat(a[:, :1], WINDOW_MONTHS, axis=1) for k, a in arrays.items()}
        live = np.repeat(seen[:, :1], WINDOW_MONTHS, axis=1)
    base, effect, other = arrays["base"], arrays["effect"], arrays["other"]
    offered = _label_chance(base + effect, other, live, detect)
    # not offered now: the option first acts from a later review, or never
    reviews = offsets[(offsets > 0) & (offsets % REVIEW_MONTHS == 0)]
    still = np.ones(n)  # not yet acting before this review
    without = np.zeros(n)
    for r in reviews:
        starts = still * ACCEPTED * arrays["chance"][:, r] * live[:, r]
        without += starts * _label_chance(base + effect * (offsets >= r), other, live, detect)
        still = still - starts
    without += still * _label_chance(base, other, live, detect)
    return ACCEPTED * (offered - without)


def _label_chance(
    logit: np.ndarray, other: np.ndarray, live: np.ndarray, detect: float
) -> np.ndarray:
    """The chance of the label over the window's months: in the at-risk state a month may end
    in the outcome (found with chance `detect` each month from the next one on) or bring the
    label by the other route; months not `live` bring nothing."""
    hazard = np.where(live, _sigmoid(logit), 0.0)
    other = np.where(live, other, 0.0)
    staying = np.ones(len(logit))  # at risk, label not yet given
    out = np.zeros(len(logit))  # in the outcome's state, not yet found
    for m in range(logit.shape[1]):
        out = out * (1.0 - detect) + staying * (1.0 - other[:, m]) * hazard[:, m]
        staying = staying * (1.0 - other[:, m]) * (1.0 - hazard[:, m])
    return 1.0 - staying - out
