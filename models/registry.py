"""The MLflow model registry: register challengers, gate promotion to champion, list versions."""

from __future__ import annotations

import datetime as dt
import math
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema, TensorSpec

import features
import models
import training
from features.core.errors import InputError, RegistryError
from features.spec import FEATURES_BY_NAME
from models.pyfunc import ARTIFACT_KEY
from models.risk_model import RiskModel

CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "champion_since."
# promotion tolerance: calibration may worsen by this much ECE
ECE_TOLERANCE = 0.01
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
    cols: list[ColSpec | TensorSpec] = [
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
    code = [str(Path(str(p.__file__)).parent) for p in (features, training, models)]
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


@dataclass(frozen=True)
class VersionFacts:
    """What the gate reads of a version: its run's test metrics and what it was trained on."""

    version: str
    metrics: dict[str, float]
    tags: dict[str, str]


def _metrics(client: MlflowClient, run_id: str | None) -> dict[str, float]:
    """A run's metrics; MLflow stores infinity as the largest float, read back as infinity."""
    metrics = client.get_run(str(run_id)).data.metrics
    return {
        k: math.copysign(math.inf, v) if abs(v) >= sys.float_info.max else v
        for k, v in metrics.items()
    }


def _facts(client: MlflowClient, name: str, version: str) -> VersionFacts:
    mv = client.get_model_version(name, version)
    run = client.get_run(str(mv.run_id))
    return VersionFacts(str(version), _metrics(client, mv.run_id), run.data.tags)


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
    warnings: list[str] = field(default_factory=list)


def gate(challenger: VersionFacts, champion: VersionFacts | None) -> list[str]:
    """Reasons the challenger may not become champion; empty means it may.

    A model that fails its behavioural checks, or does not beat its baselines, never may
    (without --force). Against a champion, the two must
    have been trained on data of the same contract with the same label definition (else their
    test metrics measure different things), and the challenger must be no worse.
    """
    reasons = []
    failed = challenger.metrics.get("test_behaviour_checks_failed", 0.0)
    if failed:
        reasons.append(f"{int(failed)} behavioural check(s) failed (see behaviour_checks.json)")
    if challenger.metrics.get("test_beats_baselines") == 0.0:
        reasons.append(
            "it does not beat its baselines (train's verdict; baselines.csv, evaluation.csv): "
            "a model no better than a one-feature rule or a logistic regression is promoted "
            "only with --force --reason"
        )
    if champion is None:  # the first model: flags are shown (`warnings`), not a refusal
        return reasons
    new = _flags(challenger) - _flags(champion)
    if new:
        reasons.append(
            f"fairness: {', '.join(sorted(new))} flagged, the champion is not ({FLAGGED})"
        )
    incomparable = [
        f"trained with another {what} than champion version {champion.version} "
        f"({challenger.tags.get(tag)} vs {champion.tags.get(tag)}): their test metrics are "
        "not comparable"
        for tag, what in (("contract", "data contract"), ("label_definition", "label definition"))
        if challenger.tags.get(tag) != champion.tags.get(tag)
    ]
    if incomparable:
        return reasons + incomparable
    ch, cp = challenger.metrics, champion.metrics
    if ch["test_auroc"] < cp["test_auroc_ci_low"]:
        reasons.append(
            f"AUROC {ch['test_auroc']:.3f} is below the champion's 95% CI "
            f"({cp['test_auroc_ci_low']:.3f}-{cp['test_auroc_ci_high']:.3f})"
        )
    if ch["test_ece"] > cp["test_ece"] + ECE_TOLERANCE:
        reasons.append(
            f"calibration error {ch['test_ece']:.3f} exceeds the champion's "
            f"{cp['test_ece']:.3f} by more than {ECE_TOLERANCE}"
        )
    return reasons


FLAGGED = "the 95% interval lies wholly outside parity; see fairness.csv and the model card"


def warnings(challenger: VersionFacts) -> list[str]:
    """What the gate shows without refusing: the challenger's fairness flags."""
    flags = sorted(_flags(challenger))
    return [f"fairness: {', '.join(flags)} flagged ({FLAGGED})"] if flags else []


def _flags(facts: VersionFacts) -> set[str]:
    return {f for f in facts.tags.get("fairness_flags", "").split(";") if f}


def _registered(client: MlflowClient, task: str) -> str:
    name = model_name(task)
    try:
        client.get_registered_model(name)
    except MlflowException:
        raise RegistryError(
            f"no registered model {name}: train one with `sunshine train --task {task}`"
        ) from None
    return name


def _check_version(client: MlflowClient, name: str, version: str) -> None:
    try:
        client.get_model_version(name, version)
    except MlflowException:
        raise RegistryError(f"{name} has no version {version}") from None


def _crown(client: MlflowClient, name: str, version: str, tags: dict[str, str]) -> None:
    client.set_registered_model_alias(name, CHAMPION, version)
    # microseconds: the order of promotions is what a rollback goes back along
    stamp = dt.datetime.now(dt.UTC)
    now = stamp.isoformat(timespec="microseconds")
    for key, value in {"promoted_at": now, **tags}.items():
        client.set_model_version_tag(name, version, key, value)
    # the champion's history, one tag per crowning, never rewritten: which version was served
    # on a past date, for judging it on the outcomes of that date
    client.set_registered_model_tag(name, f"{HISTORY_TAG}{int(stamp.timestamp() * 1e6)}", version)


def champion_history(task: str) -> list[tuple[dt.datetime, str]]:
    """(since, version) of every crowning of the task's champion, oldest first."""
    client = MlflowClient()
    try:
        tags = client.get_registered_model(model_name(task)).tags
    except MlflowException:
        return []
    return sorted(
        (dt.datetime.fromtimestamp(int(k[len(HISTORY_TAG) :]) / 1e6, dt.UTC), v)
        for k, v in tags.items()
        if k.startswith(HISTORY_TAG)
    )


def champion_at(history: list[tuple[dt.datetime, str]], when: dt.datetime) -> str | None:
    """The version that was champion at `when`, or None before the first promotion."""
    served = [v for since, v in history if since <= when]
    return served[-1] if served else None


def promote(
    task: str, version: str | None = None, force: bool = False, reason: str | None = None
) -> Decision:
    client = MlflowClient()
    name = _registered(client, task)
    version = version or _alias_version(client, name, CHALLENGER)
    if version is None:
        raise RegistryError(f"{name} has no challenger; pass --version")
    _check_version(client, name, version)
    current = _alias_version(client, name, CHAMPION)
    if current == str(version):
        return Decision(
            False, str(version), current, [f"version {version} is already the champion"]
        )
    champion = _facts(client, name, current) if current is not None else None
    challenger = _facts(client, name, version)
    reasons = gate(challenger, champion)
    shown = warnings(challenger)
    if force and not (reason or "").strip():
        raise InputError("--force needs --reason TEXT, recorded in the registry")
    if reasons and not force:
        return Decision(False, str(version), current, reasons, shown)
    tags = {"forced_reason": reason or "", "gate_overridden": "; ".join(reasons)} if reasons else {}
    if shown:
        tags["fairness_flags_at_promotion"] = "; ".join(shown)
    _crown(client, name, str(version), tags)
    return Decision(True, str(version), current, reasons, shown)


def rollback(task: str, reason: str, to: str | None = None) -> Decision:
    """Bring a former champion back without the gate: the way out when the current champion
    turns out wrong. Without `to`, the champion promoted before the current one. Recorded on
    the version as tags (when, from which version, why)."""
    if not reason.strip():
        raise InputError("a rollback needs --reason TEXT, recorded in the registry")
    client = MlflowClient()
    name = _registered(client, task)
    current = _alias_version(client, name, CHAMPION)
    if to is None:
        former = sorted(
            (
                (mv.tags.get("promoted_at", ""), str(mv.version))
                for mv in client.search_model_versions(f"name = '{name}'")
                if mv.tags.get("promoted_at") and str(mv.version) != current
            ),
            reverse=True,
        )
        if not former:
            raise RegistryError(f"{name} has no former champion to roll back to; pass --to")
        to = former[0][1]
    _check_version(client, name, to)
    if to == current:
        raise RegistryError(f"{name} version {to} is already the champion")
    if not client.get_model_version(name, to).tags.get("promoted_at"):
        raise RegistryError(
            f"{name} version {to} was never a champion: a rollback only restores a former "
            "champion (promote a new version with `sunshine promote`)"
        )
    _crown(
        client,
        name,
        to,
        {"rolled_back_from": current or "", "rollback_reason": reason},
    )
    return Decision(True, to, current, [])


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
            m = _metrics(client, mv.run_id)
            disparity = m.get("test_fairness_worst_disparity")
            unbounded = disparity is not None and math.isinf(disparity)
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
                    # runs before the smoothed measure: infinite when a gated group's rate was 0,
                    # said in words, not as a number
                    "worst_disparity": None if unbounded else disparity,
                    "note": (
                        "worst_disparity unbounded: a group's rate is 0 against a non-zero one "
                        "(the run's fairness table names it)"
                        if unbounded
                        else ""
                    ),
                }
            )
    return pd.DataFrame(rows)


def load_model(
    task: str, alias: str = CHAMPION, version: str | None = None
) -> tuple[RiskModel, dict]:
    """A registered RiskModel with its registry facts (name, version, run id)."""
    hint = (
        f"train with `sunshine train --task {task}` and promote with "
        f"`sunshine promote --task {task}`"
    )
    return load_registered(model_name(task), hint, alias, version)


def load_registered(
    name: str, hint: str, alias: str = CHAMPION, version: str | None = None
) -> tuple[Any, dict]:
    """A registered pyfunc's own model object with its registry facts; RegistryError saying
    what to do (`hint`) when the registry has no such version."""
    client = MlflowClient()
    try:
        mv = (
            client.get_model_version(name, version)
            if version
            else client.get_model_version_by_alias(name, alias)
        )
    except MlflowException:
        what = f"version {version}" if version else alias
        raise RegistryError(
            f"{name} has no {what} in the model registry at {mlflow.get_tracking_uri()}: {hint}"
        ) from None
    # MLflow puts the model's copy of this project's code (its code_paths, for `mlflow models
    # serve`) at the front of sys.path. Here the installed code is already loaded and is what
    # runs; left on the path, the copy would shadow it in every process started from this one
    # (a `serve --workers` worker imports the project afresh).
    path = list(sys.path)
    try:
        pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{mv.version}")
    finally:
        sys.path[:] = path
    model = pyfunc.unwrap_python_model().model
    return model, {"name": name, "version": str(mv.version), "run_id": mv.run_id}
