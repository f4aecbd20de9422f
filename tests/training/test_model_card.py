"""The model card, as registered with a served model: what it says of the inputs and the cohort."""

from __future__ import annotations

from pathlib import Path

import mlflow
from conftest import use_mlflow


def test_the_model_card_states_each_allowed_protected_feature_and_its_reason(service):
    use_mlflow(service["root"])  # the served models' store, whichever another test used last
    facts = service["state"].loaded.models["youth_uptake"][1]
    card = Path(
        mlflow.artifacts.download_artifacts(run_id=facts["run_id"], artifact_path="model_card.md")
    ).read_text(encoding="utf-8")
    assert (
        "**age_band** is a model input, allowed because prevention work is organised by age" in card
    )
    assert "not in the prevention group" in card
    relapse = service["state"].loaded.models["relapse"]
    assert {"sex", "district", "age_years"}.isdisjoint(relapse[0].features)
