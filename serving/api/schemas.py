"""Request and response bodies of the risk API.

What a client sends about a person and their events is generated from the data contract's
own columns (`features.contract.checks`), so the API accepts exactly what a registry extract holds
and a new contract column reaches the API without a hand-kept copy.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.config import JsonDict

from features.contract.checks import EVENT_COLUMNS, PERSON_COLUMNS, Column

MAX_FACTORS = 300  # enough for every feature: base_value + all contributions = raw_score
# never sent to the API: the person is known by the record, and protected attributes are
# for audits of the registry only
_NOT_SENT = {"ethnicity"}
_PY_TYPES: dict[str, type] = {"VARCHAR": str, "DATE": str, "TIMESTAMP": str, "DOUBLE": float}


def _from_contract(name: str, columns: tuple[Column, ...], skip: set[str]) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for c in columns:
        if c.name in skip:
            continue
        kind = _PY_TYPES[c.sql_type]
        limit = None if kind is float else 200  # what is received is bounded
        if c.required:
            fields[c.name] = (kind, Field(description=c.description, max_length=limit))
        else:
            fields[c.name] = (kind | None, Field(None, description=c.description, max_length=limit))
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)


PersonIn = _from_contract("PersonIn", PERSON_COLUMNS, _NOT_SENT)
EventIn = _from_contract("EventIn", EVENT_COLUMNS, {"person_id"})

RISK_EXAMPLE: JsonDict = {
    "person_id": "P0000042",
    "task": "relapse",
    "as_of": "2026-06-30",
    "in_cohort": True,
    "warning": None,
    "probability": 0.41,
    "tier": "high",
    "percentile": 93.2,
    "raw_score": -0.37,
    "base_value": -0.62,
    "history": "events",
    "factors": [
        {
            "feature": "checkin_missed__count_90d",
            "label_en": "check-ins missed, last 90 days",
            "label_zh": "未按时报到次数（近90天）",
            "value": 3.0,
            "contribution": 0.31,
            "direction": "raises",
            "text_en": "check-ins missed, last 90 days: 3 times",
            "text_zh": "未按时报到次数\uff08近90天\uff09\uff1a3次",
            "effect_en": "raises the risk",
            "effect_zh": "使风险升高",
            "background": False,
        }
    ],
    "support": [
        {
            "en": "Social-worker home visit",
            "zh": "禁毒社工上门走访",
            "because": "checkin_missed__count_90d",
        }
    ],
    "model": {"name": "sunshine-relapse", "version": "3", "run_id": "8f1c..."},
    "request_id": "2f6b3c0e9d6f4b7a8e1d2c3b4a5f6e7d",
}


class Factor(BaseModel):
    feature: str
    label_en: str
    label_zh: str
    value: float | str | None
    contribution: float = Field(description="log-odds contribution of this feature")
    direction: str = Field(description="raises or lowers the risk")
    text_en: str = Field(description="the reason in plain words: the label and the value")
    text_zh: str = Field(description="the same in Chinese")
    effect_en: str = Field(description="what it does to the risk, a missing value said so")
    effect_zh: str = Field(description="the same in Chinese")
    background: bool = Field(
        description="a fixed fact (age, sex, district, registration) nobody can act on"
    )


class Support(BaseModel):
    en: str
    zh: str
    because: str


class ModelRef(BaseModel):
    name: str
    version: str
    run_id: str


class EstimatedEffect(BaseModel):
    code: str = Field(description="the support option's code")
    en: str
    zh: str
    change: float = Field(
        description="estimated change in the probability of the outcome if the option is "
        "offered now (negative lowers it), learned from past offers by `sunshine effects`"
    )


class RiskResult(BaseModel):
    probability: float = Field(description="calibrated probability of the outcome")
    tier: str = Field(description="low, medium or high, by the reference cohort's capacity shares")
    percentile: float | None = Field(description="percent of the reference cohort scoring lower")
    raw_score: float = Field(description="log-odds score: base_value + sum of all contributions")
    base_value: float | None = None
    factors: list[Factor] | None = None
    support: list[Support] | None = None
    estimated_effects: list[EstimatedEffect] | None = Field(
        None,
        description="the options whose effect the task's effects model may serve, most "
        "benefit first; absent without an effects champion for this risk model",
    )


class RiskResponse(RiskResult):
    model_config = ConfigDict(json_schema_extra={"examples": [RISK_EXAMPLE]})
    person_id: str
    task: str
    as_of: dt.date
    in_cohort: bool = Field(description="false only when an analyst asked for it anyway")
    warning: str | None = None
    history: str = Field(description="'none' when nothing was recorded before as_of")
    model: ModelRef
    request_id: str


class RecordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(None, description="the caller's own reference, echoed back")
    features: dict[str, float | str | None] | None = Field(
        None, description="every model feature by name (null = not observed)"
    )
    person: PersonIn | None = None  # type: ignore[valid-type]
    events: list[EventIn] | None = None  # type: ignore[valid-type]
    as_of: dt.date | None = None


class ScoreRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "records": [
                        {
                            "id": "roster-17",
                            "person": {
                                "person_id": "X1",
                                "birth_date": "1990-05-01",
                                "sex": "M",
                                "district": "huaxi",
                            },
                            "events": [
                                {
                                    "event_time": "2026-01-10 09:00",
                                    "event_type": "rehab_discharge",
                                    "detail": "compulsory_isolation",
                                },
                                {"event_time": "2026-03-02 10:00", "event_type": "checkin_missed"},
                            ],
                            "as_of": "2026-06-30",
                        }
                    ]
                }
            ]
        }
    )
    records: list[RecordIn]


class ScoredRecord(BaseModel):
    record: int
    id: str | None = None
    history: str
    status: str = Field(description="ok, or not_in_cohort (then no score unless asked for)")
    in_cohort: bool | None = Field(description="null for records sent as feature values")
    warning: str | None = None
    reason: dict[str, str] | None = Field(None, description="why a record was not scored")
    probability: float | None = None
    tier: str | None = None
    percentile: float | None = None
    raw_score: float | None = None
    base_value: float | None = None
    factors: list[Factor] | None = None
    support: list[Support] | None = None


class ScoreResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "task": "relapse",
                    "model": RISK_EXAMPLE["model"],
                    "results": [
                        {
                            "record": 0,
                            "id": "roster-17",
                            "history": "events",
                            "status": "ok",
                            **{
                                k: RISK_EXAMPLE[k]
                                for k in (
                                    "in_cohort",
                                    "probability",
                                    "tier",
                                    "percentile",
                                    "raw_score",
                                    "base_value",
                                    "factors",
                                    "support",
                                )
                            },
                        }
                    ],
                    "request_id": RISK_EXAMPLE["request_id"],
                }
            ]
        }
    )
    task: str
    model: ModelRef
    results: list[ScoredRecord]
    request_id: str


class ModelInfo(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "task": "relapse",
                    "name": "sunshine-relapse",
                    "version": "3",
                    "run_id": "8f1c...",
                    "trained_at": "2026-11-29T01:00:00+00:00",
                    "test_metrics": {"auroc": 0.72, "ece": 0.02},
                }
            ]
        }
    )
    task: str
    name: str
    version: str
    run_id: str
    trained_at: str | None
    test_metrics: dict[str, float]
    monitoring: dict[str, Any] | None = Field(
        None,
        description="the latest `sunshine monitor` verdict: status (ok, warning, alert), "
        "reasons, the version it judged, as_of, score PSI, when, and its MLflow run",
    )


class IndicatorRow(BaseModel):
    month: str = Field(description="YYYY-MM; figures as the registry stood at the month's end")
    district: str = Field(description="district code, or `city` for the whole city")
    district_zh: str
    indicator: str = Field(description="indicator code; `composite` is the ranking's score")
    indicator_en: str
    indicator_zh: str
    numerator: int | None = Field(description="persons or events; none when withheld")
    denominator: int | None = Field(description="persons or residents; none when withheld")
    numerator_shown: str = Field(
        description='the numerator as published: "12", "<5" for fewer than the threshold, "*" '
        "for a count withheld so that a small one cannot be worked out from it"
    )
    denominator_shown: str = Field(description="the denominator as published (see numerator)")
    value: float | None = Field(description="none when a count it comes from is withheld")
    lower: float | None = Field(description="95% interval (Clopper-Pearson, or exact Poisson)")
    upper: float | None
    unit: str
    funnel_lo95: float | None = Field(description="the funnel's limits around the city's value")
    funnel_hi95: float | None
    funnel_lo998: float | None
    funnel_hi998: float | None
    funnel_tau2: float | None = Field(
        description="between-district variance beyond chance the limits allow for (a share)"
    )
    versus_city: str = Field(
        description="above, below or within the 99.8% funnel limits around the city's value"
    )
    rank: int | None = Field(description="1 = best district that month; none for the city")
    rank_lo: int | None = Field(
        description="the rank's 95% range: ranges that overlap are no order"
    )
    rank_hi: int | None
    rank_change: int | None = Field(description="places moved up since the month before")
    change: float | None = Field(description="value minus the month before's")


class Indicators(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "from": "2025-07",
                    "to": "2026-06",
                    "suppress_below": 5,
                    "rows": [
                        {
                            "month": "2026-06",
                            "district": "huaxi",
                            "district_zh": "花溪区",
                            "indicator": "relapse_rate",
                            "indicator_en": "relapse rate within 12 months",
                            "indicator_zh": "复吸率",
                            "numerator": 41,
                            "denominator": 120,
                            "numerator_shown": "41",
                            "denominator_shown": "120",
                            "value": 34.2,
                            "lower": 26.3,
                            "upper": 43.0,
                            "unit": "%",
                            "funnel_lo95": 25.1,
                            "funnel_hi95": 42.0,
                            "funnel_lo998": 20.7,
                            "funnel_hi998": 46.9,
                            "funnel_tau2": 0.0,
                            "versus_city": "within",
                            "rank": 3,
                            "rank_lo": 1,
                            "rank_hi": 8,
                            "rank_change": 1,
                            "change": -1.5,
                        }
                    ],
                }
            ]
        },
        populate_by_name=True,
    )
    first: str = Field(alias="from")
    last: str = Field(alias="to")
    suppress_below: int = Field(description="counts of fewer persons than this are withheld")
    rows: list[IndicatorRow]


class Problem(BaseModel):
    field: str = Field(description="where: a query or path parameter, or a body field")
    reason: str
    record: int | None = Field(None, description="the record of a score call, if any")


class Problems(BaseModel):
    """What a 422 answer holds: every problem found, each named by its field."""

    detail: list[Problem]


class Refusal(BaseModel):
    """What a refusal holds: a sentence, or for some (not in cohort, unknown task) an object
    with a machine-readable reason."""

    detail: str | dict[str, Any]


def refusals(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The documented refusals of a route: its OpenAPI says every status it can answer."""
    described = {
        401: "missing, invalid, expired or revoked bearer token",
        403: "the role or scope does not allow it",
        404: "unknown task, or a person that is unknown or not visible to the caller",
        409: "the person is not in the task's cohort on as_of",
        413: "over 1,000 records, or a body over 4 MiB",
        503: "no champion model for the task",
    }
    out: dict[int | str, dict[str, Any]] = {
        code: {"model": Refusal, "description": described[code]} for code in codes
    }
    out[422] = {"model": Problems, "description": "the problems found, each named by its field"}
    return out
