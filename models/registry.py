"""The MLflow model registry: register challengers, gate promotion to champion, list versions."""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema

import features
import models
import training
from features.spec import FEATURES_BY_NAME
from features.store import DataError
from models.deployable import RiskModel
from models.pyfunc import ARTIFACT_KEY

CHAMPION, CHALLENGER = "champion", "challenger"
# promotion tolerances: calibration may worsen by this much ECE, the worst fairness ratio by this
ECE_TOLERANCE = 0.01
FAIRNESS_TOLERANCE = 0.10
PIP_REQUIREMENTS = [
    "lightgbm>=4.3",
    "pandas>=2.2",
    "numpy>=1.26",
    "scikit-learn>=1.4",
    "pyarrow>=15",
    "duckdb>=2.0",
    "pyyaml>=6.0",
    "mlflow>=3.0",
]


def model_name(task: str) -> str:
    return f"sunshine-{task}"


def signature(model: RiskModel) -> ModelSignature:
    """Every feature optional (missing means nothing was observed); numbers as doubles."""
    cols = [
        ColSpec("string" if FEATURES_BY_NAME[f].categorical else "double", f, required=False)
        for f in model.features
    ]
    out = [ColSpec("double", c) for c in ("probability", "raw_score", "percentile")]
    return ModelSignature(Schema(cols), Schema([*out, ColSpec("string", "tier")]))


def _input_example(model: RiskModel, example: pd.DataFrame) -> pd.DataFrame:
    """Categories as plain strings: what a JSON client sends."""
    out = example[model.features].copy()
    for c in out.columns:
        if isinstance(out[c].dtype, pd.CategoricalDtype):
            out[c] = out[c].astype(object).where(out[c].notna(), None)
    return out


def log_and_register(model: RiskModel, example: pd.DataFrame, card: str) -> int:
    """Log the pyfunc into the active run, register it and make it the challenger."""
    name = model_name(model.task)
    inputs = _input_example(model, example)
    code = [str(Path(p.__file__).parent) for p in (features, training, models)]
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "risk_model")
        (Path(tmp) / "risk_model" / "model_card.md").write_text(card, encoding="utf-8")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).with_name("pyfunc_entry.py")),
            artifacts={ARTIFACT_KEY: str(Path(tmp) / "risk_model")},
            code_paths=code,
            signature=signature(model),
            input_example=inputs,
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name=name,
        )
    version = int(info.registered_model_version)
    client = MlflowClient()
    client.set_registered_model_alias(name, CHALLENGER, str(version))
    client.update_registered_model(
        name,
        description="Sunshine Risk: supportive-intervention risk scores. Not for punitive use.",
    )
    return version


def _metrics(client: MlflowClient, name: str, version: str) -> dict[str, float]:
    mv = client.get_model_version(name, version)
    return client.get_run(mv.run_id).data.metrics


def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


@dataclass
class Decision:
    promoted: bool
    version: str
    previous: str | None
    reasons: list[str]


def gate(challenger: dict[str, float], champion: dict[str, float]) -> list[str]:
    """Reasons the challenger is worse than the champion; empty means it may be promoted."""
    reasons = []
    if challenger["test_auroc"] < champion["test_auroc_ci_low"]:
        reasons.append(
            f"AUROC {challenger['test_auroc']:.3f} is below the champion's 95% CI "
            f"({champion['test_auroc_ci_low']:.3f}-{champion['test_auroc_ci_high']:.3f})"
        )
    if challenger["test_ece"] > champion["test_ece"] + ECE_TOLERANCE:
        reasons.append(
            f"calibration error {challenger['test_ece']:.3f} exceeds the champion's "
            f"{champion['test_ece']:.3f} by more than {ECE_TOLERANCE}"
        )
    worst, ref = (
        challenger["test_fairness_worst_disparity"],
        champion["test_fairness_worst_disparity"],
    )
    if worst > ref + FAIRNESS_TOLERANCE:
        reasons.append(
            f"worst fairness disparity ratio {worst:.2f} exceeds the champion's {ref:.2f} "
            f"by more than {FAIRNESS_TOLERANCE}"
        )
    return reasons


def promote(
    task: str, version: str | None = None, force: bool = False, reason: str | None = None
) -> Decision:
    client = MlflowClient()
    name = model_name(task)
    try:
        client.get_registered_model(name)
    except MlflowException:
        raise DataError(
            f"no registered model {name}: train one with `sunshine train --task {task}`"
        ) from None
    version = version or _alias_version(client, name, CHALLENGER)
    if version is None:
        raise DataError(f"{name} has no challenger; pass --version")
    try:
        client.get_model_version(name, version)
    except MlflowException:
        raise DataError(f"{name} has no version {version}") from None
    current = _alias_version(client, name, CHAMPION)
    if current == str(version):
        return Decision(
            False, str(version), current, [f"version {version} is already the champion"]
        )
    reasons = []
    if current is not None:
        reasons = gate(_metrics(client, name, version), _metrics(client, name, current))
    if force and not reason:
        raise DataError("--force needs --reason TEXT, recorded in the registry")
    if reasons and not force:
        return Decision(False, str(version), current, reasons)
    client.set_registered_model_alias(name, CHAMPION, str(version))
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    client.set_model_version_tag(name, str(version), "promoted_at", now)
    if reasons:
        client.set_model_version_tag(name, str(version), "forced_reason", reason or "")
        client.set_model_version_tag(name, str(version), "gate_overridden", "; ".join(reasons))
    return Decision(True, str(version), current, reasons)


def list_versions(tasks: list[str]) -> pd.DataFrame:
    client = MlflowClient()
    rows: list[dict[str, Any]] = []
    for task in tasks:
        name = model_name(task)
        try:
            registered = client.get_registered_model(name)
        except MlflowException:
            continue
        versions = client.search_model_versions(f"name = '{name}'")
        aliases: dict[str, list[str]] = {}
        for alias, v in registered.aliases.items():
            aliases.setdefault(str(v), []).append(alias)
        for mv in sorted(versions, key=lambda v: int(v.version)):
            m = client.get_run(mv.run_id).data.metrics
            rows.append(
                {
                    "model": name,
                    "version": int(mv.version),
                    "aliases": ",".join(sorted(aliases.get(str(mv.version), []))),
                    "created": dt.datetime.fromtimestamp(
                        mv.creation_timestamp / 1000, dt.UTC
                    ).isoformat(timespec="minutes"),
                    "auroc": m.get("test_auroc"),
                    "ece": m.get("test_ece"),
                    "precision_top10": m.get("test_precision_top10"),
                    "worst_disparity": m.get("test_fairness_worst_disparity"),
                }
            )
    return pd.DataFrame(rows)


def load_model(
    task: str, alias: str = CHAMPION, version: str | None = None
) -> tuple[RiskModel, dict]:
    """A registered RiskModel with its registry facts (name, version, run id)."""
    client = MlflowClient()
    name = model_name(task)
    try:
        mv = (
            client.get_model_version(name, version)
            if version
            else client.get_model_version_by_alias(name, alias)
        )
    except MlflowException:
        what = f"version {version}" if version else f"a {alias}"
        raise DataError(
            f"{name} has no {what}: train with `sunshine train --task {task}` and promote with "
            f"`sunshine promote --task {task}`"
        ) from None
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{mv.version}")
    model = pyfunc.unwrap_python_model().model
    return model, {"name": name, "version": str(mv.version), "run_id": mv.run_id}
