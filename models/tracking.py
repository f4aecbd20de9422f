"""MLflow tracking: a local SQLite store and artifacts folder by default, or MLFLOW_TRACKING_URI."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from features.core.errors import RegistryError
from features.core.settings import HOME_ENV, MLFLOW_ARTIFACTS, MLFLOW_DB, settings
from features.spec import FEATURES, FEATURES_BY_NAME
from training.fairness import flag_list


def configure(existing: bool = False) -> str:
    """Point MLflow at the configured store (MLFLOW_TRACKING_URI, else the home's SQLite
    file) and return its URI. A command that only reads the registry passes `existing`: a
    local store that is not there is a mistake to name (which file, and how to point at the
    right one), not an empty registry to create in whatever folder the command ran from."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow's and its migrations' INFO lines ("Creating initial MLflow database tables...")
    # say nothing a user acts on; warnings and errors still show
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    given = settings()
    uri = given.mlflow_uri
    if existing and given.mlflow_db is not None and not given.mlflow_db.exists():
        raise RegistryError(
            f"no model registry at {given.mlflow_db}: run the command from the folder that "
            f"holds {MLFLOW_DB} (or a folder below it), or set {HOME_ENV} to that folder "
            "(or MLFLOW_TRACKING_URI to an MLflow server); or make one: `sunshine train --task T "
            "--data DIR` then `sunshine promote --task T` (or `sunshine demo`)"
        )
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def experiment_id(name: str) -> str:
    client = MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///"):  # a local store keeps its artifacts beside the database
        location = (Path(uri.removeprefix("sqlite:///")).parent / MLFLOW_ARTIFACTS).as_uri()
    return client.create_experiment(name, artifact_location=location)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def feature_spec(codebook: list[str] | None = None) -> list[dict[str, Any]]:
    """The spec's features and the run's codebook features, as declared."""
    extra = [FEATURES_BY_NAME[n] for n in codebook or [] if FEATURES_BY_NAME[n].item]
    return [dataclasses.asdict(f) for f in (*FEATURES, *extra)]


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v if not isinstance(v, list) else json.dumps(v, default=str)
    return out


def log_training(result: Any, fingerprint: dict[str, Any], card: str) -> None:
    """Log a TrainResult into the active run."""
    cfg = result.config
    mlflow.set_tags(
        {
            "git_commit": git_commit(),
            "task": result.task,
            "config": cfg.source,
            # what the promotion gate compares with the champion's
            "fairness_flags": ";".join(flag_list(result.fairness)),
        }
    )
    params = _flatten({k: v for k, v in cfg.raw.items()})
    params.update(
        calibration=result.calibrator.method,
        features=len(result.features),
        persons=fingerprint["persons"],
        events=fingerprint["events"],
    )
    mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
    metrics = {f"test_{k}": v for k, v in result.metrics.items()}
    for r in result.baselines.itertuples():
        metrics[f"baseline_{r.model}_auroc"] = r.auroc
        metrics[f"baseline_{r.model}_precision_top10"] = r.precision_top10
    prefix = {"temporal": "rolling_auroc", "group": "held_out_auroc"}.get(
        result.config.split_mode, "cv_auroc_fold"
    )
    for r in result.evaluation.to_dict("records"):
        origin = next(iter(r.values()))  # a rolling start, a held-out group, a fold
        metrics[f"{prefix}_{origin}"] = r["auroc"]
        for baseline in ("one_rule_auroc", "logistic_regression_auroc"):
            if baseline in r:  # rolling origins: the baselines on the same rows
                metrics[f"rolling_{baseline}_{origin}"] = r[baseline]
    for method, score in result.calibration_scores.items():
        metrics[f"calibration_cv_brier_{method}"] = score
    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v == v})
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for name, frame in (
            ("split.csv", result.split_table),
            ("baselines.csv", result.baselines),
            ("evaluation.csv", result.evaluation),
            ("fairness.csv", result.fairness),
            ("shap_importance.csv", result.importance),
        ):
            frame.to_csv(d / name, index=False)
        (d / "behaviour_checks.json").write_text(json.dumps(result.behaviour, indent=2))
        if result.group_calibration:
            (d / "group_calibration.json").write_text(
                json.dumps(result.group_calibration, indent=1)
            )
        (d / "feature_spec.json").write_text(
            json.dumps(feature_spec(result.features), indent=1, ensure_ascii=False, default=list)
        )
        (d / "data_fingerprint.json").write_text(json.dumps(fingerprint, indent=2))
        (d / "model_card.md").write_text(card, encoding="utf-8")
        mlflow.log_artifacts(str(d))
    mlflow.log_table(result.fairness, "fairness_table.json")
    from training import plots  # matplotlib: a training-only dependency, so imported here

    for name, fig in result.figures.items():
        mlflow.log_figure(fig, name)
        plots.close(fig)
