"""Records sent to `POST /v1/score/{task}` turned into feature rows, with cohort membership.

A record carries either every model feature by value, or a person's attributes and events;
the latter are validated by the data contract in a small store of their own and built by the
training feature code, so they score exactly as the registry's persons do.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.compute.builder import FeatureBuilder
from features.compute.labels import cohort_members
from features.contract.checks import as_of_problem
from features.contract.codebook import Codebook
from features.core.errors import ContractError
from features.storage.store import Store
from features.tasks import Task
from serving.api.deps import error
from serving.api.schemas import EventIn, PersonIn, RecordIn


@dataclass
class Built:
    frame: pd.DataFrame  # model features, one row per record
    history: list[str]  # features | events | none
    in_cohort: list[bool | None]  # None for records sent as feature values


def records_frame(
    records: list[RecordIn],
    features: list[str],
    task: Task,
    reference: dt.date,
    codebook: Codebook | None = None,
) -> Built:
    """The feature rows for a score call; each bad record and field gives a 422. Events are
    checked against the served registry's `codebook`, as its own events were."""
    problems: list[dict] = []
    rows: list[dict | None] = []
    event_records = []
    for i, rec in enumerate(records):
        if rec.as_of is not None and (why := as_of_problem(rec.as_of, reference)):
            problems.append({"record": i, "field": "as_of", "reason": why})
        if rec.features is not None and (rec.person or rec.events):
            problems.append(
                {
                    "record": i,
                    "field": "features",
                    "reason": "send features or person and events, not both",
                }
            )
        elif rec.features is not None:
            for f in sorted(set(rec.features) - set(features)):
                problems.append({"record": i, "field": f, "reason": "unknown feature"})
            for f in sorted(set(features) - set(rec.features)):
                problems.append(
                    {
                        "record": i,
                        "field": f,
                        "reason": "missing feature (send null if not observed)",
                    }
                )
        elif rec.person is None:
            problems.append(
                {"record": i, "field": "person", "reason": "send features, or a person with events"}
            )
        else:
            event_records.append(i)
        rows.append(rec.features)
    if problems:
        raise error(422, problems)
    history = ["features"] * len(records)
    member: list[bool | None] = [None] * len(records)
    if event_records:
        built, inside = _from_events(
            [records[i] for i in event_records], event_records, task, reference, codebook
        )
        for j, i in enumerate(event_records):
            rows[i] = built.iloc[j][features].to_dict()
            history[i] = "events" if records[i].events else "none"
            member[i] = bool(inside[j])
    return Built(pd.DataFrame(rows, columns=features), history, member)


def _from_events(
    records: list[RecordIn],
    index: list[int],
    task: Task,
    reference: dt.date,
    codebook: Codebook | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Validate and build features for records carrying a person and events, via a small
    store; also whether each is in the task's cohort on its as_of."""
    persons, events, owner = [], [], []
    for rec, i in zip(records, index, strict=True):
        persons.append({**rec.person.model_dump(), "ethnicity": None})
        for k, e in enumerate(rec.events or []):
            events.append({"person_id": rec.person.person_id, **e.model_dump()})
            owner.append((i, k))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        pd.DataFrame(persons, columns=[*PersonIn.model_fields, "ethnicity"]).to_csv(
            d / "persons.csv", index=False
        )
        events_frame = pd.DataFrame(events, columns=["person_id", *EventIn.model_fields])
        if events_frame["recorded_time"].isna().all():
            events_frame = events_frame.drop(columns="recorded_time")
        events_frame.to_csv(d / "events.csv", index=False)
        try:
            store = Store(d, reference_date=reference, codebook=codebook)
        except ContractError as exc:
            raise error(422, _located(exc, index, owner)) from None
        spine = pd.DataFrame(
            {
                "person_id": [r.person.person_id for r in records],
                "as_of": [r.as_of or reference for r in records],
            }
        )
        frame = FeatureBuilder(store).build(spine)
        keys = store.con.execute("SELECT person_id, pk FROM persons").df()
        pk = spine.merge(keys, on="person_id", how="left")["pk"].to_numpy() - 1
        return frame, cohort_members(store, task, spine["as_of"].to_numpy(), pk)


def _located(exc: ContractError, index: list[int], owner: list[tuple[int, int]]) -> list[dict]:
    """The contract's problems, by the caller's record and field."""
    problems = []
    for p in exc.problems:
        if p.file.startswith("persons"):
            where = {"record": index[p.row - 1], "field": f"person.{p.column}"}
        else:
            record, k = owner[p.row - 1]
            where = {"record": record, "field": f"events[{k}].{p.column}"}
        problems.append({**where, "reason": p.reason})
    return problems or [{"field": "records", "reason": str(exc)}]
