"""The risk route's two ways in (serving.api.routers.risk): a plain request answered directly,
anything else by FastAPI, and a cohort member's answer from the reasons the caseload kept.
Each must say exactly what the other would."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
from test_serving import members, outsider

from features.tasks import get_task
from serving.access.audit import AuditLog
from serving.api.routers.risk import Direct
from serving.app import create_app
from serving.scoring.interventions import load_interventions
from serving.state.caseload import EXPLAINED


def ask(svc, pid: str, who: str | None, query: str, token: str | None = None):
    """GET the risk of `pid` with a raw query string (so a parameter can be given twice)."""
    token = token or (svc["tokens"][who] if who else None)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"{svc['url']}/v1/persons/{pid}/risk?{query}"
    return httpx.get(url, headers=headers, timeout=30)


def same(a: httpx.Response, b: httpx.Response) -> None:
    """Two answers alike but for their request ids."""
    assert a.status_code == b.status_code, (a.text, b.text)
    left, right = a.json(), b.json()
    for body in (left, right):
        if isinstance(body, dict):
            body.pop("request_id", None)
    assert left == right
    assert a.headers.get("www-authenticate") == b.headers.get("www-authenticate")


def test_a_plain_request_says_what_fastapi_says(service):
    """The same question spelt plainly (answered directly) and with its task given twice
    (which only FastAPI answers): the same answer, refusals included."""
    member = members(service, "huaxi", n=1)[0]
    other = outsider(service, "huaxi")
    nanming = members(service, "nanming", n=1)[0]
    cases = [
        (member, "cw_huaxi", "task=relapse&explain=5"),
        (member, "analyst", "task=relapse&explain=8&as_of=2026-06-30"),
        (member, "analyst", "task=relapse&explain=12"),  # more than the caseload keeps
        (member, "analyst", "task=relapse&explain=3&as_of=2026-03-31"),  # another day
        (other, "analyst", "task=relapse&explain=5&allow_out_of_cohort=true"),
        (other, "cw_huaxi", "task=relapse"),  # 409: not in the cohort
        (other, "cw_huaxi", "task=relapse&allow_out_of_cohort=1"),  # 403: not an analyst
        (nanming, "cw_huaxi", "task=relapse"),  # 404: another district
        ("P9999999", "analyst", "task=relapse"),  # 404: nobody
        (member, "cw_huaxi", "task=youth_uptake"),  # 403: no scope for the task
        (member, "analyst", "task=nosuch"),  # 404: no such task
        (member, "analyst", "task=relapse&as_of=2030-01-01"),  # 422: after the data
    ]
    for pid, who, query in cases:
        plain = ask(service, pid, who, query)
        routed = ask(service, pid, who, query + "&task=" + query.split("task=")[1].split("&")[0])
        same(plain, routed)
    # a token that is not valid: 401 with the challenge, either way
    same(
        ask(service, member, None, "task=relapse", token="not-a-token"),
        ask(service, member, None, "task=relapse&task=relapse", token="not-a-token"),
    )


def test_only_a_plain_request_is_answered_directly(service, tmp_path):
    """Direct answers the plain spelling and leaves anything the validator must judge to
    FastAPI, having sent nothing."""
    app = create_app(
        service["state"],
        service["token_store"],
        AuditLog(tmp_path / "audit.db"),
        load_interventions(),
    )
    direct = Direct(app.state.services)
    member = members(service, "huaxi", n=1)[0]
    token = service["tokens"]["cw_huaxi"].encode()

    def answered(path: str, query: str, auth: bytes | None = b"Bearer " + token) -> list:
        scope = {
            "type": "http",
            "method": "GET",
            "path": path,
            "root_path": "",
            "query_string": query.encode(),
            "headers": [(b"authorization", auth)] if auth else [],
            "client": ("127.0.0.1", 1),
            "state": {"request_id": "r", "client_request_id": None, "audit": []},
        }
        sent: list = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        took = asyncio.run(direct(scope, receive, send))
        assert took == bool(sent)
        return sent

    path = f"/v1/persons/{member}/risk"
    sent = answered(path, "task=relapse&explain=5&as_of=2026-06-30&allow_out_of_cohort=false")
    assert sent[0]["status"] == 200
    assert answered(path, "task=relapse&explain=ABC") == []  # 422 is FastAPI's to say
    assert answered(path, "explain=301") == []
    assert answered(path, "as_of=30.06.2026") == []
    assert answered(path, "allow_out_of_cohort=True") == []
    assert answered(path, "task=relapse&task=relapse") == []
    assert answered(path, "task=relapse", auth=None) == []  # 401 too
    assert answered(path, "task=relapse", auth=b"Basic " + token) == []
    assert answered("/v1/persons/a b/risk", "") == []  # a malformed id: 422
    assert answered("/v1/persons/" + "P" * 65 + "/risk", "") == []
    assert answered(f"/v1/persons/{member}/risk/more", "") == []
    assert answered(path, "task=relapse", auth=b"Bearer nope")[0]["status"] == 401


@pytest.mark.parametrize("explain", [1, 5, EXPLAINED])
def test_a_members_kept_answer_is_the_one_computed_afresh(service, explain):
    state = service["state"]
    task = get_task("relapse")
    model, facts = state.loaded.model("relapse")
    version = str(facts["version"])
    for pid in members(service, n=12):
        X = state.encoded(pid, state.as_of, model)
        kept = state.kept_score(task, model, version, pid, X, explain)
        fresh = model.score_encoded(X, explain=explain)
        assert kept is not None
        for field in ("probability", "raw_score", "percentile", "base_value"):
            np.testing.assert_allclose(getattr(kept, field), getattr(fresh, field), rtol=1e-12)
        assert list(kept.tier) == list(fresh.tier)
        shown = fresh.top.shown
        np.testing.assert_array_equal(kept.top.position[shown], fresh.top.position[shown])
        np.testing.assert_allclose(kept.top.contribution, fresh.top.contribution, rtol=1e-12)
        np.testing.assert_array_equal(kept.top.value, fresh.top.value)


def test_nothing_is_kept_for_what_the_caseload_did_not_compute(service):
    state = service["state"]
    task = get_task("relapse")
    model, facts = state.loaded.model("relapse")
    version = str(facts["version"])
    member = members(service, n=1)[0]
    X = state.encoded(member, state.as_of, model)
    assert state.kept_score(task, model, version, member, X, EXPLAINED + 1) is None
    assert state.kept_score(task, model, version, member, X, 0) is None
    assert state.kept_score(task, model, version + "0", member, X, 5) is None  # another model
    other = outsider(service, "huaxi")
    assert state.kept_score(task, model, version, other, X, 5) is None
