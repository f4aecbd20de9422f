"""Return to use as Luo et al. define it, computed from the project's own urine-test events.

Return to use: 4 consecutive weeks whose urine screens are missing or positive for non-prescribed
opioids, within the first 12 weeks after randomization.

- Week k (k = 1..12) is study days R + 7(k-1) + 1 .. R + 7k, R being the randomization day of the
  treatment phase; the randomization day itself is week 0, as in `derived_weeklyOpioidPattern`.
- A week's symbol: `o` no screen, `+` every screen positive for an opioid, `-` every screen
  negative for opioids, `*` both. A screen is positive for an opioid when it found heroin, an
  unspecified opioid, or methadone or buprenorphine that the participant's arm did not prescribe
  (the adapter already leaves the prescribed medication out of the positives).
- A week counts towards return to use when it is `o`, `+` or `*` (a mixed week still had an
  opioid-positive screen). Weeks after a participant left the study are missing, so dropping out
  for 4 weeks counts, as in the paper.
- Population: participants of the treatment phase (the second randomization of CTN-0030, the
  only one of CTN-0027 and CTN-0051) with a known age.

Prediction points: an as_of is 00:00 of a day and features see events strictly before it, so
"at entry" is as_of = R + 1 (everything up to and including the randomization day) and "after 3
weeks" is as_of = R + 22 (up to and including day 21 after randomization).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from features.adapters.ctn0094.adapter import DAY_ZERO, Trial
from features.contract.vocabulary import OPIOIDS

WEEKS = 12
RUN = 4
RETURN_TO_USE = re.compile(f"[o+*]{{{RUN}}}")
PREDICTION_POINTS = {"entry": 1, "week3": 22}  # as_of = randomization day + this many days


def population(trial: Trial) -> pd.DataFrame:
    part = trial.participants
    keep = part["randomization_day"].notna() & part["person_id"].isin(trial.persons["person_id"])
    return part[keep].reset_index(drop=True)


def weekly_pattern(trial: Trial, week0_end: pd.Series | None = None) -> pd.DataFrame:
    """person_id and a 12-letter pattern, week 1 first.

    Week 0 ends on the randomization day unless `week0_end` (study day by person_id) says
    otherwise, as for comparing with another week grid.
    """
    pop = population(trial)[["person_id", "randomization_day"]]
    end = pop.set_index("person_id")["randomization_day"]
    if week0_end is not None:
        end = week0_end.reindex(end.index).fillna(end)
    ev = trial.events
    tests = ev[ev["event_type"] == "urine_test"].merge(end.rename("week0_end"), on="person_id")
    day = (tests["event_time"] - pd.Timestamp(DAY_ZERO)).dt.days
    week = np.ceil((day - tests["week0_end"]) / 7).astype(int)
    opioid = (tests["value"] == 1) & tests["detail"].isin(OPIOIDS)
    screens = (
        pd.DataFrame({"person_id": tests["person_id"], "week": week, "day": day, "pos": opioid})
        .query(f"1 <= week <= {WEEKS}")
        .groupby(["person_id", "week", "day"])["pos"]
        .any()
        .groupby(level=["person_id", "week"])
        .agg(["any", "all"])
    )
    symbol = np.where(screens["all"], "+", np.where(screens["any"], "*", "-"))
    grid = pd.Series(symbol, index=screens.index).unstack("week", fill_value="o")
    grid = grid.reindex(index=pop["person_id"], columns=range(1, WEEKS + 1), fill_value="o")
    patterns = grid.agg("".join, axis=1).to_numpy()
    return pd.DataFrame({"person_id": pop["person_id"], "pattern": patterns})


def returned_to_use(patterns: pd.Series) -> pd.Series:
    return patterns.str.contains(RETURN_TO_USE).astype("int8")


def labels(trial: Trial, point: str, pattern: pd.DataFrame | None = None) -> pd.DataFrame:
    """person_id, as_of, label for one prediction point, in the `--labels` format; `pattern`
    is `weekly_pattern(trial)` when the caller already has it."""
    pop = population(trial)
    pattern = weekly_pattern(trial) if pattern is None else pattern
    offset = pd.to_timedelta(pop["randomization_day"] + PREDICTION_POINTS[point], unit="D")
    return pd.DataFrame(
        {
            "person_id": pop["person_id"],
            "as_of": (pd.Timestamp(DAY_ZERO) + offset).dt.date,
            "label": returned_to_use(pattern["pattern"]).to_numpy(),
        }
    )


def derived_pattern(derived: pd.DataFrame, trial: Trial) -> pd.DataFrame:
    """The CTN-0094 team's weekly pattern over the same 12 weeks: `Phase_1` for CTN-0027 and
    CTN-0051; for CTN-0030 `Phase_2` (its treatment phase) from its second letter, since that
    word starts with the week of the second randomization. A week the pattern does not reach
    is missing."""
    pop = population(trial)[["person_id", "who", "project"]]
    d = pop.merge(derived, on="who", how="left")
    word = np.where(d["project"] == "30", d["Phase_2"].str[1:], d["Phase_1"])
    word = pd.Series(word, index=d.index).fillna("").str.strip()
    return pd.DataFrame(
        {"person_id": d["person_id"], "pattern": word.str[:WEEKS].str.ljust(WEEKS, "o")}
    )


def derived_week_grid(derived: pd.DataFrame, trial: Trial) -> pd.Series:
    """Where week 0 ends on the derived pattern's grid, by person_id.

    Its CTN-0030 treatment-phase weeks continue the first randomization's week grid: week
    `randWeek2` is the one holding the second randomization. Elsewhere the grids coincide.
    """
    pop = population(trial)[["person_id", "who", "project", "first_randomization_day"]]
    d = pop.merge(derived[["who", "randWeek2"]], on="who", how="left")
    d = d[(d["project"] == "30") & d["randWeek2"].notna()]
    return pd.Series(
        (d["first_randomization_day"] + 7 * d["randWeek2"]).to_numpy(), index=d["person_id"]
    )


def agreement(ours: pd.DataFrame, theirs: pd.DataFrame) -> dict[str, float]:
    """How far our weekly symbols and outcome agree with the derived pattern's."""
    m = ours.merge(theirs, on="person_id", suffixes=("", "_derived"))
    a = np.array([list(p) for p in m["pattern"]])
    b = np.array([list(p) for p in m["pattern_derived"]])
    y, yd = returned_to_use(m["pattern"]), returned_to_use(m["pattern_derived"])
    return {
        "participants": len(m),
        "week_symbols_equal": float((a == b).mean()),
        "patterns_equal": float((a == b).all(axis=1).mean()),
        "outcome_equal": float((y == yd).mean()),
        "prevalence": float(y.mean()),
        "prevalence_derived": float(yd.mean()),
    }
