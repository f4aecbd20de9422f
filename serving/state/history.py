"""What a person page shows beyond the score: the risk month by month over the last year,
built by the same feature code and model as today's score, and the events behind it."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from features.tasks import Task
from models.risk_model import RiskModel
from serving.state.caseload import month_before
from serving.state.service import ServiceState

HISTORY_MONTHS = 12


def history_dates(as_of: dt.date, months: int = HISTORY_MONTHS) -> list[dt.date]:
    """The as_of dates of the monthly history, oldest first, ending at as_of."""
    return [month_before(as_of, k) for k in range(months - 1, -1, -1)]


def risk_history(
    state: ServiceState, model: RiskModel, task: Task, person_id: str, as_of: dt.date
) -> pd.DataFrame:
    """The person's probability and tier on each monthly date, and whether they were in the
    task's cohort then (outside it the model's figure means little, and the page says so)."""
    dates = history_dates(as_of)
    spine = pd.DataFrame({"person_id": person_id, "as_of": dates})
    frame = state.builder().build(spine)
    scored = model.score(frame)
    return pd.DataFrame(
        {
            "as_of": dates,
            "probability": scored.probability,
            "tier": scored.tier,
            "in_cohort": [state.in_cohort(task, person_id, d) for d in dates],
        }
    )


def timeline(state: ServiceState, person_id: str, as_of: dt.date) -> pd.DataFrame:
    """The person's events of the last 12 months that the registry knew of on as_of, latest
    first."""
    pk = state.pk(person_id)
    return (
        state.builder()
        .con.execute(
            "SELECT event_time, CAST(event_type AS VARCHAR) AS event_type, value, detail "
            "FROM events WHERE pk = $pk AND event_time >= $since AND event_time < $d "
            "AND available_time < $d ORDER BY event_time DESC",
            {"pk": pk, "since": month_before(as_of, HISTORY_MONTHS), "d": as_of},
        )
        .df()
    )
