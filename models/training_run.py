"""One training run, as the CLI and the experiments start it: train, log, register, report.

Kept apart from the command definitions so that `sunshine` starts without importing
LightGBM, MLflow and the training stack for commands that do not train.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from dataclasses import replace
from pathlib import Path

import mlflow
import pandas as pd
from rich.markdown import Markdown

from features.cli import open_store
from features.compute.unused import said, unused_events
from features.core.cli import console, frame_table
from features.core.errors import InputError
from features.spec import feature_columns
from features.storage.store import Store
from features.synth.city import TRUTH_DIR
from features.tasks import get_task
from models.registry import log_and_register
from models.risk_model import RiskModel
from models.tracking import experiment_id, log_training
from training.config import FIXED, TrainConfig, load_config
from training.fairness import flag_list
from training.holdout import read_split
from training.model_card import evaluation_view, model_card, transport
from training.trainer import (
    ModelFactory,
    TrainResult,
    current_cohort,
    data_fingerprint,
    prepare_frame,
    raw_scorer,
    train,
)
from training.tuning import tune as run_tuning


def train_task(
    data: str | Path,
    task: str,
    config_path: Path | None = None,
    labels: Path | None = None,
    tune: int = 0,
    lenient: bool = False,
    rejects: Path | None = None,
    reference_date: str | None = None,
    experiment: str | None = None,
    register_model: bool = True,
    split: Path | None = None,
    sample: int | None = None,
    ceiling: bool = False,
) -> int | None:
    """Train, log and (unless told not to) register one task; returns the registered version."""
    get_task(task)
    config = load_config(task, config_path)
    store = open_store(data, lenient, rejects, reference_date)
    truth = read_truth(store) if ceiling else None
    return run_training(
        store, config, labels, tune, experiment, register_model, split, sample, truth
    )[1]


def read_truth(store: Store) -> pd.DataFrame:
    """A synthetic city's hidden truth (`truth/persons.parquet` beside its registry), for the
    ceiling; a clear error where the data has none."""
    path = store.source / TRUTH_DIR / "persons.parquet" if isinstance(store.source, Path) else None
    if path is None or not path.is_file():
        raise InputError(
            f"{store.name}: --ceiling needs a synthetic city's truth ({TRUTH_DIR}/persons.parquet, "
            "written by `sunshine synth`)"
        )
    return pd.read_parquet(path)


def model_factory(config: TrainConfig) -> ModelFactory:
    """How training assembles the deployable model it evaluates."""
    return functools.partial(RiskModel.assemble, task=config.task, capacity=config.capacity)


def run_name(config: TrainConfig, labels: Path | None, now: dt.datetime) -> str:
    """Tells runs apart in the MLflow UI: task, time, config and label source."""
    source = Path(config.source).stem if config.source.endswith((".yaml", ".yml")) else "default"
    own = f"-labels:{labels.stem}" if labels else ""
    return f"{config.task}-{now:%Y%m%d-%H%M%S}-{source}{own}"


def label_definition(config: TrainConfig, labels: Path | None) -> str:
    """What the label means: the task's declared definition, or the user's own label file."""
    if labels is None:
        return get_task(config.task).label_definition
    return "labels:" + hashlib.sha256(Path(labels).read_bytes()).hexdigest()[:16]


def run_training(
    store: Store,
    config: TrainConfig,
    labels: Path | None = None,
    tune: int = 0,
    experiment: str | None = None,
    register_model: bool = True,
    split: Path | None = None,
    sample: int | None = None,
    truth: pd.DataFrame | None = None,
) -> tuple[TrainResult, int | None, str]:
    """The one training path of the CLI and of experiments: (result, version, run id).

    Without registration the run is logged with its model card but no deployable model, as for
    research data that must never reach the registry's champions.
    """
    task = config.task
    fixed = None
    if split is not None:  # a split fixed outside the project replaces the config's
        kind, assignment = read_split(split, store)
        fixed = (kind, assignment, str(split))
        config = replace(
            config,
            split_mode=FIXED if kind == "part" else "group",
            group_by=f"group of {Path(split).name}" if kind == "group" else config.group_by,
        )
    frame = prepare_frame(store, config, labels, fixed, sample)
    current = current_cohort(store, config, labels) if fixed is None else None
    unused = unused_events(store, frame.groupby("person_id", as_index=False)["as_of"].max())
    line = said(unused, "their person's last as-of date in the training rows")
    if line:
        console.print(line, style="yellow", soft_wrap=True)
    fingerprint = data_fingerprint(store)
    fingerprint["events_unused_by_type"] = unused
    if "labels" in frame.attrs:
        fingerprint["labels"] = frame.attrs["labels"]
    if "sampling" in frame.attrs:
        fingerprint["sampling"] = frame.attrs["sampling"]
    fingerprint["label_definition"] = label_definition(config, labels)
    if split is not None:
        fingerprint["split_file"] = hashlib.sha256(Path(split).read_bytes()).hexdigest()[:16]
    exp = experiment_id(experiment or f"sunshine-{task}")
    version = None
    now = dt.datetime.now(dt.UTC)
    make_model = model_factory(config)
    with mlflow.start_run(experiment_id=exp, run_name=run_name(config, labels, now)) as run:
        mlflow.set_tags(
            {
                "contract": fingerprint["contract"],
                "label_definition": fingerprint["label_definition"],
            }
        )
        if tune:
            config = _tune(frame, config, tune, exp, make_model)
        result = train(frame, config, make_model, current, truth)
        card = model_card(result, fingerprint, now)
        log_training(result, fingerprint, card)
        if register_model:
            keep = ("auroc", "auroc_ci_low", "auroc_ci_high", "ece", "brier", "precision_top10")
            model = result.model
            model.metadata = {
                "trained_at": now.isoformat(timespec="seconds"),
                "run_id": run.info.run_id,
                "test_metrics": {k: result.metrics[k] for k in keep},
                "reference_date": fingerprint["reference_date"],
            }
            version = log_and_register(model, result.example, card)
    _report(result, version, run.info.run_id)
    return result, version, run.info.run_id


def _tune(
    frame: pd.DataFrame, config: TrainConfig, trials: int, exp: str, make_model: ModelFactory
) -> TrainConfig:
    """The search, each trial a nested run and a printed line; then the chosen parameters."""
    raw = raw_scorer(make_model, frame, config.model_features(feature_columns(frame.columns)))

    def log_trial(number: int, params: dict, score: float) -> None:
        shown = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
        )
        console.print(f"trial {number}: validation AUROC {score:.4f} ({shown})")
        with mlflow.start_run(experiment_id=exp, run_name=f"trial-{number}", nested=True):
            mlflow.log_params(params)
            mlflow.log_metric("valid_auroc", score)

    console.print(f"tuning: {trials} trials on the {config.split_mode} split")
    tuned = run_tuning(frame, config, trials, raw, log_trial)
    chosen = {k: v for k, v in tuned.lightgbm.items() if config.lightgbm.get(k) != v}
    console.print(f"chosen parameters: {chosen or 'the configured ones'}")
    return tuned


def _report(result: TrainResult, version: int | None, run_id: str) -> None:
    task, config, m = result.task, result.config, result.metrics
    console.print(frame_table(f"{task}: {config.split_mode} split", result.split_table))
    console.print(
        f"{config.test_title}: AUROC {m['auroc']:.3f} (95% CI {m['auroc_ci_low']:.3f}-"
        f"{m['auroc_ci_high']:.3f}), without constraints {m['auroc_unconstrained']:.3f}; "
        f"AUPRC {m['auprc']:.3f}; Brier {m['brier']:.4f}; ECE {m['ece']:.4f} "
        f"({result.calibrator.method}); precision top 10% {m['precision_top10']:.3f}"
    )
    console.print(frame_table(f"baselines on the {config.test_title}", result.baselines))
    console.print(result.verdict, style="bold" if "NOT" in result.verdict else None)
    if "ceiling_auroc" in m:
        console.print(
            f"the synthetic city's ceiling (the same learner knowing each person's hidden "
            f"traits): AUROC {m['ceiling_auroc']:.3f}, {m['ceiling_gap']:.3f} above this model"
        )
    console.print(frame_table(config.evaluation_title, evaluation_view(result)))
    if config.split_mode == "group":
        console.print(
            "(The line for the test group above is the deployed model's. Its row in this table"
            " is a model refit with that group left out like every other row, with its own "
            "early stopping and calibrator: its AUROC and ECE differ a little, by that refit "
            "alone. Compare groups in the table; quote the line above for the deployed model.)",
            soft_wrap=True,
        )
    if said := transport(result):
        console.print(Markdown(said))
    failed = [b["check"] for b in result.behaviour if not b["passed"]]
    console.print(
        f"fairness: {int(m['fairness_flags'])} flag(s) whose interval lies outside parity"
        + (f" ({', '.join(flag_list(result.fairness))})" if m["fairness_flags"] else "")
        + f"; behavioural checks failed: {len(failed)}"
        + (f" ({'; '.join(failed)})" if failed else "")
    )
    if version is None:
        console.print(f"logged run {run_id} (not registered)")
    else:
        console.print(f"registered sunshine-{task} version {version} as challenger (run {run_id})")
