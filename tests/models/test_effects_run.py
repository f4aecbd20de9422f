"""`sunshine effects` end to end on the trained test city: the tables, the MLflow run, the
registered effects model behind its gate, and the service serving it beside the risk model."""

from __future__ import annotations

import shutil

import httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.conftest import sunshine, use_mlflow, workspace_at

SKILLS = "skills_training_or_a_sunshine_project_job_placement"
NOBODY = "relapse_prevention_counselling"


@pytest.fixture(scope="module")
def home(served, tmp_path_factory):
    """A copy of the trained city's workspace, so the effects models registered here stay
    out of the other tests' registry."""
    own = tmp_path_factory.mktemp("effects")
    shutil.copytree(served, own, dirs_exist_ok=True)
    with workspace_at(own) as root:
        yield root
    use_mlflow(served)


@pytest.fixture(scope="module")
def forced(home):
    return sunshine(
        home,
        "effects",
        "--task",
        "relapse",
        "--data",
        "city",
        "--option",
        SKILLS,
        "--force",
        "--reason",
        "a test city too small to show effects",
        "--out",
        "eff",
    )


def test_the_report_and_its_tables(home, forced):
    out = forced.stdout
    assert SKILLS in out and "average effect" in out and "percentage points" in out
    assert "offering to the capacity share" in out and "Qini area" in out
    summary = pd.read_csv(home / "eff" / "summary.csv")
    row = summary.set_index("option").loc[SKILLS]
    assert row["offered"] >= 200 and row["effect_low"] <= row["effect"] <= row["effect_high"]
    for name in ("by_group", "calibration", "qini", "policies", "excluded"):
        assert (home / "eff" / f"{SKILLS}.{name}.csv").is_file()
    groups = pd.read_csv(home / "eff" / f"{SKILLS}.by_group.csv")
    assert {"district", "age_band"} <= set(groups["dimension"])
    policies = pd.read_csv(home / "eff" / f"{SKILLS}.policies.csv")
    assert list(policies["policy"]) == ["benefit", "risk", "rule", "random", "nobody"]


def test_the_run_is_logged_and_the_forced_model_is_champion(home, forced):
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    mv = client.get_model_version_by_alias("sunshine-effects-relapse", "champion")
    run = client.get_run(mv.run_id)
    assert run.data.tags["forced_reason"] == "a test city too small to show effects"
    for key in ("effect", "effect_low", "qini_area", "prevented_benefit", "prevented_risk"):
        assert f"{SKILLS}.{key}" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(mv.run_id, "effects")}
    assert f"effects/{SKILLS}.qini.png" in artifacts
    assert f"effects/{SKILLS}.calibration.png" in artifacts
    assert "now champion" in forced.stdout


def test_the_registered_model_loads_in_mlflow_and_gives_the_boosters_estimates(home, forced):
    """Through `mlflow.pyfunc.load_model`, with the signature it was logged with: rows of
    the risk model's encoding and its raw score in, the served option's change out, as the
    deployable model computes it."""
    import mlflow
    import numpy as np

    from models.effects_model import load_effects

    pyfunc = mlflow.pyfunc.load_model("models:/sunshine-effects-relapse@champion")
    model, _ = load_effects("relapse")
    names = [c.name for c in pyfunc.metadata.get_input_schema().inputs]
    assert names == [*model.features, "raw_score"]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, len(model.features)))
    X[:, ::3] = np.nan  # missing values are optional inputs
    rows = pd.DataFrame(X, columns=model.features).assign(raw_score=[-2.0, -1.0, 0.0, 1.0, 2.0])
    out = pyfunc.predict(rows)
    assert list(out.columns) == [SKILLS]
    expected = model.changes(X.astype(np.float32), rows["raw_score"].to_numpy())[SKILLS]
    assert np.allclose(out[SKILLS], expected)


def test_the_gate_keeps_an_option_that_helps_nobody_from_serving(home, forced):
    from mlflow.tracking import MlflowClient

    r = sunshine(home, "effects", "--task", "relapse", "--data", "city", "--option", NOBODY)
    assert "registered, not champion: no option passed the gate" in r.stdout
    client = MlflowClient()
    champion = client.get_model_version_by_alias("sunshine-effects-relapse", "champion")
    latest = max(
        int(v.version) for v in client.search_model_versions("name='sunshine-effects-relapse'")
    )
    assert latest == int(champion.version) + 1


def test_an_option_with_too_few_offers_is_refused(home, forced):
    thin = home / "thin"
    shutil.copytree(home / "city", thin)
    events = pq.read_table(thin / "events.parquet").to_pandas()
    offers = events["event_type"] == "support_offered"
    keep = ~offers | (offers.cumsum() <= 40)
    events[keep].to_parquet(thin / "events.parquet")
    r = sunshine(
        home, "effects", "--task", "relapse", "--data", thin, "--option", SKILLS, check=False
    )
    assert r.returncode == 2
    assert "at least 200" in r.stderr and "Traceback" not in r.stderr
    r = sunshine(
        home, "effects", "--task", "relapse", "--data", "city", "--option", "x", check=False
    )
    assert r.returncode == 2 and "no support option 'x'" in r.stderr


def test_the_service_answers_with_the_estimate_beside_the_risk(home, forced):
    """The API's risk answer and the person page carry the served option's estimate for the
    person, the one the effects model gives for their row of the service's matrix."""
    import re

    from benchmarks.servers import ServerThread
    from features.compute.labels import cohort_spine
    from features.storage.store import Store
    from features.tasks import get_task
    from serving.access.audit import AuditLog
    from serving.access.tokens import TokenStore
    from serving.app import create_app
    from serving.scoring.interventions import load_interventions
    from serving.state.champions import load_champions
    from serving.state.service import build_state

    loaded = load_champions()
    effects = loaded.effects_for("relapse")
    assert effects is not None and effects.served == [SKILLS]
    store = Store(home / "city")
    state = build_state(store, loaded)
    model, _ = loaded.model("relapse")
    cohort = cohort_spine(store, get_task("relapse"), store.reference_date)["person_id"]
    change = {}
    for pid in cohort:
        X = state.encoded(pid, store.reference_date, model)
        change[pid] = effects.changes(X, model.raw_score(X))[SKILLS][0]
    person = min(change, key=change.get)  # the one it helps most
    assert change[person] < -0.001
    tokens = TokenStore([])
    token = tokens.create("li", "analyst")
    app = create_app(state, tokens, AuditLog(home / "audit.db"), load_interventions())
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=60) as web:
        r = web.get(
            f"/v1/persons/{person}/risk",
            params={"task": "relapse"},
            headers={"Authorization": f"Bearer {token}"},
        )
        page = web.get("/app/signin")
        nonce = re.search(r'name="nonce" value="([^"]+)"', page.text).group(1)
        assert web.post("/app/signin", data={"token": token, "nonce": nonce}).status_code == 303
        page = web.get(f"/app/persons/{person}", params={"task": "relapse"})
        ranked = web.get("/app/caseload", params={"task": "relapse", "sort": "benefit"})
        youth = web.get("/app/caseload", params={"task": "youth_uptake"})
    assert r.status_code == 200, r.text
    (estimate,) = r.json()["estimated_effects"]
    assert estimate["code"] == SKILLS and estimate["zh"] == "技能培训或阳光工程就业安置"
    assert estimate["change"] == pytest.approx(change[person])
    assert page.status_code == 200
    assert "根据以往帮扶记录的估计" in page.text
    shown = f"技能培训或阳光工程就业安置：风险约降低{-100 * change[person]:.1f}个百分点"
    assert shown in page.text

    # the caseload ranked by expected benefit: the person it helps most first, the note and
    # the capacity (10% of the list) with the outcomes the first of them may be spared
    assert ranked.status_code == 200
    listed = re.findall(r'href="/app/persons/([^"?]+)\?task=relapse"', ranked.text)
    assert listed[0] == person and set(listed) <= set(change)
    assert "先联系这些人，预计可减少最多的复吸。" in ranked.text
    k = -(-len(change) // 10)  # ceil: the effects model's capacity is 10% of the list
    best = sorted(change.values())[:k]
    prevented = sum(-min(c, 0.0) for c in best)
    assert f"向前 {k} 人" in ranked.text and f"可减少约 {prevented:.1f} 例" in ranked.text
    assert ranked.text.count("帮扶能力范围内") == sum(c < -0.0005 for c in best[: len(listed)])
    assert '<option value="benefit" selected>' in ranked.text
    # no effects model serves the youth task: its caseload cannot be sorted so
    assert youth.status_code == 200 and 'value="benefit"' not in youth.text
