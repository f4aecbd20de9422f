"""The risk API over real HTTP: a uvicorn server in a thread, real models in a SQLite registry."""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import json
import re
import sqlite3
import time

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import use_mlflow

from features.tasks import get_task
from serving.access.audit import AuditLog


def get(svc, path, who=None, **params):
    headers = {"Authorization": f"Bearer {svc['tokens'][who]}"} if who else {}
    return httpx.get(svc["url"] + path, params=params, headers=headers, timeout=30)


def post(svc, path, who=None, json=None, headers=None, **kw):
    auth = {"Authorization": f"Bearer {svc['tokens'][who]}"} if who else {}
    return httpx.post(
        svc["url"] + path, json=json, headers={**auth, **(headers or {})}, timeout=60, **kw
    )


def members(svc, district=None, task="relapse", n=None):
    """Persons (of a district) in the task's cohort on the reference date."""
    state = svc["state"]
    persons = state.persons
    ids = persons.index if district is None else persons.index[persons.district == district]
    declared = get_task(task)
    inside = [p for p in ids if state.in_cohort(declared, p, state.as_of)]
    return inside if n is None else inside[:n]


def person_in(svc, district, youth=False):
    return members(svc, district, "youth_uptake" if youth else "relapse")[0]


def outsider(svc, district, task="relapse"):
    state = svc["state"]
    ids = state.persons.index[state.persons.district == district]
    return next(p for p in ids if not state.in_cohort(get_task(task), p, state.as_of))


def test_risk_response_has_every_part(service):
    pid = person_in(service, "huaxi")
    r = get(service, f"/v1/persons/{pid}/risk", "analyst", task="relapse")
    assert r.status_code == 200, r.text
    body = r.json()
    assert 0 <= body["probability"] <= 1 and body["tier"] in ("low", "medium", "high")
    assert 0 <= body["percentile"] <= 100
    assert body["as_of"] == "2026-06-30" and body["model"]["name"] == "sunshine-relapse"
    assert body["request_id"] == r.headers["x-request-id"]
    assert 1 <= len(body["factors"]) <= 5
    f = body["factors"][0]
    assert {"feature", "label_en", "label_zh", "value", "contribution", "direction"} <= set(f)
    assert f["direction"] == ("raises" if f["contribution"] > 0 else "lowers")
    raising = {x["feature"] for x in body["factors"] if x["contribution"] > 0}
    assert {s["because"] for s in body["support"]} <= raising


def test_base_value_plus_contributions_is_the_raw_score(service):
    state = service["state"]
    model = state.loaded.models["relapse"][0]
    for pid in members(service, n=6):
        body = get(
            service, f"/v1/persons/{pid}/risk", "analyst", task="relapse", explain=300
        ).json()
        total = body["base_value"] + sum(f["contribution"] for f in body["factors"])
        assert total == pytest.approx(body["raw_score"], abs=1e-9)
        assert body["probability"] == pytest.approx(
            float(model.calibrator.transform(np.array([body["raw_score"]]))[0]), abs=1e-12
        )


def test_as_of_in_the_past_uses_only_earlier_events(service):
    pid = person_in(service, "huaxi")
    now = get(service, f"/v1/persons/{pid}/risk", "analyst", task="relapse", explain=300).json()
    past = get(
        service,
        f"/v1/persons/{pid}/risk",
        "analyst",
        task="relapse",
        as_of="2021-01-01",
        explain=300,
        allow_out_of_cohort="true",
    ).json()
    assert past["as_of"] == "2021-01-01"
    state = service["state"]
    built = state.builder().build(
        pd.DataFrame({"person_id": [pid], "as_of": [dt.date(2021, 1, 1)]})
    )
    model = state.loaded.models["relapse"][0]
    expected = float(model.score(built).probability[0])
    assert past["probability"] == pytest.approx(expected, abs=1e-12)
    assert now["request_id"] != past["request_id"]


@pytest.mark.parametrize(
    ("who", "route", "method", "expected"),
    [
        (None, "risk", "get", 401),
        ("bogus", "risk", "get", 401),
        ("cw_huaxi", "risk", "get", 200),
        ("cw_huaxi", "risk_other_district", "get", 404),
        ("cw_huaxi", "youth_risk", "get", 403),  # no youth scope
        ("cw_youth", "youth_risk", "get", 200),
        ("analyst", "risk_other_district", "get", 200),
        ("admin", "risk", "get", 404),
        ("cw_huaxi", "score", "post", 403),
        ("analyst", "score", "post", 200),
        ("admin", "score", "post", 403),
        (None, "models", "get", 401),
        ("cw_huaxi", "models", "get", 403),
        ("analyst", "models", "get", 403),
        ("admin", "models", "get", 200),
        ("analyst", "reload", "post", 403),
        (None, "healthz", "get", 200),
        (None, "readyz", "get", 200),
        (None, "metrics", "get", 200),
    ],
)
def test_auth_matrix(service, who, route, method, expected):
    huaxi, other = person_in(service, "huaxi"), person_in(service, "yunyan")
    youth = person_in(service, "huaxi", youth=True)
    paths = {
        "risk": (f"/v1/persons/{huaxi}/risk", {"task": "relapse"}),
        "risk_other_district": (f"/v1/persons/{other}/risk", {"task": "relapse"}),
        "youth_risk": (f"/v1/persons/{youth}/risk", {"task": "youth_uptake"}),
        "score": ("/v1/score/relapse", {}),
        "models": ("/v1/models", {}),
        "reload": ("/v1/admin/reload", {}),
        "healthz": ("/healthz", {}),
        "readyz": ("/readyz", {}),
        "metrics": ("/metrics", {}),
    }
    path, params = paths[route]
    tokens = {**service["tokens"], "bogus": "not-a-token"}
    headers = {"Authorization": f"Bearer {tokens[who]}"} if who else {}
    if method == "get":
        r = httpx.get(service["url"] + path, params=params, headers=headers, timeout=30)
    else:
        body = {"records": [{"person": {"person_id": "N1", "birth_date": "1990-01-01"}}]}
        r = httpx.post(service["url"] + path, json=body, headers=headers, timeout=30)
    assert r.status_code == expected, r.text


def test_outside_district_looks_exactly_like_unknown_person(service):
    other = person_in(service, "yunyan")
    hidden = get(service, f"/v1/persons/{other}/risk", "cw_huaxi", task="relapse")
    missing = get(service, "/v1/persons/P9999999/risk", "cw_huaxi", task="relapse")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["detail"].replace(other, "X") == missing.json()["detail"].replace(
        "P9999999", "X"
    )


def test_bad_input_never_500(service):
    pid = person_in(service, "huaxi")
    r = get(service, f"/v1/persons/{pid}/risk", "analyst", task="burglary")
    assert r.status_code == 404 and r.json()["detail"]["allowed"] == ["relapse", "youth_uptake"]
    r = get(service, f"/v1/persons/{pid}/risk", "analyst", task="relapse", as_of="2024-13-01")
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "query.as_of"
    r = get(service, "/v1/persons/bad%20id!/risk", "analyst", task="relapse")
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "path.person_id"
    r = get(service, f"/v1/persons/{pid}/risk", "analyst", task="relapse", as_of="2030-01-01")
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "as_of"
    r = post(
        service,
        "/v1/score/relapse",
        "analyst",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422
    assert "Traceback" not in r.text


def features_of(service, pid):
    state = service["state"]
    row = state.today.frame([pid]).loc[pid]
    model = service["state"].loaded.models["relapse"][0]
    return {
        f: (
            None if pd.isna(row[f]) else (str(row[f]) if isinstance(row[f], str) else float(row[f]))
        )
        for f in model.features
    }


def test_score_feature_records_and_their_errors(service):
    pid = person_in(service, "huaxi")
    feats = features_of(service, pid)
    r = post(service, "/v1/score/relapse", "analyst", {"records": [{"id": "a", "features": feats}]})
    assert r.status_code == 200, r.text
    direct = get(service, f"/v1/persons/{pid}/risk", "analyst", task="relapse").json()
    assert r.json()["results"][0]["probability"] == pytest.approx(direct["probability"], abs=1e-9)
    assert r.json()["results"][0]["id"] == "a" and r.json()["results"][0]["history"] == "features"

    bad = dict(feats, years_since_registration="old", primary_substance="atlantis")
    missing = {k: v for k, v in feats.items() if k != "employed_now"}
    unknown = dict(feats, ethnicity="han")
    r = post(
        service,
        "/v1/score/relapse",
        "analyst",
        {"records": [{"features": bad}, {"features": missing}, {"features": unknown}]},
    )
    assert r.status_code == 422
    problems = {(p["record"], p["field"]) for p in r.json()["detail"]}
    assert {(1, "employed_now"), (2, "ethnicity")} <= problems
    r = post(service, "/v1/score/relapse", "analyst", {"records": [{"features": bad}]})
    assert r.status_code == 422
    assert {(p["record"], p["field"]) for p in r.json()["detail"]} == {
        (0, "years_since_registration"),
        (0, "primary_substance"),
    }


def test_score_person_with_events_equals_the_store_path(service):
    root = service["root"]
    persons = pd.read_parquet(root / "city" / "persons.parquet").set_index("person_id")
    events = pd.read_parquet(root / "city" / "events.parquet").drop_duplicates()
    # a person in huaxi with a real history, all of it recorded before the reference date
    late = set(events.person_id[events.recorded_time >= pd.Timestamp("2026-06-30")])
    counts = events.person_id.value_counts()
    pid = next(p for p in members(service, "huaxi") if p not in late and counts.get(p, 0) >= 10)
    mine = events[events.person_id == pid]
    p = persons.loc[pid]

    def text(v):
        return None if pd.isna(v) else str(v)

    person = {
        "person_id": pid,
        "birth_date": str(p.birth_date),
        "sex": text(p.sex),
        "district": text(p.district),
        "registration_date": text(p.registration_date),
        "primary_substance": text(p.primary_substance),
    }
    evs = [
        {
            "event_time": str(e.event_time),
            "event_type": str(e.event_type),
            "value": None if pd.isna(e.value) else float(e.value),
            "detail": None if pd.isna(e.detail) else str(e.detail),
        }
        for e in mine.itertuples()
    ]
    # recorded_time is not part of a score call: only events already known are sent
    body = {
        "records": [
            {"person": person, "events": evs, "as_of": "2026-06-30"},
            {
                "person": {"person_id": "NEW1", "birth_date": "2001-01-01", "district": "huaxi"},
                "events": [],
            },
        ]
    }
    r = post(service, "/v1/score/relapse", "analyst", body)
    assert r.status_code == 200, r.text
    ours = r.json()["results"]
    direct = get(service, f"/v1/persons/{pid}/risk", "analyst", task="relapse").json()
    assert ours[0]["probability"] == pytest.approx(direct["probability"], abs=1e-9)
    assert [f["feature"] for f in ours[0]["factors"]] == [f["feature"] for f in direct["factors"]]
    assert ours[0]["status"] == "ok" and ours[0]["in_cohort"] is True
    # attributes alone, no discharge: outside the relapse cohort, so not scored
    assert ours[1]["history"] == "none" and ours[1]["status"] == "not_in_cohort"
    assert ours[1]["probability"] is None and ours[1]["in_cohort"] is False
    assert ours[1]["reason"]["message_en"].startswith("not in community follow-up")
    anyway = post(service, "/v1/score/relapse?allow_out_of_cohort=true", "analyst", body).json()
    assert anyway["results"][1]["status"] == "ok" and anyway["results"][1]["probability"] > 0
    assert "scored anyway" in anyway["results"][1]["warning"]
    bad = {
        "records": [
            {
                "person": {"person_id": "Q", "birth_date": "1990-01-01"},
                "events": [{"event_time": "2025-01-01", "event_type": "teleport"}],
            }
        ]
    }
    r = post(service, "/v1/score/relapse", "analyst", bad)
    assert r.status_code == 422
    assert r.json()["detail"][0] == {
        "record": 0,
        "field": "events[0].event_type",
        "reason": "unknown event type teleport",
    }


def test_limits_give_413(service):
    rec = {"person": {"person_id": "N", "birth_date": "1990-01-01"}}
    r = post(service, "/v1/score/relapse", "analyst", {"records": [rec] * 1001})
    assert r.status_code == 413
    big = b'{"records": [' + b" " * (5 * 1024 * 1024) + b"]}"
    r = post(
        service,
        "/v1/score/relapse",
        "analyst",
        content=big,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413


def test_models_metrics_and_openapi(service):
    models = get(service, "/v1/models", "admin").json()
    assert {m["task"] for m in models} == {"relapse", "youth_uptake"}
    assert all("auroc" in m["test_metrics"] and m["trained_at"] for m in models)
    get(service, f"/v1/persons/{person_in(service, 'huaxi')}/risk", "analyst", task="relapse")
    text = get(service, "/metrics").text
    assert 'sunshine_requests_total{route="/v1/persons/{person_id}/risk",status="200"}' in text
    assert 'sunshine_score_bucket{le="0.5",task="relapse"}' in text
    assert "sunshine_request_seconds_bucket" in text
    spec = httpx.get(service["url"] + "/openapi.json").json()
    risk = spec["paths"]["/v1/persons/{person_id}/risk"]["get"]
    assert "example" in str(spec["components"]["schemas"]["RiskResponse"]) or "examples" in str(
        spec["components"]["schemas"]["RiskResponse"]
    )
    assert "log-odds" in spec["info"]["description"]
    # every endpoint documents an example, in its response or in the schemas it uses
    schemas = spec["components"]["schemas"]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            text = json.dumps(op)
            refs = [r.split("/")[-1] for r in re.findall(r'"\$ref": "([^"]+)"', text)]
            documented = '"example' in text or any(
                '"example' in json.dumps(schemas[r]) for r in refs
            )
            assert documented, f"{method.upper()} {path} has no example"
    assert risk["responses"]["404"]


def test_audit_log_records_every_request_and_is_append_only(service):
    pid = person_in(service, "huaxi")
    other = person_in(service, "yunyan")
    before = len(AuditLog(service["audit"]).query())
    ok = get(service, f"/v1/persons/{pid}/risk", "cw_huaxi", task="relapse")
    get(service, f"/v1/persons/{other}/risk", "cw_huaxi", task="relapse")  # refused: 404
    get(service, f"/v1/persons/{pid}/risk", None, task="relapse")  # refused: 401
    rows = AuditLog(service["audit"]).query().iloc[before:]
    assert list(rows.status) == [200, 404, 401]
    first = rows.iloc[0]
    assert (first.user, first.role, first.person_id, first.task) == (
        "wang",
        "caseworker",
        pid,
        "relapse",
    )
    assert first.probability == pytest.approx(ok.json()["probability"])
    assert first.tier == ok.json()["tier"] and first.request_id == ok.json()["request_id"]
    assert first.model_version == ok.json()["model"]["version"] and first.client == "127.0.0.1"
    assert pd.isna(rows.iloc[2].user) and rows.iloc[1].person_id == other
    con = sqlite3.connect(service["audit"], isolation_level=None)  # no open transaction after
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute("UPDATE audit SET user = 'x'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute("DELETE FROM audit")
    finally:
        con.close()
    # a restart reads what was written before
    assert len(AuditLog(service["audit"]).query(person=pid, user="wang")) >= 1


def test_audit_survives_concurrent_requests(service):
    pid = person_in(service, "huaxi")
    before = len(AuditLog(service["audit"]).query())
    with cf.ThreadPoolExecutor(8) as pool:
        codes = list(
            pool.map(
                lambda _: (
                    get(service, f"/v1/persons/{pid}/risk", "analyst", task="relapse").status_code
                ),
                range(80),
            )
        )
    assert codes == [200] * 80
    assert len(AuditLog(service["audit"]).query()) - before == 80


def test_reload_degrades_when_registry_is_unreachable_and_swaps_under_load(service, tmp_path):
    pid = person_in(service, "huaxi")
    root = service["root"]
    broken = f"sqlite:///{tmp_path / 'missing' / 'nowhere.db'}"
    mlflow.set_tracking_uri(broken)
    mlflow.set_registry_uri(broken)
    try:
        r = post(service, "/v1/admin/reload", "admin")
        assert r.status_code == 503 and r.json()["status"] == "degraded"
        ready = get(service, "/readyz").json()
        assert ready["status"] == "degraded" and "reload failed" in ready["reason"]
        assert get(service, f"/v1/persons/{pid}/risk", "analyst", task="relapse").status_code == 200
    finally:
        use_mlflow(root)
    from models.registry import promote
    from models.training_run import train_task

    version = train_task(root / "city", "relapse", root / "relapse.yaml")
    promote("relapse", version=str(version), force=True, reason="reload test")
    seen, stop = [], False

    def hammer():
        while not stop:
            r = get(service, f"/v1/persons/{pid}/risk", "analyst", task="relapse")
            seen.append((r.status_code, r.json().get("model", {}).get("version")))

    with cf.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(hammer) for _ in range(4)]
        time.sleep(0.5)
        r = post(service, "/v1/admin/reload", "admin")
        time.sleep(0.5)
        stop = True
        for f in futures:
            f.result()
    assert r.status_code == 200 and r.json()["models"]["relapse"] == str(version)
    assert {code for code, _ in seen} == {200}
    assert seen[-1][1] == str(version)
    assert get(service, "/readyz").json()["status"] == "ready"


def test_a_person_outside_the_cohort_is_not_scored_unless_an_analyst_asks(service):
    young = outsider(service, "huaxi")  # in huaxi, not in community follow-up
    r = get(service, f"/v1/persons/{young}/risk", "cw_huaxi", task="relapse")
    assert r.status_code == 409
    detail = r.json()["detail"]
    assert detail["reason"] == "not_in_cohort" and detail["task"] == "relapse"
    assert detail["message_en"] == (
        "not in community follow-up: no discharge from residential rehab in the 365 days "
        "before as_of"
    )
    assert detail["message_zh"].startswith("不在社区康复期")
    r = get(
        service, f"/v1/persons/{young}/risk", "cw_huaxi", task="relapse", allow_out_of_cohort="true"
    )
    assert r.status_code == 403 and "only analysts" in r.json()["detail"]
    r = get(
        service, f"/v1/persons/{young}/risk", "analyst", task="relapse", allow_out_of_cohort="true"
    )
    assert r.status_code == 200
    body = r.json()
    assert body["in_cohort"] is False and "scored anyway" in body["warning"]
    inside = get(service, f"/v1/persons/{person_in(service, 'huaxi')}/risk", "analyst")
    assert inside.json()["in_cohort"] is True and inside.json()["warning"] is None
    assert get(service, f"/v1/persons/{young}/risk", "cw_huaxi").status_code == 409
    # refused requests are audited too, with their status, and with the task and date the
    # cohort was checked for (the task the route defaults to, too)
    rows = AuditLog(service["audit"]).query(person=young)
    refused = rows[rows.status == 409]
    assert len(refused) == 2 and set(refused.task) == {"relapse"}
    assert set(refused.as_of) == {service["state"].as_of.isoformat()}


def test_missing_scope_is_403_for_every_person_alike(service):
    youth = person_in(service, "huaxi", youth=True)
    answers = [
        get(service, f"/v1/persons/{pid}/risk", "cw_huaxi", task="youth_uptake")
        for pid in (youth, person_in(service, "yunyan", youth=True), "P9999999")
    ]
    assert {r.status_code for r in answers} == {403}
    assert len({r.json()["detail"] for r in answers}) == 1
    assert "needs the scope 'youth'" in answers[0].json()["detail"]


def test_support_options_belong_to_the_task(service):
    relapse_only = {o.en for o in get_task("relapse").support} - {
        o.en for o in get_task("youth_uptake").support
    }
    youth_only = {o.en for o in get_task("youth_uptake").support} - {
        o.en for o in get_task("relapse").support
    }
    assert "School prevention programme" in youth_only
    assert "Relapse-prevention counselling" in relapse_only
    offered = {"relapse": set(), "youth_uptake": set()}
    for task in offered:
        for pid in members(service, "huaxi", task, n=25):
            body = get(service, f"/v1/persons/{pid}/risk", "cw_youth", task=task, explain=20)
            assert body.status_code == 200, body.text
            offered[task] |= {s["en"] for s in body.json()["support"]}
    assert offered["relapse"] and offered["youth_uptake"]
    assert not offered["relapse"] & youth_only
    assert not offered["youth_uptake"] & relapse_only


def test_request_bodies_are_generated_from_the_data_contract():
    from features.contract.checks import EVENT_COLUMNS, PERSON_COLUMNS
    from serving.api.schemas import EventIn, PersonIn

    assert list(PersonIn.model_fields) == [c.name for c in PERSON_COLUMNS if c.name != "ethnicity"]
    assert list(EventIn.model_fields) == [c.name for c in EVENT_COLUMNS if c.name != "person_id"]
    required = {c.name for c in PERSON_COLUMNS if c.required}
    assert {n for n, f in PersonIn.model_fields.items() if f.is_required()} == required


def test_indicators_by_role(service):
    """Analysts see every district and the city; a caseworker only their own districts, and
    another district is refused; a bad month is a 422 naming the field."""
    r = get(service, "/v1/indicators", "analyst", **{"from": "2026-04", "to": "2026-06"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["from"], body["to"]) == ("2026-04", "2026-06")
    rows = pd.DataFrame(body["rows"])
    assert set(rows.month) == {"2026-04", "2026-05", "2026-06"}
    assert {"city", "huaxi", "nanming"} <= set(rows.district)
    assert set(rows.indicator) >= {"relapse_rate", "intake_control_rate", "composite"}
    # the same figures as the command computes from the same registry
    from features.indicators.inputs import load_indicator_config, read_population
    from features.indicators.ranking import indicator_table

    config = load_indicator_config()
    months = ["2026-04", "2026-05", "2026-06"]
    store = service["state"].store
    want = indicator_table(store, months, config, read_population())
    got = rows.set_index(["month", "district", "indicator"])["value"]
    expect = want.set_index(["month", "district", "indicator"])["value"]
    pd.testing.assert_series_equal(got.sort_index(), expect.sort_index(), check_names=False)
    # no small count leaves the service, nor a figure that would give one back; every rank
    # comes with its range
    assert body["suppress_below"] == 5
    assert not rows.numerator_shown.isin(["1", "2", "3", "4"]).any()
    withheld = rows[rows.numerator_shown.isin(["<5", "*"])]
    assert withheld.numerator.isna().all() and withheld.value.isna().all()
    ranked = rows.dropna(subset=["rank"])
    assert len(ranked) and (ranked.rank_lo <= ranked["rank"]).all()
    assert (ranked["rank"] <= ranked.rank_hi).all()
    before = len(AuditLog(service["audit"]).query())
    mine = get(service, "/v1/indicators", "cw_huaxi").json()["rows"]
    assert {r["district"] for r in mine} == {"huaxi"} and len({r["month"] for r in mine}) == 12
    assert get(service, "/v1/indicators", "cw_huaxi", district="nanming").status_code == 403
    assert get(service, "/v1/indicators", "cw_huaxi", district="city").status_code == 403
    # each call is in the audit trail, with who asked and how it ended
    audited = AuditLog(service["audit"]).query().iloc[before:]
    assert list(audited.route) == ["/v1/indicators"] * 3
    assert list(audited.user) == ["wang"] * 3
    assert list(audited.status.astype(int)) == [200, 403, 403]
    only = get(service, "/v1/indicators", "admin", district="city").json()["rows"]
    assert {r["district"] for r in only} == {"city"}
    bad = get(service, "/v1/indicators", "analyst", to="2026-07")
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "to"
    wide = get(service, "/v1/indicators", "analyst", **{"from": "2021-06", "to": "2026-06"})
    assert wide.status_code == 422 and "the last 60 months, from 2021-07" in wide.text
    early = get(service, "/v1/indicators", "analyst", **{"from": "1990-01", "to": "1990-12"})
    assert early.status_code == 422 and early.json()["detail"][0]["field"] == "from"
    assert get(service, "/v1/indicators").status_code == 401
